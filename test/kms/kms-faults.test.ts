// The KMS activities behind the project's fault proxy, on a real local-kms: a lost CreateKey
// response must not become a second key, and the proxy's faults reach the SDK as KMS would send them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ListResourceTagsCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { ApplicationFailure } from '@temporalio/common';
import { createKmsActivities, REQUEST_ID_TAG } from '../../activities/kms';
import { FaultProxy } from '../../scripts/fault-proxy';
import { startKmsFixture, type KmsFixture } from './local-kms-fixture';

describe('KMS activities behind the fault proxy', () => {
  let kms: KmsFixture;
  let proxy: FaultProxy;

  before(async () => {
    kms = await startKmsFixture();
    proxy = await FaultProxy.start({ upstream: kms.endpoint, seed: 7 });
  });
  after(async () => {
    await proxy?.close();
    await kms?.close();
  });

  async function taggedKeys(requestId: string): Promise<number> {
    let n = 0;
    for (const { KeyId } of (await kms.client.send(new ListKeysCommand({}))).Keys ?? []) {
      const { Tags } = await kms.client.send(new ListResourceTagsCommand({ KeyId }));
      if (Tags?.some((t) => t.TagKey === REQUEST_ID_TAG && t.TagValue === requestId)) n++;
    }
    return n;
  }

  it('sends CreateKey once when its response is lost; the retry finds the key by its tag', async () => {
    const activities = createKmsActivities(kms.newClient({ endpoint: proxy.endpoint }));
    const input = { alias: 'alias/reset-after-create', description: 'test', createIfMissing: true, requestId: 'req-reset' };
    proxy.failNext('CreateKey', 'resetAfter');
    const failed = await activities.ensureKmsKey(input).then(
      () => assert.fail('expected the lost response to fail the attempt'),
      (e: unknown) => e,
    );
    assert.ok(failed instanceof ApplicationFailure);
    assert.equal(failed.nonRetryable, false, failed.message);
    assert.equal(proxy.requests.CreateKey, 1, 'the SDK did not send CreateKey again');
    assert.equal(await taggedKeys('req-reset'), 1);

    // What Temporal's retry does: the same activity again.
    const key = await activities.ensureKmsKey(input);
    assert.equal(key.created, false);
    assert.equal(await taggedKeys('req-reset'), 1);
    assert.equal(proxy.requests.CreateKey, 1);
  });

  it('throttling and 500s are retried by the SDK and the calls succeed; the same seed gives the same faults', async () => {
    const { keyId } = await createKmsActivities(kms.client).ensureKmsKey({
      alias: 'alias/seeded',
      description: 't',
      createIfMissing: true,
      requestId: 'seeded',
    });
    const draw = async (seed: number) => {
      const p = await FaultProxy.start({ upstream: kms.endpoint, seed, rates: { throttle: 0.3, serverError: 0.2 } });
      try {
        const activities = createKmsActivities(kms.newClient({ endpoint: p.endpoint, maxAttempts: 20, retryMode: 'standard' }));
        for (let i = 0; i < 6; i++) {
          const params = await activities.getImportParameters({ keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
          assert.ok(params.importToken.length > 0);
        }
        return { ...p.injected };
      } finally {
        await p.close();
      }
    };
    const first = await draw(11);
    assert.ok(first.throttle > 0 && first.serverError > 0, JSON.stringify(first));
    assert.deepEqual(await draw(11), first);
  });
});
