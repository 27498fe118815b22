// Restore, reimport, revoke and the expiry guardian on the time-skipping server, with the fake
// activities of ./fakes (whose KMS key changes state as KMS would).
//
// A query that is in flight while its run continues as new is never answered by the time-skipping
// server: it hangs until the connection drops. The TS client pings every 30 s, the server answers
// the third ping of a connection with nothing else on it by GOAWAY "too_many_pings" (~90 s), the
// client retries the query on a new connection and doubles its ping interval, so each further
// stall lasts longer. The guardian tests therefore wait for a new run with DescribeWorkflow (not a
// query) and then query that run by its id; and each test has a test server of its own.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import { approvalQuery, approveUpdate, rejectUpdate } from '../../workflows/decisions';
import { guardKey, guardStatusQuery, type GuardKeyInput, type GuardStatus } from '../../workflows/guard-key';
import { importKey, statusQuery, type ImportKeyInput } from '../../workflows/import-key';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { revokeKey, revokeStatusQuery, type RevokeKeyInput } from '../../workflows/revoke-key';
import { ByokOperation, ByokState } from '../../workflows/search-attributes';
import { approver, keysOf, signStatement, statementFor } from '../signing-fixture';
import { fakes, type Fakes } from './fakes';
import { approveAs, failureOf, harness, refusalOf, until, type Harness } from './harness';

const DAY = 24 * 3_600_000;
let seq = 0;

/** A fresh test server for one test, torn down after it (see the note at the top). */
const onOwnServer = (fn: (t: Harness) => Promise<void>) => async () => {
  const t = await harness();
  try {
    await fn(t);
  } finally {
    await t.teardown();
  }
};

// Signed decisions are the shared seam's (test/workflow/signed-approvals.test.ts); one revoke test signs.
const approvers = { requester: 'rita', approvers: ['alice', 'bob', 'carol'], requiredApprovals: 2, unsignedApprovals: true } as const;
const approvalsOf = () => ({ ...approvers, approvers: [...approvers.approvers] });

function startImport(t: Harness, input: ImportKeyInput) {
  return t.env.client.workflow.start(importKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `lifecycle-${++seq}`, args: [input] });
}

