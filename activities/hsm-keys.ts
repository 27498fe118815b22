// What the HSM activities do on a session: find or generate the AES-256 key to import, compute
// its KCV, and wrap it under the AWS KMS wrapping key. The key material leaves the HSM only as
// C_WrapKey output: nothing here reads CKA_VALUE. Runs on a session's own thread.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import {
  type ITemplate,
  KeyGenMechanism,
  KeyType,
  MechanismEnum,
  ObjectClass,
  type PublicKey,
  type SecretKey,
  type Session,
  type SessionObject,
} from 'graphene-pk11';
import { ErrorType } from '../workflows/errors';
import type { EnsureHsmKeyInput, HsmKeyRef, WrapKeyInput, WrappedKey } from './hsm';
import { type HsmInfo, ckr, loggedIn, sessionLost } from './hsm-connection';
import { aesKeyWrapStep, checkWrapOutputLengths, type WrapPlan } from './wrapping';

const MECHANISM_REFUSED = new Set([
  'CKR_MECHANISM_INVALID',
  'CKR_MECHANISM_PARAM_INVALID',
  'CKR_ARGUMENTS_BAD',
  'CKR_FUNCTION_NOT_SUPPORTED',
]);

/** The suitable key labelled `label`, undefined if there is none and it may be generated. */
export function checkKey(session: Session, tokenLabel: string, { label, generate }: EnsureHsmKeyInput): SecretKey | undefined {
  const keys = findSecretKeys(session, { label });
  if (keys.length > 1) throw ambiguous(keys.length, `labelled "${label}"`, tokenLabel);
  if (keys.length === 1) {
    assertSuitable(label, keys[0]);
    return keys[0];
  }
  if (!generate) {
    throw ApplicationFailure.nonRetryable(
      `no secret key labelled "${label}" on HSM token "${tokenLabel}", and generation was not requested`,
      ErrorType.HsmKeyNotFound,
    );
  }
  return undefined;
}

export function ensureKey(session: Session, tokenLabel: string, input: EnsureHsmKeyInput): HsmKeyRef {
  // Find before generate: a retried activity finds the key its first attempt created.
  const existing = checkKey(session, tokenLabel, input);
  if (existing) return keyRef(session, input.label, existing, false);
  return keyRef(session, input.label, generateKey(session, input.label), true);
}

function findSecretKeys(session: Session, template: ITemplate): SecretKey[] {
  const keys = [...session.find({ class: ObjectClass.SECRET_KEY, ...template })].map((o) => o.toType<SecretKey>());
  // Logged out under us, the session sees no private keys: a lost session, not a missing key.
  if (keys.length === 0 && !loggedIn(session)) throw new Error('CKR_USER_NOT_LOGGED_IN');
  return keys;
}

