// Operations on the real stack: `byok list`, `pending` and `watch` through visibility queries on
// the dev server, and the worker's Prometheus endpoint scraped while imports run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import '../quiet-runtime';
import { runByok, useApproverKeys, type CliRun } from '../byok-cli';
import type { OperationRow } from '../../client/ops-commands';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { projectRoot } from '../../scripts/paths';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';

let opts: StackOptions;
let info: StackInfo;

async function byok(...args: string[]): Promise<CliRun> {
  return runByok(args, info.env);
}

async function json<T>(...args: string[]): Promise<T> {
  const run = await byok(...args, '--json');
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** Visibility lags the workflows: poll until `ok` holds (the index, not a timer, is what we wait for). */
async function eventually<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  for (;;) {
    last = await get();
    if (ok(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: not true after ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const ids = (rows: OperationRow[]) => rows.map((r) => r.workflowId);

async function startImport(alias: string): Promise<string> {
  const started = await json<{ workflowId: string }>(
    'import', '--alias', alias, '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita', '--approvers', 'alice,bob,carol', '--required', '2',
  );
  return started.workflowId;
}

/** Prometheus text format: the sum of the samples of `name` whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[3]);
  }
  return total;
}

async function scrape(): Promise<string> {
  const res = await fetch(info.metricsUrl!);
  assert.equal(res.status, 200);
  return res.text();
}

describe('byok list, pending, watch and the metrics endpoint on the real stack', () => {
  let before0: string;
  let approved: string;

  before(async () => {
    opts = await testStackOptions('ops', { metrics: true });
    info = await stackUp(opts);
    await useApproverKeys(path.join(opts.dir, 'approver-keys'));
    before0 = await scrape();
  });

  after(async () => {
    await removeTestStack(opts);
  });

  it('list and pending find an import awaiting approval by state, alias and approver', async () => {
    approved = await startImport('ops-listed');
    const awaiting = await eventually(
      'listed as AWAITING_APPROVAL',
      () => json<OperationRow[]>('list', '--state', 'AWAITING_APPROVAL'),
      (rows) => ids(rows).includes(approved),
    );
    const row = awaiting.find((r) => r.workflowId === approved)!;
    assert.equal(row.operation, 'import');
    assert.equal(row.alias, 'alias/ops-listed');
    assert.equal(row.requester, 'rita');
    assert.equal(row.approvalsNeeded, 2);
    assert.deepEqual(row.pendingApprovers, ['alice', 'bob', 'carol']);
    assert.match(row.kmsKeyId ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(Date.parse(row.tokenValidTo!) > Date.now(), 'the token is valid for a while');

    assert.deepEqual(ids(await json<OperationRow[]>('list', '--alias', 'alias/ops-listed')), [approved]);
    assert.deepEqual(ids(await json<OperationRow[]>('list', '--alias', 'ops-listed', '--state', 'DONE')), []);
    assert.ok(ids(await json<OperationRow[]>('pending', '--as', 'alice')).includes(approved));
    assert.deepEqual(await json<OperationRow[]>('pending', '--as', 'rita'), [], 'the requester is not asked');
    assert.deepEqual(await json<OperationRow[]>('pending', '--as', 'mallory'), []);

    assert.equal((await byok('approve', approved, '--as', 'alice')).code, 0);
    await eventually('no longer pending for alice', () => json<OperationRow[]>('pending', '--as', 'alice'), (rows) => !ids(rows).includes(approved));
    const forBob = await json<OperationRow[]>('pending', '--as', 'bob');
    assert.equal(forBob.find((r) => r.workflowId === approved)?.approvalsNeeded, 1);
    const human = await byok('pending', '--as', 'bob');
    assert.match(human.stdout, new RegExp(`${approved}\\s+import\\s+alias/ops-listed\\s+rita\\s+1 more`));
  });

  it('refuses a state or a name it cannot search for, with exit 2', async () => {
    const state = await byok('list', '--state', 'WAITING');
    assert.equal(state.code, 2);
    assert.match(state.stderr, /--state: expected one of PREPARING, AWAITING_APPROVAL, .* got "WAITING"/);
    const name = await byok('pending', '--as', "x' OR ByokState != '");
    assert.equal(name.code, 2);
    assert.match(name.stderr, /--as: expected a non-empty value without quotes or backslashes/);
  });

  it('watch follows the import live and exits 0 when it is done', async () => {
    const watch = spawn(process.execPath, [path.join(projectRoot, 'bin', 'byok'), 'watch', approved, '--json'], {
      env: { ...process.env, ...info.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    watch.stdout.on('data', (b) => (out += b));
    const exited = new Promise<number>((resolve) => watch.once('exit', (code) => resolve(code ?? -1)));
    await eventually('watch printed the pending state', async () => out, (o) => o.includes('"AWAITING_APPROVAL"'));
    assert.equal((await byok('approve', approved, '--as', 'bob')).code, 0);
    assert.equal(await exited, 0, out);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as OperationRow);
    assert.equal(lines[0].state, 'AWAITING_APPROVAL');
    assert.equal(lines[0].approvalsNeeded, 1);
    assert.equal(lines.at(-1)!.state, 'DONE');
    assert.equal(lines.at(-1)!.status, 'COMPLETED');
    await eventually('listed as DONE', () => json<OperationRow[]>('list', '--state', 'DONE'), (rows) => ids(rows).includes(approved));
  });

  it('a rejected import is listed REJECTED, is no longer pending, and watch exits 4', async () => {
    const rejected = await startImport('ops-rejected');
    await eventually('pending for carol', () => json<OperationRow[]>('pending', '--as', 'carol'), (rows) => ids(rows).includes(rejected));
    assert.equal((await byok('reject', rejected, '--as', 'carol', '--comment', 'wrong account')).code, 0);
    await eventually('listed as REJECTED', () => json<OperationRow[]>('list', '--state', 'REJECTED'), (rows) => ids(rows).includes(rejected));
    assert.ok(!ids(await json<OperationRow[]>('pending', '--as', 'alice')).includes(rejected));
    const watch = await byok('watch', rejected);
    assert.equal(watch.code, 4, watch.stderr);
    assert.match(watch.stdout, new RegExp(`${rejected} ended: COMPLETED \\(REJECTED\\)`));
  });

  it('the worker serves Prometheus metrics whose BYOK counters and latencies moved', async () => {
    const now = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}) => sample(now, name, labels) - sample(before0, name, labels);
    assert.equal(moved('byok_operations_started', { operation: 'import' }), 2);
    assert.equal(moved('byok_operations_succeeded', { operation: 'import' }), 1);
    assert.equal(moved('byok_operations_declined', { operation: 'import', state: 'REJECTED' }), 1);
    assert.equal(moved('byok_operations_failed'), 0);
    assert.equal(moved('byok_approval_wait_count', { outcome: 'IMPORTING' }), 1);
    assert.equal(moved('byok_approval_wait_count', { outcome: 'REJECTED' }), 1);
    assert.ok(sample(now, 'byok_approval_wait_sum') > 0, 'approval wait measured');
    assert.equal(moved('byok_hsm_call_latency_count', { activityType: 'wrapKey', outcome: 'ok' }), 2);
    assert.equal(moved('byok_kms_call_latency_count', { activityType: 'importKeyMaterial', outcome: 'ok' }), 1);
    assert.equal(moved('byok_kms_call_latency_count', { activityType: 'verifyKey', outcome: 'ok' }), 1);
    assert.ok(sample(now, 'temporal_workflow_completed') >= 2, 'the Temporal runtime exports its own metrics too');
    assert.ok(!now.includes(opts.pin), 'no PIN in the metrics');
  });

  // Last: a second worker on the queue must not take tasks of a running import.
  it('a worker started with --log-format json writes only JSON lines, the SDK and Node warnings included', async () => {
    const worker = spawn(process.execPath, [path.join(projectRoot, 'dist', 'worker', 'main.js'), '--queues', 'kms', '--log-format', 'json'], {
      env: { ...process.env, ...info.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    worker.stderr.on('data', (b) => (err += b));
    const exited = new Promise<number>((resolve) => worker.once('exit', (code) => resolve(code ?? -1)));
    await eventually('the worker started', async () => err, (e) => e.includes('byok worker started'), 60_000);
    worker.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    const lines = err.trim().split('\n').map((l) => JSON.parse(l) as { time: string; level: string; message: string });
    const started = lines.find((l) => l.message === 'byok worker started') as unknown as Record<string, unknown>;
    assert.equal(started.level, 'INFO');
    assert.deepEqual(started.queues, ['byok-kms']);
    assert.ok(lines.every((l) => !Number.isNaN(Date.parse(l.time)) && l.level && l.message));
    assert.ok(!err.includes(opts.pin));
  });
});
