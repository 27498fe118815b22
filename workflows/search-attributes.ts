// What the Temporal UI, `byok list` and `byok pending` search on: one set of custom search
// attributes shared by every BYOK workflow (import, rotate, restore, revoke), and the one call a
// workflow makes to publish where it stands. Search attributes are stored in clear and indexed:
// identifiers, names, counts and times only, never a secret.
import { defineSearchAttributeKey, type SearchAttributeUpdatePair } from '@temporalio/common';
import { setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';

export const OPERATIONS = ['import', 'rotate', 'restore', 'revoke'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** The state every operation reports, whatever its own finer steps. */
export const OPERATION_STATES = [
  'PREPARING',
  'AWAITING_APPROVAL',
  'IMPORTING',
  'DONE',
  'REJECTED',
  'APPROVAL_EXPIRED',
  'FAILED',
] as const;
export type OperationState = (typeof OPERATION_STATES)[number];

export const ByokOperation = defineSearchAttributeKey('ByokOperation', 'KEYWORD');
export const ByokState = defineSearchAttributeKey('ByokState', 'KEYWORD');
export const ByokAlias = defineSearchAttributeKey('ByokAlias', 'KEYWORD');
export const ByokKmsKeyId = defineSearchAttributeKey('ByokKmsKeyId', 'KEYWORD');
export const ByokRequester = defineSearchAttributeKey('ByokRequester', 'KEYWORD');
export const ByokApprovalsNeeded = defineSearchAttributeKey('ByokApprovalsNeeded', 'INT');
/** Approvers who may still decide, set only while the state is AWAITING_APPROVAL: `byok pending --as` searches it. */
export const ByokPendingApprovers = defineSearchAttributeKey('ByokPendingApprovers', 'KEYWORD_LIST');
export const ByokApprovalDeadline = defineSearchAttributeKey('ByokApprovalDeadline', 'DATETIME');
export const ByokTokenValidTo = defineSearchAttributeKey('ByokTokenValidTo', 'DATETIME');

/** Every attribute, for registration (dev server, `temporal operator search-attribute create`). */
export const SEARCH_ATTRIBUTES = [
  ByokOperation,
  ByokState,
  ByokAlias,
  ByokKmsKeyId,
  ByokRequester,
  ByokApprovalsNeeded,
  ByokPendingApprovers,
  ByokApprovalDeadline,
  ByokTokenValidTo,
] as const;

/** Type names as the Temporal CLI spells them (`--type`, `--search-attribute NAME=TYPE`). */
export const CLI_TYPE_NAMES = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
} as const;

/** Where an operation stands, as a workflow knows it. Undefined fields are cleared. */
export interface OperationProgress {
  operation: Operation;
  state: OperationState;
  alias: string;
  requester: string;
  kmsKeyId?: string;
  approvalsNeeded: number;
  /** Approvers who have not decided yet (the requester excluded). */
  pendingApprovers: string[];
  approvalDeadline?: Date;
  tokenValidTo?: Date;
  /** One line on what happens now, for the UI's current details. */
  activity: string;
}

/**
 * Publishes `p` as search attributes (only those that changed, so the history gets an upsert
 * only when something moved) and as the workflow's current details in the UI.
 */
export function publishProgress(p: OperationProgress): void {
  const awaiting = p.state === 'AWAITING_APPROVAL';
  const wanted: SearchAttributeUpdatePair[] = [
    { key: ByokOperation, value: p.operation },
    { key: ByokState, value: p.state },
    { key: ByokAlias, value: p.alias },
    { key: ByokRequester, value: p.requester },
    { key: ByokKmsKeyId, value: p.kmsKeyId ?? null },
    { key: ByokApprovalsNeeded, value: p.approvalsNeeded },
    { key: ByokPendingApprovers, value: awaiting && p.pendingApprovers.length ? p.pendingApprovers : null },
    { key: ByokApprovalDeadline, value: p.approvalDeadline ?? null },
    { key: ByokTokenValidTo, value: p.tokenValidTo ?? null },
  ];
  const current = workflowInfo().typedSearchAttributes;
  const changed = wanted.filter((pair) => !sameValue(current.get(pair.key), pair.value));
  if (changed.length) upsertSearchAttributes(changed);
  setCurrentDetails(currentDetails(p));
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === undefined || a === null) return b === null || b === undefined;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** Markdown for the UI's "Current details" (workflow metadata query). */
export function currentDetails(p: OperationProgress): string {
  const lines = [`**${p.state}**: ${p.activity}`, '', `- ${p.operation} of \`${p.alias}\`, requested by ${p.requester}`];
  if (p.kmsKeyId) lines.push(`- KMS key \`${p.kmsKeyId}\``);
  if (p.state === 'AWAITING_APPROVAL') {
    lines.push(`- ${p.approvalsNeeded} more approval(s) needed; may still decide: ${p.pendingApprovers.join(', ') || 'nobody'}`);
    if (p.approvalDeadline) lines.push(`- approval deadline ${p.approvalDeadline.toISOString()}`);
  }
  if (p.tokenValidTo) lines.push(`- import token valid to ${p.tokenValidTo.toISOString()}`);
  return lines.join('\n');
}
