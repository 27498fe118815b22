// The PKCS#11 side of the HSM activities: loading the module, finding the token, and a pool of
// logged-in sessions, each lent to one call at a time, that replaces sessions lost under it.
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { Module, type Session, SessionFlag, type Slot, type Token, TokenFlag } from 'graphene-pk11';
import { ErrorType } from '../workflows/errors';

export interface HsmConfig {
  /** Path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so or libprimusP11.so. */
  module: string;
  tokenLabel: string;
  /** User PIN; read by the worker from the environment or a file, never from workflow input. */
  pin: string;
  /** Logged-in sessions kept open, each used by one call at a time (BYOK_HSM_SESSIONS); default 1. */
  sessions?: number;
}

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
// locking off, which is only right for one thread; graphene's async calls (hsm.ts) run on libuv's threads.
export const CKF_OS_LOCKING_OK = 0x2;

/**
 * Calls that create token objects run alone; every other call shares the pool. It makes
 * find-then-generate atomic within the process (two attempts for one label never both generate),
 * and SoftHSM2 before 2.7 corrupts token objects created while another thread creates or looks
 * up objects (SoftHSM2 issue 573). Waiters are served in arrival order, so a creation is not
 * starved by a stream of wraps.
 */
export class CreationLock {
  private sharing = 0;
  private creating = false;
  private readonly queue: Array<{ creates: boolean; grant: () => void }> = [];

  async run<T>(creates: boolean, work: () => Promise<T>): Promise<T> {
    await new Promise<void>((grant) => {
      this.queue.push({ creates, grant });
      this.grantWaiting();
    });
    try {
      return await work();
    } finally {
      if (creates) this.creating = false;
      else this.sharing -= 1;
      this.grantWaiting();
    }
  }

  private grantWaiting(): void {
    while (this.queue.length > 0 && !this.creating) {
      const next = this.queue[0];
      if (next.creates && this.sharing > 0) return;
      this.queue.shift();
      if (next.creates) this.creating = true;
      else this.sharing += 1;
      next.grant();
    }
  }
}

/**
 * One module load per createHsmActivities and up to `config.sessions` logged-in sessions, opened
 * on first use. A PKCS#11 session must not be used by two threads at once, so each call leases a
 * session for itself alone; the slow calls (generate, wrap) use graphene's async forms, which run
 * on libuv's thread pool (UV_THREADPOOL_SIZE, default 4), so calls on other sessions and the event
 * loop go on meanwhile. Lookups and attribute reads stay synchronous (graphene has no async
 * C_FindObjects). Login state and C_Finalize are per process in PKCS#11: close() ends them for
 * every user of the library in this process.
 */
export class SessionPool {
  private module?: Module;
  private readonly size: number;
  private readonly idle: Session[] = [];
  /** Sessions open, idle or leased. */
  private opened = 0;
  private readonly waiting: Array<() => void> = [];
  private drained?: () => void;
  private readonly lock = new CreationLock();
  /** Read when a session opens, so once per session rather than per call. */
  info: HsmInfo = { name: 'HSM', mechanisms: new Set() };

  constructor(private readonly config: HsmConfig) {
    this.size = config.sessions ?? 1;
    if (!Number.isInteger(this.size) || this.size < 1) throw new Error(`HSM sessions: expected a positive integer, got ${this.size}`);
  }

  /**
   * Runs `work` on a session of its own; once more on another if the session was lost, then
   * leaves it to Temporal's retries. `creates`: the work may create token objects (see CreationLock).
   */
  use<T>(creates: boolean, work: (session: Session) => T | Promise<T>): Promise<T> {
    return this.lock.run(creates, async () => {
      try {
        return await this.leased(work);
      } catch (e) {
        if (!sessionLost(e)) throw e;
      }
      try {
        return await this.leased(work);
      } catch (e) {
        if (!sessionLost(e)) throw e;
        throw new Error(`HSM session lost (${ckr(e)}) and reopening it did not help; will retry`);
      }
    });
  }

  get openSessions(): number {
    return this.opened;
  }

  /** Waits for the calls in flight, then logs out, closes every session and finalises the library. */
  async close(): Promise<void> {
    if (this.opened > this.idle.length) await new Promise<void>((resolve) => (this.drained = resolve));
    const { module } = this;
    this.module = undefined;
    const sessions = this.idle.splice(0);
    this.opened = 0;
    if (sessions[0]) ignoringErrors(() => sessions[0].logout());
    for (const session of sessions) ignoringErrors(() => session.close());
    if (module) {
      ignoringErrors(() => module.finalize());
      module.close();
    }
  }

  private async leased<T>(work: (session: Session) => T | Promise<T>): Promise<T> {
    const session = await this.take();
    let lost = false;
    try {
      return await work(session);
    } catch (e) {
      lost = sessionLost(e);
      throw e;
    } finally {
      this.give(session, lost);
    }
  }

  /**
   * An idle session that is still logged in, else a new one while there are fewer than the pool's
   * size, else the next one given back. A session that lost its login (HSM restart, idle logout)
   * still works but no longer sees private objects: a lookup would report the key missing, a
   * non-retryable failure.
   */
  private async take(): Promise<Session> {
    for (;;) {
      const session = this.idle.pop();
      if (session) {
        if (loggedIn(session)) return session;
        this.discard(session);
        continue;
      }
      if (this.opened < this.size) {
        this.opened += 1;
        try {
          return this.open();
        } catch (e) {
          this.opened -= 1;
          this.waiting.shift()?.();
          throw e;
        }
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private give(session: Session, lost: boolean): void {
    if (lost) this.discard(session);
    else this.idle.push(session);
    this.waiting.shift()?.();
    if (this.drained && this.opened === this.idle.length) this.drained();
  }

  private discard(session: Session): void {
    this.opened -= 1;
    ignoringErrors(() => session.close());
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
