// The import workflow against the time-skipping test server, with fake activities.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { workflowMetadataQuery } from '@temporalio/workflow';
import { approveSignal, approveUpdate, rejectUpdate } from '../../workflows/decisions';
import { importKey, statusQuery, type ImportKeyInput, type ImportStep } from '../../workflows/import-key';
import {
  ByokAlias,
  ByokApprovalDeadline,
  ByokApprovalsNeeded,
  ByokKmsKeyId,
  ByokOperation,
  ByokPendingApprovers,
  ByokRequester,
  ByokState,
  ByokTokenValidTo,
} from '../../workflows/search-attributes';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { failureOf, harnessForFile, refusalOf } from './harness';
import { fakes, tokenExpired, tokenInvalid } from './fakes';

let seq = 0;

const t = harnessForFile();
const { withWorkers } = t;

const request = (over: Partial<ImportKeyInput> = {}): ImportKeyInput => ({
  alias: 'payments',
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  requester: 'rita',
  approvers: ['alice', 'bob', 'carol'],
  requiredApprovals: 2,
  // The gate's rules; signed decisions have their own tests (signed-approvals.test.ts).
  unsignedApprovals: true,
  ...over,
});

function start(input: ImportKeyInput): Promise<WorkflowHandle<typeof importKey>> {
  return t.env.client.workflow.start(importKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `import-test-${++seq}`, args: [input] });
}

/** Polls the status query until the workflow reaches `step` (approvals are refused before it). */
async function reached(h: WorkflowHandle, step: ImportStep): Promise<void> {
  for (let tries = 0; tries < 500; tries++) {
    if ((await h.query(statusQuery)).step === step) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`workflow never reached ${step}`);
}

/** Started and waiting for approvals. */
async function awaitingApproval(input: ImportKeyInput): Promise<WorkflowHandle<typeof importKey>> {
  const h = await start(input);
  await reached(h, 'AWAITING_APPROVAL');
  return h;
}

const approve = (h: WorkflowHandle, approver: string) => h.executeUpdate(approveUpdate, { args: [{ approver }] });

