// The rotation workflow (native and alias swap) on the time-skipping server, with fake activities.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import { approveUpdate, rejectUpdate } from '../../workflows/decisions';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { rotateKey, rotationStatusQuery, type RotateKeyInput } from '../../workflows/rotate-key';
import { ByokApprovalsNeeded, ByokKmsKeyId, ByokOperation, ByokPendingApprovers, ByokState } from '../../workflows/search-attributes';
import { fakes, type Fakes } from './fakes';
import { approveAs, failureOf, harnessForFile, refusalOf, until } from './harness';

const t = harnessForFile();
let seq = 0;

const request = (over: Partial<RotateKeyInput> = {}): RotateKeyInput => ({
  alias: 'payments',
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  requester: 'rita',
  approvers: ['alice', 'bob', 'carol'],
  requiredApprovals: 2,
  // Signed decisions are the shared seam's (test/workflow/signed-approvals.test.ts); the CLI signs them in test/integration/rotation.test.ts.
  unsignedApprovals: true,
  ...over,
});

/** A fake KMS where alias/payments names key-1, whose first material is current. */
function withKey(): Fakes {
  const f = fakes();
  f.aliases['alias/payments'] = 'key-1';
  return f;
}

function start(input: RotateKeyInput): Promise<WorkflowHandle<typeof rotateKey>> {
  return t.env.client.workflow.start(rotateKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `rotate-test-${++seq}`, args: [input] });
}

const stepOf = async (h: WorkflowHandle) => (await h.query(rotationStatusQuery)).step;

