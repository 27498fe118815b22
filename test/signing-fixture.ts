// Approver key pairs and signed statements for tests, made as `byok keygen` and `byok approve` make them.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { ApprovalSubject } from '../workflows/approval';
import { statementBytes, type ApprovalStatement, type SignedStatement } from '../workflows/signed-approval';

export interface Approver {
  name: string;
  privateKey: KeyObject;
  /** Raw public key, hex, as the workflow input carries it. */
  publicKeyHex: string;
}

export function approver(name: string): Approver {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { name, privateKey, publicKeyHex: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex') };
}

export const keysOf = (approvers: Approver[]): Record<string, string> =>
  Object.fromEntries(approvers.map((a) => [a.name, a.publicKeyHex]));

export function signStatement(by: Approver, statement: ApprovalStatement, key: KeyObject = by.privateKey): SignedStatement {
  return { statement, signature: sign(null, statementBytes(statement), key).toString('hex') };
}

/** A statement as `byok approve` builds it: signed now, valid 15 minutes; `over` changes any field. */
export function statementFor(
  by: Approver,
  workflowId: string,
  subject: ApprovalSubject,
  over: Partial<ApprovalStatement> = {},
  nowMs: number = Date.now(),
): ApprovalStatement {
  return {
    workflowId,
    subject,
    decision: 'APPROVE',
    approver: by.name,
    signedAt: new Date(nowMs).toISOString(),
    expiresAt: new Date(nowMs + 15 * 60_000).toISOString(),
    ...over,
  };
}
