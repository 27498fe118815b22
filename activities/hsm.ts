// PKCS#11 activities (graphene-pk11): find or generate the AES-256 key to import, and wrap it
// under the AWS KMS wrapping key. The key material leaves the HSM only as C_WrapKey output:
// nothing here reads CKA_VALUE.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import {
  type ITemplate,
  KeyGenMechanism,
  KeyType,
  MechanismEnum,
  Module,
  ObjectClass,
  type PublicKey,
  type SecretKey,
  type Session,
  SessionFlag,
  type SessionObject,
  type Slot,
  type Token,
  TokenFlag,
} from 'graphene-pk11';
import { ErrorType } from '../workflows/errors';
import type { WrappingAlgorithm } from '../workflows/model';
import { aesKeyWrapStep, checkWrapOutputLengths, wrapPlan, type WrapPlan } from './wrapping';

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
  const hsm = new HsmConnection(config);
  const activities = {
    /**
     * Read-only: refuses, before anything is created on either side, what ensureHsmKey would
     * refuse: no such module or token, a wrong PIN, a missing key that may not be generated, an
     * unsuitable or ambiguous one.
     */
    async checkHsmKey(input: EnsureHsmKeyInput): Promise<void> {
      hsm.use((session) => checkKey(session, config.tokenLabel, input));
    },
    async ensureHsmKey(input: EnsureHsmKeyInput): Promise<HsmKeyRef> {
      return hsm.use((session) => ensureKey(session, config.tokenLabel, input));
    },
    async wrapKey(input: WrapKeyInput): Promise<WrappedKey> {
      // Checked before touching the HSM: neither can get better on retry.
      const plan = wrapPlan(input.wrappingAlgorithm);
      const rsa = parseWrappingKey(input.publicKey);
      return hsm.use((session) => wrap(session, hsm.info, config.tokenLabel, input, plan, rsa));
    },
  };
  return { activities, close: async (): Promise<void> => hsm.close() };
}
export type HsmActivities = ReturnType<typeof createHsmActivities>['activities'];

/** Return codes after which the session (or the whole library state) is gone, not the request wrong. */
const SESSION_LOST = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_SLOT_ID_INVALID',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  // A call that died half-way can leave an operation open; a fresh session clears it.
  'CKR_OPERATION_ACTIVE',
]);
// CK_STATE values of a session logged in as the user.
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;
const LOGIN_FAILED = new Set([
  'CKR_PIN_INCORRECT',
  'CKR_PIN_INVALID',
  'CKR_PIN_LEN_RANGE',
  'CKR_PIN_LOCKED',
  'CKR_PIN_EXPIRED',
]);
const MECHANISM_REFUSED = new Set([
  'CKR_MECHANISM_INVALID',
  'CKR_MECHANISM_PARAM_INVALID',
  'CKR_ARGUMENTS_BAD',
  'CKR_FUNCTION_NOT_SUPPORTED',
]);

/** The CKR_* name of a pkcs11js error, whose message is exactly that name. */
function ckr(e: unknown): string | undefined {
  return e instanceof Error && /^CKR_\w+$/.test(e.message) ? e.message : undefined;
}
const sessionLost = (e: unknown): boolean => SESSION_LOST.has(ckr(e) ?? '');

function ignoringErrors(call: () => void): void {
  try {
    call();
  } catch {
    // Teardown of something that may already be gone.
  }
}

/**
 * One module load and one logged-in session per createHsmActivities, opened on first use.
 * graphene's calls are synchronous: they block the Node event loop (heartbeats too), and never interleave.
 * Login state and C_Finalize are per process in PKCS#11: close() ends them for every user of
 * the library in this process.
 */
class HsmConnection {
  private module?: Module;
  private session?: Session;
  /** Read when a session opens, so once per session rather than per call. */
  info: HsmInfo = { name: 'HSM', mechanisms: new Set() };

  constructor(private readonly config: HsmConfig) {}

  /** Runs `work` on the session; reopens once if the session was lost, then leaves it to Temporal's retries. */
  use<T>(work: (session: Session) => T): T {
    try {
      return work(this.loggedInSession());
    } catch (e) {
      if (!sessionLost(e)) throw e;
      this.dropSession();
    }
    try {
      return work((this.session = this.open()));
    } catch (e) {
      if (!sessionLost(e)) throw e;
      this.dropSession();
      throw new Error(`HSM session lost (${ckr(e)}) and reopening it did not help; will retry`);
    }
  }

  close(): void {
    const { module, session } = this;
    this.module = this.session = undefined;
    if (session) {
      ignoringErrors(() => session.logout());
      ignoringErrors(() => session.close());
    }
    if (module) {
      ignoringErrors(() => module.finalize());
      module.close();
    }
  }

