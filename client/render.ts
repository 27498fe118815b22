// Human-readable views of an import's status and result, for the terminal.
import type { ImportKeyResult, ImportStatus } from '../workflows/import-key';

export function left(until: string, now: Date): string {
  const ms = Date.parse(until) - now.getTime();
  if (ms <= 0) return 'passed';
  const minutes = Math.floor(ms / 60_000);
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m left`;
}

const row = (name: string, value: string) => console.log(`  ${name.padEnd(11)} ${value}`);

export function printStatus(workflowId: string, s: ImportStatus, now: Date): void {
  console.log(`${workflowId}  ${s.step}`);
  row('alias', s.alias);
  row('requester', s.requester);
  if (s.kmsKey) row('KMS key', s.kmsKey.keyArn);
  if (s.hsmKey) row('HSM key', `${s.hsmKey.label} (id ${s.hsmKey.keyId}, KCV ${s.hsmKey.kcv})`);
  row('wrapping', s.wrappingAlgorithm);
  row('signatures', s.signedApprovals ? 'required (Ed25519)' : 'OFF: decisions are not signed (unsignedApprovals)');
  const who = s.approvals.map((a) => `${a.approver} at ${a.at}`).join(', ') || 'none yet';
  row('approvals', `${s.approvals.length} of ${s.requiredApprovals} from ${s.approvers.join(', ')}: ${who}`);
  if (s.rejection) row('rejected', `by ${s.rejection.approver} at ${s.rejection.at}${s.rejection.comment ? `: ${s.rejection.comment}` : ''}`);
  if (s.step === 'AWAITING_APPROVAL') row('deadline', `${s.approvalDeadline} (${left(s.approvalDeadline, now)})`);
  if (s.importToken) {
    row('token', `valid to ${s.importToken.parametersValidTo}, refreshed after ${s.importToken.refreshAfter} (${left(s.importToken.refreshAfter, now)})`);
  }
  row('refreshes', String(s.tokenRefreshes));
  if (s.failure) row('failure', s.failure);
}

export function printResult(workflowId: string, r: ImportKeyResult): void {
  console.log(`${workflowId}  ${r.outcome}`);
  row('alias', r.alias);
  row('KMS key', r.keyArn);
  row('HSM key', `${r.hsmKey.label} (id ${r.hsmKey.keyId}, KCV ${r.hsmKey.kcv})`);
  row('wrapping', `${r.wrappingAlgorithm} under ${r.wrappingKeySpec}`);
  row('expiration', r.validTo ? `${r.expirationModel} at ${r.validTo}` : r.expirationModel);
  row('requester', `${r.requester}, started ${r.startedAt}`);
  for (const a of r.approvals) row('approved', `by ${a.approver} at ${a.at}${a.comment ? `: ${a.comment}` : ''}`);
  if (r.rejection) row('rejected', `by ${r.rejection.approver} at ${r.rejection.at}${r.rejection.comment ? `: ${r.rejection.comment}` : ''}`);
  row('refreshes', String(r.tokenRefreshes));
  if (r.importedAt) row('imported', r.importedAt);
  if (r.verification) {
    row('verified', `${r.verification.keyState}, origin ${r.verification.origin}, encrypt/decrypt ${r.verification.roundTrip ? 'ok' : 'FAILED'}`);
  }
}
