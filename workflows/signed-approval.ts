// Signed decisions: an approver signs, with their Ed25519 key, a statement binding the decision to
// one request (workflow id) and to exactly what it is about (the approval subject). Verified in the
// workflow, so pure and deterministic: @noble/curves' JS Ed25519, workflow time passed in.
import { ed25519 } from '@noble/curves/ed25519';
import type { ApprovalSubject, Decision } from './approval';
import { canonicalJson } from './canonical-json';

/** What an approver signs. Plain JSON; the signature covers its canonical form (canonical-json.ts). */
export interface ApprovalStatement {
  workflowId: string;
  /** The whole subject as the workflow shows it, whatever fields it has. */
  subject: ApprovalSubject;
  decision: Decision['decision'];
  approver: string;
  comment?: string;
  /** ISO-8601, the signer's clock. */
  signedAt: string;
  /** ISO-8601; the workflow refuses the statement after this (workflow time). */
  expiresAt: string;
}

export interface SignedStatement {
  statement: ApprovalStatement;
  /** Ed25519 signature of canonicalJson(statement) as UTF-8, hex. */
  signature: string;
}

/** How far ahead of workflow time a signer's clock may be. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** A statement may be valid at most this long: it is signed when deciding, not stockpiled. */
export const MAX_STATEMENT_VALIDITY_MS = 24 * 3_600_000;
/** What `byok approve` asks for. */
export const DEFAULT_STATEMENT_VALIDITY_MS = 15 * 60_000;

const HEX_KEY = /^[0-9a-f]{64}$/;
const HEX_SIGNATURE = /^[0-9a-f]{128}$/;

/** The bytes signed. */
export function statementBytes(statement: ApprovalStatement): Uint8Array {
  return new TextEncoder().encode(canonicalJson(statement));
}

/** Why `hex` is not an approver public key (raw Ed25519, 32 bytes, lower-case hex), or undefined. */
export function publicKeyProblem(hex: unknown): string | undefined {
  if (typeof hex !== 'string' || !HEX_KEY.test(hex)) return 'expected a raw Ed25519 public key: 64 lower-case hex characters';
  try {
    ed25519.ExtendedPoint.fromHex(hex).assertValidity();
  } catch {
    return 'is not a point on the Ed25519 curve';
  }
  return undefined;
}

/**
 * Why the approver-key configuration is unusable, or undefined. Each approver needs a key, and
 * no two approvers may share one (one key holder would count twice).
 */
export function approverKeysProblem(keys: unknown, approvers: string[]): { field: string; problem: string } | undefined {
  if (typeof keys !== 'object' || keys === null || Array.isArray(keys)) {
    return { field: 'approverKeys', problem: 'expected {approver: Ed25519 public key (hex)} for every approver, or unsignedApprovals: true' };
  }
  const map = keys as Record<string, unknown>;
  for (const approver of approvers) {
    if (!Object.hasOwn(map, approver)) return { field: `approverKeys.${approver}`, problem: 'missing: every approver needs a public key' };
    const problem = publicKeyProblem(map[approver]);
    if (problem) return { field: `approverKeys.${approver}`, problem };
  }
  const stranger = Object.keys(map).find((name) => !approvers.includes(name));
  if (stranger) return { field: `approverKeys.${stranger}`, problem: 'is not one of the approvers' };
  const shared = approvers.find((a, i) => approvers.findIndex((b) => map[b] === map[a]) !== i);
  if (shared) return { field: `approverKeys.${shared}`, problem: 'is the same key as another approver\'s' };
  return undefined;
}

export interface Expectation {
  workflowId: string;
  subject: ApprovalSubject;
  decision: Decision['decision'];
  approver: string;
  comment?: string;
  /** Workflow time, ms since the epoch. */
  now: number;
}

const isIso = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));

/** The first field in which two subjects differ, for a refusal that says what changed. */
function subjectDifference(signed: unknown, actual: ApprovalSubject): string | undefined {
  if (typeof signed !== 'object' || signed === null) return 'subject is missing';
  const a = actual as unknown as Record<string, unknown>;
  const s = signed as Record<string, unknown>;
  for (const field of [...new Set([...Object.keys(a), ...Object.keys(s)])].sort()) {
    if (canonicalJson(a[field] ?? null) !== canonicalJson(s[field] ?? null)) {
      return `${field} is ${JSON.stringify(a[field])} here but ${JSON.stringify(s[field])} in the statement`;
    }
  }
  return undefined;
}

/**
 * Why the signed statement must not count as `expected`, or undefined when it may. Checks, in
 * order: shape, binding (approver, decision, comment, workflow, subject), validity in workflow
 * time, and last the signature under `publicKey` (hex).
 */
export function statementRefusal(signed: unknown, expected: Expectation, publicKey: string): string | undefined {
  if (typeof signed !== 'object' || signed === null) {
    return 'this request requires signed decisions: no signed statement (sign with "byok approve"/"byok reject" and your private key)';
  }
  const { statement: st, signature } = signed as Partial<SignedStatement>;
  if (typeof st !== 'object' || st === null) return 'signed statement: statement is missing';
  if (typeof signature !== 'string' || !HEX_SIGNATURE.test(signature)) {
    return 'signed statement: signature must be an Ed25519 signature, 128 lower-case hex characters';
  }
  const s = st as Partial<Record<keyof ApprovalStatement, unknown>>;
  if (s.approver !== expected.approver) return `signed statement is by ${JSON.stringify(s.approver)}, not "${expected.approver}"`;
  if (s.decision !== expected.decision) return `signed statement decides ${JSON.stringify(s.decision)}, but this is ${expected.decision}`;
  if (s.comment !== expected.comment) return 'signed statement has a different comment than the decision';
  if (s.workflowId !== expected.workflowId) {
    return `signed statement is for workflow ${JSON.stringify(s.workflowId)}, not "${expected.workflowId}" (replayed from another request?)`;
  }
  const difference = subjectDifference(s.subject, expected.subject);
  if (difference) return `signed statement is about something else: ${difference}`;
  if (!isIso(s.signedAt) || !isIso(s.expiresAt)) return 'signed statement: signedAt and expiresAt must be ISO-8601 times';
  const signedAt = Date.parse(s.signedAt);
  const expiresAt = Date.parse(s.expiresAt);
  const now = new Date(expected.now).toISOString();
  if (signedAt > expected.now + CLOCK_SKEW_MS) return `signed statement is not valid yet: signed at ${s.signedAt}, workflow time is ${now}`;
  if (expiresAt <= expected.now) return `signed statement expired at ${s.expiresAt} (workflow time is ${now}); sign again`;
  if (expiresAt - signedAt > MAX_STATEMENT_VALIDITY_MS) {
    return `signed statement is valid for more than ${MAX_STATEMENT_VALIDITY_MS / 3_600_000} hours (${s.signedAt} to ${s.expiresAt})`;
  }
  let valid = false;
  try {
    valid = ed25519.verify(signature, statementBytes(st as ApprovalStatement), publicKey, { zip215: false });
  } catch {
    valid = false;
  }
  return valid ? undefined : `signature does not verify with the public key configured for "${expected.approver}"`;
}