function ambiguous(count: number, what: string, tokenLabel: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${count} secret keys ${what} on HSM token "${tokenLabel}"; refusing to guess which one to import`,
    ErrorType.HsmKeyAmbiguous,
  );
}

function unsuitable(label: string, problem: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `HSM key "${label}" ${problem}; AWS KMS import needs an extractable AES-256 key`,
    ErrorType.HsmKeyUnsuitable,
  );
}

function assertSuitable(label: string, key: SecretKey): void {
  // Key type first: CKA_VALUE_LEN does not exist for every key type.
  const keyType: KeyType = key.getAttribute('keyType');
  if (keyType !== KeyType.AES) {
    throw unsuitable(label, `is not an AES key (CKA_KEY_TYPE=CKK_${KeyType[keyType] ?? keyType})`);
  }
  const { valueLen, extractable } = key.getAttribute({ valueLen: null, extractable: null });
  if (valueLen !== 32) throw unsuitable(label, `is AES-${Number(valueLen) * 8}, not AES-256 (CKA_VALUE_LEN=${valueLen})`);
  if (!extractable) throw unsuitable(label, 'is not extractable (CKA_EXTRACTABLE=false)');
  // Such a key may only be wrapped by CKA_TRUSTED keys, which the imported AWS key is not.
  if (wrapsOnlyWithTrusted(key)) {
    throw unsuitable(label, 'can only be wrapped by trusted keys (CKA_WRAP_WITH_TRUSTED=true)');
  }
}

function wrapsOnlyWithTrusted(key: SecretKey): boolean {
  try {
    return key.getAttribute('wrapWithTrusted') === true;
  } catch (e) {
    if (ckr(e) === 'CKR_ATTRIBUTE_TYPE_INVALID') return false;
    throw e;
  }
}

/** CKA_ID of a generated key: the first 16 bytes of SHA-256(label), so it follows from the label alone. */
function keyIdFor(label: string): Buffer {
  return createHash('sha256').update(label).digest().subarray(0, 16);
}

function generateKey(session: Session, label: string): SecretKey {
  return session.generateKey(KeyGenMechanism.AES, {
    class: ObjectClass.SECRET_KEY,
    keyType: KeyType.AES,
    valueLen: 32,
    label,
    id: keyIdFor(label),
    token: true,
    private: true,
    sensitive: true,
    // Extractable lets C_WrapKey export it; not trusted-only, as the imported AWS key is untrusted.
    extractable: true,
    wrapWithTrusted: false,
    // The key is wrapped, it wraps nothing. CKA_ENCRYPT stays on only so that an HSM that keeps
    // no CKA_CHECK_VALUE can still compute the KCV itself (see keyCheckValue).
    encrypt: true,
    decrypt: false,
    wrap: false,
    unwrap: false,
    sign: false,
    verify: false,
    derive: false,
  });
}

function keyRef(session: Session, label: string, key: SecretKey, created: boolean): HsmKeyRef {
  const id: Buffer = key.getAttribute('id');
  return { label, keyId: id.toString('hex'), kcv: keyCheckValue(session, label, key), created };
}

/**
 * KCV = the first 3 bytes of AES-ECB(key, 16 zero bytes), hex: the PKCS#11 (v2.40 and 3.x)
 * definition of CKA_CHECK_VALUE for AES keys and the classic zero-block KCV, not the AES-CMAC
 * KCV of ANSI X9.24-1:2017. Taken from CKA_CHECK_VALUE where the HSM keeps it (SoftHSM 2.6
 * does), else computed by the HSM with C_Encrypt; never from the key bytes.
 */
function keyCheckValue(session: Session, label: string, key: SecretKey): string {
  const stored = storedCheckValue(key);
  if (stored.length >= 3) return stored.subarray(0, 3).toString('hex');
  try {
    const zeros = Buffer.alloc(16);
    const block = session.createCipher({ name: MechanismEnum.AES_ECB, params: null }, key).once(zeros, Buffer.alloc(16));
    return block.subarray(0, 3).toString('hex');
  } catch (e) {
    if (ckr(e) === 'CKR_KEY_FUNCTION_NOT_PERMITTED') {
      throw unsuitable(label, 'has no CKA_CHECK_VALUE and CKA_ENCRYPT=false, so the HSM cannot compute its key check value');
    }
    throw e;
  }
}

function storedCheckValue(key: SecretKey): Buffer {
  try {
    return key.getAttribute('checkValue') ?? Buffer.alloc(0);
  } catch (e) {
    if (ckr(e) === 'CKR_ATTRIBUTE_TYPE_INVALID') return Buffer.alloc(0);
    throw e;
  }
}

interface RsaPublicKey {
  modulus: Buffer;
  publicExponent: Buffer;
}

export function parseWrappingKey(spkiBase64: string): RsaPublicKey {
  const invalid = (problem: string) =>
    ApplicationFailure.nonRetryable(`AWS wrapping public key ${problem}`, ErrorType.InvalidWrappingPublicKey);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' });
  } catch (e) {
    throw invalid(`is not a base64 DER SubjectPublicKeyInfo: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalid(`is not an RSA encryption key (key type ${key.asymmetricKeyType})`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) throw invalid(`has a ${bits}-bit modulus; at least 2048 bits are required`);
  const { n, e } = key.export({ format: 'jwk' });
  // An exported RSA JWK always carries n and e.
  return { modulus: Buffer.from(n!, 'base64url'), publicExponent: Buffer.from(e!, 'base64url') };
}

