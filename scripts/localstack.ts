// LocalStack core (PyPI localstack-core, pinned with hashes in scripts/localstack-requirements.txt,
// installed into .tools/localstack by install-tools.sh): a second KMS emulator, for what local-kms
// lacks (ListKeyRotations, RotateKeyOnDemand, ImportType NEW_KEY_MATERIAL). KMS only, on
// 127.0.0.1, with its files under the caller's directory.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './net';
import { tools } from './paths';

export const LOCALSTACK_ACCOUNT_ID = '000000000000';
export const LOCALSTACK_REGION = 'us-east-1';

// Python imports of the whole AWS layer: slow on a loaded 2-CPU machine.
const STARTUP_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 10_000;

/** How to run LocalStack: the interpreter, its arguments and the environment it reads. Starts nothing. */
export function localStackCommand(opts: { port: number; dataDir: string }): { command: string; args: string[]; env: Record<string, string> } {
  return {
    command: tools.localStackPython,
    args: ['-m', 'localstack.runtime.main'],
    env: {
      SERVICES: 'kms',
      EAGER_SERVICE_LOADING: '1',
      GATEWAY_LISTEN: `127.0.0.1:${opts.port}`,
      // Host mode keeps its state and temporary files under FILESYSTEM_ROOT (default: inside the package).
      FILESYSTEM_ROOT: opts.dataDir,
      LOCALSTACK_VOLUME_DIR: path.join(opts.dataDir, 'volume'),
      // No DNS server, no telemetry, no certificate download: nothing but KMS on loopback.
      DNS_ADDRESS: '0',
      DISABLE_EVENTS: '1',
      SKIP_SSL_CERT_DOWNLOAD: '1',
    },
  };
}

export interface RunningLocalStack {
  endpoint: string;
  region: string;
  port: number;
  /** LocalStack's own version, from its health endpoint. */
  version: string;
  stop(): Promise<void>;
}

/** Starts LocalStack as a child of this process and resolves once its health endpoint says KMS is available. */
export async function startLocalStack(opts: { port?: number; dataDir: string; logFile?: string }): Promise<RunningLocalStack> {
  const port = opts.port ?? (await freePort());
  await mkdir(opts.dataDir, { recursive: true });
  const { command, args, env } = localStackCommand({ port, dataDir: opts.dataDir });
  // Its own process group, so stop() also ends anything it spawned.
  const child = spawn(command, args, { env: { ...process.env, ...env }, cwd: opts.dataDir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  let tail = '';
  const record = (chunk: Buffer): void => {
    log?.write(chunk);
    tail = (tail + chunk.toString()).slice(-3000);
  };
  child.stdout.on('data', record);
  child.stderr.on('data', record);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  void exited.then(() => log?.end());
  let failed: Error | undefined;
  child.on('error', (err) => (failed = new Error(`cannot run LocalStack with ${command}: ${err.message}; run scripts/install-tools.sh`)));
  void exited.then(() => (failed ??= new Error(`LocalStack exited during startup (port ${port}): ${tail.trim()}`)));
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const killOnExit = (): void => killGroup('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      killGroup('SIGTERM');
      const forceKill = setTimeout(() => killGroup('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(forceKill);
    }
  };

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  // Answering on the port is not enough (another process may have taken it): ask for KMS and a version.
  for (;;) {
    if (failed) break;
    const health = await fetch(`${endpoint}/_localstack/health`).then(
      (r) => (r.ok ? (r.json() as Promise<{ services?: Record<string, string>; version?: string }>) : undefined),
      () => undefined,
    );
    const kms = health?.services?.kms;
    if (health?.version && (kms === 'available' || kms === 'running')) {
      return { endpoint, region: LOCALSTACK_REGION, port, version: health.version, stop };
    }
    if (Date.now() > deadline) {
      failed = new Error(`LocalStack did not offer KMS within ${STARTUP_TIMEOUT_MS} ms (port ${port}): ${tail.trim()}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw failed;
}
