// The rotation activities against a real local-kms: a new key per request, UpdateAlias,
// DisableKey, ScheduleKeyDeletion (each safe to repeat), the due-alias scan, and the typed refusal
// of native rotation, which local-kms lacks.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CreateKeyCommand, DescribeKeyCommand, type KeyMetadata } from '@aws-sdk/client-kms';
import { ErrorType } from '../../workflows/errors';
import { assertFailure, countKeys, kmsForFile, wrapMaterial } from './local-kms-fixture';

const file = kmsForFile();

const describeKey = async (keyId: string): Promise<KeyMetadata> => (await file.kms.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!;

/** An alias on an EXTERNAL key with imported material, as an import leaves it. */
async function importedKey(alias: string) {
  const key = await file.activities.ensureKmsKey({ alias, description: 'rotation test', createIfMissing: true, requestId: `wf-${alias}` });
  const params = await file.activities.getImportParameters({ keyId: key.keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
  await file.activities.importKeyMaterial({
    keyId: key.keyId,
    importToken: params.importToken,
    encryptedKeyMaterial: wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_1', randomBytes(32)),
    expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
  });
  return key;
}

test('ensureRequestKey creates one EXTERNAL key without alias per request; a retry finds it', async () => {
  const before = await countKeys(file.kms.client);
  const first = await file.activities.ensureRequestKey({ requestId: 'rotate-x-1', description: 'next key' });
  assert.equal(first.created, true);
  assert.equal((await describeKey(first.keyId)).Origin, 'EXTERNAL');
  // Called directly there is no attempt number, so it scans as a retry does.
  const retry = await file.activities.ensureRequestKey({ requestId: 'rotate-x-1', description: 'next key' });
  assert.deepEqual([retry.keyId, retry.created], [first.keyId, false]);
  assert.equal(await countKeys(file.kms.client), before + 1);
});

test('updateAlias, disableKey and scheduleKeyDeletion move the alias and retire the old key, and can be repeated', async () => {
  const old = await importedKey('alias/swap-me');
  const next = await importedKey('alias/swap-next');
  await file.activities.updateAlias({ alias: 'alias/swap-me', keyId: next.keyId });
  await file.activities.updateAlias({ alias: 'alias/swap-me', keyId: next.keyId });
  assert.equal((await describeKey('alias/swap-me')).KeyId, next.keyId);

  assert.deepEqual(await file.activities.disableKey({ keyId: old.keyId }), { keyState: 'Disabled' });
  assert.deepEqual(await file.activities.disableKey({ keyId: old.keyId }), { keyState: 'Disabled' });
  const { deletionDate } = await file.activities.scheduleKeyDeletion({ keyId: old.keyId, pendingWindowInDays: 7 });
  assert.ok(Date.parse(deletionDate) > Date.now() + 6 * 86_400_000);
  assert.deepEqual(await file.activities.scheduleKeyDeletion({ keyId: old.keyId, pendingWindowInDays: 7 }), { deletionDate });
  assert.equal((await describeKey(old.keyId)).KeyState, 'PendingDeletion');
  await assertFailure(file.activities.scheduleKeyDeletion({ keyId: next.keyId, pendingWindowInDays: 3 }), ErrorType.InvalidInput);
  await assertFailure(file.activities.updateAlias({ alias: 'swap-me', keyId: next.keyId }), ErrorType.InvalidInput);
});

test('keyMaterials and rotateKeyOnDemand fail with NativeRotationUnsupported on local-kms, at once', async () => {
  const key = await importedKey('alias/no-native');
  const failure = await assertFailure(file.activities.keyMaterials({ keyId: key.keyId }), ErrorType.NativeRotationUnsupported);
  assert.match(failure.message, /use the alias-swap strategy/);
  await assertFailure(file.activities.rotateKeyOnDemand({ keyId: key.keyId, keyMaterialId: 'x' }), ErrorType.NativeRotationUnsupported);
});

test('dueAliases lists aliases of Enabled EXTERNAL keys older than the limit, by prefix', async () => {
  await importedKey('alias/due/a');
  await importedKey('alias/due/b');
  const aws = await file.kms.client.send(new CreateKeyCommand({}));
  assert.ok(aws.KeyMetadata?.KeyId);
  const all = await file.activities.dueAliases({ olderThanMs: 0, prefix: 'due/' });
  assert.deepEqual(all.map((d) => d.alias).sort(), ['alias/due/a', 'alias/due/b']);
  assert.ok(all.every((d) => Date.parse(d.materialSince) <= Date.now()));
  assert.deepEqual(await file.activities.dueAliases({ olderThanMs: 86_400_000, prefix: 'due/' }), [], 'nothing is a day old');
  await assertFailure(file.activities.dueAliases({ olderThanMs: -1 }), ErrorType.InvalidInput);
});
