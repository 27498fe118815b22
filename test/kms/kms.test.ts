// ensureKmsKey against a real local-kms: finding, creating (once per request) and refusing keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  KMSInternalException,
  KMSServiceException,
  ListResourceTagsCommand,
  ScheduleKeyDeletionCommand,
  type CreateKeyCommandOutput,
  type KeyMetadata,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import { createKmsActivities, kmsClient, REQUEST_ID_TAG, type EnsureKmsKeyInput, type KmsKeyRef } from '../../activities/kms';
import { ErrorType } from '../../workflows/errors';
import { freePort } from '../../scripts/net';
import { assertFailure, countKeys, kmsForFile } from './local-kms-fixture';

const file = kmsForFile();

const ensure = (alias: string, requestId: string, createIfMissing = true) =>
  file.activities.ensureKmsKey({ alias, description: `test key for ${requestId}`, createIfMissing, requestId });

async function aliasTarget(alias: string): Promise<string | undefined> {
  return (await describeKey(alias)).KeyId;
}

async function describeKey(keyId: string): Promise<KeyMetadata> {
  return (await file.kms.client.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!;
}

/** A key made outside the activities, with an alias on it. */
async function keyUnderAlias(alias: string, origin: 'AWS_KMS' | 'EXTERNAL'): Promise<string> {
  const out = await file.kms.client.send(new CreateKeyCommand({ Origin: origin, KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }));
  const keyId = out.KeyMetadata!.KeyId!;
  await file.kms.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId }));
  return keyId;
}

test('ensureKmsKey creates an EXTERNAL key tagged with the request id, then finds it through the alias', async () => {
  const before = await countKeys(file.kms.client);
  const first = await ensure('alias/create-then-find', 'wf-create-then-find');
  assert.equal(first.created, true);
  assert.equal(first.keyState, 'PendingImport');
  assert.match(first.keyArn, new RegExp(`:key/${first.keyId}$`));
  assert.equal(await aliasTarget('alias/create-then-find'), first.keyId);
  const tags = await file.kms.client.send(new ListResourceTagsCommand({ KeyId: first.keyId }));
  assert.deepEqual(tags.Tags, [{ TagKey: REQUEST_ID_TAG, TagValue: 'wf-create-then-find' }]);

  const second = await ensure('alias/create-then-find', 'wf-create-then-find');
  assert.deepEqual(second, { ...first, created: false });
  assert.equal(await countKeys(file.kms.client), before + 1);
});

test('ensureKmsKey retried after the alias was lost reuses the tagged key and restores the alias', async () => {
  const first = await ensure('alias/lost-alias', 'wf-lost-alias');
  await file.kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/lost-alias' }));
  const before = await countKeys(file.kms.client);

  const retry = await ensure('alias/lost-alias', 'wf-lost-alias');
  assert.equal(retry.keyId, first.keyId);
  assert.equal(retry.created, false);
  assert.equal(await aliasTarget('alias/lost-alias'), first.keyId);
  assert.equal(await countKeys(file.kms.client), before);
});

test('ensureKmsKey creates a separate key for another request id', async () => {
  const first = await ensure('alias/other-request', 'wf-other-request-1');
  await file.kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/other-request' }));
  const before = await countKeys(file.kms.client);

  const other = await ensure('alias/other-request', 'wf-other-request-2');
  assert.notEqual(other.keyId, first.keyId);
  assert.equal(other.created, true);
  assert.equal(await countKeys(file.kms.client), before + 1);
});

test('ensureKmsKey with createIfMissing=false on an unknown alias fails with UnknownAlias', async () => {
  const before = await countKeys(file.kms.client);
  const failure = await assertFailure(ensure('alias/does-not-exist', 'wf-unknown', false), ErrorType.UnknownAlias);
  assert.match(failure.message, /alias\/does-not-exist/);
  assert.equal(await countKeys(file.kms.client), before);
});

test('ensureKmsKey with createIfMissing=false finds an existing EXTERNAL key', async () => {
  const keyId = await keyUnderAlias('alias/pre-existing', 'EXTERNAL');
  const found = await ensure('alias/pre-existing', 'wf-pre-existing', false);
  assert.deepEqual({ keyId: found.keyId, created: found.created, keyState: found.keyState }, { keyId, created: false, keyState: 'PendingImport' });
});

