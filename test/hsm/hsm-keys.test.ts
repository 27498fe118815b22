// ensureHsmKey against a real SoftHSM2 token: find or generate, suitability, KCV.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { KeyType, ObjectClass, type SecretKey } from 'graphene-pk11';
import { ErrorType } from '../../workflows/errors';
import { SoftHsmBench, nodeKcv, rejectsWith } from './softhsm-fixture';

let bench: SoftHsmBench;
before(async () => {
  bench = await SoftHsmBench.start();
});
after(async () => {
  await bench.stop();
});

test('generates a key once, then finds the same key', async () => {
  const { ensureHsmKey } = bench.hsm.activities;
  const first = await ensureHsmKey({ label: 'wf-generate', generate: true });
  const second = await ensureHsmKey({ label: 'wf-generate', generate: true });

  assert.equal(first.created, true);
  assert.equal(second.created, false);
  assert.equal(first.keyId, createHash('sha256').update('wf-generate').digest().subarray(0, 16).toString('hex'));
  assert.match(first.kcv, /^[0-9a-f]{6}$/);
  assert.deepEqual({ ...second, created: true }, first);
  assert.equal(bench.objectLabels().filter((l) => l === 'wf-generate').length, 1);
});

test('a generated key is a sensitive, extractable AES-256 token key', async () => {
  await bench.hsm.activities.ensureHsmKey({ label: 'wf-attributes', generate: true });
  const [key] = [...bench.session.find({ class: ObjectClass.SECRET_KEY, label: 'wf-attributes' })];
  const attributes = key.toType<SecretKey>().getAttribute({
    keyType: null,
    valueLen: null,
    token: null,
    private: null,
    sensitive: null,
    extractable: null,
    wrapWithTrusted: null,
  });
  assert.deepEqual(attributes, {
    keyType: KeyType.AES,
    valueLen: 32,
    token: true,
    private: true,
    sensitive: true,
    extractable: true,
    wrapWithTrusted: false,
  });
});

test('a missing key is HsmKeyNotFound when generation is not requested', async () => {
  const failure = await rejectsWith(
    bench.hsm.activities.ensureHsmKey({ label: 'wf-missing', generate: false }),
    ErrorType.HsmKeyNotFound,
  );
  assert.match(failure.message, /wf-missing/);
  assert.deepEqual(bench.objectLabels().filter((l) => l === 'wf-missing'), []);
});

test('the KCV is AES-ECB of a zero block, as computed in Node from the known key value', async () => {
  const value = randomBytes(32);
  bench.createSecretKey('known-kcv', value);
  const ref = await bench.hsm.activities.ensureHsmKey({ label: 'known-kcv', generate: false });
  assert.equal(ref.created, false);
  assert.equal(ref.keyId, Buffer.from('known-kcv').toString('hex'));
  assert.equal(ref.kcv, nodeKcv(value));
});

test('without CKA_CHECK_VALUE the HSM computes the KCV by encrypting a zero block', async () => {
  const value = randomBytes(32);
  // An empty CKA_CHECK_VALUE at creation tells SoftHSM to keep none.
  bench.createSecretKey('no-check-value', value, { checkValue: Buffer.alloc(0) });
  assert.equal(bench.session.find({ label: 'no-check-value' }).items(0).getAttribute('checkValue').length, 0);
  const ref = await bench.hsm.activities.ensureHsmKey({ label: 'no-check-value', generate: false });
  assert.equal(ref.kcv, nodeKcv(value));
});

test('a key without CKA_CHECK_VALUE that may not encrypt is HsmKeyUnsuitable', async () => {
  bench.createSecretKey('no-kcv-possible', randomBytes(32), { checkValue: Buffer.alloc(0), encrypt: false });
  const failure = await rejectsWith(
    bench.hsm.activities.ensureHsmKey({ label: 'no-kcv-possible', generate: true }),
    ErrorType.HsmKeyUnsuitable,
  );
  assert.match(failure.message, /CKA_CHECK_VALUE/);
});

test('unsuitable existing keys are HsmKeyUnsuitable, naming the wrong property', async () => {
  bench.createSecretKey('not-extractable', randomBytes(32), { extractable: false });
  bench.createSecretKey('aes-128', randomBytes(16));
  bench.createSecretKey('generic-secret', randomBytes(32), { keyType: KeyType.GENERIC_SECRET });
  bench.createSecretKey('trusted-only', randomBytes(32), { wrapWithTrusted: true });
  const cases = [
    ['not-extractable', 'HSM key "not-extractable" is not extractable (CKA_EXTRACTABLE=false); AWS KMS import needs an extractable AES-256 key'],
    ['aes-128', 'HSM key "aes-128" is AES-128, not AES-256 (CKA_VALUE_LEN=16); AWS KMS import needs an extractable AES-256 key'],
    ['generic-secret', 'HSM key "generic-secret" is not an AES key (CKA_KEY_TYPE=CKK_GENERIC_SECRET); AWS KMS import needs an extractable AES-256 key'],
    ['trusted-only', 'HSM key "trusted-only" can only be wrapped by trusted keys (CKA_WRAP_WITH_TRUSTED=true); AWS KMS import needs an extractable AES-256 key'],
  ];
  for (const [label, message] of cases) {
    const failure = await rejectsWith(
      bench.hsm.activities.ensureHsmKey({ label, generate: true }),
      ErrorType.HsmKeyUnsuitable,
    );
    assert.equal(failure.message, message);
    // generate=true must not have added a suitable twin.
    assert.equal(bench.objectLabels().filter((l) => l === label).length, 1);
  }
});

test('two keys with one label are HsmKeyAmbiguous', async () => {
  bench.createSecretKey('twice', randomBytes(32));
  bench.createSecretKey('twice', randomBytes(32));
  const failure = await rejectsWith(
    bench.hsm.activities.ensureHsmKey({ label: 'twice', generate: true }),
    ErrorType.HsmKeyAmbiguous,
  );
  assert.match(failure.message, /2 secret keys labelled "twice"/);
  assert.equal(bench.objectLabels().filter((l) => l === 'twice').length, 2);
});
