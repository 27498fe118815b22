// The audit record of one approval-gated request, built from its workflow history alone (payloads
// decoded with the client's data converter, so a payload codec is honoured), and its offline
// verification: every signed statement re-checked with the approvers' public keys (node:crypto).
import { createPublicKey, verify } from 'node:crypto';
import type { LoadedDataConverter } from '@temporalio/common';
import { decodeArrayFromPayloads } from '@temporalio/common/lib/internal-non-workflow';
import type { History } from '@temporalio/common/lib/proto-utils';
import type { ApprovalSubject, Decision } from '../workflows/approval';
import { canonicalJson } from '../workflows/canonical-json';
import type { ApprovalView, DecisionInput } from '../workflows/decisions';
import type { ImportKeyInput, ImportKeyResult } from '../workflows/import-key';
import { statementBytes, type SignedStatement } from '../workflows/signed-approval';

export const EVIDENCE_FORMAT = 'byok-evidence/1';

export interface EvidenceDecision {
  approver: string;
  decision: Decision['decision'];
  comment?: string;
  /** When the workflow received it (history event time). */
  receivedAt: string;
  via: 'update' | 'signal';
  /** The workflow counted it: an update it completed, or a decision in its result. */
  counted: boolean;
  signed?: SignedStatement;
}

export interface EvidenceRecord {
  format: typeof EVIDENCE_FORMAT;
  workflowId: string;
  runId: string;
  workflowType: string;
  /** COMPLETED, FAILED, RUNNING, ... as far as the history goes. */
  status: string;
  startedAt: string;
  closedAt?: string;
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  signedApprovals: boolean;
  /** As given to the workflow (raw Ed25519, hex); null when signatures were off. */
  approverKeys: Record<string, string> | null;
  /** What the decisions were bound to, as the workflow stated it. */
  subject?: ApprovalSubject;
  alias?: string;
  kmsKeyArn?: string;
  hsmKey?: { label: string; keyId: string; kcv: string };
  wrappingAlgorithm?: string;
  decisions: EvidenceDecision[];
  tokenRefreshes: number;
  outcome?: string;
  failure?: string;
  importedAt?: string;
  verification?: unknown;
  /** The signatures as checked when the record was built, with the keys in the history. */
  signatureCheck?: SignatureCheck;
}

type HistoryEvent = NonNullable<History['events']>[number];
type Payloads = NonNullable<HistoryEvent['workflowExecutionStartedEventAttributes']>['input'];

/** Event time; seconds are a Long from the server, a number from a history read from JSON. */
function isoOf(e: HistoryEvent): string {
  const seconds = Number(String(e.eventTime?.seconds ?? 0));
  return new Date(seconds * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6)).toISOString();
}

/** Builds the record from `history` (e.g. WorkflowHandle.fetchHistory()). */
export async function buildEvidence(workflowId: string, history: History, converter: LoadedDataConverter): Promise<EvidenceRecord> {
  const events = history.events ?? [];
  const decode = async <T>(payloads: Payloads): Promise<T[]> =>
    (await decodeArrayFromPayloads(converter, payloads?.payloads)) as T[];

  const first = events[0]?.workflowExecutionStartedEventAttributes;
  if (!first) throw new Error(`the history of ${workflowId} does not start with WorkflowExecutionStarted`);
  const [input] = await decode<ImportKeyInput>(first.input);
  const record: EvidenceRecord = {
    format: EVIDENCE_FORMAT,
    workflowId,
    runId: first.originalExecutionRunId ?? '',
    workflowType: first.workflowType?.name ?? '',
    status: 'RUNNING',
    startedAt: isoOf(events[0]),
    requester: input.requester,
    approvers: input.approvers,
    requiredApprovals: input.requiredApprovals,
    signedApprovals: !input.unsignedApprovals && input.approverKeys !== undefined,
    approverKeys: input.approverKeys ?? null,
    alias: input.alias,
    wrappingAlgorithm: input.wrappingAlgorithm,
    decisions: [],
    tokenRefreshes: 0,
  };

  const scheduled = new Map<string, string>(); // scheduled event id -> activity type
  const updates = new Map<string, EvidenceDecision>(); // update id -> decision
  let parameters = 0;
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) {
      scheduled.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType?.name ?? '');
    } else if (e.activityTaskCompletedEventAttributes) {
      const a = e.activityTaskCompletedEventAttributes;
      const type = scheduled.get(String(a.scheduledEventId));
      const [out] = await decode<Record<string, unknown>>(a.result);
      if (type === 'ensureKmsKey') record.kmsKeyArn = out.keyArn as string;
      else if (type === 'ensureHsmKey') record.hsmKey = { label: out.label as string, keyId: out.keyId as string, kcv: out.kcv as string };
      else if (type === 'getImportParameters') parameters++;
      else if (type === 'importKeyMaterial') record.importedAt = isoOf(e);
      else if (type === 'verifyKey') record.verification = out;
    } else if (e.workflowExecutionUpdateAcceptedEventAttributes) {
      const request = e.workflowExecutionUpdateAcceptedEventAttributes.acceptedRequest;
      const name = request?.input?.name;
      if (name !== 'approve' && name !== 'reject') continue;
      const [d] = await decode<DecisionInput>(request?.input?.args);
      updates.set(request?.meta?.updateId ?? '', decisionOf(d, name, isoOf(e), 'update'));
    } else if (e.workflowExecutionUpdateCompletedEventAttributes) {
      const c = e.workflowExecutionUpdateCompletedEventAttributes;
      const decision = updates.get(c.meta?.updateId ?? '');
      if (!decision || !c.outcome?.success) continue;
      decision.counted = true;
      const [view] = await decode<ApprovalView>(c.outcome.success);
      record.subject ??= view.subject;
    } else if (e.workflowExecutionSignaledEventAttributes) {
      const s = e.workflowExecutionSignaledEventAttributes;
      if (s.signalName !== 'approve' && s.signalName !== 'reject') continue;
      const [d] = await decode<DecisionInput>(s.input);
      record.decisions.push(decisionOf(d, s.signalName, isoOf(e), 'signal'));
    } else if (e.workflowExecutionCompletedEventAttributes) {
      record.status = 'COMPLETED';
      record.closedAt = isoOf(e);
      const [result] = await decode<ImportKeyResult>(e.workflowExecutionCompletedEventAttributes.result);
      record.outcome = result.outcome;
      record.alias = result.alias;
      const counted = [...result.approvals, ...(result.rejection ? [result.rejection] : [])];
      record.subject ??= counted[0]?.subject;
      // A signal cannot be seen to count from its event: the result says which did.
      for (const d of record.decisions) {
        d.counted ||= counted.some((c) => c.approver === d.approver && c.decision === d.decision && c.signed?.signature === d.signed?.signature);
      }
    } else if (e.workflowExecutionFailedEventAttributes) {
      record.status = 'FAILED';
      record.closedAt = isoOf(e);
      record.failure = e.workflowExecutionFailedEventAttributes.failure?.message ?? undefined;
    } else if (e.workflowExecutionTerminatedEventAttributes || e.workflowExecutionTimedOutEventAttributes || e.workflowExecutionCanceledEventAttributes) {
      record.status = e.workflowExecutionTerminatedEventAttributes ? 'TERMINATED' : e.workflowExecutionTimedOutEventAttributes ? 'TIMED_OUT' : 'CANCELED';
      record.closedAt = isoOf(e);
    }
  }
  record.decisions.push(...updates.values());
  record.decisions.sort((a, b) => a.receivedAt.localeCompare(b.receivedAt));
  record.tokenRefreshes = Math.max(0, parameters - 1);
  record.signatureCheck = checkSignatures(record, record.approverKeys ?? {});
  return record;
}

