// The key lifecycle on the real stack (Temporal dev server, local-kms, SoftHSM2, the worker
// process), driven through the `byok` CLI: reimport with a new ValidTo, revoke, restore after a
// revocation, a deletion and an expiry, and the expiry guardian (it re-imports a key inside its
// lead time and then sleeps until the next one; sleeping for days is the time-skipping tests').
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DecryptCommand, DeleteImportedKeyMaterialCommand, DescribeKeyCommand, EncryptCommand, KMSClient, type KeyMetadata } from '@aws-sdk/client-kms';
import '../quiet-runtime';
import { runByok, useApproverKeys, type CliRun } from '../byok-cli';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';
import type { GuardStatus } from '../../workflows/guard-key';
import type { ImportKeyResult } from '../../workflows/import-key';
import type { RevokeKeyResult, RevokeStatus } from '../../workflows/revoke-key';

const DAY = 86_400_000;
let opts: StackOptions;
let info: StackInfo;
let kms: KMSClient;

const byok = (...args: string[]): Promise<CliRun> => runByok(args, info.env);
async function ok(...args: string[]): Promise<string> {
  const run = await byok(...args);
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

const deciders = ['--requester', 'rita', '--approvers', 'alice,bob,carol', '--required', '2'];
const who = ['--wrapping-algorithm', 'RSAES_OAEP_SHA_1', ...deciders];
/** local-kms answers a Decrypt (no KeyId) under an unusable key with AccessDeniedException, hiding why. */
const UNUSABLE_ON_DECRYPT = { name: 'AccessDeniedException' };
const whole = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString();

/** Starts `command` (import, reimport, restore, revoke), approves it twice, returns the workflow id. */
async function approved(command: string, ...args: string[]): Promise<string> {
  const { workflowId } = JSON.parse(await ok(command, ...args, ...(command === 'revoke' ? deciders : who), '--json'));
  await ok('approve', workflowId, '--as', 'alice');
  await ok('approve', workflowId, '--as', 'bob');
  return workflowId;
}
const imported = async (command: string, ...args: string[]): Promise<ImportKeyResult> =>
  JSON.parse(await ok('result', await approved(command, ...args), '--json'));

async function describeKey(alias: string): Promise<KeyMetadata> {
  return (await kms.send(new DescribeKeyCommand({ KeyId: `alias/${alias}` }))).KeyMetadata!;
}
async function encrypt(alias: string, text: string): Promise<Uint8Array> {
  return (await kms.send(new EncryptCommand({ KeyId: `alias/${alias}`, Plaintext: Buffer.from(text) }))).CiphertextBlob!;
}
async function decrypt(ciphertext: Uint8Array): Promise<string> {
  return Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: ciphertext }))).Plaintext!).toString();
}

/** Polls until `probe` gives something truthy; the stack works in real time, so allow a while. */
async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 250));
  }
  return assert.fail(`timed out waiting for ${what}`);
}

