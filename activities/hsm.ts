// CONTRACT STUB — to be implemented. Keep every exported name and type as declared.
import type { WrappingAlgorithm } from '../workflows/model';

export interface HsmConfig {
  /** Path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so or libprimusP11.so. */
  module: string;
  tokenLabel: string;
  /** User PIN; read by the worker from the environment or a file, never from workflow input. */
  pin: string;
}
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
  const activities = {
    async ensureHsmKey(_input: EnsureHsmKeyInput): Promise<HsmKeyRef> {
      throw new Error('not implemented');
    },
    async wrapKey(_input: WrapKeyInput): Promise<WrappedKey> {
      void config;
      throw new Error('not implemented');
    },
  };
  return { activities, close: async (): Promise<void> => {} };
}
export type HsmActivities = ReturnType<typeof createHsmActivities>['activities'];
