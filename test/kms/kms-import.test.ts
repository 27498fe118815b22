// getImportParameters, importKeyMaterial and verifyKey against a real local-kms. The material is
// 32 random bytes wrapped here in Node; the HSM side of wrapping is tested elsewhere.
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CreateKeyCommand, DescribeKeyCommand, KMSInvalidStateException, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { createKmsActivities, type ImportParameters } from '../../activities/kms';
import { ErrorType } from '../../workflows/errors';
import type { WrappingAlgorithm } from '../../workflows/model';
import { assertFailure, assertRetryable, kmsForFile, wrapMaterial } from './local-kms-fixture';

const file = kmsForFile();

let keys = 0;
/** A fresh EXTERNAL key in PendingImport. */
async function newKey(): Promise<string> {
  keys += 1;
  const ref = await file.activities.ensureKmsKey({
    alias: `alias/import-${keys}`,
    description: 'import test',
    createIfMissing: true,
    requestId: `wf-import-${keys}`,
  });
  return ref.keyId;
}

const parameters = (keyId: string, wrappingAlgorithm: WrappingAlgorithm = 'RSAES_OAEP_SHA_256') =>
  file.activities.getImportParameters({ keyId, wrappingAlgorithm, wrappingKeySpec: 'RSA_2048' });

/** Imports `material` with fresh parameters; material that does not expire unless validTo is given. */
async function importMaterial(
  keyId: string,
  material: Buffer,
  opts: { algorithm?: WrappingAlgorithm; validTo?: string } = {},
): Promise<void> {
  const algorithm = opts.algorithm ?? 'RSAES_OAEP_SHA_256';
  const params = await parameters(keyId, algorithm);
  await file.activities.importKeyMaterial({
    keyId,
    importToken: params.importToken,
    encryptedKeyMaterial: wrapMaterial(params.publicKey, algorithm, material),
    expirationModel: opts.validTo ? 'KEY_MATERIAL_EXPIRES' : 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    validTo: opts.validTo,
  });
}

/** An instant `seconds` from now, in whole seconds. */
function secondsFromNow(seconds: number): string {
  return new Date((Math.floor(Date.now() / 1000) + seconds) * 1000).toISOString();
}

async function describedValidTo(keyId: string): Promise<string | undefined> {
  const out = await file.kms.client.send(new DescribeKeyCommand({ KeyId: keyId }));
  return out.KeyMetadata?.ValidTo?.toISOString();
}

for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_1'] as const) {
  test(`getImportParameters (${algorithm}) returns an RSA 2048 SPKI public key, a token and 24 h of validity`, async () => {
    const params: ImportParameters = await parameters(await newKey(), algorithm);
    const publicKey = createPublicKey({ key: Buffer.from(params.publicKey, 'base64'), format: 'der', type: 'spki' });
    assert.equal(publicKey.asymmetricKeyType, 'rsa');
    assert.equal(publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(Buffer.from(params.importToken, 'base64').length > 0);
    const hoursAhead = (Date.parse(params.parametersValidTo) - Date.now()) / 3_600_000;
    assert.ok(Math.abs(hoursAhead - 24) < 0.1, `ParametersValidTo ${params.parametersValidTo} is not about 24 h ahead`);
  });
}

test('importKeyMaterial with KEY_MATERIAL_DOES_NOT_EXPIRE, then verifyKey passes', async () => {
  const keyId = await newKey();
  await importMaterial(keyId, randomBytes(32), { algorithm: 'RSAES_OAEP_SHA_256' });
  const verification = await file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
  assert.deepEqual(verification, {
    keyState: 'Enabled',
    origin: 'EXTERNAL',
    expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    validTo: undefined,
    roundTrip: true,
  });
  await assertFailure(
    file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: secondsFromNow(3600) }),
    ErrorType.VerificationFailed,
  );
});

test('importKeyMaterial with KEY_MATERIAL_EXPIRES sets ValidTo, and verifyKey checks it to the second', async () => {
  const keyId = await newKey();
  const validTo = secondsFromNow(3600);
  await importMaterial(keyId, randomBytes(32), { algorithm: 'RSAES_OAEP_SHA_1', validTo });
  assert.equal(await describedValidTo(keyId), validTo);

  const verification = await file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_EXPIRES', validTo });
  assert.equal(verification.validTo, validTo);
  assert.equal(verification.expirationModel, 'KEY_MATERIAL_EXPIRES');
  assert.equal(verification.roundTrip, true);

  const oneSecondLater = new Date(Date.parse(validTo) + 1000).toISOString();
  const failure = await assertFailure(
    file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: oneSecondLater }),
    ErrorType.VerificationFailed,
  );
  assert.match(failure.message, new RegExp(`ValidTo is ${validTo}, expected ${oneSecondLater}`));
  await assertFailure(file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }), ErrorType.VerificationFailed);
});

