// The stack in pieces, for the fault suite and the benchmark: a Temporal dev server, local-kms
// (optionally behind the fault proxy), a SoftHSM2 token and any number of worker processes, each
// of which can be killed, stopped or restarted on its own (`byok stack` keeps them as a unit).
// Everything lives in one folder and on free loopback ports.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { Client, Connection } from '@temporalio/client';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE } from '../workflows/model';
import { FaultProxy, type FaultRates } from './fault-proxy';
import { LOCAL_KMS_REGION, startLocalKms, type RunningLocalKms } from './local-kms';
import { canConnect, freePort } from './net';
import { projectRoot, tools } from './paths';
import { initSoftHsmToken } from './softhsm';
import { temporalDevServerCommand } from './temporal-dev-server';

export const FLEET_TOKEN_LABEL = 'byok-fleet';
const NAMESPACE = 'default';
const READY_MS = 60_000;
const POLL_MS = 100;
// temporal.api.enums.v1.TaskQueueType
const TASK_QUEUE_TYPE_WORKFLOW = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

export interface FleetOptions {
  dir: string;
  /** Put the fault proxy between the workers and local-kms, with this seed. */
  proxySeed?: number;
  proxyRates?: FaultRates;
  pin: string;
  /** Dynamic config of the dev server, e.g. system.enableActivityEagerExecution. */
  serverConfig?: Record<string, string>;
}

export interface WorkerOptions {
  queues?: string;
  /** Extra environment, e.g. BYOK_KMS_ACTIVITY_CONCURRENCY, or PKCS11_MODULE for a shim. */
  env?: Record<string, string>;
  name?: string;
}

/** Waits for `check`, polling: conditions on servers, never sleeps, synchronise the fault suite and the benchmark. */
export async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

// A test or benchmark that dies without close() must not leave servers or workers behind.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** A worker process (node dist/worker/main.js). */
export class WorkerProcess {
  constructor(
    readonly child: ChildProcess,
    readonly name: string,
    readonly log: string,
  ) {}

  get pid(): number {
    return this.child.pid as number;
  }

