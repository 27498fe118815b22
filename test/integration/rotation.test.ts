// Rotation on a Temporal Schedule, end to end on the real stack (dev server, local-kms, SoftHSM2,
// the worker process), driven through the `byok` CLI: import a key, schedule its rotation,
// trigger it, approve, and watch the alias move and the old key get disabled after its grace period.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { Client, Connection } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import '../quiet-runtime';
import { runByok, useApproverKeys, type CliRun } from '../byok-cli';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';
import type { ImportKeyResult } from '../../workflows/import-key';
import type { RotateKeyResult, RotationStatus } from '../../workflows/rotate-key';

let opts: StackOptions;
let info: StackInfo;
let kms: KMSClient;
let temporal: Connection;

const byok = (...args: string[]): Promise<CliRun> => runByok(args, info.env);
async function ok(...args: string[]): Promise<string> {
  const run = await byok(...args);
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

async function until<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Described {
  paused: boolean;
  note?: string;
  overlap: string;
  running: string[];
  recent: Array<{ workflowId: string }>;
  skippedOverlap: number;
}
const describeSchedule = async (): Promise<Described> => JSON.parse(await ok('schedule', 'describe', '--alias', 'it-rotated', '--json'));
const keyState = async (keyId: string) => (await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!;

describe('scheduled rotation on the real stack', () => {
  before(async () => {
    opts = await testStackOptions('rot');
    info = await stackUp(opts);
    await useApproverKeys(path.join(opts.dir, 'approver-keys'), ['alice', 'bob']);
    kms = new KMSClient({ region: info.region, endpoint: info.kmsEndpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    temporal = await Connection.connect({ address: info.temporalAddress });
  });
  after(async () => {
    kms?.destroy();
    await temporal?.close();
    await removeTestStack(opts);
  });

  it('a triggered schedule rotates by alias swap after CLI approvals; the old key is disabled after the grace period', async () => {
    const started = JSON.parse(
      await ok('import', '--alias', 'it-rotated', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita', '--approvers', 'alice,bob', '--required', '2', '--json'),
    );
    await ok('approve', started.workflowId, '--as', 'alice');
    await ok('approve', started.workflowId, '--as', 'bob');
    const imported: ImportKeyResult = JSON.parse(await ok('result', started.workflowId, '--json'));
    const plaintext = Buffer.from('encrypted before the rotation');
    const before = await kms.send(new EncryptCommand({ KeyId: 'alias/it-rotated', Plaintext: plaintext }));

    const bad = await byok('schedule', 'create', '--alias', 'it-rotated', '--every', '90d', '--cron', '0 3 * * *', '--approvers', 'alice');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /exactly one of --every and --cron/);
    await ok('schedule', 'create', '--alias', 'it-rotated', '--every', '90d', '--approvers', 'alice,bob', '--required', '2', '--requester', 'rita',
      '--grace', '15s', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--note', 'quarterly');
    const again = await byok('schedule', 'create', '--alias', 'it-rotated', '--every', '90d', '--approvers', 'alice,bob');
    assert.equal(again.code, 3, again.stderr);
    const listed = JSON.parse(await ok('schedule', 'list', '--json'));
    assert.deepEqual(listed.map((s: { scheduleId: string }) => s.scheduleId), ['rotate-it-rotated']);
    assert.equal((await describeSchedule()).overlap, 'SKIP');

    await ok('schedule', 'pause', '--alias', 'it-rotated', '--note', 'change freeze');
    assert.deepEqual([(await describeSchedule()).paused, (await describeSchedule()).note], [true, 'change freeze']);
    await ok('schedule', 'unpause', '--alias', 'it-rotated');
    assert.equal((await describeSchedule()).paused, false);

    await ok('schedule', 'trigger', '--alias', 'it-rotated');
    const running = await until(describeSchedule, (d) => d.running.length === 1, 'the triggered rotation');
    const workflowId = running.running[0];
    assert.match(workflowId, /^rotate-it-rotated-\d{4}-\d\d-\d\dT/, 'workflow id: the schedule id and the time it was due');

    // While it waits for approvers, a second trigger is skipped, and a rotation by hand is refused.
    await ok('schedule', 'trigger', '--alias', 'it-rotated');
    const skipped = await until(describeSchedule, (d) => d.skippedOverlap >= 1, 'the overlapping trigger to be skipped');
    assert.deepEqual(skipped.running, [workflowId]);
    const byHand = await byok('rotate', '--alias', 'it-rotated', '--approvers', 'alice,bob', '--requester', 'rita');
    assert.equal(byHand.code, 3, byHand.stderr);
    assert.match(byHand.stderr, new RegExp(`running ${workflowId}`));

    await ok('approve', workflowId, '--as', 'alice', '--comment', 'CHG-77');
    await ok('approve', workflowId, '--as', 'bob');
    const grace: RotationStatus = await until(
      async () => JSON.parse(await ok('rotation', workflowId, '--json')) as RotationStatus,
      (s) => s.step === 'GRACE_PERIOD' || s.step === 'DONE' || s.step === 'FAILED',
      'the grace period',
    );
    assert.equal(grace.step, 'GRACE_PERIOD', grace.failure);
    const during = await kms.send(new DescribeKeyCommand({ KeyId: 'alias/it-rotated' }));
    assert.equal(during.KeyMetadata?.KeyId, grace.newKey?.keyId, 'the alias moved before the grace period');
    assert.equal((await keyState(imported.keyId)).KeyState, 'Enabled', 'old key enabled during the grace period');
    const old = await kms.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }));
    assert.deepEqual(Buffer.from(old.Plaintext!), plaintext, 'old ciphertexts decrypt during the grace period');

    const result: RotateKeyResult = JSON.parse(await ok('rotation', workflowId, '--wait', '--json'));
    assert.equal(result.outcome, 'ROTATED');
    assert.equal(result.strategy, 'alias-swap');
    assert.equal(result.previousKey.keyArn, imported.keyArn);
    assert.notEqual(result.newKey.keyArn, imported.keyArn);
    assert.equal(result.hsmKey.label, `byok/it-rotated/${workflowId}`);
    assert.notEqual(result.hsmKey.kcv, imported.hsmKey.kcv, 'new material');
    assert.deepEqual(result.approvals.map((a) => [a.approver, a.subject.operation, a.subject.previousKmsKeyArn]), [
      ['alice', 'rotate', imported.keyArn],
      ['bob', 'rotate', imported.keyArn],
    ]);
    const graceMs = Date.parse(result.previousKeyDisabledAt!) - Date.parse(result.rotatedAt!);
    assert.ok(graceMs >= 15_000, `old key disabled ${graceMs} ms after the alias moved, expected the 15 s grace period`);
    assert.equal(result.previousKeyState, 'Disabled');

    const now = await keyState('alias/it-rotated');
    assert.equal(now.Arn, result.newKey.keyArn, 'the alias points at the new key');
    assert.equal(now.KeyState, 'Enabled');
    assert.equal(now.Origin, 'EXTERNAL');
    assert.equal((await keyState(imported.keyId)).KeyState, 'Disabled', 'old key disabled after the grace period');
    const fresh = await kms.send(new EncryptCommand({ KeyId: 'alias/it-rotated', Plaintext: plaintext }));
    const back = await kms.send(new DecryptCommand({ CiphertextBlob: fresh.CiphertextBlob }));
    assert.deepEqual(Buffer.from(back.Plaintext!), plaintext);

    await ok('schedule', 'delete', '--alias', 'it-rotated');
    assert.deepEqual(JSON.parse(await ok('schedule', 'list', '--json')), []);
    const gone = await byok('schedule', 'describe', '--alias', 'it-rotated');
    assert.equal(gone.code, 3);

    // The rotation's history replays with the current workflow code.
    const client = new Client({ connection: temporal, namespace: info.namespace });
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    await Worker.runReplayHistory({ workflowsPath: require.resolve('../../workflows') }, history, workflowId);
  });
});
