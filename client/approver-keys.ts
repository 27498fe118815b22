// Approvers' Ed25519 keys on disk: `byok keygen` writes NAME.key (private, PKCS#8 PEM, mode 0600)
// and NAME.pub (SPKI PEM) into the keys folder; `byok import` reads the approvers' NAME.pub files;
// `byok approve|reject` sign with NAME.key. Private keys never leave the approver's machine.
import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PRINCIPAL } from '../workflows/import-request';
import { statementBytes, type ApprovalStatement, type SignedStatement } from '../workflows/signed-approval';
import { CliError, Exit } from './command';

/** Where keygen writes and approve looks: BYOK_KEYS_DIR, else ~/.byok/keys. */
export function keysDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BYOK_KEYS_DIR || path.join(os.homedir(), '.byok', 'keys');
}

/** Where import reads the approvers' public keys: BYOK_APPROVER_KEYS_DIR, else the keys folder. */
export function approverKeysDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BYOK_APPROVER_KEYS_DIR || keysDir(env);
}

export const privateKeyPath = (dir: string, name: string) => path.join(dir, `${name}.key`);
export const publicKeyPath = (dir: string, name: string) => path.join(dir, `${name}.pub`);

/** Raw Ed25519 public key, hex: the form the workflow input carries. */
export function rawPublicKeyHex(key: KeyObject): string {
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? key.type}`);
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
}

/** The public keys of `approvers`, read from DIR/NAME.pub; a clear usage error for each problem. */
export function readApproverKeys(dir: string, approvers: string[]): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const approver of approvers) {
    if (!PRINCIPAL.test(approver)) {
      throw new CliError(`invalid approvers: ${JSON.stringify(approver)} is not an id of 1-64 letters, digits and . _ @ -`, Exit.USAGE);
    }
    const file = publicKeyPath(dir, approver);
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch {
      throw new CliError(
        `no public key for approver "${approver}": ${file} is missing (the approver runs "byok keygen --as ${approver}" and hands over ${approver}.pub; or --unsigned-approvals)`,
        Exit.USAGE,
      );
    }
    try {
      keys[approver] = rawPublicKeyHex(createPublicKey(pem));
    } catch (err) {
      throw new CliError(`public key of approver "${approver}" in ${file} is unusable: ${(err as Error).message}`, Exit.USAGE);
    }
  }
  return keys;
}

/** Signs the statement with the approver's private key file. */
export function signStatement(keyFile: string, statement: ApprovalStatement): SignedStatement {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile, 'utf8'));
  } catch (err) {
    throw new CliError(`cannot read your private key ${keyFile}: ${(err as Error).message} (create one with "byok keygen --as ${statement.approver}", or pass --key FILE)`, Exit.USAGE);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new CliError(`${keyFile} is not an Ed25519 private key`, Exit.USAGE);
  return { statement, signature: sign(null, statementBytes(statement), key).toString('hex') };
}