  /** Peak resident set size so far (VmHWM), in MiB; undefined once the process is gone. */
  peakRssMiB(): number | undefined {
    try {
      const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'))?.[1];
      return kb ? Number(kb) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await exited(this.child);
  }

  /** SIGSTOP: the process keeps its connections but runs nothing, so a task handed to it stays there. */
  freeze(): void {
    this.child.kill('SIGSTOP');
  }

  /** Graceful shutdown (SIGTERM): running activities finish first. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    await exited(this.child);
  }
}

export class Fleet {
  client!: Client;
  connection!: Connection;
  /** Straight to local-kms, not through the proxy: what the checks use. */
  kms!: KMSClient;
  proxy?: FaultProxy;
  temporalAddress!: string;
  private temporal?: ChildProcess;
  private localKms?: RunningLocalKms;
  private kmsPort!: number;
  private temporalPort!: number;
  private uiPort!: number;
  private readonly workers: WorkerProcess[] = [];
  private workerCount = 0;
  /** Bumped by freshState(): a new local-kms data folder and a new token. */
  private generation = 0;

  private constructor(readonly opts: FleetOptions) {}

  get dbFile(): string {
    return path.join(this.opts.dir, 'temporal', 'temporal.db');
  }
  get kmsData(): string {
    return path.join(this.opts.dir, `kms-${this.generation}`);
  }
  get softhsmDir(): string {
    return path.join(this.opts.dir, `softhsm-${this.generation}`);
  }
  get softhsmConf(): string {
    return path.join(this.softhsmDir, 'softhsm2.conf');
  }
  get pinFile(): string {
    return path.join(this.softhsmDir, 'user.pin');
  }
  get kmsEndpoint(): string {
    return `http://127.0.0.1:${this.kmsPort}`;
  }
  /** What the workers use: the proxy if there is one. */
  get workerKmsEndpoint(): string {
    return this.proxy?.endpoint ?? this.kmsEndpoint;
  }

  static async start(opts: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(opts);
    for (const dir of ['logs', 'temporal']) await mkdir(path.join(opts.dir, dir), { recursive: true });
    fleet.temporalPort = await freePort();
    fleet.uiPort = await freePort();
    fleet.kmsPort = await freePort();
    fleet.temporalAddress = `127.0.0.1:${fleet.temporalPort}`;
    await fleet.startTemporal();
    await fleet.initToken();
    await fleet.startKms();
    if (opts.proxySeed !== undefined) {
      fleet.proxy = await FaultProxy.start({ upstream: fleet.kmsEndpoint, seed: opts.proxySeed, rates: opts.proxyRates });
    }
    fleet.connection = await Connection.connect({ address: fleet.temporalAddress });
    fleet.client = new Client({ connection: fleet.connection, namespace: NAMESPACE });
    fleet.kms = new KMSClient({
      region: LOCAL_KMS_REGION,
      endpoint: fleet.kmsEndpoint,
      credentials: { accessKeyId: 'local-kms', secretAccessKey: 'local-kms' },
    });
    return fleet;
  }

  private async initToken(): Promise<void> {
    await mkdir(this.kmsData, { recursive: true });
    const { env } = await initSoftHsmToken({ dir: this.softhsmDir, label: FLEET_TOKEN_LABEL, soPin: `so-${this.opts.pin}`, pin: this.opts.pin });
    process.env.SOFTHSM2_CONF = env.SOFTHSM2_CONF;
    await rm(this.pinFile, { force: true });
    await writeFile(this.pinFile, `${this.opts.pin}\n`, { mode: 0o600, flag: 'wx' });
  }

  /**
   * An empty local-kms (same port) and a new empty token, for workers started from now on: the
   * benchmark's runs must not pay for the keys of the runs before them.
   */
  async freshState(): Promise<void> {
    await this.stopKms();
    this.generation++;
    await this.initToken();
    await this.startKms();
  }

  /** The environment a worker or the direct script needs (the PIN is in a file). */
  env(): Record<string, string> {
    return {
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_NAMESPACE: NAMESPACE,
      PKCS11_MODULE: tools.softhsmModule,
      PKCS11_TOKEN_LABEL: FLEET_TOKEN_LABEL,
      PKCS11_PIN_FILE: this.pinFile,
      SOFTHSM2_CONF: this.softhsmConf,
      AWS_REGION: LOCAL_KMS_REGION,
      AWS_ENDPOINT_URL_KMS: this.workerKmsEndpoint,
      AWS_ACCESS_KEY_ID: 'local-kms',
      AWS_SECRET_ACCESS_KEY: 'local-kms',
    };
  }

  async startTemporal(): Promise<void> {
    const { command, args } = temporalDevServerCommand({
      port: this.temporalPort,
      uiPort: this.uiPort,
      dbFile: this.dbFile,
      namespace: NAMESPACE,
      dynamicConfig: this.opts.serverConfig,
    });
    const log = openSync(path.join(this.opts.dir, 'logs', 'temporal.log'), 'a');
    this.temporal = spawn(command, args, { stdio: ['ignore', log, log], detached: true });
    closeSync(log);
    const child = this.temporal;
    track(child);
    await until('the Temporal dev server', READY_MS, async () => {
      if (child.exitCode !== null) throw new Error(`the Temporal dev server exited (${child.exitCode}); see ${this.opts.dir}/logs`);
      if (!(await canConnect('127.0.0.1', this.temporalPort))) return false;
      try {
        const c = await Connection.connect({ address: this.temporalAddress, connectTimeout: 2_000 });
        try {
          await c.workflowService.describeNamespace({ namespace: NAMESPACE });
          return true;
        } finally {
          await c.close();
        }
      } catch {
        return false;
      }
    });
  }

  /** Stops the dev server and waits until it has let go of its SQLite file and ports. */
  async stopTemporal(): Promise<void> {
    const child = this.temporal;
    if (!child) return;
    this.temporal = undefined;
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited(child);
    clearTimeout(kill);
    await until('the dev server port to close', 10_000, async () => !(await canConnect('127.0.0.1', this.temporalPort)));
  }

  async startKms(): Promise<void> {
    this.localKms = await startLocalKms({
      port: this.kmsPort,
      dataDir: this.kmsData,
      logFile: path.join(this.opts.dir, 'logs', 'local-kms.log'),
    });
  }

  async stopKms(): Promise<void> {
    await this.localKms?.stop();
    this.localKms = undefined;
  }

  /** Starts a worker and resolves once its pollers are on every queue it serves. */
  async startWorker(opts: WorkerOptions = {}): Promise<WorkerProcess> {
    const queues = opts.queues ?? 'hsm,kms';
    const name = opts.name ?? `worker-${++this.workerCount}`;
    const logPath = path.join(this.opts.dir, 'logs', `${name}.log`);
    const log = openSync(logPath, 'a');
    // Only what the worker needs: the caller's AWS or PKCS#11 settings must not leak in.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(PATH|HOME|LANG|NODE_.*)$/.test(k)));
    const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'worker', 'main.js'), '--queues', queues], {
      env: { ...inherited, ...this.env(), ...opts.env },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    track(child);
    const worker = new WorkerProcess(child, name, logPath);
    this.workers.push(worker);
    const wanted: Array<[string, number]> = [];
    if (queues.includes('kms')) wanted.push([KMS_TASK_QUEUE, TASK_QUEUE_TYPE_WORKFLOW], [KMS_TASK_QUEUE, TASK_QUEUE_TYPE_ACTIVITY]);
    if (queues.includes('hsm')) wanted.push([HSM_TASK_QUEUE, TASK_QUEUE_TYPE_ACTIVITY]);
    await until(`${name} to poll ${queues}`, READY_MS, async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${readFileSync(logPath, 'utf8').slice(-2000)}`);
      for (const [queue, taskQueueType] of wanted) {
        const { pollers } = await this.connection.workflowService.describeTaskQueue({
          namespace: NAMESPACE,
          taskQueue: { name: queue },
          taskQueueType,
        });
        // The default worker identity is pid@host.
        if (!(pollers ?? []).some((p) => p.identity?.startsWith(`${worker.pid}@`))) return false;
      }
      return true;
    });
    return worker;
  }

  async close(): Promise<void> {
    for (const w of this.workers) await w.stop().catch(() => undefined);
    await this.proxy?.close();
    this.kms?.destroy();
    await this.connection?.close();
    await this.stopKms();
    await this.stopTemporal();
  }
}
