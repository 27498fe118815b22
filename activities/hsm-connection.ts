// One PKCS#11 session, on the thread of its own that runs it (hsm-session-thread.ts): loading the
// module, finding the token, logging in, and reopening after the session or the login was lost.
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { Module, type Session, SessionFlag, type Slot, type Token, TokenFlag } from 'graphene-pk11';
import { ErrorType } from '../workflows/errors';
import type { HsmConfig } from './hsm-sessions';

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

/** The CKR_* name of a pkcs11js error, whose message is exactly that name. */
export function ckr(e: unknown): string | undefined {
  return e instanceof Error && /^CKR_\w+$/.test(e.message) ? e.message : undefined;
}
export const sessionLost = (e: unknown): boolean => SESSION_LOST.has(ckr(e) ?? '');

function ignoringErrors(call: () => void): void {
  try {
    call();
  } catch {
    // Teardown of something that may already be gone.
  }
}

// CKF_OS_LOCKING_OK of C_Initialize: the library may be called from several threads and locks
// with the OS's primitives. Without it (graphene's default passes flags 0) SoftHSM2 turns its
// locking off, which is only right for one thread; the pool runs each session on its own.
export const CKF_OS_LOCKING_OK = 0x2;

/**
 * One module load and one logged-in session, opened on first use. graphene's calls are
 * synchronous: they block this thread, which serves one call at a time. Login state and
 * C_Finalize are per process in PKCS#11: close() ends them for every thread of the process.
 */
export class HsmConnection {
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
      module.initialize({ flags: CKF_OS_LOCKING_OK });
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
export function loggedIn(session: Session): boolean {
  try {
    const { state } = session.lib.C_GetSessionInfo(session.handle);
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  } catch (e) {
    if (sessionLost(e)) return false;
    throw e;
  }
}

export interface HsmInfo {
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
