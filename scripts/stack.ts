// The local stack: Temporal dev server, local-kms, a SoftHSM token and, if asked, the worker
// and the payload codec with its codec server (the Web UI decrypts payloads through it).
// The servers and the worker are detached processes that outlive the command that started them
// (`byok stack up`), so `up`, `status` and `down` find them again through pid files.
//
// <dir>/logs/<name>.log   output of each process (appended across restarts)
// <dir>/pids/<name>.pid   written by up, removed by down
// <dir>/temporal/         SQLite database of the dev server (kept by down)
// <dir>/kms/              local-kms LevelDB (kept by down)
// <dir>/softhsm/          token, softhsm2.conf and user.pin (kept by down)
// <dir>/codec/codec.keys  the demo codec key, made by the first up with the codec (kept by down:
//                         without it the payloads in the database cannot be read)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import { codecKeyLine } from '../codec/keys';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE, WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { LOCAL_KMS_REGION, localKmsCommand } from './local-kms';
import { canConnect } from './net';
import { projectRoot, tools } from './paths';
import { initSoftHsmToken, tokenExists } from './softhsm';
import { registerSearchAttributes, temporalDevServerCommand } from './temporal-dev-server';

export interface StackOptions {
  dir: string;
  temporalPort: number;
  uiPort: number;
  kmsPort: number;
  namespace: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
  worker: boolean;
  /** Encrypt payloads (codec keys in <dir>/codec) and serve the codec to the Web UI on this port; absent: payloads in clear. */
  codec?: { port: number };
  /** Where the worker serves Prometheus metrics (GET /metrics); undefined: none. */
  metricsPort?: number;
}

export interface StackInfo {
  temporalAddress: string;
  namespace: string;
  uiUrl: string;
  kmsEndpoint: string;
  region: string;
  tokenLabel: string;
  softhsmConf: string;
  logsDir: string;
  /** The codec server the Web UI decrypts payloads through, when the codec is on. */
  codecServerUrl?: string;
  /** The worker's Prometheus endpoint, if the stack has one. */
  metricsUrl?: string;
  /** What a worker or CLI process needs to talk to this stack (no secrets: the PIN is in a file). */
  env: Record<string, string>;
}

export interface ComponentStatus {
  component: string;
  running: boolean;
  pid?: number;
  detail: string;
}

const HOST = '127.0.0.1';
const SERVER_READY_MS = 60_000;
const WORKER_READY_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const POLL_MS = 100;
// local-kms checks no signature, but the AWS SDK refuses to send a request without credentials.
const DUMMY_AWS_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'local-kms', AWS_SECRET_ACCESS_KEY: 'local-kms' };
// temporal.api.enums.v1.TaskQueueType (@temporalio/proto is not a direct dependency).
const TASK_QUEUE_TYPE_WORKFLOW = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

/** Options from BYOK_* variables; the PINs are documented demo defaults for the local SoftHSM token only. */
export function stackOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): StackOptions {
  return {
    dir: path.resolve(env.BYOK_STACK_DIR || path.join(projectRoot, '.byok')),
    temporalPort: portFrom(env, 'BYOK_TEMPORAL_PORT', 7233),
    uiPort: portFrom(env, 'BYOK_UI_PORT', 8233),
    kmsPort: portFrom(env, 'BYOK_KMS_PORT', 4599),
    codec: { port: portFrom(env, 'BYOK_CODEC_PORT', 8081) },
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    tokenLabel: env.BYOK_TOKEN_LABEL || 'byok-demo',
    pin: env.BYOK_DEMO_PIN || '1234',
    soPin: env.BYOK_DEMO_SO_PIN || '12345678',
    worker: true,
    metricsPort: env.BYOK_METRICS_PORT ? portFrom(env, 'BYOK_METRICS_PORT', 0) : undefined,
  };
}

