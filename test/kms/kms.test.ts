// ensureKmsKey against a real local-kms: finding, creating (once per request) and refusing keys.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  ListResourceTagsCommand,
  ScheduleKeyDeletionCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { ApplicationFailure } from '@temporalio/common';
import { createKmsActivities, REQUEST_ID_TAG, type KmsActivities } from '../../activities/kms';
import { ErrorType } from '../../workflows/errors';
import { freePort } from '../../scripts/net';
import { assertFailure, countKeys, startKmsFixture, type KmsFixture } from './local-kms-fixture';

let kms: KmsFixture;
let activities: KmsActivities;

before(async () => {
  kms = await startKmsFixture();
  activities = createKmsActivities(kms.client);
});
after(async () => {
  await kms?.close();
});

const ensure = (alias: string, requestId: string, createIfMissing = true) =>
  activities.ensureKmsKey({ alias, description: `test key for ${requestId}`, createIfMissing, requestId });

async function aliasTarget(alias: string): Promise<string | undefined> {
  const out = await kms.client.send(new DescribeKeyCommand({ KeyId: alias }));
  return out.KeyMetadata?.KeyId;
}

/** A key made outside the activities, with an alias on it. */
async function keyUnderAlias(alias: string, origin: 'AWS_KMS' | 'EXTERNAL'): Promise<string> {
  const out = await kms.client.send(new CreateKeyCommand({ Origin: origin, KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }));
  const keyId = out.KeyMetadata!.KeyId!;
  await kms.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId }));
  return keyId;
}

test('ensureKmsKey creates an EXTERNAL key tagged with the request id, then finds it through the alias', async () => {
  const before = await countKeys(kms.client);
  const first = await ensure('alias/create-then-find', 'wf-create-then-find');
  assert.equal(first.created, true);
  assert.equal(first.keyState, 'PendingImport');
  assert.match(first.keyArn, new RegExp(`:key/${first.keyId}$`));
  assert.equal(await aliasTarget('alias/create-then-find'), first.keyId);
  const tags = await kms.client.send(new ListResourceTagsCommand({ KeyId: first.keyId }));
  assert.deepEqual(tags.Tags, [{ TagKey: REQUEST_ID_TAG, TagValue: 'wf-create-then-find' }]);

  const second = await ensure('alias/create-then-find', 'wf-create-then-find');
  assert.deepEqual(second, { ...first, created: false });
  assert.equal(await countKeys(kms.client), before + 1);
});

test('ensureKmsKey retried after the alias was lost reuses the tagged key and restores the alias', async () => {
  const first = await ensure('alias/lost-alias', 'wf-lost-alias');
  await kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/lost-alias' }));
  const before = await countKeys(kms.client);

  const retry = await ensure('alias/lost-alias', 'wf-lost-alias');
  assert.equal(retry.keyId, first.keyId);
  assert.equal(retry.created, false);
  assert.equal(await aliasTarget('alias/lost-alias'), first.keyId);
  assert.equal(await countKeys(kms.client), before);
});

test('ensureKmsKey creates a separate key for another request id', async () => {
  const first = await ensure('alias/other-request', 'wf-other-request-1');
  await kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/other-request' }));
  const before = await countKeys(kms.client);

  const other = await ensure('alias/other-request', 'wf-other-request-2');
  assert.notEqual(other.keyId, first.keyId);
  assert.equal(other.created, true);
  assert.equal(await countKeys(kms.client), before + 1);
});

test('ensureKmsKey with createIfMissing=false on an unknown alias fails with UnknownAlias', async () => {
  const before = await countKeys(kms.client);
  const failure = await assertFailure(ensure('alias/does-not-exist', 'wf-unknown', false), ErrorType.UnknownAlias);
  assert.match(failure.message, /alias\/does-not-exist/);
  assert.equal(await countKeys(kms.client), before);
});

test('ensureKmsKey with createIfMissing=false finds an existing EXTERNAL key', async () => {
  const keyId = await keyUnderAlias('alias/pre-existing', 'EXTERNAL');
  const found = await ensure('alias/pre-existing', 'wf-pre-existing', false);
  assert.deepEqual({ keyId: found.keyId, created: found.created, keyState: found.keyState }, { keyId, created: false, keyState: 'PendingImport' });
});

