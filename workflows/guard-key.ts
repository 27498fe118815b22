// The expiry guardian: one long-lived workflow per key imported with KEY_MATERIAL_EXPIRES. It
// sleeps in workflow time until ValidTo minus a lead time, then re-imports the same HSM material
// with a new ValidTo (a child importKey with operation "reimport", approved like any import), and
// continues as new after each re-import so its history stays small. When an expiry is missed
// (the material expired first, the key lost its material, a re-import was not approved, the
// guardian woke up late) it raises an alert: in its query, the log, and ByokState ALERT.
import { condition, continueAsNew, defineQuery, isCancellation, log, setHandler, sleep, startChild, workflowInfo } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { KeyDescription } from '../activities/kms';
import { importKey, type ImportKeyResult } from './import-key';
import { checkedAliasName, duration, invalidInput, planImport, wholeSecondsIso, type ApprovalRequest, type ImportKeyInput } from './import-request';
import type { WrappingAlgorithm, WrappingKeySpec } from './model';
import { progressReporter } from './progress';
import { kms } from './proxies';
import type { OperationState } from './search-attributes';
import { runStep } from './step-failure';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Carried from one run to the next by continueAsNew. */
export interface GuardState {
  /** Re-imports completed by this guardian. */
  reimports: number;
  /** Re-import requests started (completed or not); numbers the child workflow ids. */
  requests: number;
  lastReimport?: { workflowId: string; validTo: string; at: string };
  /** The ValidTo last seen on the key: tells an expiry from a deletion once the key shows PendingImport. */
  knownValidTo?: string;
  alert?: GuardAlert;
  /** The latest alerts, newest last, at most ALERT_HISTORY. */
  alerts: GuardAlert[];
  runs: number;
}

/** Approvers of every re-import, as for an import (signed by default). */
export interface GuardKeyInput extends ApprovalRequest {
  alias: string;
  /** Re-import this long before ValidTo; default 7d. */
  leadTime?: Duration;
  /** The new ValidTo is this long after the re-import starts; default 365d (the most AWS accepts). */
  validity?: Duration;
  /** How often to look again while in ALERT or after a re-import that did not complete; default 1d. */
  recheckInterval?: Duration;
  wrappingAlgorithm?: WrappingAlgorithm;
  wrappingKeySpec?: WrappingKeySpec;
  hsmKeyLabel?: string;
  /** Set by the guardian itself when it continues as new. */
  state?: GuardState;
}

export type GuardPhase = 'CHECKING' | 'SLEEPING' | 'REIMPORTING' | 'ALERT';

export type GuardAlertKind =
  /** ValidTo passed before a re-import completed. */
  | 'MATERIAL_EXPIRED'
  /** The key has no material although ValidTo has not passed: deleted (revoked?). */
  | 'MATERIAL_MISSING'
  /** The key is not Enabled (Disabled, pending deletion, ...) or reports no ValidTo. */
  | 'KEY_NOT_ENABLED'
  /** A re-import was rejected, ran out of approval time or failed; another is requested after recheckInterval. */
  | 'REIMPORT_NOT_DONE'
  /** The guardian woke up more than an hour after its re-import time (workers down?). */
  | 'WOKE_LATE';

export interface GuardAlert {
  kind: GuardAlertKind;
  message: string;
  /** ISO-8601, workflow time. */
  at: string;
}

export interface GuardStatus {
  alias: string;
  phase: GuardPhase;
  /** The unresolved alert, if any (WOKE_LATE stays until the next re-import). */
  alert?: GuardAlert;
  alerts: GuardAlert[];
  validTo?: string;
  /** When the guardian next wakes: the re-import time, or the next recheck. */
  nextWake?: string;
  /** The re-import waiting for approvals: approve it with `byok approve <id>`. */
  reimportWorkflowId?: string;
  reimports: number;
  lastReimport?: GuardState['lastReimport'];
  leadTimeMs: number;
  validityMs: number;
  runs: number;
}

export interface GuardKeyResult {
  outcome: 'NOT_EXPIRING';
  alias: string;
  reimports: number;
}

export const guardStatusQuery = defineQuery<GuardStatus>('guardStatus');

const ALERT_HISTORY = 20;
const SEVERITY: Record<GuardAlertKind, number> = { WOKE_LATE: 0, REIMPORT_NOT_DONE: 1, KEY_NOT_ENABLED: 2, MATERIAL_MISSING: 2, MATERIAL_EXPIRED: 3 };
/** Waking this much after the re-import time counts as late. */
const LATE_AFTER_MS = HOUR;
/** Well below Temporal's 50k event limit; alert rechecks are the only loop that grows a run. */
const MAX_HISTORY_EVENTS = 5_000;
/** The shared state (ByokState) of each phase; any unresolved alert shows as ALERT. */
const PHASE_STATE: Record<GuardPhase, OperationState> = { CHECKING: 'PREPARING', SLEEPING: 'GUARDING', REIMPORTING: 'IMPORTING', ALERT: 'ALERT' };