function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const value = env[name];
  if (!value) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name}: not a TCP port: ${value}`);
  return port;
}

/** Where everything lives under opts.dir. */
function layout(opts: StackOptions) {
  const softhsmDir = path.join(opts.dir, 'softhsm');
  return {
    logs: path.join(opts.dir, 'logs'),
    pids: path.join(opts.dir, 'pids'),
    dbFile: path.join(opts.dir, 'temporal', 'temporal.db'),
    kmsData: path.join(opts.dir, 'kms'),
    softhsmDir,
    softhsmConf: path.join(softhsmDir, 'softhsm2.conf'),
    pinFile: path.join(softhsmDir, 'user.pin'),
    codecKeyFile: path.join(opts.dir, 'codec', 'codec.keys'),
  };
}

function stackInfo(opts: StackOptions): StackInfo {
  const l = layout(opts);
  const temporalAddress = `${HOST}:${opts.temporalPort}`;
  const uiUrl = `http://${HOST}:${opts.uiPort}`;
  const kmsEndpoint = `http://${HOST}:${opts.kmsPort}`;
  const codecServerUrl = opts.codec && `http://${HOST}:${opts.codec.port}`;
  return {
    temporalAddress,
    namespace: opts.namespace,
    uiUrl,
    kmsEndpoint,
    region: LOCAL_KMS_REGION,
    tokenLabel: opts.tokenLabel,
    softhsmConf: l.softhsmConf,
    logsDir: l.logs,
    codecServerUrl,
    metricsUrl: opts.metricsPort ? `http://${HOST}:${opts.metricsPort}/metrics` : undefined,
    env: {
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_NAMESPACE: opts.namespace,
      BYOK_UI_URL: uiUrl,
      PKCS11_MODULE: tools.softhsmModule,
      PKCS11_TOKEN_LABEL: opts.tokenLabel,
      PKCS11_PIN_FILE: l.pinFile,
      SOFTHSM2_CONF: l.softhsmConf,
      AWS_REGION: LOCAL_KMS_REGION,
      AWS_ENDPOINT_URL_KMS: kmsEndpoint,
      ...DUMMY_AWS_CREDENTIALS,
      ...(opts.codec ? { BYOK_CODEC_KEY_FILE: l.codecKeyFile } : {}),
    },
  };
}

// ---- processes and pid files ------------------------------------------------------------

interface Launch {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

function pidFile(opts: StackOptions, name: string): string {
  return path.join(layout(opts).pids, `${name}.pid`);
}

function logPath(opts: StackOptions, name: string): string {
  return path.join(layout(opts).logs, `${name}.log`);
}

/**
 * The pid in <name>.pid if that process still looks like the one up started: alive, leader of
 * its own process group (spawned detached) and running a binary of the same name. A pid file
 * left by a crash may name a pid since given to another process, which must not be reused or killed.
 */
function ourPid(opts: StackOptions, name: string, command: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile(opts, name), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    // Fields after "(comm)": state, ppid, pgrp.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    return pgrp === pid && path.basename(argv0) === path.basename(command) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * False once the process is gone or a zombie whose threads have all exited: only then has it
 * released its ports and files (its command line reads empty earlier, while it still holds them).
 */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat[stat.lastIndexOf(')') + 2];
    return (state !== 'Z' && state !== 'X') || readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

/** Starts a process in its own process group, output to its log, and records its pid. */
async function launch(opts: StackOptions, { name, command, args, env }: Launch): Promise<number> {
  try {
    await access(command, fsConstants.X_OK);
  } catch {
    throw new Error(`${name}: ${command} is not an executable; run: bash scripts/install-tools.sh`);
  }
  const logFd = openSync(logPath(opts, name), 'a');
  try {
    const child = spawn(command, args, { cwd: opts.dir, env, detached: true, stdio: ['ignore', logFd, logFd] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`${name}: cannot start ${command}: ${err.message}`)));
    });
    child.unref();
    await writeFile(pidFile(opts, name), `${child.pid}\n`);
    return child.pid as number;
  } finally {
    closeSync(logFd);
  }
}

/** What ready() is told: when this up started the process, if it did (else it was reused). */
type Readiness = (launchedAt: number | undefined) => Promise<boolean>;