describe('rotateKey workflow, alias swap', () => {
  it('imports into a new key after approval, moves the alias, keeps the old key for the grace period, then disables and deletes it', async () => {
    const f = withKey();
    await t.withWorkers(f, async () => {
      const h = await start(request({ gracePeriod: '3d', deletePreviousKeyAfterDays: 7 }));
      await approveAs(h, 'alice');
      assert.equal(f.calls.importKeyMaterial, undefined, 'nothing imported before the quorum');
      assert.equal(f.calls.updateAlias, undefined);
      const status = await h.query(rotationStatusQuery);
      assert.equal(status.step, 'AWAITING_APPROVAL');
      assert.equal(status.hsmKey?.label, `byok/payments/${h.workflowId}`, 'new material under a label of its own');
      assert.deepEqual(f.calls.ensureRequestKey, [{ requestId: h.workflowId, description: `BYOK key alias/payments, material from HSM key byok/payments/${h.workflowId}` }]);
      await h.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });

      const grace = await until(() => h.query(rotationStatusQuery), (s) => s.step === 'GRACE_PERIOD', 'grace period');
      assert.equal(f.aliases['alias/payments'], 'key-2', 'alias moved before the grace period');
      assert.equal(f.calls.disableKey, undefined, 'old key still enabled during the grace period');
      assert.ok(grace.graceEndsAt);
      const result = await h.result(); // the server skips the three days

      assert.equal(result.outcome, 'ROTATED');
      assert.equal(result.strategy, 'alias-swap');
      assert.equal(result.previousKey.keyId, 'key-1');
      assert.equal(result.newKey.keyId, 'key-2');
      assert.deepEqual(result.approvals[0].subject, {
        operation: 'rotate',
        strategy: 'alias-swap',
        previousKmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/key-1',
        kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/key-2',
        hsmKeyId: '0a0b0c',
        kcv: 'abcdef',
        wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
        expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      });
      assert.deepEqual((f.calls.importKeyMaterial as Array<{ keyId: string }>).map((c) => c.keyId), ['key-2']);
      assert.deepEqual(f.calls.updateAlias, [{ alias: 'alias/payments', keyId: 'key-2' }]);
      assert.deepEqual(f.calls.disableKey, [{ keyId: 'key-1' }]);
      assert.deepEqual(f.calls.scheduleKeyDeletion, [{ keyId: 'key-1', pendingWindowInDays: 7 }]);
      assert.equal(result.previousKeyState, 'PendingDeletion');
      const graceMs = Date.parse(result.previousKeyDisabledAt!) - Date.parse(result.rotatedAt!);
      assert.ok(graceMs >= 3 * 86_400_000, `old key disabled ${graceMs} ms after the alias moved, expected the 3 d grace period`);
      assert.equal(await stepOf(h), 'DONE');
    });
  });

  it('publishes operation rotate and its state as search attributes, the grace period included', async () => {
    const f = withKey();
    await t.withWorkers(f, async () => {
      const h = await start(request({ gracePeriod: '3d' }));
      await until(() => h.query(rotationStatusQuery), (s) => s.step === 'AWAITING_APPROVAL', 'awaiting approval');
      const attributes = async () => (await h.describe()).typedSearchAttributes;
      let sa = await attributes();
      assert.equal(sa.get(ByokOperation), 'rotate');
      assert.equal(sa.get(ByokState), 'AWAITING_APPROVAL');
      assert.equal(sa.get(ByokKmsKeyId), 'key-2', 'the key that receives the new material');
      assert.equal(sa.get(ByokApprovalsNeeded), 2);
      assert.deepEqual(sa.get(ByokPendingApprovers), ['alice', 'bob', 'carol']);
      await approveAs(h, 'alice', 'bob');
      await until(() => h.query(rotationStatusQuery), (s) => s.step === 'GRACE_PERIOD', 'grace period');
      sa = await attributes();
      assert.equal(sa.get(ByokState), 'GRACE_PERIOD');
      assert.equal(sa.get(ByokPendingApprovers), undefined, 'nobody is asked once it is decided');
      await h.result();
      assert.equal((await attributes()).get(ByokState), 'DONE');
    });
  });

  it('on rejection imports nothing, leaves the alias alone and retires the unused new key', async () => {
    const f = withKey();
    await t.withWorkers(f, async () => {
      const h = await start(request());
      await approveAs(h, 'alice');
      await h.executeUpdate(rejectUpdate, { args: [{ approver: 'carol', comment: 'not this quarter' }] });
      const result = await h.result();
      assert.equal(result.outcome, 'REJECTED');
      assert.equal(result.newKey.keyId, 'key-1', 'the alias still names the old key');
      assert.equal(f.calls.importKeyMaterial, undefined);
      assert.equal(f.calls.updateAlias, undefined);
      assert.equal(f.calls.disableKey, undefined);
      assert.deepEqual(f.calls.scheduleKeyDeletion, [{ keyId: 'key-2', pendingWindowInDays: 7 }]);
      assert.ok(result.unusedKeyDeletionDate);
    });
  });

  it('gates like an import: the requester and strangers are refused, and nothing is decidable before the new material exists', async () => {
    const f = withKey();
    let release!: () => void;
    f.holds.ensureHsmKey = new Promise((r) => (release = r));
    await t.withWorkers(f, async () => {
      const h = await start(request());
      await until(() => stepOf(h), (s) => s === 'PREPARING_KEYS', 'preparing');
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] })), /nothing to decide yet: the rotation is still preparing the new key material/);
      release();
      await until(() => stepOf(h), (s) => s === 'AWAITING_APPROVAL', 'awaiting approval');
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'rita' }] })), /"rita" requested this rotation and cannot decide on it/);
      assert.match(await refusalOf(h.executeUpdate(approveUpdate, { args: [{ approver: 'mallory' }] })), /not one of the approvers/);
      await approveAs(h, 'alice', 'bob');
      assert.equal((await h.result()).outcome, 'ROTATED');
    });
  });

  it('completes when UpdateAlias and DisableKey fail transiently and are retried', async () => {
    const f = withKey();
    const transient = () => ApplicationFailure.retryable('Throttling', 'ThrottlingException');
    f.failures.updateAlias = [transient, transient];
    f.failures.disableKey = [transient];
    await t.withWorkers(f, async () => {
      const h = await start(request({ gracePeriod: '1h' }));
      await approveAs(h, 'alice', 'bob');
      const result = await h.result();
      assert.equal(result.outcome, 'ROTATED');
      assert.equal(f.calls.updateAlias?.length, 3);
      assert.equal(f.calls.disableKey?.length, 2);
      assert.equal(f.calls.ensureRequestKey?.length, 1, 'one new key');
      assert.equal(f.aliases['alias/payments'], 'key-2');
    });
  });

  it('refuses bad input before touching anything', async () => {
    const f = withKey();
    await t.withWorkers(f, async () => {
      const bad = [
        [{ strategy: 'sideways' as never }, /invalid strategy: expected one of native, alias-swap/],
        [{ gracePeriod: 'soon' }, /invalid gracePeriod/],
        [{ deletePreviousKeyAfterDays: 3 }, /invalid deletePreviousKeyAfterDays: expected a whole number from 7 to 30/],
        [{ approvers: ['rita'], requiredApprovals: 1 }, /the requester "rita" cannot be one of the approvers/],
      ] as const;
      for (const [over, message] of bad) {
        const failure = await failureOf((await start(request(over as Partial<RotateKeyInput>))).result());
        assert.equal(failure.type, 'InvalidInput');
        assert.match(failure.message, message);
      }
      assert.deepEqual(Object.keys(f.calls), []);
    });
  });
});