test('ensureKmsKey rejects an alias without the alias/ prefix, or with the reserved alias/aws/, with InvalidInput', async () => {
  const unprefixed = await assertFailure(ensure('payments', 'wf-bad-alias'), ErrorType.InvalidInput);
  assert.equal(unprefixed.message, 'invalid alias: expected a name starting with "alias/", got "payments"');
  const reserved = await assertFailure(ensure('alias/aws/payments', 'wf-bad-alias'), ErrorType.InvalidInput);
  assert.equal(reserved.message, 'invalid alias: "alias/aws/" is reserved for AWS managed keys');
});

test('ensureKmsKey on an alias of an AWS_KMS-origin key fails with KeyNotExternal', async () => {
  const keyId = await keyUnderAlias('alias/kms-origin', 'AWS_KMS');
  const failure = await assertFailure(ensure('alias/kms-origin', 'wf-aws-origin'), ErrorType.KeyNotExternal);
  assert.match(failure.message, new RegExp(`${keyId}.*alias/kms-origin.*AWS_KMS`));
});

test('ensureKmsKey on an alias of a key scheduled for deletion fails with KeyPendingDeletion', async () => {
  const keyId = await keyUnderAlias('alias/pending-deletion', 'EXTERNAL');
  await file.kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
  const failure = await assertFailure(ensure('alias/pending-deletion', 'wf-pending-deletion'), ErrorType.KeyPendingDeletion);
  assert.match(failure.message, new RegExp(keyId));
});

test('ensureKmsKey on an alias of a disabled key fails with KeyUnusableState', async () => {
  const keyId = await keyUnderAlias('alias/disabled', 'EXTERNAL');
  await file.kms.client.send(new DisableKeyCommand({ KeyId: keyId }));
  const failure = await assertFailure(ensure('alias/disabled', 'wf-disabled'), ErrorType.KeyUnusableState);
  assert.match(failure.message, /Disabled/);
});

test('ensureKmsKey does not replace a tagged key that was scheduled for deletion', async () => {
  const first = await ensure('alias/tagged-deleted', 'wf-tagged-deleted');
  await file.kms.client.send(new DeleteAliasCommand({ AliasName: 'alias/tagged-deleted' }));
  await file.kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: first.keyId, PendingWindowInDays: 7 }));
  const before = await countKeys(file.kms.client);
  await assertFailure(ensure('alias/tagged-deleted', 'wf-tagged-deleted'), ErrorType.KeyPendingDeletion);
  assert.equal(await countKeys(file.kms.client), before);
});

/** A client that records the name of every command it sends; `hook` runs before each goes out. */
function recordingClient(hook?: (command: string) => void): { client: KMSClient; sent: string[] } {
  const client = file.kms.newClient();
  const sent: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push(String(context.commandName));
      hook?.(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return { client, sent };
}

/** ensureKmsKey run as the given attempt of an activity (run() does not infer the result type). */
const ensureAsAttempt = (attempt: number, client: KMSClient, input: EnsureKmsKeyInput): Promise<KmsKeyRef> =>
  new MockActivityEnvironment({ attempt }).run(() => createKmsActivities(client).ensureKmsKey(input)) as Promise<KmsKeyRef>;

test("ensureKmsKey's first attempt creates the key without scanning the account for an earlier attempt's key", async () => {
  await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' })); // a key a scan would have to look at
  const { client, sent } = recordingClient();
  const key = await ensureAsAttempt(1, client, { alias: 'alias/first-attempt', description: '', createIfMissing: true, requestId: 'wf-first-attempt' });
  assert.equal(key.created, true);
  assert.deepEqual(sent, ['DescribeKeyCommand', 'CreateKeyCommand', 'CreateAliasCommand']);
  assert.equal(await aliasTarget('alias/first-attempt'), key.keyId);
});

test('ensureKmsKey retried after its first attempt died between CreateKey and CreateAlias finds the tagged key', async () => {
  const before = await countKeys(file.kms.client);
  const dying = recordingClient((command) => {
    if (command === 'CreateAliasCommand') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  });
  const input = { alias: 'alias/retry-finds', description: '', createIfMissing: true, requestId: 'wf-retry-finds' };
  await assert.rejects(
    ensureAsAttempt(1, dying.client, input),
    (err: unknown) => err instanceof ApplicationFailure && !err.nonRetryable,
  );
  assert.equal(await countKeys(file.kms.client), before + 1);

  const { client, sent } = recordingClient();
  const retry = await ensureAsAttempt(2, client, input);
  assert.equal(retry.created, false);
  assert.ok(sent.includes('ListKeysCommand') && sent.includes('ListResourceTagsCommand'), `sent: ${sent.join(', ')}`);
  assert.ok(!sent.includes('CreateKeyCommand'));
  assert.equal(await aliasTarget('alias/retry-finds'), retry.keyId);
  assert.equal(await countKeys(file.kms.client), before + 1);
  const tags = await file.kms.client.send(new ListResourceTagsCommand({ KeyId: retry.keyId }));
  assert.deepEqual(tags.Tags, [{ TagKey: REQUEST_ID_TAG, TagValue: 'wf-retry-finds' }]);
});

test('called outside an activity, ensureKmsKey scans as a retry does unless told it is a first attempt', async () => {
  await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }));
  const retry = recordingClient();
  await createKmsActivities(retry.client).ensureKmsKey({ alias: 'alias/outside-retry', description: '', createIfMissing: true, requestId: 'wf-outside-retry' });
  assert.ok(retry.sent.includes('ListKeysCommand'));
  const first = recordingClient();
  await createKmsActivities(first.client, { attemptOutsideActivity: 1 }).ensureKmsKey({
    alias: 'alias/outside-first',
    description: '',
    createIfMissing: true,
    requestId: 'wf-outside-first',
  });
  assert.deepEqual(first.sent, ['DescribeKeyCommand', 'CreateKeyCommand', 'CreateAliasCommand']);
});