describe('restore and reimport', () => {
  it(
    'restore puts the recorded HSM key back into a key without material, bound to operation "restore"',
    onOwnServer(async (t) => {
      const f = fakes();
      Object.assign(f.key, { keyState: 'PendingImport', hsmKey: { label: 'vault/payments-2026', keyId: '0a0b0c', kcv: 'abcdef' } });
      await t.withWorkers(f, async () => {
        const h = await startImport(t, { operation: 'restore', alias: 'payments', wrappingAlgorithm: 'RSAES_OAEP_SHA_1', ...approvalsOf() });
        await until(() => h.query(approvalQuery), (v) => v.decidable, 'decidable');
        assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'rita' }] })), /"rita" requested this restore and cannot decide on it/);
        const view = await h.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
        assert.equal(view.subject?.operation, 'restore');
        assert.equal(view.subject?.kcv, 'abcdef');
        const { searchAttributes } = await h.describe();
        assert.deepEqual(searchAttributes[ByokOperation.name], ['restore']);
        await approveAs(h, 'bob');
        const result = await h.result();
        assert.equal(result.outcome, 'IMPORTED');
        assert.equal(result.operation, 'restore');
        assert.equal(result.keyArn, f.key.keyArn);
        assert.deepEqual(f.calls.ensureHsmKey, [{ label: 'vault/payments-2026', generate: false }], 'the label recorded on the KMS key');
        assert.equal((f.calls.ensureKmsKey[0] as { createIfMissing: boolean }).createIfMissing, false);
        assert.deepEqual(f.calls.recordHsmKey, [{ keyId: 'key-1', hsmKey: { label: 'vault/payments-2026', keyId: '0a0b0c', kcv: 'abcdef' } }]);
        assert.equal(f.key.keyState, 'Enabled');
      });
    }),
  );

  it(
    'restore refuses a key that still holds its material, and an HSM key whose KCV differs from the recorded one',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const enabled = await failureOf((await startImport(t, { operation: 'restore', alias: 'payments', ...approvalsOf() })).result());
        assert.equal(enabled.type, 'KeyStateMismatch');
        assert.match(enabled.message, /the key is Enabled and holds its material; nothing to restore/);
        f.key.keyState = 'Disabled';
        const disabled = await failureOf((await startImport(t, { operation: 'restore', alias: 'payments', ...approvalsOf() })).result());
        assert.match(disabled.message, /the key is Disabled; restore expects PendingImport \(material deleted or expired\)\. If it holds its material, enable it/);
        assert.equal(f.calls.ensureHsmKey, undefined, 'refused before touching the HSM');
        assert.equal(f.calls.getImportParameters, undefined);

        Object.assign(f.key, { keyState: 'PendingImport', hsmKey: { label: 'byok/payments', keyId: '0a0b0c', kcv: '123456' } });
        const mismatch = await failureOf((await startImport(t, { operation: 'restore', alias: 'payments', ...approvalsOf() })).result());
        assert.equal(mismatch.type, 'HsmKeyMismatch');
        assert.match(mismatch.message, /HSM key byok\/payments has KCV abcdef, the KMS key records 123456/);
        assert.equal(f.calls.importKeyMaterial, undefined);
      });
    }),
  );

  it(
    'an import records its HSM key on the KMS key, and completes when the key cannot be tagged',
    onOwnServer(async (t) => {
      const f = fakes();
      f.failures.recordHsmKey = [() => ApplicationFailure.nonRetryable('TagResource denied', 'KmsAccessDenied')];
      await t.withWorkers(f, async () => {
        const h = await startImport(t, { alias: 'payments', ...approvalsOf() });
        await approveAs(h, 'alice', 'bob');
        assert.equal((await h.result()).outcome, 'IMPORTED');
        assert.deepEqual(f.calls.recordHsmKey, [{ keyId: 'key-1', hsmKey: { label: 'byok/payments', keyId: '0a0b0c', kcv: 'abcdef' } }]);
        const tagged = await startImport(t, { alias: 'payments', ...approvalsOf() });
        await approveAs(tagged, 'alice', 'bob');
        assert.equal((await tagged.result()).outcome, 'IMPORTED');
        assert.equal(f.calls.recordHsmKey.length, 2);
      });
    }),
  );

  it(
    'reimport imports the same material with the new ValidTo into an Enabled key, and refuses a key without material',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const validTo = new Date(Math.floor(((await t.env.currentTimeMs()) + 200 * DAY) / 1000) * 1000).toISOString();
        const h = await startImport(t, { operation: 'reimport', alias: 'payments', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo, ...approvalsOf() });
        await until(() => h.query(approvalQuery), (v) => v.decidable, 'decidable');
        assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'rita' }] })), /"rita" requested this re-import/);
        await approveAs(h, 'alice', 'bob');
        const result = await h.result();
        assert.equal(result.operation, 'reimport');
        assert.equal(f.key.validTo, validTo);
        assert.equal((f.calls.importKeyMaterial[0] as { validTo: string }).validTo, validTo);

        f.key.keyState = 'PendingImport';
        const failure = await failureOf((await startImport(t, { operation: 'reimport', alias: 'payments', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo, ...approvalsOf() })).result());
        assert.equal(failure.type, 'KeyStateMismatch');
        assert.match(failure.message, /no material \(deleted or expired\); restore it instead/);
      });
    }),
  );
});

