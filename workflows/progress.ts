// How a BYOK workflow tells the world where it stands: one call per step publishes the search
// attributes (for `byok list`, `byok pending` and the UI's list), the UI's current details, and
// the workflow metrics. Shared by every operation; commands only when something changed.
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { metricMeter, setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { ApprovalGate } from './approval';
import type { MaterialImport } from './material-import';
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
  OPERATION_STATES,
  SEARCH_ATTRIBUTES,
  type Operation,
  type OperationState,
} from './search-attributes';

/** Where an operation stands, as its workflow knows it. Undefined fields are cleared. */
export interface OperationProgress {
  state: OperationState;
  alias: string;
  requester: string;
  kmsKeyId?: string;
  approvalsNeeded: number;
  /** Approvers who may still decide (not the requester, not who decided already). */
  pendingApprovers: string[];
  approvalDeadline?: Date;
  tokenValidTo?: Date;
  tokenRefreshes?: number;
  /** One line on what happens now, for the UI's current details. */
  activity: string;
}

/**
 * The state shared by every operation, from a workflow's finer step: its own name where it is one
 * of the shared states, else preparing before the decision and under way ("IMPORTING") after it.
 */
export function operationState(step: string, decided: boolean): OperationState {
  if ((OPERATION_STATES as readonly string[]).includes(step)) return step as OperationState;
  return decided ? 'IMPORTING' : 'PREPARING';
}

/** The approval part of a report, read off the gate every operation waits on. */
export function approvalProgress(gate: ApprovalGate, deadline: Date): Pick<OperationProgress, 'approvalsNeeded' | 'pendingApprovers' | 'approvalDeadline'> {
  const { requester, approvers } = gate.policy;
  return {
    approvalsNeeded: gate.remaining,
    pendingApprovers: approvers.filter((a) => a !== requester && !gate.approvals.some((d) => d.approver === a)),
    approvalDeadline: deadline,
  };
}

/** The import token part of a report, once material is being imported. */
export function tokenProgress(material: MaterialImport | undefined): Pick<OperationProgress, 'tokenValidTo' | 'tokenRefreshes'> {
  return { tokenValidTo: material?.params && new Date(material.params.parametersValidTo), tokenRefreshes: material?.tokenRefreshes ?? 0 };
}

export interface ProgressReporter {
  report(p: OperationProgress): void;
}

/**
 * A reporter for one run of `operation`. `searchAttributes: false` leaves the search attributes
 * alone (for a run whose history predates them: upserts are commands, replay checks them).
 */
export function progressReporter(operation: Operation, { searchAttributes }: { searchAttributes: boolean }): ProgressReporter {
  const meter = metricMeter.withTags({ operation });
  const metrics = {
    started: meter.createCounter('byok_operations_started', '1', 'BYOK operations started'),
    succeeded: meter.createCounter('byok_operations_succeeded', '1', 'BYOK operations that ended DONE'),
    failed: meter.createCounter('byok_operations_failed', '1', 'BYOK operations that ended FAILED'),
    declined: meter.createCounter('byok_operations_declined', '1', 'BYOK operations REJECTED or APPROVAL_EXPIRED'),
    tokenRefreshes: meter.createCounter('byok_token_refreshes', '1', 'import tokens replaced (expired or refused)'),
    approvalWait: meter.createHistogram('byok_approval_wait', 'int', 'ms', 'time from awaiting approval to the decision or deadline'),
  };
  // What is set already, e.g. by the client at start: unchanged values are not upserted again.
  const published = new Map<string, unknown>(SEARCH_ATTRIBUTES.map((key) => [key.name, workflowInfo().typedSearchAttributes.get(key)]));
  let last: OperationProgress | undefined;
  let awaitingSince: number | undefined;

  const publish = (p: OperationProgress) => {
    const awaiting = p.state === 'AWAITING_APPROVAL';
    const wanted: SearchAttributeUpdatePair[] = [
      { key: ByokOperation, value: operation },
      { key: ByokState, value: p.state },
      { key: ByokAlias, value: p.alias },
      { key: ByokRequester, value: p.requester },
      { key: ByokKmsKeyId, value: p.kmsKeyId ?? null },
      { key: ByokApprovalsNeeded, value: p.approvalsNeeded },
      { key: ByokPendingApprovers, value: awaiting && p.pendingApprovers.length ? p.pendingApprovers : null },
      { key: ByokApprovalDeadline, value: p.approvalDeadline ?? null },
      { key: ByokTokenValidTo, value: p.tokenValidTo ?? null },
    ];
    const changed = wanted.filter(({ key, value }) => comparable(published.get(key.name) ?? null) !== comparable(value));
    if (changed.length === 0) return;
    upsertSearchAttributes(changed);
    for (const { key, value } of changed) published.set(key.name, value);
  };

  const count = (p: OperationProgress) => {
    if (!last) metrics.started.add(1);
    const refreshes = (p.tokenRefreshes ?? 0) - (last?.tokenRefreshes ?? 0);
    if (refreshes > 0) metrics.tokenRefreshes.add(refreshes);
    if (p.state === last?.state) return;
    if (p.state === 'AWAITING_APPROVAL') awaitingSince = Date.now();
    else if (awaitingSince !== undefined) {
      metrics.approvalWait.record(Date.now() - awaitingSince, { outcome: p.state });
      awaitingSince = undefined;
    }
    if (p.state === 'DONE') metrics.succeeded.add(1);
    if (p.state === 'FAILED') metrics.failed.add(1);
    if (p.state === 'REJECTED' || p.state === 'APPROVAL_EXPIRED') metrics.declined.add(1, { state: p.state });
  };

  return {
    report(p) {
      if (searchAttributes) publish(p);
      setCurrentDetails(currentDetails(p));
      count(p);
      last = p;
    },
  };
}

const comparable = (v: unknown) => JSON.stringify(v instanceof Date ? v.toISOString() : v);

/** Markdown for the UI's "Current details" (the workflow metadata query); the UI's frame shows four lines. */
export function currentDetails(p: OperationProgress): string {
  const lines = [`**${p.state}**: ${p.activity}`, ''];
  if (p.state === 'AWAITING_APPROVAL') {
    lines.push(`- ${p.approvalsNeeded} more approval(s) needed; may still decide: ${p.pendingApprovers.join(', ') || 'nobody'}`);
    if (p.approvalDeadline) lines.push(`- approval deadline ${p.approvalDeadline.toISOString()}`);
  }
  if (p.tokenValidTo) lines.push(`- import token valid to ${p.tokenValidTo.toISOString()}${p.tokenRefreshes ? ` (refreshed ${p.tokenRefreshes}x)` : ''}`);
  // Alias, requester and approvers are in the static summary and details beside it.
  if (p.kmsKeyId && p.state !== 'AWAITING_APPROVAL') lines.push(`- KMS key \`${p.kmsKeyId}\``);
  return lines.join('\n');
}
