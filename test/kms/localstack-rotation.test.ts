// Native rotation of imported material against LocalStack core, the emulator that has what
// local-kms lacks: ImportType NEW_KEY_MATERIAL, ListKeyRotations and RotateKeyOnDemand.
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { createHsmActivities } from '../../activities/hsm';
import { createKmsActivities } from '../../activities/kms';
import { WORKFLOW_TASK_QUEUE } from '../../workflows/model';
import { importKey } from '../../workflows/import-key';
import { rotateKey } from '../../workflows/rotate-key';
import { makeToken } from '../hsm/softhsm-fixture';
import { approveAs, harness } from '../workflow/harness';
import { startLocalStack, type RunningLocalStack } from '../../scripts/localstack';
import { assertFailure, wrapMaterial } from './local-kms-fixture';

let dir: string;
let stack: RunningLocalStack;
let client: KMSClient;
let kms: ReturnType<typeof createKmsActivities>;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'byok-localstack-'));
  stack = await startLocalStack({ dataDir: dir, logFile: path.join(dir, 'localstack.log') });
  client = new KMSClient({ region: stack.region, endpoint: stack.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  kms = createKmsActivities(client);
});
after(async () => {
  client?.destroy();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** GetParametersForImport, then wrap `material` as the HSM would. */
async function wrapped(keyId: string, material: Buffer) {
  const params = await kms.getImportParameters({ keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_256', wrappingKeySpec: 'RSA_2048' });
  return { importToken: params.importToken, encryptedKeyMaterial: wrapMaterial(params.publicKey, 'RSAES_OAEP_SHA_256', material) };
}

const model = { expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' } as const;

/**
 * Whether `material` encrypted the blob. LocalStack 4.14's Decrypt names no KeyMaterialId, but its
 * ciphertext is key id (36) | IV (16) | GCM tag (16) | AES-256-GCM under the raw material, so the
 * material that the test imported (and so knows) opens it or not.
 */
function sealedWith(material: Buffer, blob: Uint8Array, plaintext: Buffer): boolean {
  const b = Buffer.from(blob);
  const decipher = createDecipheriv('aes-256-gcm', material, b.subarray(36, 52));
  decipher.setAuthTag(b.subarray(52, 68));
  try {
    return Buffer.concat([decipher.update(b.subarray(68)), decipher.final()]).subarray(0, plaintext.length).equals(plaintext);
  } catch {
    return false;
  }
}

test('NEW_KEY_MATERIAL is pending until RotateKeyOnDemand; afterwards old ciphertexts decrypt and new ones use the new material', async () => {
  const key = await kms.ensureKmsKey({ alias: 'alias/native', description: 'native rotation', createIfMissing: true, requestId: 'wf-native' });
  const firstMaterial = randomBytes(32);
  await kms.importKeyMaterial({ keyId: key.keyId, ...(await wrapped(key.keyId, firstMaterial)), ...model });
  await kms.verifyKey({ keyId: key.keyId, ...model });
  const first = await kms.keyMaterials({ keyId: key.keyId });
  assert.ok(first.currentKeyMaterialId, 'DescribeKey names the current material');

  const plaintext = Buffer.from('encrypted before the rotation');
  const before = await client.send(new EncryptCommand({ KeyId: 'alias/native', Plaintext: plaintext }));

  const rotation = { importType: 'NEW_KEY_MATERIAL', keyMaterialDescription: 'rotate-native-1' } as const;
  const material = randomBytes(32);
  const { keyMaterialId } = await kms.importKeyMaterial({ keyId: key.keyId, ...(await wrapped(key.keyId, material)), ...model, ...rotation });
  assert.ok(keyMaterialId, 'ImportKeyMaterial names the new material');
  assert.notEqual(keyMaterialId, first.currentKeyMaterialId);
  // A retried import of the same material is recognised, not refused or added again.
  const again = await kms.importKeyMaterial({ keyId: key.keyId, ...(await wrapped(key.keyId, material)), ...model, ...rotation });
  assert.equal(again.keyMaterialId, keyMaterialId);
  // Other material while one is pending is refused.
  await assertFailure(
    kms.importKeyMaterial({ keyId: key.keyId, ...(await wrapped(key.keyId, randomBytes(32))), ...model, ...rotation }),
    'KeyUnusableState',
  );

  const pending = await kms.keyMaterials({ keyId: key.keyId });
  assert.equal(pending.currentKeyMaterialId, first.currentKeyMaterialId, 'the new material is pending, not current');
  assert.equal(pending.materials, undefined, 'LocalStack 4.14 has no ListKeyRotations');
  const enc = await client.send(new EncryptCommand({ KeyId: 'alias/native', Plaintext: plaintext }));
  assert.ok(sealedWith(firstMaterial, enc.CiphertextBlob!, plaintext), 'pending material is not used yet');
  assert.ok(!sealedWith(material, enc.CiphertextBlob!, plaintext));

  const rotated = await kms.rotateKeyOnDemand({ keyId: key.keyId, keyMaterialId: keyMaterialId! });
  assert.equal(rotated.currentKeyMaterialId, keyMaterialId);
  // A retried rotation sees the material current and does not rotate again.
  assert.equal((await kms.rotateKeyOnDemand({ keyId: key.keyId, keyMaterialId: keyMaterialId! })).currentKeyMaterialId, keyMaterialId);
  await kms.verifyKey({ keyId: key.keyId, ...model });

  const old = await client.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }));
  assert.deepEqual(Buffer.from(old.Plaintext!), plaintext, 'a ciphertext from before the rotation still decrypts');
  assert.ok(sealedWith(firstMaterial, before.CiphertextBlob!, plaintext));
  const after = await client.send(new EncryptCommand({ KeyId: 'alias/native', Plaintext: plaintext }));
  const fresh = await client.send(new DecryptCommand({ CiphertextBlob: after.CiphertextBlob }));
  assert.deepEqual(Buffer.from(fresh.Plaintext!), plaintext);
  assert.ok(sealedWith(material, after.CiphertextBlob!, plaintext), 'new ciphertexts use the new material');
  assert.ok(!sealedWith(firstMaterial, after.CiphertextBlob!, plaintext));
});

test('rotateKey (native) rotates a key imported from SoftHSM: same ARN, new material current, old ciphertext decrypts', async () => {
  const token = await makeToken();
  const hsm = createHsmActivities(token.config);
  const t = await harness();
  try {
    await t.withWorkers({ kms, hsm: hsm.activities }, async () => {
      const people = { wrappingAlgorithm: 'RSAES_OAEP_SHA_1' as const, requester: 'rita', approvers: ['alice', 'bob'], requiredApprovals: 2, unsignedApprovals: true };
      const imp = await t.env.client.workflow.start(importKey, { taskQueue: WORKFLOW_TASK_QUEUE, workflowId: 'import-ls-native', args: [{ alias: 'ls-native', ...people }] });
      await approveAs(imp, 'alice', 'bob');
      const imported = await imp.result();
      assert.equal(imported.outcome, 'IMPORTED');
      const plaintext = Buffer.from('before the native rotation');
      const before = await client.send(new EncryptCommand({ KeyId: 'alias/ls-native', Plaintext: plaintext }));

      const rot = await t.env.client.workflow.start(rotateKey, {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId: 'rotate-ls-native-1',
        args: [{ alias: 'ls-native', strategy: 'native', ...people }],
      });
      await approveAs(rot, 'alice', 'bob');
      const rotated = await rot.result();
      assert.equal(rotated.outcome, 'ROTATED');
      assert.equal(rotated.strategy, 'native');
      assert.equal(rotated.newKey.keyArn, imported.keyArn, 'same key');
      assert.notEqual(rotated.hsmKey.kcv, imported.hsmKey.kcv, 'new HSM material');
      assert.equal(rotated.hsmKey.label, 'byok/ls-native/rotate-ls-native-1');
      const meta = (await client.send(new DescribeKeyCommand({ KeyId: 'alias/ls-native' }))).KeyMetadata!;
      assert.equal(meta.CurrentKeyMaterialId, rotated.keyMaterialId);
      const old = await client.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }));
      assert.deepEqual(Buffer.from(old.Plaintext!), plaintext);
    });
  } finally {
    await t.teardown();
    await hsm.close();
    await token.remove();
  }
});
