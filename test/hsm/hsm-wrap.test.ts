// wrapKey against a real SoftHSM2 token; ciphertexts are unwrapped in Node and compared with
// the known key value. Also: transient objects are cleaned up, and lost sessions are reopened.
import assert from 'node:assert/strict';
import { createDecipheriv, generateKeyPairSync, type KeyObject, privateDecrypt, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { KeyType, MechanismEnum, ObjectClass } from 'graphene-pk11';
import type { WrapKeyInput } from '../../activities/hsm';
import { CKM_AES_KEY_WRAP_KWP } from '../../activities/wrapping';
import { ErrorType } from '../../workflows/errors';
import type { WrappingAlgorithm } from '../../workflows/model';
import { SoftHsmBench, rejectsWith } from './softhsm-fixture';

const LABEL = 'wrap-target';
const KEY_ID = Buffer.from(LABEL).toString('hex');
const value = randomBytes(32);

function rsaKeyPair(modulusLength: number): { publicKey: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength });
  return { publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), privateKey };
}
const rsa2048 = rsaKeyPair(2048);

let bench: SoftHsmBench;
before(async () => {
  bench = await SoftHsmBench.start();
  bench.createSecretKey(LABEL, value);
});
after(async () => {
  await bench.stop();
});

const wrap = (wrappingAlgorithm: WrappingAlgorithm, publicKey = rsa2048.publicKey, overrides: Partial<WrapKeyInput> = {}) =>
  bench.hsm.activities.wrapKey({ label: LABEL, keyId: KEY_ID, publicKey, wrappingAlgorithm, ...overrides });

const unwrapOaepSha1 = (privateKey: KeyObject, ciphertext: Buffer) =>
  privateDecrypt({ key: privateKey, oaepHash: 'sha1' }, ciphertext);

test('RSAES_OAEP_SHA_1 wraps the key so that the private key recovers it', async () => {
  const { encryptedKeyMaterial } = await wrap('RSAES_OAEP_SHA_1');
  const ciphertext = Buffer.from(encryptedKeyMaterial, 'base64');
  assert.equal(ciphertext.length, 256);
  assert.deepEqual(unwrapOaepSha1(rsa2048.privateKey, ciphertext), value);
});

test('RSA_AES_KEY_WRAP_SHA_1 is RSA-OAEP of an ephemeral key followed by RFC 5649 wrap under it', async () => {
  const { encryptedKeyMaterial } = await wrap('RSA_AES_KEY_WRAP_SHA_1');
  const ciphertext = Buffer.from(encryptedKeyMaterial, 'base64');
  assert.equal(ciphertext.length, 256 + 40);
  const ephemeral = unwrapOaepSha1(rsa2048.privateKey, ciphertext.subarray(0, 256));
  assert.equal(ephemeral.length, 32);
  // RFC 5649's alternative initial value; node's cipher takes its 4-byte constant part as the IV.
  const kwp = createDecipheriv('id-aes256-wrap-pad', ephemeral, Buffer.from('a65959a6', 'hex'));
  assert.deepEqual(Buffer.concat([kwp.update(ciphertext.subarray(256)), kwp.final()]), value);
});

test('SoftHSM 2.6 lists CKM_AES_KEY_WRAP_PAD, not CKM_AES_KEY_WRAP_KWP: the test above covers the _PAD fallback', () => {
  const listed = bench.slot.lib.C_GetMechanismList(bench.slot.handle);
  assert.ok(listed.includes(MechanismEnum.AES_KEY_WRAP_PAD), 'CKM_AES_KEY_WRAP_PAD listed');
  assert.ok(!listed.includes(CKM_AES_KEY_WRAP_KWP), 'CKM_AES_KEY_WRAP_KWP not listed');
});

for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
  test(`${algorithm} is HsmMechanismUnsupported on SoftHSM, naming the HSM and the mechanism`, async () => {
    const failure = await rejectsWith(wrap(algorithm), ErrorType.HsmMechanismUnsupported);
    assert.equal(
      failure.message,
      `SoftHSM project SoftHSM v2 (libsofthsm2.so: SoftHSM Implementation of PKCS11 2.6) refused ` +
        `CKM_RSA_PKCS_OAEP(SHA-256, MGF1-SHA256) for ${algorithm}: CKR_ARGUMENTS_BAD`,
    );
  });
}

