// Stand-ins for the KMS and HSM activities, for workflow tests on the time-skipping server. They
// record every call and can be told to fail, so a test can assert what the workflow asked for.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { HsmActivities } from '../../activities/hsm';
import type { KmsActivities } from '../../activities/kms';

const DAY_MS = 24 * 3_600_000;

export interface Fakes {
  kms: KmsActivities;
  hsm: HsmActivities;
  calls: Record<string, unknown[]>;
  /** Set to make the next calls of an activity throw, one entry per call. */
  failures: Record<string, Array<() => Error>>;
}

export function fakes(): Fakes {
  const calls: Record<string, unknown[]> = {};
  const failures: Record<string, Array<() => Error>> = {};
  let tokens = 0;
  const called = (name: string, input: unknown) => {
    (calls[name] ??= []).push(input);
    const fail = failures[name]?.shift();
    if (fail) throw fail();
  };
  const kms: KmsActivities = {
    async ensureKmsKey(input) {
      called('ensureKmsKey', input);
      return { keyId: 'key-1', keyArn: 'arn:aws:kms:us-east-1:111122223333:key/key-1', created: true, keyState: 'PendingImport' };
    },
    async getImportParameters(input) {
      called('getImportParameters', input);
      tokens++;
      // The server's (skipped) clock, so token expiry follows workflow time.
      const now = Context.current().info.currentAttemptScheduledTimestampMs;
      return { publicKey: 'cHVibGlj', importToken: `token-${tokens}`, parametersValidTo: new Date(now + DAY_MS).toISOString() };
    },
    async importKeyMaterial(input) {
      called('importKeyMaterial', input);
    },
    async verifyKey(input) {
      called('verifyKey', input);
      return { keyState: 'Enabled', origin: 'EXTERNAL', expirationModel: input.expirationModel, roundTrip: true };
    },
  };
  const hsm: HsmActivities = {
    async ensureHsmKey(input) {
      called('ensureHsmKey', input);
      return { label: input.label, keyId: '0a0b0c', kcv: 'abcdef', created: true };
    },
    async wrapKey(input) {
      called('wrapKey', input);
      return { encryptedKeyMaterial: `wrapped-under-${input.publicKey}` };
    },
  };
  return { kms, hsm, calls, failures };
}

export const tokenExpired = () => ApplicationFailure.nonRetryable('import token expired', 'ImportTokenExpired');