  /**
   * The open session, if it is still logged in, else a new one. A session that lost its login
   * (HSM restart, idle logout) still works but no longer sees private objects: a lookup would
   * report the key missing, a non-retryable failure.
   */
  private loggedInSession(): Session {
    if (this.session && !loggedIn(this.session)) this.dropSession();
    return (this.session ??= this.open());
  }

  private dropSession(): void {
    const session = this.session;
    this.session = undefined;
    if (session) ignoringErrors(() => session.close());
  }

  private open(): Session {
    const module = this.loadModule();
    try {
      // Ignores CKR_CRYPTOKI_ALREADY_INITIALIZED, and is needed again after a C_Finalize.
      module.initialize();
    } catch (e) {
      // Left retryable: a network HSM's client library may fail here while the HSM is unreachable.
      throw new Error(`cannot initialise PKCS#11 module ${this.config.module}: ${(e as Error).message}`);
    }
    const { slot, token } = this.findToken(module);
    this.info = {
      name: describeHsm(module, token),
      // The plain list: iterating graphene's slot.getMechanisms() costs one C_GetMechanismInfo each.
      mechanisms: new Set(slot.lib.C_GetMechanismList(slot.handle)),
    };
    const session = slot.open(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION);
    try {
      session.login(this.config.pin);
    } catch (e) {
      const code = ckr(e);
      // Login is per application: another session of this process may have logged in already.
      if (code === 'CKR_USER_ALREADY_LOGGED_IN') return session;
      ignoringErrors(() => session.close());
      if (code && LOGIN_FAILED.has(code)) {
        throw ApplicationFailure.nonRetryable(
          `login to HSM token "${this.config.tokenLabel}" failed: ${code}`,
          ErrorType.HsmLoginFailed,
        );
      }
      throw e;
    }
    return session;
  }

  private loadModule(): Module {
    if (!this.module) {
      try {
        this.module = Module.load(this.config.module);
      } catch (e) {
        throw ApplicationFailure.nonRetryable(
          `cannot load PKCS#11 module ${this.config.module}: ${(e as Error).message}`,
          ErrorType.HsmModuleNotFound,
        );
      }
    }
    return this.module;
  }

  private findToken(module: Module): { slot: Slot; token: Token } {
    const present = [...module.getSlots(true)]
      .map((slot) => ({ slot, token: slot.getToken() }))
      .filter(({ token }) => token.flags & TokenFlag.TOKEN_INITIALIZED);
    const matches = present.filter(({ token }) => token.label === this.config.tokenLabel);
    if (matches.length === 1) return matches[0];
    const wanted = `"${this.config.tokenLabel}"`;
    // Two tokens with one label would make key lookup depend on slot order: refuse both cases.
    throw ApplicationFailure.nonRetryable(
      matches.length === 0
        ? `no HSM token labelled ${wanted} in ${this.config.module}; tokens present: ${
            present.map(({ token }) => `"${token.label}"`).join(', ') || 'none'
          }`
        : `${matches.length} HSM tokens are labelled ${wanted} in ${this.config.module}; the label must name one token`,
      ErrorType.HsmTokenNotFound,
    );
  }
}

/** False when the session is gone or no longer logged in as the user. */
function loggedIn(session: Session): boolean {
  try {
    const { state } = session.lib.C_GetSessionInfo(session.handle);
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  } catch (e) {
    if (sessionLost(e)) return false;
    throw e;
  }
}

interface HsmInfo {
  /** Token manufacturer and model plus library, for error messages. */
  name: string;
  /** CKM_* types the slot lists, to choose among mechanisms that differ by HSM. */
  mechanisms: ReadonlySet<number>;
}

/** e.g. `SoftHSM project SoftHSM v2 (libsofthsm2.so: SoftHSM Implementation of PKCS11 2.6)`. */
function describeHsm(module: Module, token: Token): string {
  const { major, minor } = module.libraryVersion;
  const library = `${module.manufacturerID} ${module.libraryDescription} ${major}.${minor}`;
  return `${token.manufacturerID} ${token.model} (${path.basename(module.libFile)}: ${library})`;
}

/** The suitable key labelled `label`, undefined if there is none and it may be generated. */
function checkKey(session: Session, tokenLabel: string, { label, generate }: EnsureHsmKeyInput): SecretKey | undefined {
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

function ensureKey(session: Session, tokenLabel: string, input: EnsureHsmKeyInput): HsmKeyRef {
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

function parseWrappingKey(spkiBase64: string): RsaPublicKey {
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

function wrap(
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