for (const bits of [3072, 4096]) {
  test(`an RSA ${bits} wrapping key works with RSAES_OAEP_SHA_1`, async () => {
    const pair = rsaKeyPair(bits);
    const { encryptedKeyMaterial } = await wrap('RSAES_OAEP_SHA_1', pair.publicKey);
    assert.deepEqual(unwrapOaepSha1(pair.privateKey, Buffer.from(encryptedKeyMaterial, 'base64')), value);
  });
}

test('unusable wrapping public keys are InvalidWrappingPublicKey, saying what is wrong', async () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' });
  const cases = [
    [rsaKeyPair(1024).publicKey, /1024-bit modulus; at least 2048 bits are required/],
    [randomBytes(300).toString('base64'), /is not a base64 DER SubjectPublicKeyInfo/],
    [ec.toString('base64'), /is not an RSA encryption key \(key type ec\)/],
  ] as const;
  for (const [publicKey, problem] of cases) {
    const failure = await rejectsWith(wrap('RSAES_OAEP_SHA_1', publicKey), ErrorType.InvalidWrappingPublicKey);
    assert.match(failure.message, problem);
  }
});

test('a key id that does not match the label is HsmKeyNotFound', async () => {
  const failure = await rejectsWith(wrap('RSAES_OAEP_SHA_1', undefined, { keyId: 'beef' }), ErrorType.HsmKeyNotFound);
  assert.match(failure.message, /"wrap-target" with CKA_ID beef/);
  await rejectsWith(wrap('RSAES_OAEP_SHA_1', undefined, { label: 'other' }), ErrorType.HsmKeyNotFound);
});

test('the test session sees session objects of other sessions (so the next test can see strays)', () => {
  const other = bench.slot.open();
  other.create({ class: ObjectClass.DATA, label: 'probe', token: false });
  assert.ok(bench.objectLabels().includes('probe'));
  other.close();
  assert.ok(!bench.objectLabels().includes('probe'));
});

test('wrapping leaves no public or ephemeral keys behind, also when it fails', async () => {
  const before = bench.objectLabels().sort();
  await wrap('RSAES_OAEP_SHA_1');
  await wrap('RSA_AES_KEY_WRAP_SHA_1');
  await rejectsWith(wrap('RSAES_OAEP_SHA_256'), ErrorType.HsmMechanismUnsupported);
  // Fails after the ephemeral key was generated.
  await rejectsWith(wrap('RSA_AES_KEY_WRAP_SHA_256'), ErrorType.HsmMechanismUnsupported);
  await rejectsWith(wrap('RSAES_OAEP_SHA_1', rsaKeyPair(1024).publicKey), ErrorType.InvalidWrappingPublicKey);
  assert.deepEqual(bench.objectLabels().sort(), before);
  assert.equal(bench.session.find({ class: ObjectClass.PUBLIC_KEY }).length, 0);
  assert.deepEqual(
    [...bench.session.find({ class: ObjectClass.SECRET_KEY, keyType: KeyType.AES })].map((o) => o.getAttribute('label')),
    [LABEL],
  );
});

test('after all sessions on the slot were closed underneath, the activities reopen and log in again', async () => {
  const { ensureHsmKey } = bench.hsm.activities;
  const known = await ensureHsmKey({ label: LABEL, generate: false });
  bench.slot.closeAll();
  assert.deepEqual(await ensureHsmKey({ label: LABEL, generate: false }), known);

  bench.slot.closeAll();
  const { encryptedKeyMaterial } = await wrap('RSA_AES_KEY_WRAP_SHA_1');
  assert.equal(Buffer.from(encryptedKeyMaterial, 'base64').length, 256 + 40);
  bench.reopen();
});

test('after the library was finalized underneath, the activities initialise it again', async () => {
  bench.finalizeLibrary();
  const { encryptedKeyMaterial } = await wrap('RSAES_OAEP_SHA_1');
  assert.deepEqual(unwrapOaepSha1(rsa2048.privateKey, Buffer.from(encryptedKeyMaterial, 'base64')), value);
  // The activities initialised the library again; the test session follows.
  bench.reopen();
  assert.ok(bench.objectLabels().includes(LABEL));
});