describe('importKey workflow', () => {
  it('imports after two of three approvals and reports what was imported', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      const afterFirst = await approve(h, 'alice');
      assert.equal(afterFirst.state, 'PENDING');
      assert.equal(afterFirst.approvalsNeeded, 1);
      assert.equal(f.calls.importKeyMaterial, undefined, 'nothing imported before the quorum');
      await approve(h, 'carol');
      const result = await h.result();

      assert.equal(result.outcome, 'IMPORTED');
      assert.equal(result.alias, 'alias/payments');
      assert.equal(result.keyArn, 'arn:aws:kms:us-east-1:111122223333:key/key-1');
      assert.deepEqual(result.hsmKey, { label: 'byok/payments', keyId: '0a0b0c', kcv: 'abcdef' });
      assert.deepEqual(result.approvals.map((a) => a.approver), ['alice', 'carol']);
      assert.deepEqual(result.approvals[0].subject, {
        kmsKeyArn: result.keyArn,
        hsmKeyId: '0a0b0c',
        kcv: 'abcdef',
        wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
        expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      });
      assert.equal(result.tokenRefreshes, 0);
      assert.equal(result.verification?.roundTrip, true);
      assert.deepEqual(f.calls.ensureKmsKey, [
        { alias: 'alias/payments', description: 'BYOK key alias/payments, material from the HSM', createIfMissing: true, requestId: h.workflowId },
      ]);
      assert.deepEqual(f.calls.importKeyMaterial, [
        {
          keyId: 'key-1',
          importToken: 'token-1',
          encryptedKeyMaterial: 'wrapped-under-cHVibGlj',
          expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
        },
      ]);
      assert.equal((await h.query(statusQuery)).step, 'DONE');
    });
  });

  it('refuses the requester, unknown approvers and duplicate approvals, and counts each approver once', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      assert.match(await refusalOf(approve(h, 'rita')), /"rita" requested this import and cannot decide on it/);
      assert.match(await refusalOf(approve(h, 'mallory')), /"mallory" is not one of the approvers \(alice, bob, carol\)/);
      await approve(h, 'alice');
      assert.match(await refusalOf(approve(h, 'alice')), /"alice" already approved at/);
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'carol', comment: 7 as never }] })), /comment must be a string/);
      // Signals cannot answer. Refused ones (a second approval, the requester, malformed) must not
      // count: had any counted, the quorum of two would be met before bob's signal below.
      await h.signal(approveSignal, { approver: 'alice' });
      await h.signal(approveSignal, { approver: 'rita' });
      await h.signal(approveSignal, {} as never);
      await h.signal(approveSignal, { approver: 'carol', comment: 'x'.repeat(1001) });
      assert.equal(f.calls.importKeyMaterial, undefined);

      await h.signal(approveSignal, { approver: 'bob' });
      const result = await h.result();
      assert.equal(result.outcome, 'IMPORTED');
      assert.deepEqual(result.approvals.map((a) => a.approver), ['alice', 'bob']);
      await assert.rejects(approve(h, 'carol'), /not found|already completed/);
    });
  });

  it('refuses decisions until the keys to decide on exist', async () => {
    const f = fakes();
    let release!: () => void;
    f.holds.ensureHsmKey = new Promise((r) => (release = r));
    await withWorkers(f, async () => {
      const h = await start(request());
      await reached(h, 'PREPARING_KEYS');
      assert.match(await refusalOf(approve(h, 'alice')), /nothing to decide yet: the import is still preparing the keys \(PREPARING_KEYS\)/);
      release();
      await reached(h, 'AWAITING_APPROVAL');
      const status = await approve(h, 'alice');
      assert.equal(status.approvals[0].subject.kcv, 'abcdef');
      await approve(h, 'bob');
      assert.equal((await h.result()).outcome, 'IMPORTED');
    });
  });

  it('accepts exactly one of a final approval and a rejection sent at once', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      await approve(h, 'alice');
      const [approval, rejection] = await Promise.allSettled([
        approve(h, 'bob'),
        h.executeUpdate(rejectUpdate, { args: [{ approver: 'carol' }] }),
      ]);
      assert.equal([approval, rejection].filter((r) => r.status === 'fulfilled').length, 1, 'exactly one decision counts');
      const loser = approval.status === 'rejected' ? approval : (rejection as PromiseRejectedResult);
      assert.match(((loser.reason as WorkflowUpdateFailedError).cause as Error).message, /already decided/);
      const result = await h.result();
      assert.equal(result.outcome, approval.status === 'fulfilled' ? 'IMPORTED' : 'REJECTED');
      assert.equal(f.calls.importKeyMaterial?.length ?? 0, result.outcome === 'IMPORTED' ? 1 : 0);
    });
  });

  it('ends as REJECTED on a rejection and imports nothing', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      await approve(h, 'alice');
      await h.executeUpdate(rejectUpdate, { args: [{ approver: 'bob', comment: 'wrong account' }] });
      const result = await h.result();
      assert.equal(result.outcome, 'REJECTED');
      assert.equal(result.rejection?.approver, 'bob');
      assert.equal(result.rejection?.comment, 'wrong account');
      assert.equal(f.calls.importKeyMaterial, undefined);
      assert.equal(f.calls.verifyKey, undefined);
    });
  });

  it('ends as APPROVAL_EXPIRED when the deadline passes and imports nothing', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ approvalTimeout: '2h' }));
      await approve(h, 'alice');
      const result = await h.result(); // the test server skips the two hours
      assert.equal(result.outcome, 'APPROVAL_EXPIRED');
      assert.equal(result.approvals.length, 1);
      assert.equal(f.calls.importKeyMaterial, undefined);
      assert.equal((await h.query(statusQuery)).step, 'APPROVAL_EXPIRED');
    });
  });

  it('fetches new parameters and re-wraps when approval comes after the token expired (25 h)', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      await approve(h, 'alice');
      const { importToken } = await h.query(statusQuery);
      assert.equal(Date.parse(importToken!.refreshAfter), Date.parse(importToken!.parametersValidTo) - 3_600_000);
      await t.env.sleep('25h');
      await approve(h, 'bob');
      const result = await h.result();
      assert.equal(result.outcome, 'IMPORTED');
      assert.equal(result.tokenRefreshes, 1);
      assert.equal(f.calls.getImportParameters.length, 2);
      assert.equal(f.calls.wrapKey.length, 2);
      assert.equal(f.calls.importKeyMaterial.length, 1);
      assert.equal((f.calls.importKeyMaterial[0] as { importToken: string }).importToken, 'token-2');
    });
  });

  it('refreshes the token when ImportKeyMaterial answers that it expired or is invalid, then succeeds', async () => {
    const f = fakes();
    f.failures.importKeyMaterial = [tokenExpired, tokenInvalid];
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ requiredApprovals: 1 }));
      await approve(h, 'alice');
      const result = await h.result();
      assert.equal(result.outcome, 'IMPORTED');
      assert.equal(result.tokenRefreshes, 2);
      assert.deepEqual(
        f.calls.importKeyMaterial.map((c) => (c as { importToken: string }).importToken),
        ['token-1', 'token-2', 'token-3'],
      );
      assert.equal(f.calls.wrapKey.length, 3, 'each new token comes with a new wrap');
    });
  });

  it('fails with TokenRefreshLimit, importing nothing, when the token expired and no refresh is allowed', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ requiredApprovals: 1, maxTokenRefreshes: 0 }));
      await t.env.sleep('25h');
      await approve(h, 'alice');
      const failure = await failureOf(h.result());
      assert.equal(failure.type, 'TokenRefreshLimit');
      assert.equal(f.calls.importKeyMaterial, undefined);
    });
  });

  it('publishes its state, who may still approve and the token validity as search attributes and current details', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request());
      const attributes = async () => (await h.describe()).typedSearchAttributes;
      const currentDetails = async () => (await h.query(workflowMetadataQuery)).currentDetails ?? '';
      let sa = await attributes();
      assert.equal(sa.get(ByokOperation), 'import');
      assert.equal(sa.get(ByokState), 'AWAITING_APPROVAL');
      assert.equal(sa.get(ByokAlias), 'alias/payments');
      assert.equal(sa.get(ByokRequester), 'rita');
      assert.equal(sa.get(ByokKmsKeyId), 'key-1');
      assert.equal(sa.get(ByokApprovalsNeeded), 2);
      assert.deepEqual(sa.get(ByokPendingApprovers), ['alice', 'bob', 'carol']);
      const { importToken, approvalDeadline } = await h.query(statusQuery);
      assert.equal(sa.get(ByokTokenValidTo)?.toISOString(), importToken?.parametersValidTo);
      assert.equal(sa.get(ByokApprovalDeadline)?.toISOString(), approvalDeadline);
      assert.match(await currentDetails(), /^\*\*AWAITING_APPROVAL\*\*: waiting for approvals[\s\S]*2 more approval\(s\) needed; may still decide: alice, bob, carol/);

      await approve(h, 'alice');
      sa = await attributes();
      assert.equal(sa.get(ByokApprovalsNeeded), 1);
      assert.deepEqual(sa.get(ByokPendingApprovers), ['bob', 'carol']);

      await approve(h, 'carol');
      await h.result();
      sa = await attributes();
      assert.equal(sa.get(ByokState), 'DONE');
      assert.equal(sa.get(ByokApprovalsNeeded), 0);
      assert.equal(sa.get(ByokPendingApprovers), undefined, 'nobody is asked once it is decided');
      assert.match(await currentDetails(), /^\*\*DONE\*\*: imported into arn:aws:kms:/);
    });
  });

  it('gives up with TokenRefreshLimit when the token keeps being refused', async () => {
    const f = fakes();
    f.failures.importKeyMaterial = [tokenExpired, tokenExpired, tokenExpired];
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ requiredApprovals: 1, maxTokenRefreshes: 2 }));
      await approve(h, 'alice');
      const failure = await failureOf(h.result());
      assert.equal(failure.type, 'TokenRefreshLimit');
      assert.match(failure.message, /limit of 2 token refreshes/);
      assert.equal(f.calls.importKeyMaterial.length, 3);
    });
  });

  it('retries transient activity failures with backoff', async () => {
    const f = fakes();
    f.failures.ensureKmsKey = [() => new Error('ThrottlingException: rate exceeded'), () => new Error('socket hang up')];
    f.failures.wrapKey = [() => new Error('CKR_SESSION_HANDLE_INVALID')];
    await withWorkers(f, async () => {
      const h = await awaitingApproval(request({ requiredApprovals: 1 }));
      await approve(h, 'bob');
      assert.equal((await h.result()).outcome, 'IMPORTED');
      assert.equal(f.calls.ensureKmsKey.length, 3);
      assert.equal(f.calls.wrapKey.length, 2);
    });
  });

  it('ends with a clear typed failure on a non-retryable activity error, without retrying', async () => {
    const f = fakes();
    f.failures.ensureHsmKey = [
      () => ApplicationFailure.nonRetryable('HSM key "byok/payments" is not extractable (CKA_EXTRACTABLE=false)', 'HsmKeyUnsuitable'),
    ];
    await withWorkers(f, async () => {
      const h = await start(request());
      const failure = await failureOf(h.result());
      assert.equal(failure.type, 'HsmKeyUnsuitable');
      assert.match(failure.message, /^preparing the HSM key failed: HSM key "byok\/payments" is not extractable/);
      assert.equal(f.calls.ensureHsmKey.length, 1);
      assert.equal(f.calls.wrapKey, undefined);
      const status = await h.query(statusQuery);
      assert.equal(status.step, 'FAILED');
      assert.match(status.failure ?? '', /not extractable/);
    });
  });

  it('fails with InvalidInput naming the field before calling any activity', async () => {
    const f = fakes();
    await withWorkers(f, async () => {
      const h = await start(request({ requiredApprovals: 4 }));
      const failure = await failureOf(h.result());
      assert.equal(failure.type, 'InvalidInput');
      assert.match(failure.message, /invalid requiredApprovals: expected a whole number from 1 to 3, got 4/);
      assert.deepEqual(f.calls, {});
    });
  });
});