test('ensureKmsKey retried heartbeats for every key it scans for its request tag', async () => {
  await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' })); // at least one key to scan
  const keys = await countKeys(file.kms.client);
  const env = new MockActivityEnvironment({ attempt: 2 });
  const beats: unknown[] = [];
  env.on('heartbeat', (details) => beats.push(details));

  await env.run(() => ensure('alias/heartbeat', 'wf-heartbeat'));
  assert.equal(beats.length, keys);
  assert.deepEqual(beats.at(-1), { keysScanned: keys });
});

test('ensureKmsKey retried and cancelled during its tag scan sends no further KMS request and creates no key', async () => {
  await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' })); // at least one key to scan
  const env = new MockActivityEnvironment({ attempt: 2 });
  const client = file.kms.newClient();
  const sent: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push(String(context.commandName));
      // As when Temporal cancels the attempt, or times it out, while a request is on its way.
      if (context.commandName === 'ListResourceTagsCommand') env.cancel();
      return next(args);
    },
    { step: 'initialize', name: 'cancelDuringScan' },
  );
  const before = await countKeys(file.kms.client);

  const scan = env.run(() =>
    createKmsActivities(client).ensureKmsKey({ alias: 'alias/cancelled', description: '', createIfMissing: true, requestId: 'wf-cancelled' }),
  );
  await assert.rejects(scan, CancelledFailure);
  assert.deepEqual(sent, ['DescribeKeyCommand', 'ListKeysCommand', 'ListResourceTagsCommand']);
  assert.equal(await countKeys(file.kms.client), before);
});

/**
 * A client on which someone else creates `alias` for `winner()` just before our CreateAlias goes
 * out; `lost()` is the key our CreateKey made. With `deletionFails`, ScheduleKeyDeletion throws it.
 */
function clientLosingAliasRace(alias: string, winner: () => string, deletionFails?: Error): { client: KMSClient; lost: () => string } {
  let created = '';
  const client = file.kms.newClient();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'CreateAliasCommand') {
        await file.kms.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: winner() }));
      }
      if (context.commandName === 'ScheduleKeyDeletionCommand' && deletionFails) throw deletionFails;
      const out = await next(args);
      if (context.commandName === 'CreateKeyCommand') created = (out.output as CreateKeyCommandOutput).KeyMetadata!.KeyId!;
      return out;
    },
    { step: 'initialize', name: 'loseAliasRace' },
  );
  return { client, lost: () => created };
}

async function assertScheduledForDeletionInAWeek(keyId: string): Promise<void> {
  const key = await describeKey(keyId);
  assert.equal(key.KeyState, 'PendingDeletion');
  const days = (key.DeletionDate!.getTime() - Date.now()) / 86_400_000;
  assert.ok(Math.abs(days - 7) < 0.01, `deletion in ${days} days, expected 7`);
}

