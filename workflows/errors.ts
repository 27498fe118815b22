// Stable `type` values of the non-retryable ApplicationFailures raised by activities and the
// workflow. Callers (the workflow, the CLI, scripts) branch on these, never on messages.
export const ErrorType = {
  InvalidInput: 'InvalidInput',
  DecisionRefused: 'DecisionRefused',

  UnknownAlias: 'UnknownAlias',
  KeyNotExternal: 'KeyNotExternal',
  KeyPendingDeletion: 'KeyPendingDeletion',
  KeyUnusableState: 'KeyUnusableState',
  KeyHasDifferentMaterial: 'KeyHasDifferentMaterial',
  ImportTokenExpired: 'ImportTokenExpired',
  ImportTokenInvalid: 'ImportTokenInvalid',
  InvalidCiphertext: 'InvalidCiphertext',
  KmsRequestRejected: 'KmsRequestRejected',
  KmsAccessDenied: 'KmsAccessDenied',
  VerificationFailed: 'VerificationFailed',
  /** The key is not in the state the lifecycle operation (restore, reimport, revoke) expects. */
  KeyStateMismatch: 'KeyStateMismatch',
  /** The HSM key found is not the one the KMS key records (key id or KCV differ). */
  HsmKeyMismatch: 'HsmKeyMismatch',
  /** The KMS has no ListKeyRotations / RotateKeyOnDemand (local-kms): native rotation cannot run there. */
  NativeRotationUnsupported: 'NativeRotationUnsupported',

  HsmModuleNotFound: 'HsmModuleNotFound',
  HsmTokenNotFound: 'HsmTokenNotFound',
  HsmLoginFailed: 'HsmLoginFailed',
  HsmKeyNotFound: 'HsmKeyNotFound',
  HsmKeyAmbiguous: 'HsmKeyAmbiguous',
  HsmKeyUnsuitable: 'HsmKeyUnsuitable',
  HsmMechanismUnsupported: 'HsmMechanismUnsupported',
  InvalidWrappingPublicKey: 'InvalidWrappingPublicKey',
  /** A KMS answer that cannot be right: no import token, parameters already expired. */
  InvalidImportParameters: 'InvalidImportParameters',

  TokenRefreshLimit: 'TokenRefreshLimit',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];