export async function guardKey(input: GuardKeyInput): Promise<GuardKeyResult> {
  const { workflowId } = workflowInfo();
  const { alias, leadTimeMs, validityMs, recheckMs } = planGuard(input, new Date());

  const state: GuardState = input.state ?? { reimports: 0, requests: 0, alerts: [], runs: 0 };
  state.runs += 1;
  let phase: GuardPhase = 'CHECKING';
  let kmsKeyId: string | undefined;
  let validTo: string | undefined;
  let nextWake: Date | undefined;
  let reimportWorkflowId: string | undefined;

  const progress = progressReporter('guard', { searchAttributes: true });
  /** Publishes where the guardian stands (ByokState, the UI's current details). */
  const report = (doing: string, ended?: 'DONE') =>
    progress.report({
      state: ended ?? (state.alert ? 'ALERT' : PHASE_STATE[phase]),
      alias,
      requester: input.requester,
      kmsKeyId,
      approvalsNeeded: 0,
      pendingApprovers: [],
      activity: state.alert ? `${state.alert.kind}: ${state.alert.message}; ${doing}` : doing,
    });
  const to = (next: GuardPhase, doing: string, wake?: Date) => {
    phase = next;
    nextWake = wake;
    report(doing);
  };

  setHandler(guardStatusQuery, () => ({
    alias,
    phase,
    alert: state.alert,
    alerts: state.alerts,
    validTo,
    nextWake: nextWake?.toISOString(),
    reimportWorkflowId,
    reimports: state.reimports,
    lastReimport: state.lastReimport,
    leadTimeMs,
    validityMs,
    runs: state.runs,
  }));

  const raise = (kind: GuardAlertKind, message: string) => {
    const alert = { kind, message, at: new Date().toISOString() };
    // A missed expiry stays the alert shown until resolved, whatever lesser alert follows it.
    if (!state.alert || SEVERITY[kind] >= SEVERITY[state.alert.kind]) state.alert = alert;
    state.alerts = [...state.alerts, alert].slice(-ALERT_HISTORY);
    log.warn(`expiry guardian alert ${kind}: ${message}`, { alias, kind });
    report(message);
  };
  const resolved = () => {
    if (!state.alert || state.alert.kind === 'WOKE_LATE') return;
    log.info('expiry guardian alert resolved', { alias, kind: state.alert.kind });
    state.alert = undefined;
  };
  const carryOn = () => continueAsNew<typeof guardKey>({ ...input, state });
  /** After an alert: look again later, in a fresh run if this one has grown. */
  const recheck = async () => {
    to('ALERT', 'looking again after the recheck interval', new Date(Date.now() + recheckMs));
    await sleep(recheckMs, { summary: 'recheck after alert' });
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS) await carryOn();
  };

  for (;;) {
    to('CHECKING', `describing ${alias}`);
    const key = await runStep('describing the KMS key', () =>
      kms.describeKey.executeWithOptions({ summary: `Describe ${alias}: state and ValidTo` }, [{ keyId: alias }]),
    );
    kmsKeyId = key.keyId;
    if (key.keyState === 'Enabled' && key.expirationModel === 'KEY_MATERIAL_DOES_NOT_EXPIRE') {
      log.info('key material does not expire; nothing to guard', { alias });
      report('the key material does not expire; nothing to guard', 'DONE');
      return { outcome: 'NOT_EXPIRING', alias, reimports: state.reimports };
    }
    const expired = state.knownValidTo !== undefined && Date.now() >= Date.parse(state.knownValidTo);
    const problem = keyProblem(key, state.knownValidTo, expired);
    if (problem) {
      raise(problem.kind, problem.message);
      await recheck();
      continue;
    }
    validTo = key.validTo!;
    state.knownValidTo = validTo;
    resolved();

    const reimportAt = new Date(Date.parse(validTo) - leadTimeMs);
    if (Date.now() < reimportAt.getTime()) {
      to('SLEEPING', `re-import at ${reimportAt.toISOString()}, ${leadTimeMs / DAY}d before ValidTo ${validTo}`, reimportAt);
      await sleep(reimportAt.getTime() - Date.now(), { summary: `re-import ${leadTimeMs / DAY}d before ValidTo ${validTo}` });
      const lateMs = Date.now() - reimportAt.getTime();
      if (lateMs > LATE_AFTER_MS) raise('WOKE_LATE', `woke ${Math.round(lateMs / 60_000)} minutes after the re-import time ${reimportAt.toISOString()}`);
      continue; // look at the key again: someone may have re-imported meanwhile
    }

    const newValidTo = new Date(Date.now() + validityMs);
    state.requests += 1;
    reimportWorkflowId = `${workflowId}-reimport-${state.requests}`;
    to('REIMPORTING', `re-import ${reimportWorkflowId} waits for approvals (byok approve ${reimportWorkflowId})`);
    const child = await startChild(importKey, {
      workflowId: reimportWorkflowId,
      args: [reimportRequest(input, alias, newValidTo)],
      staticSummary: `Re-import ${alias} with ValidTo ${wholeSecondsIso(newValidTo.getTime())} (expiry guardian)`,
    });
    // Never rejected, so no unhandled rejection while the expiry timer below runs.
    let outcome: { result?: ImportKeyResult; error?: unknown } | undefined;
    void child.result().then(
      (result) => (outcome = { result }),
      (error) => (outcome = { error }),
    );
    const msToExpiry = Date.parse(validTo) - Date.now();
    if (!(await condition(() => outcome !== undefined, Math.max(msToExpiry, 1)))) {
      raise('MATERIAL_EXPIRED', `the material expired at ${validTo} while re-import ${reimportWorkflowId} was still running`);
      await condition(() => outcome !== undefined);
    }
    const done = outcome!;
    if (done.error !== undefined) {
      if (isCancellation(done.error)) throw done.error;
      raise('REIMPORT_NOT_DONE', `re-import ${reimportWorkflowId} failed: ${(done.error as Error).message}`);
    } else if (done.result!.outcome !== 'IMPORTED') {
      raise('REIMPORT_NOT_DONE', `re-import ${reimportWorkflowId} ended ${done.result!.outcome}; another request follows`);
    } else {
      state.reimports += 1;
      state.lastReimport = { workflowId: reimportWorkflowId, validTo: done.result!.validTo!, at: new Date().toISOString() };
      state.knownValidTo = done.result!.validTo;
      state.alert = undefined;
      log.info('expiry guardian re-imported the key material', { alias, validTo: done.result!.validTo });
      // One re-import per run keeps each run's history small.
      await carryOn();
    }
    reimportWorkflowId = undefined;
    await recheck();
  }
}