describe('revokeKey', () => {
  const revoke = (t: Harness, over: Partial<RevokeKeyInput> = {}) =>
    t.env.client.workflow.start(revokeKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `revoke-${++seq}`, args: [{ alias: 'payments', ...approvalsOf(), ...over }] });

  it(
    'deletes nothing before the quorum, then disables the key and deletes its material; the HSM key stays named',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const h = await revoke(t, { disableKey: true });
        await until(() => h.query(approvalQuery), (v) => v.decidable, 'decidable');
        assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'rita' }] })), /"rita" requested this revocation and cannot decide on it/);
        const view = await h.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
        assert.deepEqual(view.subject, { operation: 'revoke', kmsKeyArn: f.key.keyArn, hsmKeyId: '0a0b0c', kcv: 'abcdef', disableKey: true });
        assert.equal((await h.query(revokeStatusQuery)).step, 'AWAITING_APPROVAL');
        const { searchAttributes } = await h.describe();
        assert.deepEqual(searchAttributes[ByokOperation.name], ['revoke']);
        assert.deepEqual(searchAttributes[ByokState.name], ['AWAITING_APPROVAL']);
        assert.equal(f.calls.deleteImportedKeyMaterial, undefined, 'nothing deleted before the quorum');
        assert.equal(f.calls.disableKey, undefined);
        await h.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
        const result = await h.result();
        assert.equal(result.outcome, 'REVOKED');
        assert.equal(result.disabled, true);
        assert.equal(result.keyState, 'PendingImport');
        assert.deepEqual(result.hsmKey, { label: 'byok/payments', keyId: '0a0b0c', kcv: 'abcdef' });
        assert.deepEqual(f.calls.disableKey, [{ keyId: 'key-1' }]);
        assert.deepEqual(f.calls.deleteImportedKeyMaterial, [{ keyId: 'key-1' }]);
        assert.deepEqual(Object.keys(f.calls).filter((c) => c in f.hsm), [], 'the HSM is not touched');
        assert.deepEqual((await h.describe()).searchAttributes[ByokState.name], ['DONE']);
      });
    }),
  );

  it(
    'a rejection revokes nothing; a key without material is refused',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const h = await revoke(t);
        await until(() => h.query(approvalQuery), (v) => v.decidable, 'decidable');
        await h.executeUpdate(rejectUpdate, { args: [{ approver: 'bob', comment: 'not this one' }] });
        assert.equal((await h.result()).outcome, 'REJECTED');
        assert.equal(f.calls.deleteImportedKeyMaterial, undefined);
        f.key.keyState = 'PendingImport';
        const failure = await failureOf((await revoke(t)).result());
        assert.equal(failure.type, 'KeyStateMismatch');
        assert.match(failure.message, /is PendingImport; revoke expects a key that holds its material/);
      });
    }),
  );

  it(
    'is signed by default: an unsigned decision is refused, a signed one counts',
    onOwnServer(async (t) => {
      const f = fakes();
      const alice = approver('alice');
      const bob = approver('bob');
      await t.withWorkers(f, async () => {
        const h = await revoke(t, { unsignedApprovals: undefined, approvers: ['alice', 'bob'], approverKeys: keysOf([alice, bob]), requiredApprovals: 1 });
        const view = await until(() => h.query(approvalQuery), (v) => v.decidable, 'decidable');
        assert.equal(view.signedDecisions, true);
        assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] })), /signed/);
        const statement = statementFor(alice, h.workflowId, view.subject!, {}, await t.env.currentTimeMs());
        await h.executeUpdate(approveUpdate, { args: [{ approver: 'alice', signed: signStatement(alice, statement) }] });
        assert.equal((await h.result()).outcome, 'REVOKED');
      });
    }),
  );
});