test('importKeyMaterial sends a ValidTo with milliseconds as whole seconds', async () => {
  const keyId = await newKey();
  const validTo = secondsFromNow(7200);
  await importMaterial(keyId, randomBytes(32), { validTo: validTo.replace('.000Z', '.750Z') });
  assert.equal(await describedValidTo(keyId), validTo);
});

test('importKeyMaterial with KEY_MATERIAL_EXPIRES but no validTo fails with InvalidInput', async () => {
  const keyId = await newKey();
  const params = await parameters(keyId);
  const failure = await assertFailure(
    file.activities.importKeyMaterial({
      keyId,
      importToken: params.importToken,
      encryptedKeyMaterial: wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_256', randomBytes(32)),
      expirationModel: 'KEY_MATERIAL_EXPIRES',
    }),
    ErrorType.InvalidInput,
  );
  assert.equal(failure.message, 'invalid validTo: required with KEY_MATERIAL_EXPIRES');
});

test('importKeyMaterial with an import token that is not base64 fails with InvalidInput naming the field', async () => {
  const failure = await assertFailure(
    file.activities.importKeyMaterial({
      keyId: await newKey(),
      importToken: 'not base64!',
      encryptedKeyMaterial: 'AAAA',
      expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }),
    ErrorType.InvalidInput,
  );
  assert.equal(failure.message, 'invalid importToken: expected non-empty base64');
});

test('verifyKey on a key still pending import fails retryably: on AWS the import may not have propagated yet', async () => {
  const keyId = await newKey();
  const failure = await assertRetryable(file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
  assert.match(failure.message, new RegExp(`key ${keyId}: DescribeKey shows PendingImport after its key material was imported`));
  assert.match(failure.message, /may not have propagated the import yet, will retry/);
});

test('verifyKey retries a KMSInvalidStateException from Encrypt on a key DescribeKey shows Enabled', async () => {
  const keyId = await newKey();
  await importMaterial(keyId, randomBytes(32));
  const client = file.kms.newClient();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'EncryptCommand') {
        throw new KMSInvalidStateException({ $metadata: { httpStatusCode: 400 }, message: `${keyId} is pending import.` });
      }
      return next(args);
    },
    { step: 'initialize', name: 'notPropagatedYet' },
  );
  const lagging = createKmsActivities(client);
  const failure = await assertRetryable(lagging.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
  assert.match(failure.message, /Encrypt refused it \(KMSInvalidStateException\) though DescribeKey shows Enabled/);
  assert.ok(failure.cause instanceof KMSInvalidStateException);
});

test('verifyKey on a key of origin AWS_KMS fails with VerificationFailed', async () => {
  const keyId = (await file.kms.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const failure = await assertFailure(
    file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }),
    ErrorType.VerificationFailed,
  );
  assert.match(failure.message, /origin is AWS_KMS, expected EXTERNAL/);
});

test('importKeyMaterial with a token superseded by newer parameters fails with ImportTokenInvalid', async () => {
  const keyId = await newKey();
  const stale = await parameters(keyId);
  await parameters(keyId);
  await assertFailure(
    file.activities.importKeyMaterial({
      keyId,
      importToken: stale.importToken,
      encryptedKeyMaterial: wrapMaterial(stale.publicKey, 'RSAES_OAEP_SHA_256', randomBytes(32)),
      expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }),
    ErrorType.ImportTokenInvalid,
  );
});

test('importKeyMaterial with corrupted wrapped material fails with InvalidCiphertext', async () => {
  const keyId = await newKey();
  const params = await parameters(keyId);
  const wrapped = Buffer.from(wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_256', randomBytes(32)), 'base64');
  wrapped[10] ^= 0xff;
  await assertFailure(
    file.activities.importKeyMaterial({
      keyId,
      importToken: params.importToken,
      encryptedKeyMaterial: wrapped.toString('base64'),
      expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }),
    ErrorType.InvalidCiphertext,
  );
});

test('importKeyMaterial of different material into an imported key fails with KeyHasDifferentMaterial', async () => {
  const keyId = await newKey();
  await importMaterial(keyId, randomBytes(32));
  await assertFailure(importMaterial(keyId, randomBytes(32)), ErrorType.KeyHasDifferentMaterial);
});

test('importKeyMaterial of the same material again, with fresh parameters, succeeds', async () => {
  const keyId = await newKey();
  const material = randomBytes(32);
  await importMaterial(keyId, material);
  await importMaterial(keyId, material);
  const verification = await file.activities.verifyKey({ keyId, expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
  assert.equal(verification.roundTrip, true);
});

test('importKeyMaterial into a key scheduled for deletion fails with KeyPendingDeletion', async () => {
  const keyId = await newKey();
  const params = await parameters(keyId);
  await file.kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
  await assertFailure(
    file.activities.importKeyMaterial({
      keyId,
      importToken: params.importToken,
      encryptedKeyMaterial: wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_256', randomBytes(32)),
      expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }),
    ErrorType.KeyPendingDeletion,
  );
});
