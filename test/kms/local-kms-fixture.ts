// Shared by the KMS test files: each file starts its own local-kms on a free port with a fresh
// data directory, and talks to it with a plain KMS client (local-kms checks no credentials).
import assert from 'node:assert/strict';
import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { KMSClient, ListKeysCommand, type KMSClientConfig } from '@aws-sdk/client-kms';
import { ApplicationFailure } from '@temporalio/common';
import { createKmsActivities, type KmsActivities } from '../../activities/kms';
import { startLocalKms } from '../../scripts/local-kms';
import type { WrappingAlgorithm } from '../../workflows/model';

export interface KmsFixture {
  endpoint: string;
  region: string;
  client: KMSClient;
  /** Another client on the same local-kms, e.g. with extra middleware for one test. */
  newClient(config?: Partial<KMSClientConfig>): KMSClient;
  close(): Promise<void>;
}

export async function startKmsFixture(): Promise<KmsFixture> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'byok-local-kms-'));
  const kms = await startLocalKms({ dataDir });
  const clients: KMSClient[] = [];
  const newClient = (config: Partial<KMSClientConfig> = {}): KMSClient => {
    const client = new KMSClient({
      region: kms.region,
      endpoint: kms.endpoint,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      ...config,
    });
    clients.push(client);
    return client;
  };
  return {
    endpoint: kms.endpoint,
    region: kms.region,
    client: newClient(),
    newClient,
    async close() {
      for (const client of clients) client.destroy();
      await kms.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function countKeys(client: KMSClient): Promise<number> {
  let count = 0;
  let marker: string | undefined;
  do {
    const page = await client.send(new ListKeysCommand({ Marker: marker }));
    count += page.Keys?.length ?? 0;
    marker = page.Truncated ? page.NextMarker : undefined;
  } while (marker);
  return count;
}

/** Wraps key material under a GetParametersForImport public key, as the HSM would. */
export function wrapMaterial(publicKeyBase64: string, algorithm: WrappingAlgorithm, material: Buffer): string {
  const oaepHash = { RSAES_OAEP_SHA_1: 'sha1', RSAES_OAEP_SHA_256: 'sha256' }[algorithm as string];
  assert.ok(oaepHash, `the tests wrap with RSAES_OAEP_* only, not ${algorithm}`);
  const key = createPublicKey({ key: Buffer.from(publicKeyBase64, 'base64'), format: 'der', type: 'spki' });
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, material).toString('base64');
}

/** Asserts the promise rejects with a non-retryable ApplicationFailure of this type; returns it. */
export async function assertFailure(promise: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  let failure: unknown;
  await assert.rejects(promise, (err) => {
    failure = err;
    return true;
  });
  assert.ok(failure instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(failure)}`);
  assert.equal(failure.type, type, failure.message);
  assert.equal(failure.nonRetryable, true, failure.message);
  return failure;
}

/** Asserts the promise rejects with a retryable ApplicationFailure; returns it. */
export async function assertRetryable(promise: Promise<unknown>): Promise<ApplicationFailure> {
  let failure: unknown;
  await assert.rejects(promise, (err) => {
    failure = err;
    return true;
  });
  assert.ok(failure instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(failure)}`);
  assert.equal(failure.nonRetryable, false, failure.message);
  return failure;
}

/** local-kms for the tests of one file: started before them and stopped after, with the activities over its client. */
export function kmsForFile(): { readonly kms: KmsFixture; readonly activities: KmsActivities } {
  const file = {} as { kms: KmsFixture; activities: KmsActivities };
  before(async () => {
    file.kms = await startKmsFixture();
    file.activities = createKmsActivities(file.kms.client);
  });
  after(async () => {
    await file.kms?.close();
  });
  return file;
}
