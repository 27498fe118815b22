// describeKey, recordHsmKey, deleteImportedKeyMaterial and disableKey against a real local-kms,
// and what local-kms does on a re-import of the same material (new ValidTo, after a deletion).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CreateKeyCommand, DecryptCommand, DeleteImportedKeyMaterialCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { ErrorType } from '../../workflows/errors';
import { assertFailure, kmsForFile, wrapMaterial } from './local-kms-fixture';

const file = kmsForFile();

let keys = 0;
async function newKey(): Promise<{ alias: string; keyId: string }> {
  keys += 1;
  const alias = `alias/life-${keys}`;
  const { keyId } = await file.activities.ensureKmsKey({ alias, description: 'lifecycle test', createIfMissing: true, requestId: `wf-life-${keys}` });
  return { alias, keyId };
}

async function importMaterial(keyId: string, material: Buffer, validTo?: string): Promise<void> {
  const params = await file.activities.getImportParameters({ keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
  await file.activities.importKeyMaterial({
    keyId,
    importToken: params.importToken,
    encryptedKeyMaterial: wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_1', material),
    expirationModel: validTo ? 'KEY_MATERIAL_EXPIRES' : 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    validTo,
  });
}

const daysFromNow = (days: number) => new Date((Math.floor(Date.now() / 1000) + days * 86_400) * 1000).toISOString();

test('describeKey by alias reports state, expiry and the HSM key recorded by recordHsmKey', async () => {
  const { alias, keyId } = await newKey();
  const pending = await file.activities.describeKey({ keyId: alias });
  assert.equal(pending.keyState, 'PendingImport');
  assert.equal(pending.hsmKey, undefined);
  const validTo = daysFromNow(30);
  await importMaterial(keyId, randomBytes(32), validTo);
  await file.activities.recordHsmKey({ keyId, hsmKey: { label: 'byok/life 1', keyId: '0a0b', kcv: 'abcdef' } });
  const described = await file.activities.describeKey({ keyId: alias });
  assert.deepEqual(described, {
    keyId,
    keyArn: pending.keyArn,
    keyState: 'Enabled',
    origin: 'EXTERNAL',
    expirationModel: 'KEY_MATERIAL_EXPIRES',
    validTo,
    hsmKey: { label: 'byok/life 1', keyId: '0a0b', kcv: 'abcdef' },
  });
  // A label KMS cannot hold as a tag value is left out; id and KCV are still recorded.
  await file.activities.recordHsmKey({ keyId, hsmKey: { label: 'byok#2', keyId: '0c0d', kcv: '123456' } });
  assert.deepEqual((await file.activities.describeKey({ keyId })).hsmKey, { label: 'byok/life 1', keyId: '0c0d', kcv: '123456' });
  await assertFailure(file.activities.describeKey({ keyId: 'alias/no-such-alias' }), ErrorType.UnknownAlias);
});

test('re-importing the same material with a new ValidTo keeps the key Enabled and DescribeKey shows the new ValidTo', async () => {
  const { keyId } = await newKey();
  const material = randomBytes(32);
  await importMaterial(keyId, material, daysFromNow(30));
  const { CiphertextBlob } = await file.kms.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('before') }));
  const later = daysFromNow(200);
  await importMaterial(keyId, material, later);
  const { KeyMetadata } = await file.kms.client.send(new DescribeKeyCommand({ KeyId: keyId }));
  assert.equal(KeyMetadata?.KeyState, 'Enabled');
  assert.equal(KeyMetadata?.ValidTo?.toISOString(), later);
  const { Plaintext } = await file.kms.client.send(new DecryptCommand({ CiphertextBlob }));
  assert.equal(Buffer.from(Plaintext!).toString(), 'before');
});