/** Polls `ready` until it resolves true; fails early if the process exits, with the end of its log. */
async function waitUntilReady(
  opts: StackOptions,
  name: string,
  pid: number,
  launchedAt: number | undefined,
  timeoutMs: number,
  ready: Readiness,
  waitingFor: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ready(launchedAt)) return;
    if (!isAlive(pid)) throw new Error(`${name} exited while starting (pid ${pid}).${logTail(opts, name)}`);
    if (Date.now() > deadline) {
      const hint = launchedAt === undefined ? ' (started by an earlier up: if it runs with other settings, run down first)' : '';
      throw new Error(`${name} (pid ${pid}) is not ready after ${timeoutMs / 1000} s: ${waitingFor}${hint}.${logTail(opts, name)}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function logTail(opts: StackOptions, name: string): string {
  const log = logPath(opts, name);
  let text = '';
  try {
    text = readFileSync(log, 'utf8').split('\n').slice(-15).join('\n').trim();
  } catch {
    // No log yet: the message still names the file.
  }
  return `\nLog: ${log}${text ? `\n${text}` : ''}`;
}

/** Fails when something that up did not start holds a port a component needs. */
async function assertPortsFree(name: string, ports: Array<[string, number]>): Promise<void> {
  for (const [what, port] of ports) {
    if (await canConnect(HOST, port)) {
      throw new Error(
        `${name}: port ${port} (${what}) is already in use by a process this stack did not start; ` +
          `stop it or pick another port (BYOK_TEMPORAL_PORT, BYOK_UI_PORT, BYOK_KMS_PORT)`,
      );
    }
  }
}

/** Reuses the live process named by the pid file, else starts a new one; resolves once it is ready. */
async function ensureRunning(
  opts: StackOptions,
  launchSpec: Launch,
  ports: Array<[string, number]>,
  ready: Readiness,
  waitingFor: string,
  timeoutMs: number,
): Promise<void> {
  const { name, command } = launchSpec;
  let pid = ourPid(opts, name, command);
  let launchedAt: number | undefined;
  if (pid === undefined) {
    await rm(pidFile(opts, name), { force: true });
    await assertPortsFree(name, ports);
    launchedAt = Date.now();
    pid = await launch(opts, launchSpec);
  }
  // A reused process may still be starting: the same check covers it.
  await waitUntilReady(opts, name, pid, launchedAt, timeoutMs, ready, waitingFor);
}

// ---- components -------------------------------------------------------------------------

async function withConnection<T>(address: string, use: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 2_000 });
  try {
    return await use(connection);
  } finally {
    await connection.close();
  }
}

/** True once the frontend answers and knows the namespace (it is created during start-up). */
async function namespaceReady(port: number, address: string, namespace: string): Promise<boolean> {
  if (!(await canConnect(HOST, port))) return false;
  try {
    await withConnection(address, (c) => c.workflowService.describeNamespace({ namespace }));
    return true;
  } catch {
    return false;
  }
}

/**
 * True once each queue the worker serves has a poller, one seen since `since` if given: the
 * server lists a dead worker's pollers for minutes, which must not pass for a new worker's.
 */
async function workerPolling(address: string, namespace: string, since?: number): Promise<boolean> {
  const wanted: Array<[string, number]> = [
    [WORKFLOW_TASK_QUEUE, TASK_QUEUE_TYPE_WORKFLOW],
    [KMS_TASK_QUEUE, TASK_QUEUE_TYPE_ACTIVITY],
    [HSM_TASK_QUEUE, TASK_QUEUE_TYPE_ACTIVITY],
  ];
  try {
    return await withConnection(address, async (c) => {
      for (const [name, taskQueueType] of wanted) {
        const { pollers } = await c.workflowService.describeTaskQueue({ namespace, taskQueue: { name }, taskQueueType });
        const fresh = (pollers ?? []).filter((p) => since === undefined || (optionalTsToMs(p.lastAccessTime) ?? 0) >= since);
        if (fresh.length === 0) return false;
      }
      return true;
    });
  } catch {
    return false;
  }
}

function temporalLaunch(opts: StackOptions): Launch {
  const { command, args } = temporalDevServerCommand({
    port: opts.temporalPort,
    uiPort: opts.uiPort,
    dbFile: layout(opts).dbFile,
    namespace: opts.namespace,
    ip: HOST,
    codecEndpoint: stackInfo(opts).codecServerUrl,
  });
  return { name: 'temporal', command, args, env: process.env };
}

function localKmsLaunch(opts: StackOptions): Launch {
  const { command, args, env } = localKmsCommand({ port: opts.kmsPort, dataDir: layout(opts).kmsData });
  return { name: 'local-kms', command, args, env: { ...process.env, ...env } };
}

/**
 * The caller's Temporal, PKCS#11, AWS and codec settings (an API key, a PIN, a profile, other
 * codec keys) would point our processes elsewhere or clash with the stack's own: they get only the stack's.
 */
function stackEnv(info: StackInfo): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(TEMPORAL_|PKCS11_|AWS_|SOFTHSM2_|BYOK_WORKER_|BYOK_CODEC_|BYOK_METRICS_|BYOK_LOG_)/.test(key)),
  );
  return { ...inherited, ...info.env };
}

function workerLaunch(opts: StackOptions, info: StackInfo): Launch {
  return {
    name: 'worker',
    command: process.execPath,
    args: [path.join(projectRoot, 'dist', 'worker', 'main.js')],
    env: {
      ...stackEnv(info),
      BYOK_WORKER_QUEUES: 'hsm,kms',
      ...(opts.metricsPort ? { BYOK_METRICS_ADDRESS: `${HOST}:${opts.metricsPort}` } : {}),
    },
  };
}

function codecServerLaunch(opts: StackOptions, info: StackInfo, { port }: { port: number }): Launch {
  // Browsers send the UI's host as typed: the local UI is reached under both names.
  const origins = [HOST, 'localhost'].flatMap((host) => ['--ui-origin', `http://${host}:${opts.uiPort}`]);
  return {
    name: 'codec-server',
    command: process.execPath,
    args: [path.join(projectRoot, 'bin', 'byok'), 'codec-server', '--host', HOST, '--port', String(port), ...origins],
    env: stackEnv(info),
  };
}

/** The demo codec key, made once: a new key would leave the payloads already stored unreadable. */
async function ensureCodecKeyFile(file: string): Promise<void> {
  if (existsSync(file)) return;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const line = codecKeyLine(`demo-${randomBytes(4).toString('hex')}`, randomBytes(32));
  await writeFile(file, `# byok demo stack codec key (first line encrypts; add a new one on top to rotate)\n${line}\n`, { mode: 0o600, flag: 'wx' });
}

async function writePinFile(file: string, pin: string): Promise<void> {
  // A fresh file, so the PIN never sits in a file that an earlier mode left readable.
  await rm(file, { force: true });
  await writeFile(file, `${pin}\n`, { mode: 0o600, flag: 'wx' });
}

// ---- up, down, status -------------------------------------------------------------------

/** Brings every component up, reusing those already running; safe to run again. */
export async function stackUp(opts: StackOptions): Promise<StackInfo> {
  const l = layout(opts);
  for (const dir of [l.logs, l.pids, path.dirname(l.dbFile), l.kmsData, l.softhsmDir]) {
    await mkdir(dir, { recursive: true });
  }
  const info = stackInfo(opts);

  await ensureRunning(
    opts,
    temporalLaunch(opts),
    [
      ['Temporal frontend', opts.temporalPort],
      ['Temporal Web UI', opts.uiPort],
    ],
    () => namespaceReady(opts.temporalPort, info.temporalAddress, opts.namespace),
    `no namespace "${opts.namespace}" at ${info.temporalAddress}`,
    SERVER_READY_MS,
  );
  await withConnection(info.temporalAddress, (c) => registerSearchAttributes(c, opts.namespace));
  await ensureRunning(
    opts,
    localKmsLaunch(opts),
    [['local-kms', opts.kmsPort]],
    () => canConnect(HOST, opts.kmsPort),
    `nothing listens on ${HOST}:${opts.kmsPort}`,
    SERVER_READY_MS,
  );
  await initSoftHsmToken({ dir: l.softhsmDir, label: opts.tokenLabel, soPin: opts.soPin, pin: opts.pin });
  await writePinFile(l.pinFile, opts.pin);

  if (opts.codec) {
    const { port } = opts.codec;
    await ensureCodecKeyFile(l.codecKeyFile);
    await ensureRunning(
      opts,
      codecServerLaunch(opts, info, opts.codec),
      [['codec server', port]],
      () => canConnect(HOST, port),
      `nothing listens on ${HOST}:${port}`,
      SERVER_READY_MS,
    );
  }
  if (opts.worker) {
    const spec = workerLaunch(opts, info);
    if (!existsSync(spec.args[0])) throw new Error(`worker: ${spec.args[0]} is missing; run: npm run build`);
    await ensureRunning(
      opts,
      spec,
      [],
      (launchedAt) => workerPolling(info.temporalAddress, opts.namespace, launchedAt),
      `no poller on task queues ${HSM_TASK_QUEUE} and ${KMS_TASK_QUEUE}`,
      WORKER_READY_MS,
    );
  }
  return info;
}

/** The processes up may have started, in the order down stops them (the worker first). */
function launches(opts: StackOptions): Launch[] {
  const info = stackInfo(opts);
  const codec = opts.codec ? [codecServerLaunch(opts, info, opts.codec)] : [];
  return [workerLaunch(opts, info), ...codec, localKmsLaunch(opts), temporalLaunch(opts)];
}

/** Stops the processes up started (SIGTERM to the group, SIGKILL after 10 s); keeps all data. */
export async function stackDown(opts: StackOptions): Promise<void> {
  for (const { name, command } of launches(opts)) {
    const pid = ourPid(opts, name, command);
    if (pid !== undefined) await stopGroup(pid);
    await rm(pidFile(opts, name), { force: true });
  }
}

async function stopGroup(pid: number): Promise<void> {
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      // Already gone.
    }
  };
  signal('SIGTERM');
  if (await exited(pid, STOP_GRACE_MS)) return;
  signal('SIGKILL');
  if (!(await exited(pid, STOP_GRACE_MS))) throw new Error(`pid ${pid} survived SIGKILL`);
}

