// Shared vocabulary of the import: pure constants and types, safe for workflow code,
// activities and the CLI alike.

export const WRAPPING_ALGORITHMS = [
  'RSAES_OAEP_SHA_256',
  'RSAES_OAEP_SHA_1',
  'RSA_AES_KEY_WRAP_SHA_1',
  'RSA_AES_KEY_WRAP_SHA_256',
] as const;
export type WrappingAlgorithm = (typeof WRAPPING_ALGORITHMS)[number];

export const WRAPPING_KEY_SPECS = ['RSA_2048', 'RSA_3072', 'RSA_4096'] as const;
export type WrappingKeySpec = (typeof WRAPPING_KEY_SPECS)[number];

export const EXPIRATION_MODELS = ['KEY_MATERIAL_DOES_NOT_EXPIRE', 'KEY_MATERIAL_EXPIRES'] as const;
export type ExpirationModel = (typeof EXPIRATION_MODELS)[number];

/** Task queues: HSM activities run where the HSM is (on-prem), KMS activities where AWS credentials are. */
export const HSM_TASK_QUEUE = 'byok-hsm';
export const KMS_TASK_QUEUE = 'byok-kms';
/** The workflow task queue; served by the KMS-side worker by default. */
export const WORKFLOW_TASK_QUEUE = 'byok-kms';