describe('guardKey', () => {
  async function startGuard(t: Harness, f: Fakes, validInDays: number, over: Partial<GuardKeyInput> = {}) {
    const now = await t.env.currentTimeMs();
    Object.assign(f.key, { expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: new Date(Math.floor((now + validInDays * DAY) / 1000) * 1000).toISOString() });
    return t.env.client.workflow.start(guardKey, {
      taskQueue: KMS_TASK_QUEUE,
      workflowId: `guard-${++seq}`,
      args: [{ alias: 'payments', leadTime: '7d', wrappingAlgorithm: 'RSAES_OAEP_SHA_1', ...approvalsOf(), ...over }],
    });
  }
  const status = (h: WorkflowHandle) => h.query(guardStatusQuery);
  /** Polls the run `h` names (a handle with a run id: never one that continues as new meanwhile, see the top). */
  const reaches = (h: WorkflowHandle, what: string, ok: (s: GuardStatus) => boolean) => until(() => status(h), ok, what);
  /** The run after `runId`, once the guardian continued as new, found without a query. */
  async function nextRun(t: Harness, h: WorkflowHandle, runId: string): Promise<{ run: WorkflowHandle<typeof guardKey>; runId: string }> {
    const next = await until(() => h.describe(), (d) => d.runId !== runId && d.status.name === 'RUNNING', `a run after ${runId}`);
    return { run: t.env.client.workflow.getHandle(h.workflowId, next.runId), runId: next.runId };
  }
  const byokState = async (h: WorkflowHandle) => (await h.describe()).searchAttributes[ByokState.name]?.[0];
  /** Ends the guardian and its running re-import, so that nothing is left running. */
  async function endGuard(t: Harness, h: WorkflowHandle) {
    const { reimportWorkflowId } = await status(h);
    if (reimportWorkflowId) await t.env.client.workflow.getHandle(reimportWorkflowId).terminate('test done').catch(() => undefined);
    await h.terminate('test done');
  }

  it(
    'sleeps until ValidTo minus the lead time, re-imports then, and keeps its state across continueAsNew',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const h = await startGuard(t, f, 300);
        const firstValidTo = f.key.validTo!;
        const wakeAt = Date.parse(firstValidTo) - 7 * DAY;
        const sleeping = await reaches(h, 'sleeping', (s) => s.phase === 'SLEEPING');
        assert.equal(sleeping.nextWake, new Date(wakeAt).toISOString());
        assert.equal(await byokState(h), 'GUARDING');

        // To one hour before the re-import time: still asleep, nothing imported.
        await t.env.sleep(wakeAt - 3_600_000 - (await t.env.currentTimeMs()));
        assert.equal((await status(h)).phase, 'SLEEPING', 'nothing before the lead time');
        assert.equal(f.calls.importKeyMaterial, undefined);

        await t.env.sleep('2h');
        const reimporting = await reaches(h, 'a re-import waiting for approvals', (s) => s.phase === 'REIMPORTING' && !!s.reimportWorkflowId);
        const child = t.env.client.workflow.getHandle<typeof importKey>(reimporting.reimportWorkflowId!);
        const view = await until(() => child.query(approvalQuery), (v) => v.decidable, 'the re-import decidable');
        assert.equal((await child.query(statusQuery)).operation, 'reimport');
        assert.equal(view.subject?.operation, 'reimport');
        const newValidTo = Date.parse(view.subject!.validTo!);
        assert.ok(Math.abs(newValidTo - (wakeAt + 365 * DAY)) < 2 * 3_600_000, `new ValidTo ${new Date(newValidTo).toISOString()} is 365 days after the wake-up`);
        await approveAs(child, 'alice', 'bob');

        const { run: run2, runId: run2Id } = await nextRun(t, h, h.firstExecutionRunId);
        const after1 = await reaches(run2, 'the first re-import counted in a new run', (s) => s.reimports === 1 && s.phase === 'SLEEPING');
        assert.equal(after1.runs, 2);
        assert.equal(after1.validTo, f.key.validTo);
        assert.equal(after1.lastReimport?.workflowId, reimporting.reimportWorkflowId);
        assert.equal(after1.nextWake, new Date(Date.parse(f.key.validTo!) - 7 * DAY).toISOString());
        assert.deepEqual((f.calls.importKeyMaterial as Array<{ validTo: string }>).map((c) => c.validTo), [f.key.validTo]);

        // The second year: the state carried over numbers the next request and counts on.
        await t.env.sleep(Date.parse(after1.nextWake!) + 3_600_000 - (await t.env.currentTimeMs()));
        const second = await reaches(run2, 'the second re-import', (s) => s.phase === 'REIMPORTING' && s.reimportWorkflowId !== reimporting.reimportWorkflowId);
        assert.match(second.reimportWorkflowId!, /-reimport-2$/);
        const child2 = t.env.client.workflow.getHandle(second.reimportWorkflowId!);
        await approveAs(child2, 'carol', 'alice');
        const { run: run3 } = await nextRun(t, h, run2Id);
        const after2 = await reaches(run3, 'two re-imports over three runs', (s) => s.reimports === 2 && s.phase === 'SLEEPING');
        assert.equal(after2.runs, 3);
        assert.equal(after2.alerts.length, 0);
        await endGuard(t, h);
      });
    }),
  );

  it(
    'raises MATERIAL_EXPIRED, visible as ByokState ALERT, when ValidTo passes before a re-import is approved',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const h = await startGuard(t, f, 10);
        const validTo = f.key.validTo!;
        await reaches(h, 'sleeping', (s) => s.phase === 'SLEEPING');
        await t.env.sleep('3d');
        const reimporting = await reaches(h, 'a re-import waiting for approvals', (s) => s.phase === 'REIMPORTING' && !!s.reimportWorkflowId);
        const child = t.env.client.workflow.getHandle(reimporting.reimportWorkflowId!);
        await until(() => child.query(approvalQuery), (v) => v.decidable, 'the re-import decidable');
        await child.executeUpdate(rejectUpdate, { args: [{ approver: 'bob' }] });
        const rejected = await reaches(h, 'an alert for the rejected re-import', (s) => s.alert?.kind === 'REIMPORT_NOT_DONE');
        assert.equal(rejected.phase, 'ALERT');

        await t.env.sleep('8d');
        const expired = await reaches(h, 'the missed expiry', (s) => s.alert?.kind === 'MATERIAL_EXPIRED');
        assert.match(expired.alert!.message, new RegExp(`expired at ${validTo}`));
        assert.equal(await byokState(h), 'ALERT');
        assert.equal(f.calls.importKeyMaterial, undefined, 'nothing was approved, nothing imported');
        await endGuard(t, h);
      });
    }),
  );

  it(
    'raises MATERIAL_MISSING for a key that lost its material before its expiry, and recovers once it is restored',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        const h = await startGuard(t, f, 100, { recheckInterval: '1h' });
        await reaches(h, 'sleeping', (s) => s.phase === 'SLEEPING');
        const validTo = f.key.validTo;
        f.key.keyState = 'PendingImport';
        await t.env.sleep('93d');
        const missing = await reaches(h, 'the missing material', (s) => s.alert?.kind === 'MATERIAL_MISSING');
        assert.equal(missing.phase, 'ALERT');
        assert.equal(await byokState(h), 'ALERT');
        assert.equal(f.calls.importKeyMaterial, undefined, 'a revoked key is never re-imported by the guardian');
        Object.assign(f.key, { keyState: 'Enabled', validTo, expirationModel: 'KEY_MATERIAL_EXPIRES' });
        await t.env.sleep('2h');
        const back = await reaches(h, 'the alert resolved', (s) => s.alert === undefined && s.phase === 'REIMPORTING');
        assert.equal(back.alerts.at(-1)?.kind, 'MATERIAL_MISSING', 'kept in the alert history');
        await endGuard(t, h);
      });
    }),
  );

  it(
    'ends at once for material that does not expire, and refuses a lead time longer than the validity',
    onOwnServer(async (t) => {
      const f = fakes();
      await t.withWorkers(f, async () => {
        Object.assign(f.key, { expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
        const h = await t.env.client.workflow.start(guardKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `guard-${++seq}`, args: [{ alias: 'payments', ...approvalsOf() }] });
        assert.equal((await h.result()).outcome, 'NOT_EXPIRING');
        const bad = await t.env.client.workflow.start(guardKey, {
          taskQueue: KMS_TASK_QUEUE,
          workflowId: `guard-${++seq}`,
          args: [{ alias: 'payments', leadTime: '120d', validity: '100d', ...approvalsOf() }],
        });
        const failure = await failureOf(bad.result());
        assert.equal(failure.type, 'InvalidInput');
        assert.match(failure.message, /invalid validity: must be longer than leadTime/);
      });
    }),
  );
});
