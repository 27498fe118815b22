// AWS KMS wrapping algorithm -> the PKCS#11 mechanisms that produce the same ciphertext.
// Pure: builds graphene mechanism descriptions, talks to no HSM.
import { ApplicationFailure } from '@temporalio/common';
import { type IAlgorithm, MechanismEnum, RsaMgf, RsaOaepParams } from 'graphene-pk11';
import { ErrorType } from '../workflows/errors';
import { WRAPPING_ALGORITHMS, type WrappingAlgorithm } from '../workflows/model';

export interface WrapStep {
  mechanism: IAlgorithm;
  /** Mechanism and parameters as named in error messages, e.g. CKM_RSA_PKCS_OAEP(SHA-256, MGF1-SHA256). */
  description: string;
}

export interface OaepStep extends WrapStep {
  hash: MechanismEnum;
  mgf: RsaMgf;
}

export interface WrapPlan {
  algorithm: WrappingAlgorithm;
  /** C_WrapKey under the AWS public key: of the target key itself, or of the ephemeral AES key. */
  oaep: OaepStep;
  /**
   * Only for RSA_AES_KEY_WRAP_*: C_WrapKey of the target key under an ephemeral AES-256 key.
   * AWS expects RSA part ‖ KWP part. Composed from two steps because HSMs (Primus among them)
   * do not all offer CKM_RSA_AES_KEY_WRAP.
   */
  aesKeyWrap?: WrapStep;
}

const HASHES = {
  'SHA-1': { hash: MechanismEnum.SHA1, mgf: RsaMgf.MGF1_SHA1, mgfName: 'MGF1-SHA1' },
  'SHA-256': { hash: MechanismEnum.SHA256, mgf: RsaMgf.MGF1_SHA256, mgfName: 'MGF1-SHA256' },
} as const;
type HashName = keyof typeof HASHES;

const SHAPES: Record<WrappingAlgorithm, { hashName: HashName; aesKeyWrap: boolean }> = {
  RSAES_OAEP_SHA_1: { hashName: 'SHA-1', aesKeyWrap: false },
  RSAES_OAEP_SHA_256: { hashName: 'SHA-256', aesKeyWrap: false },
  RSA_AES_KEY_WRAP_SHA_1: { hashName: 'SHA-1', aesKeyWrap: true },
  RSA_AES_KEY_WRAP_SHA_256: { hashName: 'SHA-256', aesKeyWrap: true },
};

/** The PKCS#11 sequence for `algorithm`; fresh objects on each call, so callers share no state. */
export function wrapPlan(algorithm: WrappingAlgorithm): WrapPlan {
  // Activity input is only typed at compile time; an unknown name must not reach the HSM.
  if (!(WRAPPING_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw ApplicationFailure.nonRetryable(
      `unknown wrapping algorithm ${JSON.stringify(algorithm)}; expected one of ${WRAPPING_ALGORITHMS.join(', ')}`,
      ErrorType.InvalidInput,
    );
  }
  const { hashName, aesKeyWrap } = SHAPES[algorithm];
  const { hash, mgf, mgfName } = HASHES[hashName];
  const oaep: OaepStep = {
    // No label (pSourceData empty), as AWS KMS uses none.
    mechanism: { name: MechanismEnum.RSA_PKCS_OAEP, params: new RsaOaepParams(hash, mgf) },
    description: `CKM_RSA_PKCS_OAEP(${hashName}, ${mgfName})`,
    hash,
    mgf,
  };
  if (!aesKeyWrap) return { algorithm, oaep };
  return {
    algorithm,
    oaep,
    aesKeyWrap: {
      // No parameter: RFC 5649 with its default alternative IV, which is what AWS KMS unwraps.
      mechanism: { name: MechanismEnum.AES_KEY_WRAP_PAD, params: null },
      description: 'CKM_AES_KEY_WRAP_PAD(RFC 5649, default IV)',
    },
  };
}
