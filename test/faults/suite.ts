// The fault suite (`npm run test:faults`): imports on the real stack (dev server, worker
// processes, SoftHSM2, local-kms behind the project's fault proxy) while something breaks, each
// ending with the same checks: the workflow imported the key, exactly one KMS key carries the
// request's tag, no HSM object is left over (token objects, and the worker's session objects as
// counted by the PKCS#11 shim), and the key encrypts and decrypts. Prints a table at the end.
// Not a *.test.ts file: `npm test` does not run it; .ci/run runs it after `npm test`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, ListKeysCommand, ListResourceTagsCommand } from '@aws-sdk/client-kms';
import type { WorkflowHandle } from '@temporalio/client';
import { Module, ObjectClass, SessionFlag } from 'graphene-pk11';
import { REQUEST_ID_TAG } from '../../activities/kms';
import { Fleet, FLEET_TOKEN_LABEL, until, type WorkerProcess } from '../../scripts/fleet';
import { tools } from '../../scripts/paths';
import { buildPkcs11Shim, shimEnv } from '../../scripts/pkcs11-shim';
import { approveUpdate } from '../../workflows/decisions';
import { importKey, statusQuery, type ImportKeyResult } from '../../workflows/import-key';
import { WORKFLOW_TASK_QUEUE } from '../../workflows/model';

const PIN = `f-${randomBytes(6).toString('hex')}`;
/** PENDING_ACTIVITY_STATE_STARTED in temporal.api.enums.v1. */
const ACTIVITY_STARTED = 2;
const SCENARIOS = 11;
// Above the longest recovery: an activity's heartbeat or start-to-close timeout (1 min) plus retries.
const SCENARIO_TIMEOUT_MS = 180_000;

interface Row {
  scenario: string;
  faults: string;
  completed: string;
  duplicateKeys: number;
  strayHsmObjects: number;
  recoverySeconds: string;
}
const rows: Row[] = [];
const labels: string[] = [];

let dir: string;
let fleet: Fleet;
let shim: string;
let faultFile: string;
let kms: WorkerProcess;
let hsm: WorkerProcess;

function hsmWorkerEnv(): Record<string, string> {
  return shimEnv(shim, { BYOK_P11_FAULT_FILE: faultFile });
}

