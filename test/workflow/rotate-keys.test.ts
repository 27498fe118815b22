// Many rotations from one parent workflow: the concurrency limit, per-key outcomes, and one
// failure leaving the other keys rotated. Time-skipping server, fake activities.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { approvalQuery } from '../../workflows/decisions';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { childRotationId, rotateKeys, type RotateKeysInput } from '../../workflows/rotate-keys';
import { fakes } from './fakes';
import { approveAs, failureOf, harnessForFile } from './harness';

const t = harnessForFile();
let seq = 0;

const rotation: RotateKeysInput['rotation'] = {
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  requester: 'rita',
  approvers: ['alice', 'bob'],
  requiredApprovals: 2,
  gracePeriod: '0s',
  unsignedApprovals: true, // signatures: test/workflow/signed-approvals.test.ts
};

function start(input: RotateKeysInput): Promise<WorkflowHandle<typeof rotateKeys>> {
  return t.env.client.workflow.start(rotateKeys, { taskQueue: KMS_TASK_QUEUE, workflowId: `rotate-many-${++seq}`, args: [input] });
}

async function statusOf(h: WorkflowHandle): Promise<string> {
  try {
    return (await h.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return 'NOT_STARTED';
    throw err;
  }
}

/** Approves each child as it becomes decidable, until all have ended; returns the most seen running at once. */
async function approveAll(handles: WorkflowHandle[], limit: number): Promise<number> {
  let most = 0;
  const approved = new Set<string>();
  for (let rounds = 0; rounds < 5000; rounds++) {
    const states = await Promise.all(handles.map(statusOf));
    const running = handles.filter((_, i) => states[i] === 'RUNNING');
    most = Math.max(most, running.length);
    assert.ok(running.length <= limit, `${running.length} rotations running at once, limit ${limit}`);
    if (states.every((s) => s !== 'RUNNING' && s !== 'NOT_STARTED')) return most;
    for (const h of running) {
      if (approved.has(h.workflowId)) continue;
      const view = await h.query(approvalQuery).catch(() => undefined);
      if (!view?.decidable) continue;
      approved.add(h.workflowId);
      await approveAs(h, 'alice', 'bob');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('the rotations never all ended');
}

describe('rotateKeys workflow', () => {
  it('rotates 20 keys five at a time; one failing key leaves the other 19 rotated', async () => {
    const f = fakes();
    const aliases = Array.from({ length: 20 }, (_, i) => `alias/k${String(i + 1).padStart(2, '0')}`);
    for (const a of aliases) f.aliases[a] = `old-${a.slice(6)}`;
    const ensure = f.kms.ensureKmsKey;
    f.kms.ensureKmsKey = async (input) => {
      if (input.alias === 'alias/k07') throw ApplicationFailure.nonRetryable('alias alias/k07 does not exist', 'UnknownAlias');
      return ensure(input);
    };
    await t.withWorkers(f, async () => {
      const parent = await start({ aliases, concurrency: 5, rotation });
      const children = aliases.map((a) => t.env.client.workflow.getHandle(childRotationId(parent.workflowId, a)));
      const most = await approveAll(children, 5);
      const result = await parent.result();

      assert.equal(most, 5, 'the limit is used, not only respected');
      assert.equal(result.rotated, 19);
      assert.equal(result.failed, 1);
      assert.deepEqual(result.outcomes.map((o) => o.alias), aliases, 'one outcome per key, in the order asked');
      const failed = result.outcomes.find((o) => o.outcome === 'FAILED')!;
      assert.equal(failed.alias, 'alias/k07');
      assert.equal(failed.errorType, 'UnknownAlias');
      assert.match(failed.error!, /does not exist/);
      for (const o of result.outcomes.filter((x) => x.alias !== 'alias/k07')) {
        assert.equal(o.outcome, 'ROTATED', o.alias);
        assert.equal(o.workflowId, `${parent.workflowId}.${o.alias.slice(6)}`);
        assert.notEqual(f.aliases[o.alias], `old-${o.alias.slice(6)}`, `${o.alias} names its new key`);
        assert.equal(o.newKeyArn, `arn:aws:kms:us-east-1:111122223333:key/${f.aliases[o.alias]}`);
      }
      assert.equal(f.aliases['alias/k07'], 'old-k07');
      assert.equal(f.calls.updateAlias?.length, 19);
    });
  });

  it('with allDue rotates what dueAliases reports', async () => {
    const f = fakes();
    f.due.push('alias/old-a', 'alias/old-b');
    f.aliases['alias/old-a'] = 'key-a';
    f.aliases['alias/old-b'] = 'key-b';
    await t.withWorkers(f, async () => {
      const parent = await start({ allDue: { olderThan: '90d', prefix: 'old-' }, rotation });
      const children = f.due.map((a) => t.env.client.workflow.getHandle(childRotationId(parent.workflowId, a)));
      await approveAll(children, 5);
      const result = await parent.result();
      assert.deepEqual(f.calls.dueAliases, [{ olderThanMs: 90 * 86_400_000, prefix: 'old-' }]);
      assert.deepEqual(result.outcomes.map((o) => [o.alias, o.outcome]), [
        ['alias/old-a', 'ROTATED'],
        ['alias/old-b', 'ROTATED'],
      ]);
    });
  });

  it('refuses bad input before starting any rotation', async () => {
    const f = fakes();
    await t.withWorkers(f, async () => {
      const bad: Array<[RotateKeysInput, RegExp]> = [
        [{ aliases: ['a'], concurrency: 0, rotation }, /invalid concurrency: expected a whole number from 1 to 50/],
        [{ aliases: ['a'], allDue: { olderThan: '90d' }, rotation }, /give either aliases or allDue/],
        [{ aliases: ['a', 'alias/a'], rotation }, /alias\/a is listed twice/],
        [{ aliases: ['good', 'aws/managed'], rotation }, /"alias\/aws\/" is reserved/],
        [{ aliases: ['good'], rotation: { ...rotation, requiredApprovals: 3 } }, /invalid requiredApprovals/],
      ];
      for (const [input, message] of bad) {
        const failure = await failureOf((await start(input)).result());
        assert.equal(failure.type, 'InvalidInput');
        assert.match(failure.message, message);
      }
      assert.deepEqual(Object.keys(f.calls), []);
    });
  });
});
