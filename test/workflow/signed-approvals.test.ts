// Signed decisions in the import workflow on the time-skipping server: the pure-JS verifier runs in
// the workflow sandbox, and forged, replayed, expired and unsigned decisions are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type WorkflowHandle } from '@temporalio/client';
import { approvalQuery, approveSignal, approveUpdate, rejectUpdate, type DecisionInput } from '../../workflows/decisions';
import { importKey, statusQuery, type ImportKeyInput } from '../../workflows/import-key';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { approver, keysOf, signStatement, statementFor, type Approver } from '../signing-fixture';
import { fakes } from './fakes';
import { harnessForFile, refusalOf } from './harness';

const t = harnessForFile();
const { withWorkers } = t;
let seq = 0;

const alice = approver('alice');
const bob = approver('bob');
const carol = approver('carol');

const request = (over: Partial<ImportKeyInput> = {}): ImportKeyInput => ({
  alias: 'payments',
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  requester: 'rita',
  approvers: ['alice', 'bob', 'carol'],
  requiredApprovals: 2,
  approverKeys: keysOf([alice, bob, carol]),
  ...over,
});

async function awaitingApproval(input: ImportKeyInput): Promise<WorkflowHandle<typeof importKey>> {
  const h = await t.env.client.workflow.start(importKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `signed-${++seq}`, args: [input] });
  for (let tries = 0; tries < 500; tries++) {
    if ((await h.query(approvalQuery)).decidable) return h;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('never became decidable');
}

/** A decision by `by`, signed as `byok approve` signs it; `over` tampers with the statement. */
async function signedDecision(h: WorkflowHandle, by: Approver, over: Parameters<typeof statementFor>[3] = {}, key = by.privateKey): Promise<DecisionInput> {
  const { subject } = await h.query(approvalQuery);
  // The test server's clock, which skips ahead: workflow time, not ours.
  const statement = statementFor(by, h.workflowId, subject!, over, await t.env.currentTimeMs());
  return { approver: by.name, comment: statement.comment, signed: signStatement(by, statement, key) };
}

describe('signed decisions', () => {
  it('imports after two signed approvals, and the result keeps each signed statement', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      assert.equal((await h.query(statusQuery)).signedApprovals, true);
      await h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice)] });
      await h.executeUpdate(approveUpdate, { args: [await signedDecision(h, bob, { comment: 'CHG-7' })] });
      const result = await h.result();
      assert.equal(result.outcome, 'IMPORTED');
      assert.deepEqual(result.approvals.map((a) => [a.approver, a.signed?.statement.approver, a.signed?.statement.workflowId]), [
        ['alice', 'alice', h.workflowId],
        ['bob', 'bob', h.workflowId],
      ]);
      assert.equal(result.approvals[1].comment, 'CHG-7');
      assert.deepEqual(result.approvals[0].signed?.statement.subject, result.approvals[0].subject);
      assert.match(result.approvals[0].signed!.signature, /^[0-9a-f]{128}$/);
    });
  });

  it('refuses unsigned, forged, replayed, tampered and expired decisions, and counts none of them', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      // alice's valid approval of another request, kept to be sent to this one. That request ends
      // first: while it waits, the test server could skip time to its deadline.
      const other = await awaitingApproval(request());
      const replayed = await signedDecision(other, alice);
      await other.executeUpdate(rejectUpdate, { args: [await signedDecision(other, carol, { decision: 'REJECT' })] });
      assert.equal((await other.result()).outcome, 'REJECTED');

      const h = await awaitingApproval(request({ requiredApprovals: 1 }));
      const now = await t.env.currentTimeMs();
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] })), /requires signed decisions: no signed statement/);
      assert.match(
        await refusalOf(h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice, {}, carol.privateKey)] })),
        /signature does not verify with the public key configured for "alice"/,
      );
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [replayed] })), new RegExp(`for workflow "${other.workflowId}", not "${h.workflowId}"`));
      const { subject } = await h.query(approvalQuery);
      assert.match(
        await refusalOf(h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice, { subject: { ...subject!, hsmKeyId: 'ffff' } })] })),
        /about something else: hsmKeyId is "0a0b0c" here but "ffff" in the statement/,
      );
      assert.match(
        await refusalOf(h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice, { signedAt: new Date(now - 3_600_000).toISOString(), expiresAt: new Date(now - 60_000).toISOString() })] })),
        /signed statement expired at/,
      );
      assert.match(
        await refusalOf(h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice, { signedAt: new Date(now + 3_600_000).toISOString(), expiresAt: new Date(now + 3_700_000).toISOString() })] })),
        /not valid yet/,
      );
      assert.match(await refusalOf(h.executeUpdate(rejectUpdate, { args: [await signedDecision(h, alice)] })), /decides "APPROVE", but this is REJECT/);
      // A signal cannot answer; a refused one must not count: had one counted (one approval
      // ends this request), the update below would be refused as already decided.
      await h.signal(approveSignal, { approver: 'alice' });
      await h.signal(approveSignal, replayed);
      // An update, not a signal: the test server may skip time while a signal waits, past the statement's expiry.
      const view = await h.executeUpdate(approveUpdate, { args: [await signedDecision(h, alice)] });
      assert.deepEqual(view.approvals.map((a) => a.approver), ['alice']);
      assert.equal((await h.result()).outcome, 'IMPORTED');
    });
  });

  it('accepts unsigned decisions only when the request turned signatures off, and says so', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ approverKeys: undefined, unsignedApprovals: true, requiredApprovals: 1 }));
      assert.equal((await h.query(statusQuery)).signedApprovals, false);
      assert.equal((await h.query(approvalQuery)).signedDecisions, false);
      await h.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      assert.equal((await h.result()).outcome, 'IMPORTED');
    });
  });
});
