// The HSM session pool on a real SoftHSM2 token: concurrent key generation and wrapping on a pool
// of 4 sessions (each on a thread of its own) give correct, distinct results,
// concurrent attempts for one label make one key, and sessions lost under the pool are replaced.
import assert from 'node:assert/strict';
import { createDecipheriv, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { after, before, test } from 'node:test';
import { KeyType, ObjectClass } from 'graphene-pk11';
import { createHsmActivities, type HsmKeyRef } from '../../activities/hsm';
import { SoftHsmBench, nodeKcv } from './softhsm-fixture';

const { publicKey: spki, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicKey = spki.export({ format: 'der', type: 'spki' }).toString('base64');

let bench: SoftHsmBench;
let pooled: ReturnType<typeof createHsmActivities>;
before(async () => {
  bench = await SoftHsmBench.start();
  pooled = createHsmActivities({ ...bench.config, sessions: 4 });
});
after(async () => {
  await pooled?.close();
  await bench.stop();
});

/** The key value behind a wrapped key, recovered in Node with the RSA private key. */
function unwrapped(encryptedKeyMaterial: string): Buffer {
  const ciphertext = Buffer.from(encryptedKeyMaterial, 'base64');
  if (ciphertext.length === 256) return privateDecrypt({ key: privateKey, oaepHash: 'sha1' }, ciphertext);
  // RSA_AES_KEY_WRAP: OAEP of an ephemeral AES key, then RFC 5649 under it (see hsm-wrap.test.ts).
  const ephemeral = privateDecrypt({ key: privateKey, oaepHash: 'sha1' }, ciphertext.subarray(0, 256));
  const kwp = createDecipheriv('id-aes256-wrap-pad', ephemeral, Buffer.from('a65959a6', 'hex'));
  return Buffer.concat([kwp.update(ciphertext.subarray(256)), kwp.final()]);
}

/** Generates `count` keys at once, then wraps them all at once, alternating the two wrapping algorithms. */
async function generateAndWrap(prefix: string, count: number): Promise<Array<{ key: HsmKeyRef; value: Buffer }>> {
  const { ensureHsmKey, wrapKey } = pooled.activities;
  const keys = await Promise.all(Array.from({ length: count }, (_, i) => ensureHsmKey({ label: `${prefix}-${i}`, generate: true })));
  const wrapped = await Promise.all(
    keys.map((key, i) =>
      wrapKey({ label: key.label, keyId: key.keyId, publicKey, wrappingAlgorithm: i % 2 ? 'RSA_AES_KEY_WRAP_SHA_1' : 'RSAES_OAEP_SHA_1' }),
    ),
  );
  return keys.map((key, i) => ({ key, value: unwrapped(wrapped[i].encryptedKeyMaterial) }));
}

function assertCorrectAndDistinct(results: Array<{ key: HsmKeyRef; value: Buffer }>): void {
  for (const { key, value } of results) {
    assert.equal(key.created, true, key.label);
    assert.equal(value.length, 32, key.label);
    // The KCV the HSM reported is the one of the material that came out wrapped.
    assert.equal(nodeKcv(value), key.kcv, key.label);
  }
  assert.equal(new Set(results.map((r) => r.value.toString('hex'))).size, results.length, 'distinct key values');
  assert.equal(new Set(results.map((r) => r.key.keyId)).size, results.length, 'distinct key ids');
}

/** No session object left over: only token keys, and no public (wrapping) or ephemeral keys. */
function assertNoStrays(labels: string[]): void {
  assert.equal(bench.session.find({ class: ObjectClass.PUBLIC_KEY }).length, 0);
  const aes = [...bench.session.find({ class: ObjectClass.SECRET_KEY, keyType: KeyType.AES })].map((o) => String(o.getAttribute('label')));
  assert.deepEqual(aes.sort(), [...labels].sort());
}

test('a pool of 4 sessions generates and wraps 24 keys concurrently: each wrapped value matches its KCV, all distinct', async () => {
  const results = await generateAndWrap('pool', 24);
  assertCorrectAndDistinct(results);
  // The wraps ran on four sessions at once: the pool opens a session only when all are busy.
  assert.equal(pooled.openSessions(), 4);
  // Found again, not generated again, with the same KCVs.
  const again = await Promise.all(results.map(({ key }) => pooled.activities.ensureHsmKey({ label: key.label, generate: true })));
  assert.deepEqual(again, results.map(({ key }) => ({ ...key, created: false })));
  assertNoStrays(results.map((r) => r.key.label));
});

test('eight concurrent attempts to ensure one label generate one key, and all return it', async () => {
  const refs = await Promise.all(Array.from({ length: 8 }, () => pooled.activities.ensureHsmKey({ label: 'one-label', generate: true })));
  assert.equal(refs.filter((ref) => ref.created).length, 1);
  assert.equal(new Set(refs.map((ref) => `${ref.keyId}/${ref.kcv}`)).size, 1);
  assert.deepEqual(bench.objectLabels().filter((label) => label === 'one-label'), ['one-label']);
});

test('sessions closed and the login lost under a busy pool are replaced, and the calls succeed', async () => {
  const before = bench.objectLabels().filter((l) => l.startsWith('pool-') || l === 'one-label');
  bench.slot.closeAll(); // every session of this process: the pool's four and the test's own
  bench.reopen();
  const afterClose = await generateAndWrap('closed', 8);
  assertCorrectAndDistinct(afterClose);

  bench.session.logout(); // login is per process: every pooled session drops to public
  const afterLogout = await generateAndWrap('logout', 8);
  assertCorrectAndDistinct(afterLogout);
  bench.reopen();
  assertNoStrays([...before, ...[...afterClose, ...afterLogout].map((r) => r.key.label)]);
});