test('ensureKmsKey rejects an alias without the alias/ prefix, or with the reserved alias/aws/, with InvalidInput', async () => {
  await assertFailure(ensure('payments', 'wf-bad-alias'), ErrorType.InvalidInput);
  await assertFailure(ensure('alias/aws/payments', 'wf-bad-alias'), ErrorType.InvalidInput);
});

test('ensureKmsKey on an alias of an AWS_KMS-origin key fails with KeyNotExternal', async () => {
  const keyId = await keyUnderAlias('alias/kms-origin', 'AWS_KMS');
  const failure = await assertFailure(ensure('alias/kms-origin', 'wf-aws-origin'), ErrorType.KeyNotExternal);
  assert.match(failure.message, new RegExp(`${keyId}.*alias/kms-origin.*AWS_KMS`));
});

test('ensureKmsKey on an alias of a key scheduled for deletion fails with KeyPendingDeletion', async () => {
  const keyId = await keyUnderAlias('alias/pending-deletion', 'EXTERNAL');
  await kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
  const failure = await assertFailure(ensure('alias/pending-deletion', 'wf-pending-deletion'), ErrorType.KeyPendingDeletion);
  assert.match(failure.message, new RegExp(keyId));
});

test('ensureKmsKey on an alias of a disabled key fails with KeyUnusableState', async () => {
  const keyId = await keyUnderAlias('alias/disabled', 'EXTERNAL');
  await kms.client.send(new DisableKeyCommand({ KeyId: keyId }));
  const failure = await assertFailure(ensure('alias/disabled', 'wf-disabled'), ErrorType.KeyUnusableState);
  assert.match(failure.message, /Disabled/);
});

test('ensureKmsKey does not replace a tagged key that was scheduled for deletion', async () => {
  const first = await ensure('alias/tagged-deleted', 'wf-tagged-deleted');
  await kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/tagged-deleted' }));
  await kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: first.keyId, PendingWindowInDays: 7 }));
  const before = await countKeys(kms.client);
  await assertFailure(ensure('alias/tagged-deleted', 'wf-tagged-deleted'), ErrorType.KeyPendingDeletion);
  assert.equal(await countKeys(kms.client), before);
});

/** A client on which someone else creates `alias` for `keyId` just before our CreateAlias goes out. */
function clientLosingAliasRace(alias: string, keyId: () => string): KMSClient {
  const client = kms.newClient();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'CreateAliasCommand') {
        await kms.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId() }));
      }
      return next(args);
    },
    { step: 'initialize', name: 'loseAliasRace' },
  );
  return client;
}

test('ensureKmsKey that loses the CreateAlias race returns the key the alias now points to', async () => {
  let winner = '';
  const racing = createKmsActivities(clientLosingAliasRace('alias/race-external', () => winner));
  winner = (await kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!.KeyId!;

  const ref = await racing.ensureKmsKey({ alias: 'alias/race-external', description: 'race', createIfMissing: true, requestId: 'wf-race-1' });
  assert.equal(ref.keyId, winner);
  assert.equal(ref.created, false);
  assert.equal(await aliasTarget('alias/race-external'), winner);
});

test('ensureKmsKey that loses the CreateAlias race re-validates the winner: KeyNotExternal', async () => {
  let winner = '';
  const racing = createKmsActivities(clientLosingAliasRace('alias/race-kms-origin', () => winner));
  winner = (await kms.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;

  await assertFailure(
    racing.ensureKmsKey({ alias: 'alias/race-kms-origin', description: 'race', createIfMissing: true, requestId: 'wf-race-2' }),
    ErrorType.KeyNotExternal,
  );
});

test('a KMS endpoint that refuses connections gives a retryable failure', async () => {
  const closed = createKmsActivities(kms.newClient({ endpoint: `http://127.0.0.1:${await freePort()}`, maxAttempts: 1 }));
  let failure: unknown;
  await assert.rejects(closed.ensureKmsKey({ alias: 'alias/unreachable', description: '', createIfMissing: true, requestId: 'wf-x' }), (err) => {
    failure = err;
    return true;
  });
  assert.ok(failure instanceof ApplicationFailure);
  assert.equal(failure.nonRetryable, false);
  assert.equal(failure.type, 'ECONNREFUSED');
  assert.match(failure.message, /DescribeKey on alias alias\/unreachable/);
});