async function startImport(alias: string): Promise<WorkflowHandle<typeof importKey>> {
  labels.push(`byok/${alias}`);
  return fleet.client.workflow.start(importKey, {
    taskQueue: WORKFLOW_TASK_QUEUE,
    workflowId: `import-${alias}`,
    // Durability is under test here; signed decisions have their own tests (test/workflow/signed-approvals.test.ts).
    args: [{ alias, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', requester: 'rita', approvers: ['alice'], requiredApprovals: 1, unsignedApprovals: true }],
  });
}

/** Approves as soon as the workflow accepts decisions (once both keys exist), and returns the result. */
async function approveAndWait(handle: WorkflowHandle<typeof importKey>): Promise<ImportKeyResult> {
  for (;;) {
    try {
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', comment: 'fault suite' }] });
      break;
    } catch (err) {
      const why = String((err as { cause?: Error }).cause?.message ?? (err as Error).message);
      if (!why.includes('nothing to decide yet')) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return handle.result();
}

/** Keys carrying the request's tag: a crash must never leave a second one. */
async function keysOf(workflowId: string): Promise<string[]> {
  const found: string[] = [];
  const { Keys } = await fleet.kms.send(new ListKeysCommand({ Limit: 1000 }));
  for (const { KeyId } of Keys ?? []) {
    const { Tags } = await fleet.kms.send(new ListResourceTagsCommand({ KeyId }));
    if (Tags?.some((t) => t.TagKey === REQUEST_ID_TAG && t.TagValue === workflowId)) found.push(KeyId!);
  }
  return found;
}

/** Every object on the token, as a second process sees it (token objects only), by label. */
function tokenObjects(): string[] {
  const mod = Module.load(tools.softhsmModule);
  mod.initialize();
  try {
    const slot = [...mod.getSlots(true)].find((s) => s.getToken().label === FLEET_TOKEN_LABEL);
    assert.ok(slot, 'token not found');
    const session = slot.open(SessionFlag.SERIAL_SESSION);
    session.login(PIN);
    const objects = [...session.find()].map((o) => `${ObjectClass[o.getAttribute('class')]}:${o.getAttribute('label')}`);
    session.logout();
    session.close();
    return objects;
  } finally {
    mod.finalize();
    mod.close();
  }
}

/** Session objects alive in the running HSM worker, as its PKCS#11 shim counts them. */
function liveSessionObjects(worker: WorkerProcess): number {
  const file = `${faultFile}.session-objects.${worker.pid}`;
  return existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : 0;
}

function shimFaults(): number {
  const log = `${faultFile}.log`;
  return existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').length : 0;
}

/** The checks every scenario ends with; adds the scenario's row to the table. */
async function settle(
  scenario: string,
  faults: string,
  imports: Array<{ alias: string; result: ImportKeyResult }>,
  faultAt: number,
): Promise<void> {
  const recoverySeconds = ((Date.now() - faultAt) / 1000).toFixed(1);
  let completed = 0;
  let duplicateKeys = 0;
  for (const { alias, result } of imports) {
    if (result.outcome === 'IMPORTED') completed++;
    const keys = await keysOf(`import-${alias}`);
    duplicateKeys += Math.max(0, keys.length - 1);
    assert.deepEqual(keys, [result.keyId], `${alias}: exactly one KMS key carries the request tag`);
    const { KeyMetadata } = await fleet.kms.send(new DescribeKeyCommand({ KeyId: `alias/${alias}` }));
    assert.equal(KeyMetadata?.KeyId, result.keyId);
    assert.equal(KeyMetadata?.KeyState, 'Enabled');
    const plaintext = randomBytes(24);
    const { CiphertextBlob } = await fleet.kms.send(new EncryptCommand({ KeyId: `alias/${alias}`, Plaintext: plaintext }));
    const { Plaintext } = await fleet.kms.send(new DecryptCommand({ CiphertextBlob }));
    assert.deepEqual(Buffer.from(Plaintext!), plaintext, `${alias}: round trip`);
  }
  const objects = tokenObjects();
  const expected = labels.map((l) => `SECRET_KEY:${l}`);
  const strays = objects.filter((o) => !expected.includes(o));
  const strayHsmObjects = strays.length + (objects.length - strays.length - new Set(objects).size) + liveSessionObjects(hsm);
  rows.push({ scenario, faults, completed: `${completed}/${imports.length}`, duplicateKeys, strayHsmObjects, recoverySeconds });
  assert.equal(completed, imports.length, 'every import completed');
  assert.equal(strayHsmObjects, 0, `stray HSM objects: ${JSON.stringify(strays)}, live session objects ${liveSessionObjects(hsm)}`);
  assert.deepEqual([...objects].sort(), [...expected].sort(), 'one token key per import');
}

function printTable(): void {
  const head: Row = {
    scenario: 'scenario',
    faults: 'faults injected',
    completed: 'completed',
    duplicateKeys: 'duplicate keys' as unknown as number,
    strayHsmObjects: 'stray HSM objects' as unknown as number,
    recoverySeconds: 'time to recover (s)',
  };
  const all = [head, ...rows];
  const cols = Object.keys(head) as Array<keyof Row>;
  const width = cols.map((c) => Math.max(...all.map((r) => String(r[c]).length)));
  const line = (r: Row) => `| ${cols.map((c, i) => String(r[c]).padEnd(width[i])).join(' | ')} |`;
  const out = [line(head), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
  process.stdout.write(`\nFault suite (time to recover: from the fault to the workflow's completion, approval sent as soon as possible)\n${out.join('\n')}\n`);
}

describe('fault suite', { concurrency: false }, () => {
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'byok-faults-'));
    shim = await buildPkcs11Shim(dir);
    faultFile = path.join(dir, 'p11-fault');
    fleet = await Fleet.start({ dir, proxySeed: Number(process.env.BYOK_FAULT_SEED ?? 20261203), pin: PIN });
    // Production layout: the HSM worker apart from the KMS worker (which runs the workflows).
    [kms, hsm] = await Promise.all([
      fleet.startWorker({ queues: 'kms', name: 'kms-1' }),
      fleet.startWorker({ queues: 'hsm', name: 'hsm-1', env: hsmWorkerEnv() }),
    ]);
  });

  after(async () => {
    printTable();
    await fleet?.close();
    // Kept when a scenario failed, for its logs.
    if (rows.length < SCENARIOS || rows.some((r) => r.completed.split('/')[0] !== r.completed.split('/')[1])) {
      process.stdout.write(`fault suite folder kept for its logs: ${dir}/logs\n`);
    } else if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kill -9 of the KMS worker after CreateKey, before it learns the key id', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('CreateKey', 'response');
    const handle = await startImport('kill-after-createkey');
    await held.arrived;
    const faultAt = Date.now();
    await kms.kill9();
    held.release();
    kms = await fleet.startWorker({ queues: 'kms', name: 'kms-2' });
    const result = await approveAndWait(handle);
    await settle('kill -9 after CreateKey', 'kill -9 (KMS worker)', [{ alias: 'kill-after-createkey', result }], faultAt);
  });

  it('kill -9 of both workers after the HSM key was generated, while GetParametersForImport runs', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('GetParametersForImport', 'request');
    const handle = await startImport('kill-after-hsm-keygen');
    await held.arrived;
    assert.ok(tokenObjects().includes('SECRET_KEY:byok/kill-after-hsm-keygen'), 'the HSM key exists before the kill');
    const faultAt = Date.now();
    await Promise.all([kms.kill9(), hsm.kill9()]);
    held.release();
    [kms, hsm] = await Promise.all([
      fleet.startWorker({ queues: 'kms', name: 'kms-3' }),
      fleet.startWorker({ queues: 'hsm', name: 'hsm-2', env: hsmWorkerEnv() }),
    ]);
    const result = await approveAndWait(handle);
    await settle('kill -9 after HSM key generation', 'kill -9 (both workers)', [{ alias: 'kill-after-hsm-keygen', result }], faultAt);
  });

  it('kill -9 of the HSM worker holding the wrap task', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('GetParametersForImport', 'request');
    const handle = await startImport('kill-during-wrap');
    await held.arrived;
    // Frozen, the worker still takes the wrap task from the server but cannot run or report it.
    hsm.freeze();
    held.release();
    await until('the wrap task to be handed to the frozen HSM worker', 30_000, async () => {
      const { raw } = await handle.describe();
      return (raw.pendingActivities ?? []).some((a) => a.activityType?.name === 'wrapKey' && a.state === ACTIVITY_STARTED);
    });
    const faultAt = Date.now();
    await hsm.kill9();
    hsm = await fleet.startWorker({ queues: 'hsm', name: 'hsm-3', env: hsmWorkerEnv() });
    const result = await approveAndWait(handle);
    await settle('kill -9 during wrap', 'kill -9 (HSM worker)', [{ alias: 'kill-during-wrap', result }], faultAt);
  });

  it('kill -9 of the KMS worker after ImportKeyMaterial, before verification', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('ImportKeyMaterial', 'response');
    const handle = await startImport('kill-after-import');
    const approved = approveAndWait(handle);
    await held.arrived;
    const faultAt = Date.now();
    await kms.kill9();
    held.release();
    kms = await fleet.startWorker({ queues: 'kms', name: 'kms-4' });
    const result = await approved;
    await settle('kill -9 after ImportKeyMaterial', 'kill -9 (KMS worker)', [{ alias: 'kill-after-import', result }], faultAt);
  });

  it('Temporal dev server restarted on its SQLite file while the import awaits approval', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const handle = await startImport('server-restart-approval');
    await until('the import to await approval', 60_000, async () => (await handle.query(statusQuery)).step === 'AWAITING_APPROVAL');
    const faultAt = Date.now();
    await fleet.stopTemporal();
    await fleet.startTemporal();
    const result = await approveAndWait(handle);
    await settle('dev server restart (awaiting approval)', 'server stop + start', [{ alias: 'server-restart-approval', result }], faultAt);
  });

  it('Temporal dev server restarted while an activity runs', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('GetParametersForImport', 'request');
    const handle = await startImport('server-restart-activity');
    await held.arrived;
    const faultAt = Date.now();
    await fleet.stopTemporal();
    await fleet.startTemporal();
    held.release();
    const result = await approveAndWait(handle);
    await settle('dev server restart (activity running)', 'server stop + start', [{ alias: 'server-restart-activity', result }], faultAt);
  });

  it('local-kms stopped during ImportKeyMaterial and restarted on its data', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const held = fleet.proxy!.hold('ImportKeyMaterial', 'request');
    const handle = await startImport('kms-restart');
    const approved = approveAndWait(handle);
    await held.arrived;
    const faultAt = Date.now();
    const attempts = fleet.proxy!.requests.ImportKeyMaterial;
    await fleet.stopKms();
    held.release();
    // Down until the worker has retried against it at least twice.
    await until('retries while local-kms is down', 60_000, () => fleet.proxy!.requests.ImportKeyMaterial >= attempts + 2);
    await fleet.startKms();
    const result = await approved;
    await settle('local-kms restart (during import)', 'local-kms stop + start', [{ alias: 'kms-restart', result }], faultAt);
  });

  it('throttling, HTTP 500s, connection resets and latency from the proxy, four imports at once', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const proxy = fleet.proxy!;
    const before = { ...proxy.injected };
    const faultAt = Date.now();
    proxy.setRates({ throttle: 0.15, serverError: 0.1, reset: 0.1, latency: 0.2, latencyMs: 200 });
    const aliases = ['proxy-faults-1', 'proxy-faults-2', 'proxy-faults-3', 'proxy-faults-4'];
    let results: ImportKeyResult[];
    try {
      results = await Promise.all(aliases.map(async (alias) => approveAndWait(await startImport(alias))));
    } finally {
      proxy.setRates({});
    }
    const counts = Object.entries(proxy.injected)
      .map(([kind, n]) => [kind, n - before[kind as keyof typeof before]] as const)
      .filter(([, n]) => n > 0);
    assert.ok(counts.length >= 3, `several kinds of fault were injected: ${JSON.stringify(counts)}`);
    await settle(
      'proxy faults (seeded)',
      counts.map(([kind, n]) => `${n} ${kind}`).join(', '),
      aliases.map((alias, i) => ({ alias, result: results[i] })),
      faultAt,
    );
  });

  it('connection reset after CreateKey reached KMS: the response is lost, the key exists', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const proxy = fleet.proxy!;
    const resets = proxy.injected.resetAfter;
    proxy.failNext('CreateKey', 'resetAfter');
    const handle = await startImport('reset-after-createkey');
    const faultAt = Date.now();
    const result = await approveAndWait(handle);
    assert.equal(proxy.injected.resetAfter, resets + 1);
    await settle('reset after CreateKey', '1 resetAfter (CreateKey)', [{ alias: 'reset-after-createkey', result }], faultAt);
  });

  it('HSM sessions closed under the worker in the middle of the wrap', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const faults = shimFaults();
    await writeFile(faultFile, 'close-sessions C_WrapKey');
    const handle = await startImport('hsm-sessions-closed');
    const faultAt = Date.now();
    const result = await approveAndWait(handle);
    assert.equal(shimFaults(), faults + 1, 'the shim closed the sessions once');
    await settle('HSM sessions closed during wrap', 'C_CloseAllSessions before C_WrapKey', [{ alias: 'hsm-sessions-closed', result }], faultAt);
  });

  it('HSM login lost while the worker was idle', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const faults = shimFaults();
    await writeFile(faultFile, 'logout C_GetSessionInfo');
    const handle = await startImport('hsm-logged-out');
    const faultAt = Date.now();
    const result = await approveAndWait(handle);
    assert.equal(shimFaults(), faults + 1, 'the shim logged the session out once');
    await settle('HSM login lost', 'C_Logout before the next activity', [{ alias: 'hsm-logged-out', result }], faultAt);
  });
});