test('deleteImportedKeyMaterial makes Encrypt fail, is idempotent, and the same material brings the key back', async () => {
  const { keyId } = await newKey();
  const material = randomBytes(32);
  await importMaterial(keyId, material, daysFromNow(30));
  const { CiphertextBlob } = await file.kms.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('kept') }));

  assert.deepEqual(await file.activities.deleteImportedKeyMaterial({ keyId }), { keyState: 'PendingImport' });
  assert.deepEqual(await file.activities.deleteImportedKeyMaterial({ keyId }), { keyState: 'PendingImport' }, 'a retry is success');
  await assert.rejects(file.kms.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') })), { name: 'KMSInvalidStateException' });
  const gone = await file.activities.describeKey({ keyId });
  assert.equal(gone.keyState, 'PendingImport');
  // local-kms keeps the old ExpirationModel and ValidTo after a deletion; describeKey does not report them.
  const raw = (await file.kms.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
  assert.equal(raw?.ExpirationModel, 'KEY_MATERIAL_EXPIRES');
  assert.equal(gone.validTo, undefined);

  // Decrypt under a key without material answers AccessDenied, not the key state; a second
  // DeleteImportedKeyMaterial succeeds.
  await assert.rejects(file.kms.client.send(new DecryptCommand({ CiphertextBlob })), { name: 'AccessDeniedException' });
  await file.kms.client.send(new DeleteImportedKeyMaterialCommand({ KeyId: keyId }));
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'PendingImport');

  await assertFailure(importMaterial(keyId, randomBytes(32)), ErrorType.KeyHasDifferentMaterial);
  await importMaterial(keyId, material);
  const { Plaintext } = await file.kms.client.send(new DecryptCommand({ CiphertextBlob }));
  assert.equal(Buffer.from(Plaintext!).toString(), 'kept');
  assert.equal((await file.activities.describeKey({ keyId })).expirationModel, 'KEY_MATERIAL_DOES_NOT_EXPIRE');
});

test('disableKey then deleteImportedKeyMaterial leaves PendingImport; a re-import enables the key again (local-kms)', async () => {
  const { keyId } = await newKey();
  const material = randomBytes(32);
  await importMaterial(keyId, material);
  await file.activities.disableKey({ keyId });
  await file.activities.disableKey({ keyId });
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'Disabled');
  await file.activities.deleteImportedKeyMaterial({ keyId });
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'PendingImport');
  await importMaterial(keyId, material);
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'Enabled');
  // In the other order DisableKey succeeds on the PendingImport key and leaves it Disabled without
  // material; an import enables it again.
  await file.activities.deleteImportedKeyMaterial({ keyId });
  await file.kms.client.send(new DisableKeyCommand({ KeyId: keyId }));
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'Disabled');
  await importMaterial(keyId, material);
  assert.equal((await file.activities.describeKey({ keyId })).keyState, 'Enabled');
});

test('deleteImportedKeyMaterial refuses a key whose material KMS generated', async () => {
  const { KeyMetadata } = await file.kms.client.send(new CreateKeyCommand({}));
  const failure = await assertFailure(file.activities.deleteImportedKeyMaterial({ keyId: KeyMetadata!.KeyId! }), ErrorType.KeyNotExternal);
  assert.match(failure.message, /origin AWS_KMS/);
});

test('expired material is reset to PendingImport when the key is next read (local-kms)', async () => {
  const { keyId } = await newKey();
  const validTo = new Date((Math.floor(Date.now() / 1000) + 3) * 1000).toISOString();
  await importMaterial(keyId, randomBytes(32), validTo);
  assert.equal((await file.activities.describeKey({ keyId })).validTo, validTo);
  const deadline = Date.now() + 30_000;
  let state = 'Enabled';
  while (state !== 'PendingImport' && Date.now() < deadline) {
    state = (await file.activities.describeKey({ keyId })).keyState;
    if (state !== 'PendingImport') await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(state, 'PendingImport', `still ${state} after ValidTo ${validTo}`);
  assert.ok(Date.now() >= Date.parse(validTo), 'not before ValidTo');
  await assert.rejects(file.kms.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') })), { name: 'KMSInvalidStateException' });
});
