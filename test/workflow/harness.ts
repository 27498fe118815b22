// The time-skipping server, the workflow bundle and workers over the fakes, for the workflow tests.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import '../quiet-runtime';
import { tools } from '../../scripts/paths';
import { indexedValueTypes } from '../../scripts/temporal-dev-server';
import { approvalQuery, approveUpdate } from '../../workflows/decisions';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE } from '../../workflows/model';
import type { Fakes } from './fakes';

const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

export interface Harness {
  env: TestWorkflowEnvironment;
  withWorkers<T>(f: Pick<Fakes, 'kms' | 'hsm'>, fn: () => Promise<T>): Promise<T>;
  teardown(): Promise<void>;
}

// Bundled once per process: a file may start several environments (see ./lifecycle.test.ts).
let bundled: Promise<WorkflowBundleWithSourceMap> | undefined;

export async function harness(): Promise<Harness> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: tools.temporalTestServer } },
  });
  // The import upserts the BYOK search attributes; unregistered, its workflow tasks would stall.
  await env.connection.operatorService.addSearchAttributes({ namespace: env.namespace ?? 'default', searchAttributes: indexedValueTypes() });
  const bundle = await (bundled ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger }));
  return {
    env,
    async withWorkers(f, fn) {
      const opts = { connection: env.nativeConnection, namespace: env.namespace ?? 'default' };
      const kmsWorker = await Worker.create({ ...opts, taskQueue: KMS_TASK_QUEUE, workflowBundle: bundle, activities: f.kms, maxConcurrentWorkflowTaskExecutions: 10 });
      const hsmWorker = await Worker.create({ ...opts, taskQueue: HSM_TASK_QUEUE, activities: f.hsm });
      return kmsWorker.runUntil(hsmWorker.runUntil(fn));
    },
    teardown: () => env.teardown(),
  };
}

/** One harness for the tests of a file: started before them and torn down after. */
export function harnessForFile(): Pick<Harness, 'env' | 'withWorkers'> {
  let started: Harness | undefined;
  before(async () => {
    started = await harness();
  });
  after(async () => {
    await started?.teardown();
  });
  const current = (): Harness => started ?? assert.fail('the harness starts in before()');
  return {
    get env() {
      return current().env;
    },
    withWorkers: (f, fn) => current().withWorkers(f, fn),
  };
}

/** Polls until `ok` holds for the query's answer. */
export async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  for (let tries = 0; tries < 1000; tries++) {
    const v = await read();
    if (ok(v)) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`never: ${what}`);
}

/** Waits until the request is decidable, then approves as each of `approvers`. */
export async function approveAs(h: WorkflowHandle, ...approvers: string[]): Promise<void> {
  await until(() => h.query(approvalQuery), (v) => v.decidable, `${h.workflowId} decidable`);
  for (const approver of approvers) await h.executeUpdate(approveUpdate, { args: [{ approver }] });
}

export async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => assert.fail('expected the workflow to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${err}`);
  assert.ok(err.cause instanceof ApplicationFailure, `expected an ApplicationFailure cause, got ${err.cause}`);
  return err.cause;
}

export async function refusalOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => assert.fail('expected the update to be refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowUpdateFailedError, `expected WorkflowUpdateFailedError, got ${err}`);
  return (err.cause as Error).message;
}