/** Checks the guardian's input (the CLI too, before starting it); throws InvalidInput naming the field. */
export function planGuard(input: GuardKeyInput, now: Date) {
  if (typeof input !== 'object' || input === null) throw invalidInput('input', 'expected an object');
  const alias = `alias/${checkedAliasName(input.alias)}`;
  const leadTimeMs = duration('leadTime', input.leadTime, 7 * DAY, HOUR, 180 * DAY);
  const validityMs = duration('validity', input.validity, 365 * DAY, DAY, 365 * DAY);
  const recheckMs = duration('recheckInterval', input.recheckInterval, DAY, 60_000, 30 * DAY);
  if (validityMs <= leadTimeMs) throw invalidInput('validity', 'must be longer than leadTime');
  // The re-import request it will send, checked now rather than at the first expiry.
  reimportRequest(input, alias, new Date(now.getTime() + validityMs), now);
  return { alias, leadTimeMs, validityMs, recheckMs };
}

function reimportRequest(input: GuardKeyInput, alias: string, validTo: Date, now = new Date()): ImportKeyInput {
  const request: ImportKeyInput = {
    operation: 'reimport',
    alias,
    expirationModel: 'KEY_MATERIAL_EXPIRES',
    validTo: wholeSecondsIso(validTo.getTime()),
    wrappingAlgorithm: input.wrappingAlgorithm,
    wrappingKeySpec: input.wrappingKeySpec,
    hsmKeyLabel: input.hsmKeyLabel,
    requester: input.requester,
    approvers: input.approvers,
    requiredApprovals: input.requiredApprovals,
    approverKeys: input.approverKeys,
    unsignedApprovals: input.unsignedApprovals,
    approvalTimeout: input.approvalTimeout,
  };
  planImport(request, now);
  return request;
}

/** Why the key cannot simply be re-imported now, as an alert; undefined when it can. */
function keyProblem(key: KeyDescription, knownValidTo: string | undefined, expired: boolean): Omit<GuardAlert, 'at'> | undefined {
  if (key.keyState === 'PendingImport' || (expired && key.keyState === 'Enabled')) {
    return expired
      ? { kind: 'MATERIAL_EXPIRED', message: `the material expired at ${knownValidTo} before a re-import completed; restore it (byok restore)` }
      : { kind: 'MATERIAL_MISSING', message: `key ${key.keyArn} has no material (PendingImport) before its expiry; revoked? restore it (byok restore)` };
  }
  if (key.keyState !== 'Enabled') return { kind: 'KEY_NOT_ENABLED', message: `key ${key.keyArn} is ${key.keyState}` };
  if (key.expirationModel !== 'KEY_MATERIAL_EXPIRES' || !key.validTo) {
    return { kind: 'KEY_NOT_ENABLED', message: `key ${key.keyArn} reports no ValidTo (expiration model ${key.expirationModel ?? 'unset'})` };
  }
  return undefined;
}
