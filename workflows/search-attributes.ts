// What the Temporal UI, `byok list` and `byok pending` search on: one set of custom search
// attributes shared by every BYOK workflow (import, rotate, restore, reimport, revoke, guard). Workflows publish
// them through workflows/progress.ts. Search attributes are stored in clear and indexed:
// identifiers, names, counts and times only, never a secret.
import { defineSearchAttributeKey } from '@temporalio/common';

/** "reimport": the same material with a new ValidTo; "guard": the expiry guardian of one key. */
export const OPERATIONS = ['import', 'rotate', 'restore', 'reimport', 'revoke', 'guard'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** The state every operation reports, whatever its own finer steps. */
export const OPERATION_STATES = [
  'PREPARING',
  'AWAITING_APPROVAL',
  'IMPORTING',
  /** A rotation by alias swap: the alias moved, the previous key stays enabled until the grace period ends. */
  'GRACE_PERIOD',
  /** The expiry guardian sleeps until its next re-import. */
  'GUARDING',
  /** The expiry guardian saw a missed or threatened expiry (expired, missing material, re-import not done). */
  'ALERT',
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

/** Runs recorded before search attributes existed have no upserts in their history, and must not get any. */
export const SEARCH_ATTRIBUTES_PATCH = 'byok-search-attributes';
