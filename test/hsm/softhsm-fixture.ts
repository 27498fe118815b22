// A throwaway SoftHSM2 token per test file, plus a test-side session on it for creating and
// inspecting objects behind the activities' back.
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { type ITemplate, KeyType, Module, ObjectClass, type Session, SessionFlag, type Slot } from 'graphene-pk11';
import { type HsmConfig, createHsmActivities } from '../../activities/hsm';
import { CKF_OS_LOCKING_OK } from '../../activities/hsm-connection';
import type { ErrorType } from '../../workflows/errors';
import { initSoftHsmToken } from '../../scripts/softhsm';
import { tools } from '../../scripts/paths';

export const TOKEN_LABEL = 'byok-test';
export const PIN = '246813';
export const SO_PIN = '135792';

export interface SoftHsmToken {
  dir: string;
  config: HsmConfig;
  /** Removes the token folder. */
  remove(): Promise<void>;
}

/** A fresh token in a fresh folder; SOFTHSM2_CONF points at it for the rest of this process. */
export async function makeToken(): Promise<SoftHsmToken> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'byok-softhsm-'));
  const { env } = await initSoftHsmToken({ dir, label: TOKEN_LABEL, soPin: SO_PIN, pin: PIN });
  process.env.SOFTHSM2_CONF = env.SOFTHSM2_CONF;
  return {
    dir,
    config: { module: tools.softhsmModule, tokenLabel: TOKEN_LABEL, pin: PIN },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The activities under test and a test-side session on the same token. Both go through the one
 * SoftHSM instance of this process, so the test session sees the activities' session objects.
 */
export class SoftHsmBench {
  readonly hsm: ReturnType<typeof createHsmActivities>;
  session!: Session;
  readonly slot: Slot;
  private readonly module: Module;

  private constructor(private readonly token: SoftHsmToken) {
    this.hsm = createHsmActivities(token.config);
    this.module = Module.load(token.config.module);
    // As the activities do: the first C_Initialize of the process decides whether SoftHSM2 locks.
    this.module.initialize({ flags: CKF_OS_LOCKING_OK });
    const slot = [...this.module.getSlots(true)].find((s) => s.getToken().label === TOKEN_LABEL);
    assert.ok(slot, 'test token not found');
    this.slot = slot;
    this.reopen();
  }

  /** The token's configuration, for activities of the test's own (e.g. another pool size). */
  get config(): HsmConfig {
    return this.token.config;
  }

  static async start(): Promise<SoftHsmBench> {
    return new SoftHsmBench(await makeToken());
  }

  /** A new test-side session, e.g. after the test closed all sessions on the slot. */
  reopen(): void {
    this.session = this.slot.open(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION);
    try {
      this.session.login(PIN);
    } catch (e) {
      // Login is per process: the activities may have logged in already.
      if ((e as Error).message !== 'CKR_USER_ALREADY_LOGGED_IN') throw e;
    }
  }

  /** C_Finalize through the test's handle on the library: every session of this process is gone. */
  finalizeLibrary(): void {
    this.module.finalize();
  }

  /** An AES token key from a known value, as an operator might have imported it. */
  createSecretKey(label: string, value: Buffer, extra: ITemplate = {}): void {
    this.session.create({
      class: ObjectClass.SECRET_KEY,
      keyType: KeyType.AES,
      label,
      id: Buffer.from(label),
      value,
      token: true,
      private: true,
      sensitive: true,
      extractable: true,
      encrypt: true,
      ...extra,
    });
  }

  /** Every object this process can see on the token: token objects and all sessions' objects. */
  objectLabels(): string[] {
    return [...this.session.find()].map((o) => String(o.getAttribute('label')));
  }

  async stop(): Promise<void> {
    // The activities finalize the library, which ends the test session too.
    await this.hsm.close();
    this.module.close();
    await this.token.remove();
  }
}

/** First 3 bytes of AES-256-ECB(key, 16 zero bytes): the KCV, computed outside the HSM. */
export function nodeKcv(value: Buffer): string {
  return createCipheriv('aes-256-ecb', value, null).update(Buffer.alloc(16)).subarray(0, 3).toString('hex');
}

/** Asserts a non-retryable ApplicationFailure of `type` and returns it for further checks. */
export async function rejectsWith(promise: Promise<unknown>, type: ErrorType): Promise<ApplicationFailure> {
  const error = await promise.then(
    () => assert.fail(`expected ${type}, but it succeeded`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
  assert.equal(error.type, type, error.message);
  assert.equal(error.nonRetryable, true);
  return error;
}
