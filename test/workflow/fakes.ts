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
  /** Set to hold an activity until the promise settles. */
  holds: Record<string, Promise<void>>;
}

export function fakes(): Fakes {
  const calls: Record<string, unknown[]> = {};
  const failures: Record<string, Array<() => Error>> = {};
  const holds: Record<string, Promise<void>> = {};
  let tokens = 0;
  const called = async (name: string, input: unknown) => {
    (calls[name] ??= []).push(input);
    await holds[name];
    const fail = failures[name]?.shift();
    if (fail) throw fail();
  };
  const kms: KmsActivities = {
    async checkImportTarget(input) {
      await called('checkImportTarget', input);
    },
    async ensureKmsKey(input) {
      await called('ensureKmsKey', input);
      return { keyId: 'key-1', keyArn: 'arn:aws:kms:us-east-1:111122223333:key/key-1', created: true, keyState: 'PendingImport' };
    },
    async getImportParameters(input) {
      await called('getImportParameters', input);
      tokens++;
      // The server's (skipped) clock, so token expiry follows workflow time.
      const now = Context.current().info.currentAttemptScheduledTimestampMs;
      return { publicKey: 'cHVibGlj', importToken: `token-${tokens}`, parametersValidTo: new Date(now + DAY_MS).toISOString() };
    },
    async importKeyMaterial(input) {
      await called('importKeyMaterial', input);
    },
    async verifyKey(input) {
      await called('verifyKey', input);
      return { keyState: 'Enabled', origin: 'EXTERNAL', expirationModel: input.expirationModel, roundTrip: true };
    },
  };
  const hsm: HsmActivities = {
    async checkHsmKey(input) {
      await called('checkHsmKey', input);
    },
    async ensureHsmKey(input) {
      await called('ensureHsmKey', input);
      return { label: input.label, keyId: '0a0b0c', kcv: 'abcdef', created: true };
    },
    async wrapKey(input) {
      await called('wrapKey', input);
      return { encryptedKeyMaterial: `wrapped-under-${input.publicKey}` };
    },
  };
  return { kms, hsm, calls, failures, holds };
}

export const tokenExpired = () => ApplicationFailure.nonRetryable('import token expired', 'ImportTokenExpired');
export const tokenInvalid = () => ApplicationFailure.nonRetryable('import token is not the current one', 'ImportTokenInvalid');
