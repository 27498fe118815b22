// CONTRACT STUB — to be implemented. Keep every exported name and type as declared.
import { KMSClient } from '@aws-sdk/client-kms';
import type { ExpirationModel, WrappingAlgorithm, WrappingKeySpec } from '../workflows/model';

export interface EnsureKmsKeyInput {
  /** Full alias name, e.g. "alias/payments". */
  alias: string;
  description: string;
  /** false: the alias must already exist (else UnknownAlias). */
  createIfMissing: boolean;
  /** The workflow id; every key we create is tagged with it so a retry finds it instead of creating another. */
  requestId: string;
}
export interface KmsKeyRef {
  keyId: string;
  keyArn: string;
  /** True only when this call created the key. */
  created: boolean;
  /** KMS KeyState at the time of the call, e.g. "PendingImport" or "Enabled". */
  keyState: string;
}
export interface GetImportParametersInput {
  keyId: string;
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: WrappingKeySpec;
}
export interface ImportParameters {
  /** Wrapping public key, DER SubjectPublicKeyInfo, base64. */
  publicKey: string;
  /** Import token, base64. */
  importToken: string;
  /** ISO-8601 instant after which the token is no longer accepted. */
  parametersValidTo: string;
}
export interface ImportKeyMaterialInput {
  keyId: string;
  importToken: string;
  /** Wrapped key material, base64. */
  encryptedKeyMaterial: string;
  expirationModel: ExpirationModel;
  /** ISO-8601, whole seconds; required when expirationModel is KEY_MATERIAL_EXPIRES. */
  validTo?: string;
}
export interface VerifyKeyInput {
  keyId: string;
  expirationModel: ExpirationModel;
  validTo?: string;
}
export interface KeyVerification {
  keyState: string;
  origin: string;
  expirationModel: ExpirationModel;
  validTo?: string;
  /** Encrypt then Decrypt of a random probe gave the probe back. */
  roundTrip: boolean;
}

export function createKmsActivities(client: KMSClient) {
  return {
    async ensureKmsKey(_input: EnsureKmsKeyInput): Promise<KmsKeyRef> {
      throw new Error('not implemented');
    },
    async getImportParameters(_input: GetImportParametersInput): Promise<ImportParameters> {
      throw new Error('not implemented');
    },
    async importKeyMaterial(_input: ImportKeyMaterialInput): Promise<void> {
      throw new Error('not implemented');
    },
    async verifyKey(_input: VerifyKeyInput): Promise<KeyVerification> {
      void client;
      throw new Error('not implemented');
    },
  };
}
export type KmsActivities = ReturnType<typeof createKmsActivities>;
