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
   * RSA_AES_KEY_WRAP_*: the target key is wrapped under an ephemeral AES-256 key (mechanism from
   * aesKeyWrapStep), and AWS expects RSA part ‖ RFC 5649 part. Composed from two steps because
   * HSMs (Primus among them) do not all offer CKM_RSA_AES_KEY_WRAP.
   */
  aesKeyWrap: boolean;
}

/**
 * PKCS#11 3.0's RFC 5649 mechanism, by number: graphene 2.3 has no name for it. v2.40's
 * CKM_AES_KEY_WRAP_PAD is ambiguous, and some HSMs implement it as PKCS#7 padding + RFC 3394.
 */
export const CKM_AES_KEY_WRAP_KWP = 0x0000210b;

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
  return { algorithm, oaep, aesKeyWrap };
}

/** The RFC 5649 step for an HSM whose slot lists `mechanisms`: KWP where offered, else _PAD. */
export function aesKeyWrapStep(mechanisms: ReadonlySet<number>): WrapStep {
  // No parameter for either: RFC 5649's default alternative IV, which is what AWS KMS unwraps.
  return mechanisms.has(CKM_AES_KEY_WRAP_KWP)
    ? { mechanism: { name: CKM_AES_KEY_WRAP_KWP, params: null }, description: 'CKM_AES_KEY_WRAP_KWP(RFC 5649)' }
    : {
        mechanism: { name: MechanismEnum.AES_KEY_WRAP_PAD, params: null },
        description: 'CKM_AES_KEY_WRAP_PAD(HSM lists no CKM_AES_KEY_WRAP_KWP)',
      };
}

/** RFC 5649 of a 32-byte key: an 8-byte integrity block plus the key, which needs no padding. */
const RFC_5649_AES_256_LENGTH = 40;

export interface WrapOutputLengths {
  hsmName: string;
  algorithm: WrappingAlgorithm;
  modulusBytes: number;
  rsa: { description: string; length: number };
  aesKeyWrap?: { description: string; length: number };
}

/**
 * Refuses C_WrapKey output of a length AWS KMS cannot unwrap. ImportKeyMaterial would answer
 * InvalidCiphertext only after the approvals were given; this fails before they are asked for.
 * Lengths only: it catches PKCS#7 padding + RFC 3394 (48 bytes), not a wrong IV (still 40).
 */
export function checkWrapOutputLengths({ hsmName, algorithm, modulusBytes, rsa, aesKeyWrap }: WrapOutputLengths): void {
  const refuse = (problem: string) =>
    ApplicationFailure.nonRetryable(`${hsmName}: for ${algorithm}, ${problem}`, ErrorType.HsmMechanismUnsupported);
  if (rsa.length !== modulusBytes) {
    throw refuse(`${rsa.description} produced ${rsa.length} bytes, but the RSA modulus has ${modulusBytes}`);
  }
  if (aesKeyWrap && aesKeyWrap.length !== RFC_5649_AES_256_LENGTH) {
    throw refuse(
      `${aesKeyWrap.description} produced ${aesKeyWrap.length} bytes from the AES-256 key, but AWS KMS expects ` +
        `RFC 5649, which gives ${RFC_5649_AES_256_LENGTH} (48 would be PKCS#7 padding + RFC 3394)`,
    );
  }
}