function decisionOf(d: DecisionInput, name: 'approve' | 'reject', receivedAt: string, via: EvidenceDecision['via']): EvidenceDecision {
  return { approver: d?.approver, decision: name === 'approve' ? 'APPROVE' : 'REJECT', comment: d?.comment, receivedAt, via, counted: false, signed: d?.signed };
}

export interface SignatureCheck {
  ok: boolean;
  /** One line per counted decision, and one per problem with the record as a whole. */
  lines: string[];
}

function verifies(signed: SignedStatement, publicKeyHex: string): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyHex, 'hex').toString('base64url') }, format: 'jwk' });
    return verify(null, statementBytes(signed.statement), key, Buffer.from(signed.signature, 'hex'));
  } catch {
    return false;
  }
}

/**
 * Re-checks every counted decision: signed by its approver's key, over this workflow id, this
 * decision and the record's subject; and, when the record says it was imported, a quorum of them.
 */
export function checkSignatures(record: EvidenceRecord, keys: Record<string, string>): SignatureCheck {
  const lines: string[] = [];
  let ok = true;
  const fail = (line: string) => {
    ok = false;
    lines.push(`FAIL ${line}`);
  };
  if (!record.signedApprovals) fail(`${record.workflowId}: signatures were turned off for this request; its decisions are not signed`);
  const counted = record.decisions.filter((d) => d.counted);
  for (const d of counted) {
    const who = `${d.decision} by ${d.approver} (${d.via}, ${d.receivedAt})`;
    const s = d.signed?.statement;
    if (!d.signed || !s) {
      if (record.signedApprovals) fail(`${who}: no signed statement`);
      continue;
    }
    const key = keys[d.approver];
    if (!key) fail(`${who}: no public key for ${d.approver}`);
    else if (!verifies(d.signed, key)) fail(`${who}: the signature does not verify with ${d.approver}'s public key`);
    else if (s.workflowId !== record.workflowId || s.approver !== d.approver || s.decision !== d.decision) {
      fail(`${who}: the statement is for ${s.decision} by ${s.approver} in ${s.workflowId}`);
    } else if (!record.subject || canonicalJson(s.subject) !== canonicalJson(record.subject)) {
      fail(`${who}: the statement is about another subject than this record's`);
    } else if (record.kmsKeyArn && s.subject.kmsKeyArn !== record.kmsKeyArn) {
      fail(`${who}: the statement names KMS key ${s.subject.kmsKeyArn}, the import used ${record.kmsKeyArn}`);
    } else if (record.hsmKey && (s.subject.hsmKeyId !== record.hsmKey.keyId || s.subject.kcv !== record.hsmKey.kcv)) {
      fail(`${who}: the statement names HSM key ${s.subject.hsmKeyId} (KCV ${s.subject.kcv}), the import used ${record.hsmKey.keyId} (KCV ${record.hsmKey.kcv})`);
    } else {
      lines.push(`ok   ${who}: signed ${s.signedAt}, valid to ${s.expiresAt}`);
    }
  }
  const approvals = new Set(counted.filter((d) => d.decision === 'APPROVE').map((d) => d.approver));
  if (record.outcome === 'IMPORTED' && approvals.size < record.requiredApprovals) {
    fail(`${record.workflowId}: imported with ${approvals.size} counted approvals, ${record.requiredApprovals} required`);
  }
  return { ok, lines };
}
