// The HSM session pool: up to BYOK_HSM_SESSIONS logged-in PKCS#11 sessions, each on a thread of
// its own (hsm-session-thread.ts), each lent to one activity at a time. graphene's calls are
// synchronous; on their own threads, calls on different sessions run in parallel and the
// worker's event loop (heartbeats, KMS activities, workflow tasks) never waits for the HSM.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ApplicationFailure } from '@temporalio/common';
import type { EnsureHsmKeyInput, WrapKeyInput } from './hsm';

export interface HsmConfig {
  /** Path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so or libprimusP11.so. */
  module: string;
  tokenLabel: string;
  /** User PIN; read by the worker from the environment or a file, never from workflow input. */
  pin: string;
  /** Logged-in sessions kept open, each used by one call at a time (BYOK_HSM_SESSIONS); default 1. */
  sessions?: number;
}

/** A request to a session's thread, and its reply. */
export type HsmRequest =
  | { op: 'check'; input: EnsureHsmKeyInput }
  | { op: 'ensure'; input: EnsureHsmKeyInput }
  | { op: 'wrap'; input: WrapKeyInput }
  | { op: 'close' };
export type HsmReply = { ok: true; value: unknown } | { ok: false; error: ThreadError };
export interface ThreadError {
  message: string;
  /** Set when the thread threw an ApplicationFailure: thrown again as one, same type. */
  applicationFailure?: { type?: string; nonRetryable: boolean };
}

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

/** One session's thread. It is referenced (keeps the process alive) only while a call is in flight. */
class SessionThread {
  private readonly worker: Worker;
  private inFlight?: { resolve: (value: unknown) => void; reject: (e: Error) => void };
  /** Set once the thread has exited: it takes no more calls. */
  gone = false;

  constructor(config: HsmConfig) {
    this.worker = new Worker(path.join(__dirname, 'hsm-session-thread.js'), { workerData: config });
    this.worker.unref();
    this.worker.on('message', (reply: HsmReply) => this.settle(reply));
    this.worker.on('error', (e) => this.fail(`HSM session thread failed: ${e.message}; will retry`));
    this.worker.on('exit', (code) => this.fail(`HSM session thread exited (code ${code}); will retry`));
  }

  call(request: HsmRequest): Promise<unknown> {
    if (this.gone) return Promise.reject(new Error('HSM session thread is gone; will retry'));
    this.worker.ref();
    return new Promise((resolve, reject) => {
      this.inFlight = { resolve, reject };
      this.worker.postMessage(request);
    });
  }

  private settle(reply: HsmReply): void {
    const call = this.finish();
    if (!call) return;
    if (reply.ok) return call.resolve(reply.value);
    const { message, applicationFailure } = reply.error;
    call.reject(applicationFailure ? ApplicationFailure.create({ message, ...applicationFailure }) : new Error(message));
  }

  private fail(message: string): void {
    this.gone = true;
    this.finish()?.reject(new Error(message));
  }

  private finish() {
    const call = this.inFlight;
    this.inFlight = undefined;
    this.worker.unref();
    return call;
  }
}

/**
 * Up to `config.sessions` session threads, started on demand: a new one only when every open one
 * is busy. Login state and C_Finalize are per process in PKCS#11: close() ends them for every
 * user of the library in this process.
 */
export class SessionPool {
  private readonly size: number;
  private readonly idle: SessionThread[] = [];
  /** Threads started and not gone, idle or lent. */
  private opened = 0;
  private readonly waiting: Array<() => void> = [];
  private drained?: () => void;
  private readonly lock = new CreationLock();

  constructor(private readonly config: HsmConfig) {
    this.size = config.sessions ?? 1;
    if (!Number.isInteger(this.size) || this.size < 1) throw new Error(`HSM sessions: expected a positive integer, got ${this.size}`);
  }

  get openSessions(): number {
    return this.opened;
  }

  /** Runs `request` on a session of its own. `creates`: it may create token objects (see CreationLock). */
  run<T>(creates: boolean, request: HsmRequest): Promise<T> {
    return this.lock.run(creates, async () => {
      const thread = await this.take();
      try {
        return (await thread.call(request)) as T;
      } finally {
        this.give(thread);
      }
    });
  }

  /** Waits for the calls in flight, then logs out, closes every session and finalises the library. */
  async close(): Promise<void> {
    if (this.opened > this.idle.length) await new Promise<void>((resolve) => (this.drained = resolve));
    const threads = this.idle.splice(0);
    this.opened = 0;
    // One after the other: the first logs out and finalises for the whole process, the others'
    // teardown then finds nothing left to end.
    for (const thread of threads) await thread.call({ op: 'close' }).catch(() => undefined);
  }

  private async take(): Promise<SessionThread> {
    for (;;) {
      const thread = this.idle.pop();
      if (thread && !thread.gone) return thread;
      if (thread) {
        this.opened -= 1;
        continue;
      }
      if (this.opened < this.size) {
        this.opened += 1;
        return new SessionThread(this.config);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private give(thread: SessionThread): void {
    if (thread.gone) this.opened -= 1;
    else this.idle.push(thread);
    this.waiting.shift()?.();
    if (this.drained && this.opened === this.idle.length) this.drained();
  }
}