describe('key lifecycle on the real stack', () => {
  before(async () => {
    opts = await testStackOptions('life');
    info = await stackUp(opts);
    // Decisions are signed (the default), as an approver's `byok approve` signs them.
    await useApproverKeys(path.join(opts.dir, 'approver-keys'), ['alice', 'bob', 'carol']);
    kms = new KMSClient({ region: info.region, endpoint: info.kmsEndpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  });

  after(async () => {
    kms?.destroy();
    await removeTestStack(opts);
  });

  it('reimport sets a new ValidTo; revoke makes Encrypt fail; restore brings the key back under the same ARN', async () => {
    const first = await imported('import', '--alias', 'it-life', '--hsm-key-label', 'vault/it-life', '--valid-to', whole(Date.now() + 30 * DAY));
    assert.equal(first.outcome, 'IMPORTED');
    const before = await encrypt('it-life', 'encrypted before the revocation');

    const later = whole(Date.now() + 200 * DAY);
    const reimport = await imported('reimport', '--alias', 'it-life', '--valid-to', later);
    assert.equal(reimport.operation, 'reimport');
    assert.equal(reimport.keyArn, first.keyArn);
    const afterReimport = await describeKey('it-life');
    assert.equal(afterReimport.KeyState, 'Enabled');
    assert.equal(afterReimport.ValidTo?.toISOString(), later, 'DescribeKey shows the new ValidTo');

    const revocation = await approved('revoke', '--alias', 'it-life', '--disable');
    const revoked: RevokeKeyResult = JSON.parse(await ok('revoke-result', revocation, '--json'));
    const status: RevokeStatus = JSON.parse(await ok('status', revocation));
    assert.equal(status.step, 'DONE', '`byok status` answers for a revocation too');
    assert.equal(revoked.outcome, 'REVOKED');
    assert.equal(revoked.keyState, 'PendingImport');
    assert.deepEqual(revoked.hsmKey, { label: 'vault/it-life', keyId: first.hsmKey.keyId, kcv: first.hsmKey.kcv });
    await assert.rejects(encrypt('it-life', 'after'), { name: 'KMSInvalidStateException' });
    await assert.rejects(decrypt(before), UNUSABLE_ON_DECRYPT);

    // No label given: restore takes the HSM key recorded on the KMS key at import.
    const restored = await imported('restore', '--alias', 'it-life');
    assert.equal(restored.operation, 'restore');
    assert.equal(restored.keyArn, first.keyArn);
    assert.deepEqual(restored.hsmKey, first.hsmKey);
    assert.equal((await describeKey('it-life')).KeyState, 'Enabled');
    assert.equal(await decrypt(before), 'encrypted before the revocation');

    const again = JSON.parse(await ok('restore', '--alias', 'it-life', ...who, '--json'));
    const refused = await byok('result', again.workflowId, '--json');
    assert.equal(refused.code, 6);
    assert.equal(JSON.parse(refused.stdout).type, 'KeyStateMismatch');
  });

  it('restores after DeleteImportedKeyMaterial and after the material expired; old ciphertexts decrypt again', async () => {
    await imported('import', '--alias', 'it-deleted');
    const deletedBefore = await encrypt('it-deleted', 'before the deletion');
    await kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: 'alias/it-deleted' }));
    await assert.rejects(decrypt(deletedBefore), UNUSABLE_ON_DECRYPT);
    await imported('restore', '--alias', 'it-deleted');
    assert.equal(await decrypt(deletedBefore), 'before the deletion');

    // Material that expires a minute from now: local-kms resets the key to PendingImport once ValidTo passed.
    const expiring = await imported('import', '--alias', 'it-expired', '--valid-to', whole(Date.now() + 60_000));
    const expiredBefore = await encrypt('it-expired', 'before the expiry');
    await until('the material to expire', async () => (await describeKey('it-expired')).KeyState === 'PendingImport');
    const restored = await imported('restore', '--alias', 'it-expired', '--valid-to', whole(Date.now() + 30 * DAY));
    assert.equal(restored.keyArn, expiring.keyArn);
    assert.equal(await decrypt(expiredBefore), 'before the expiry');
  });

  it('the expiry guardian re-imports a key within its lead time, after approval, with a new ValidTo', async () => {
    const validTo = whole(Date.now() + 30 * DAY);
    await imported('import', '--alias', 'it-guarded', '--valid-to', validTo);
    const started = Date.now();
    await ok('guard', 'start', '--alias', 'it-guarded', '--lead', '60d', '--validity', '90d', ...who);
    const refused = await byok('guard', 'start', '--alias', 'it-guarded', '--lead', '60d', '--validity', '90d', ...who);
    assert.equal(refused.code, 3, 'one guardian per key');

    // Undefined until the guardian has run its first workflow task.
    const status = async (): Promise<GuardStatus | undefined> => {
      const run = await byok('guard', 'status', '--alias', 'it-guarded', '--json');
      return run.code === 0 ? JSON.parse(run.stdout) : undefined;
    };
    const waiting = await until('a re-import request', async () => {
      const s = await status();
      return s?.reimportWorkflowId ? s : undefined;
    });
    assert.equal(waiting.phase, 'REIMPORTING');
    assert.equal(waiting.validTo, validTo);
    await ok('approve', waiting.reimportWorkflowId!, '--as', 'alice');
    await ok('approve', waiting.reimportWorkflowId!, '--as', 'carol');

    const done = await until('the re-import to complete', async () => {
      const s = await status();
      return s?.reimports === 1 && s.phase === 'SLEEPING' && s;
    });
    const newValidTo = Date.parse(done.validTo!);
    assert.ok(newValidTo >= started + 90 * DAY - 1000 && newValidTo <= Date.now() + 90 * DAY, `new ValidTo ${done.validTo} is 90 days out`);
    assert.equal((await describeKey('it-guarded')).ValidTo?.toISOString(), done.validTo);
    assert.equal(done.nextWake, new Date(newValidTo - 60 * DAY).toISOString());
    assert.equal((await byok('guard', 'status', '--alias', 'it-guarded')).code, 0, 'no alert');
    // Where ops look: the guardian's ByokState in the workflow list (visibility lags a little).
    await until('byok list to show the guardian GUARDING', async () => (await ok('list', '--operation', 'guard', '--state', 'GUARDING', '--json')).includes('guard-it-guarded'));
    await ok('guard', 'stop', '--alias', 'it-guarded');
  });
});