function findTargetKey(session: Session, tokenLabel: string, label: string, keyId: string): SecretKey {
  if (!/^(?:[0-9a-f]{2})*$/i.test(keyId)) {
    throw ApplicationFailure.nonRetryable(`HSM key id ${JSON.stringify(keyId)} is not hex`, ErrorType.InvalidInput);
  }
  const keys = findSecretKeys(session, { label, id: Buffer.from(keyId, 'hex') });
  const what = `labelled "${label}" with CKA_ID ${keyId}`;
  if (keys.length > 1) throw ambiguous(keys.length, what, tokenLabel);
  if (keys.length === 0) {
    throw ApplicationFailure.nonRetryable(`no secret key ${what} on HSM token "${tokenLabel}"`, ErrorType.HsmKeyNotFound);
  }
  assertSuitable(label, keys[0]);
  return keys[0];
}

/** Ephemeral key of RSA_AES_KEY_WRAP_*: lives in this session only, and only to wrap the target. */
const EPHEMERAL_AES_KEY: ITemplate = {
  class: ObjectClass.SECRET_KEY,
  keyType: KeyType.AES,
  valueLen: 32,
  token: false,
  private: true,
  sensitive: true,
  extractable: true,
  wrap: true,
  unwrap: false,
  encrypt: false,
  decrypt: false,
};

export function wrap(
  session: Session,
  hsm: HsmInfo,
  tokenLabel: string,
  { label, keyId, wrappingAlgorithm }: WrapKeyInput,
  plan: WrapPlan,
  rsa: RsaPublicKey,
): WrappedKey {
  const target = findTargetKey(session, tokenLabel, label, keyId);
  const step = <T>(mechanism: string, call: () => T): T => {
    try {
      return call();
    } catch (e) {
      const code = ckr(e);
      if (code && MECHANISM_REFUSED.has(code)) {
        throw ApplicationFailure.nonRetryable(
          `${hsm.name} refused ${mechanism} for ${wrappingAlgorithm}: ${code}`,
          ErrorType.HsmMechanismUnsupported,
        );
      }
      throw e;
    }
  };
  const transient: SessionObject[] = [];
  try {
    const publicKey = session
      .create({ class: ObjectClass.PUBLIC_KEY, keyType: KeyType.RSA, token: false, wrap: true, encrypt: true, ...rsa })
      .toType<PublicKey>();
    transient.push(publicKey);
    const oaep = (key: SecretKey) => step(plan.oaep.description, () => session.wrapKey(plan.oaep.mechanism, publicKey, key));
    const check = { hsmName: hsm.name, algorithm: wrappingAlgorithm, modulusBytes: rsa.modulus.length };
    if (!plan.aesKeyWrap) {
      const rsaPart = oaep(target);
      checkWrapOutputLengths({ ...check, rsa: { description: plan.oaep.description, length: rsaPart.length } });
      return { encryptedKeyMaterial: rsaPart.toString('base64') };
    }

    const kwp = aesKeyWrapStep(hsm.mechanisms);
    const ephemeral = step('CKM_AES_KEY_GEN(256-bit session key)', () =>
      session.generateKey(KeyGenMechanism.AES, EPHEMERAL_AES_KEY),
    );
    transient.push(ephemeral);
    const rsaPart = oaep(ephemeral);
    const kwpPart = step(kwp.description, () => session.wrapKey(kwp.mechanism, ephemeral, target));
    checkWrapOutputLengths({
      ...check,
      rsa: { description: plan.oaep.description, length: rsaPart.length },
      aesKeyWrap: { description: kwp.description, length: kwpPart.length },
    });
    return { encryptedKeyMaterial: Buffer.concat([rsaPart, kwpPart]).toString('base64') };
  } finally {
    for (const object of transient) destroyTransient(object);
  }
}

function destroyTransient(object: SessionObject): void {
  try {
    object.destroy();
  } catch (e) {
    // A lost session has taken its session objects with it.
    if (!sessionLost(e)) throw e;
  }
}