test('ensureKmsKey that loses the CreateAlias race returns the key the alias now points to, and retires its own', async () => {
  let winner = '';
  const race = clientLosingAliasRace('alias/race-external', () => winner);
  const racing = createKmsActivities(race.client);
  winner = (await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!.KeyId!;

  const ref = await racing.ensureKmsKey({ alias: 'alias/race-external', description: 'race', createIfMissing: true, requestId: 'wf-race-1' });
  assert.equal(ref.keyId, winner);
  assert.equal(ref.created, false);
  assert.equal(await aliasTarget('alias/race-external'), winner);
  assert.notEqual(race.lost(), winner);
  await assertScheduledForDeletionInAWeek(race.lost());
});

test('ensureKmsKey that loses the CreateAlias race re-validates the winner: KeyNotExternal, and says it retired its own key', async () => {
  let winner = '';
  const race = clientLosingAliasRace('alias/race-kms-origin', () => winner);
  const racing = createKmsActivities(race.client);
  winner = (await file.kms.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;

  const failure = await assertFailure(
    racing.ensureKmsKey({ alias: 'alias/race-kms-origin', description: 'race', createIfMissing: true, requestId: 'wf-race-2' }),
    ErrorType.KeyNotExternal,
  );
  assert.match(failure.message, new RegExp(`AWS_KMS.*; key ${race.lost()}, created for alias/race-kms-origin .* is scheduled for deletion`));
  await assertScheduledForDeletionInAWeek(race.lost());
});

const deletionFailures: [string, Error, RegExp][] = [
  [
    'AccessDenied',
    new KMSServiceException({ name: 'AccessDeniedException', $fault: 'client', $metadata: { httpStatusCode: 400 }, message: 'not allowed' }),
    /the worker may not schedule key deletion; schedule it by hand/,
  ],
  [
    'KMSInternal',
    new KMSInternalException({ $metadata: { httpStatusCode: 500 }, message: 'try later' }),
    /ScheduleKeyDeletion on key .* \(KMSInternalException: try later\)/,
  ],
];

for (const [name, error, expected] of deletionFailures) {
  test(`ensureKmsKey that loses the CreateAlias race and cannot retire its key (${name}) returns the winner and logs a warning`, async () => {
    let winner = '';
    const race = clientLosingAliasRace(`alias/race-undeletable-${name}`, () => winner, error);
    const racing = createKmsActivities(race.client);
    winner = (await file.kms.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!.KeyId!;
    const logged: LogEntry[] = [];
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('INFO', (entry) => logged.push(entry)) });

    const ref = (await env.run(() =>
      racing.ensureKmsKey({ alias: `alias/race-undeletable-${name}`, description: 'race', createIfMissing: true, requestId: `wf-race-${name}` }),
    )) as KmsKeyRef;
    assert.equal(ref.keyId, winner);
    assert.equal((await describeKey(race.lost())).KeyState, 'PendingImport');
    const warnings = logged.filter((entry) => entry.level === 'WARN').map((entry) => entry.message);
    assert.equal(warnings.length, 1, String(warnings));
    assert.match(warnings[0], new RegExp(`key ${race.lost()}, created for .* is left in PendingImport`));
    assert.match(warnings[0], expected);
  });
}

/** Runs `fn` with no AWS credentials anywhere the default provider chain looks. */
async function withoutAwsCredentials(fn: () => Promise<void>): Promise<void> {
  const saved = Object.entries(process.env).filter(([name]) => name.startsWith('AWS_'));
  for (const [name] of saved) delete process.env[name];
  Object.assign(process.env, {
    AWS_CONFIG_FILE: '/nonexistent/aws/config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws/credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  try {
    await fn();
  } finally {
    for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name];
    Object.assign(process.env, Object.fromEntries(saved));
  }
}

test('a worker without AWS credentials gets a non-retryable KmsAccessDenied that says how to configure them', async () => {
  await withoutAwsCredentials(async () => {
    const client = kmsClient({ region: file.kms.region, endpoint: file.kms.endpoint });
    try {
      const failure = await assertFailure(
        createKmsActivities(client).ensureKmsKey({ alias: 'alias/no-credentials', description: '', createIfMissing: true, requestId: 'wf-x' }),
        ErrorType.KmsAccessDenied,
      );
      assert.match(failure.message, /no AWS credentials; configure them for the default provider chain/);
      assert.match(failure.message, /CredentialsProviderError: Could not load credentials from any providers/);
    } finally {
      client.destroy();
    }
  });
});

test('a KMS endpoint that refuses connections gives a retryable failure', async () => {
  const closed = createKmsActivities(file.kms.newClient({ endpoint: `http://127.0.0.1:${await freePort()}`, maxAttempts: 1 }));
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