describe('rotateKey workflow, native', () => {
  it('imports NEW_KEY_MATERIAL into the same key, confirms it pending, rotates on demand', async () => {
    const f = withKey();
    await t.withWorkers(f, async () => {
      const h = await start(request({ strategy: 'native' }));
      await approveAs(h, 'alice');
      assert.equal(f.calls.importKeyMaterial, undefined);
      await h.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      const result = await h.result();

      assert.equal(result.outcome, 'ROTATED');
      assert.equal(result.strategy, 'native');
      assert.equal(result.newKey.keyArn, result.previousKey.keyArn, 'same key');
      assert.equal(result.keyMaterialId, 'key-1-m1');
      const subject = result.approvals[0].subject;
      assert.equal(subject.operation, 'rotate');
      assert.equal(subject.strategy, 'native');
      assert.equal(subject.kmsKeyArn, subject.previousKmsKeyArn);
      assert.deepEqual(f.calls.importKeyMaterial, [
        {
          keyId: 'key-1',
          importToken: 'token-1',
          encryptedKeyMaterial: 'wrapped-under-cHVibGlj',
          expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
          importType: 'NEW_KEY_MATERIAL',
          keyMaterialDescription: h.workflowId,
        },
      ]);
      assert.deepEqual(f.calls.rotateKeyOnDemand, [{ keyId: 'key-1', keyMaterialId: 'key-1-m1' }]);
      assert.deepEqual(f.materials['key-1'].map((m) => m.state), ['NON_CURRENT', 'CURRENT']);
      assert.equal(f.calls.ensureRequestKey, undefined);
      assert.equal(f.calls.updateAlias, undefined);
      assert.equal(f.calls.disableKey, undefined);
      assert.deepEqual(f.calls.ensureHsmKey, [{ label: `byok/payments/${h.workflowId}`, generate: true }]);
    });
  });

  it('confirms the new material by DescribeKey where the KMS has no ListKeyRotations (LocalStack)', async () => {
    const f = withKey();
    f.listsRotations = false;
    await t.withWorkers(f, async () => {
      const h = await start(request({ strategy: 'native' }));
      await approveAs(h, 'alice', 'bob');
      const result = await h.result();
      assert.equal(result.outcome, 'ROTATED');
      assert.equal(result.keyMaterialId, 'key-1-m1');
      assert.deepEqual(f.calls.rotateKeyOnDemand, [{ keyId: 'key-1', keyMaterialId: 'key-1-m1' }]);
    });
  });

  it('fails with NativeRotationUnsupported before making any material, where the KMS cannot rotate', async () => {
    const f = withKey();
    f.nativeRotation = false;
    await t.withWorkers(f, async () => {
      const h = await start(request({ strategy: 'native' }));
      const failure = await failureOf(h.result());
      assert.equal(failure.type, 'NativeRotationUnsupported');
      assert.match(failure.message, /checking native rotation support failed/);
      assert.equal(f.calls.ensureHsmKey, undefined);
      assert.equal(f.calls.getImportParameters, undefined);
    });
  });

  it('falls back to alias swap where the KMS cannot rotate, when configured to', async () => {
    const f = withKey();
    f.nativeRotation = false;
    await t.withWorkers(f, async () => {
      const h = await start(request({ strategy: 'native', fallbackToAliasSwap: true, gracePeriod: '0s' }));
      await approveAs(h, 'alice', 'bob');
      const result = await h.result();
      assert.equal(result.outcome, 'ROTATED');
      assert.equal(result.strategy, 'alias-swap');
      assert.equal(result.fellBackFromNative, true);
      assert.equal(result.approvals[0].subject.strategy, 'alias-swap', 'approvers see the strategy that runs');
      assert.equal(result.newKey.keyId, 'key-2');
      assert.equal(f.calls.rotateKeyOnDemand, undefined);
      assert.deepEqual(f.calls.disableKey, [{ keyId: 'key-1' }]);
    });
  });

  it('completes when RotateKeyOnDemand fails transiently, rotating once', async () => {
    const f = withKey();
    f.failures.rotateKeyOnDemand = [() => ApplicationFailure.retryable('KMSInternal', 'KMSInternalException')];
    await t.withWorkers(f, async () => {
      const h = await start(request({ strategy: 'native' }));
      await approveAs(h, 'alice', 'bob');
      const result = await h.result();
      assert.equal(result.outcome, 'ROTATED');
      assert.equal(f.calls.rotateKeyOnDemand?.length, 2);
      assert.deepEqual(f.materials['key-1'].map((m) => m.state), ['NON_CURRENT', 'CURRENT']);
    });
  });
});
