// PKCS#11 activities (graphene-pk11): find or generate the AES-256 key to import, and wrap it
// under the AWS KMS wrapping key, inside the HSM. The work itself is in hsm-keys.ts and runs on
// a pooled session's own thread (hsm-sessions.ts).
import type { WrappingAlgorithm } from '../workflows/model';
import { type HsmConfig, SessionPool } from './hsm-sessions';

export type { HsmConfig } from './hsm-sessions';
export interface EnsureHsmKeyInput {
  label: string;
  /** Generate an AES-256 key with this label when none exists (else HsmKeyNotFound). */
  generate: boolean;
}
export interface HsmKeyRef {
  label: string;
  /** CKA_ID, hex. */
  keyId: string;
  /** Key check value computed inside the HSM, hex (3 bytes). */
  kcv: string;
  created: boolean;
}
export interface WrapKeyInput {
  label: string;
  keyId: string;
  /** AWS wrapping public key, DER SubjectPublicKeyInfo, base64. */
  publicKey: string;
  wrappingAlgorithm: WrappingAlgorithm;
}
export interface WrappedKey {
  /** Ciphertext to hand to ImportKeyMaterial, base64. */
  encryptedKeyMaterial: string;
}

export function createHsmActivities(config: HsmConfig) {
  const pool = new SessionPool(config);
  const activities = {
    /**
     * Read-only: refuses, before anything is created on either side, what ensureHsmKey would
     * refuse: no such module or token, a wrong PIN, a missing key that may not be generated, an
     * unsuitable or ambiguous one.
     */
    async checkHsmKey(input: EnsureHsmKeyInput): Promise<void> {
      await pool.run(false, { op: 'check', input });
    },
    async ensureHsmKey(input: EnsureHsmKeyInput): Promise<HsmKeyRef> {
      return pool.run(input.generate, { op: 'ensure', input });
    },
    async wrapKey(input: WrapKeyInput): Promise<WrappedKey> {
      return pool.run(false, { op: 'wrap', input });
    },
  };
  return {
    activities,
    close: (): Promise<void> => pool.close(),
    /** Logged-in sessions open now, idle or in use: at most config.sessions. */
    openSessions: (): number => pool.openSessions,
  };
}
export type HsmActivities = ReturnType<typeof createHsmActivities>['activities'];