async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return true;
}

export async function stackStatus(opts: StackOptions): Promise<ComponentStatus[]> {
  const info = stackInfo(opts);
  const checks: Record<string, () => Promise<[boolean, string]>> = {
    temporal: async () => {
      const up = await canConnect(HOST, opts.temporalPort);
      return [up, up ? `${info.temporalAddress}, Web UI ${info.uiUrl}` : `${info.temporalAddress} does not answer`];
    },
    'local-kms': async () => {
      const up = await canConnect(HOST, opts.kmsPort);
      return [up, up ? info.kmsEndpoint : `${info.kmsEndpoint} does not answer`];
    },
    'codec-server': async () => {
      const up = await canConnect(HOST, opts.codec?.port ?? 0);
      return [up, up ? `${info.codecServerUrl}, for the Web UI` : `${info.codecServerUrl} does not answer`];
    },
    worker: async () => {
      const up = await workerPolling(info.temporalAddress, opts.namespace);
      return [up, up ? `polling ${HSM_TASK_QUEUE} and ${KMS_TASK_QUEUE}` : 'not polling its task queues'];
    },
  };
  const result: ComponentStatus[] = [];
  for (const { name, command } of [...launches(opts)].reverse()) {
    const pid = ourPid(opts, name, command);
    if (pid === undefined) {
      result.push({ component: name, running: false, detail: 'not running' });
      continue;
    }
    const [answers, detail] = await checks[name]();
    result.push({ component: name, running: answers, pid, detail: `${detail}; log ${logPath(opts, name)}` });
  }
  result.push(await tokenStatus(opts));
  return result;
}

/** The token is files, not a process: "running" means SoftHSM lists a token with our label. */
async function tokenStatus(opts: StackOptions): Promise<ComponentStatus> {
  const { softhsmConf } = layout(opts);
  const component = 'softhsm-token';
  if (!existsSync(softhsmConf)) return { component, running: false, detail: `no ${softhsmConf}` };
  try {
    const found = await tokenExists(softhsmConf, opts.tokenLabel);
    const detail = found ? `label ${opts.tokenLabel}, SOFTHSM2_CONF=${softhsmConf}` : `no token labelled ${opts.tokenLabel}`;
    return { component, running: found, detail };
  } catch (err) {
    return { component, running: false, detail: `${tools.softhsmUtil} --show-slots failed: ${(err as Error).message}` };
  }
}
