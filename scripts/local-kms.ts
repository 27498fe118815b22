// local-kms (github.com/nsmithuk/local-kms): an AWS KMS emulator for tests and the local stack.
// Note: it listens on every interface (it binds ":" + PORT and offers no host setting), so the
// port is reachable from the network on machines without a firewall.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { freePort, waitForPort } from './net';
import { tools } from './paths';

export const LOCAL_KMS_ACCOUNT_ID = '111122223333';
export const LOCAL_KMS_REGION = 'us-east-1';

const STARTUP_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

/**
 * How to run local-kms: the binary, its arguments and the environment variables it reads
 * (to be merged over the caller's environment). Starts nothing.
 */
export function localKmsCommand(opts: { port: number; dataDir: string; accountId?: string; region?: string }): {
  command: string;
  args: string[];
  env: Record<string, string>;
} {
  return {
    command: tools.localKms,
    args: [],
    env: {
      PORT: String(opts.port),
      KMS_DATA_PATH: opts.dataDir,
      KMS_ACCOUNT_ID: opts.accountId ?? LOCAL_KMS_ACCOUNT_ID,
      KMS_REGION: opts.region ?? LOCAL_KMS_REGION,
    },
  };
}

export interface RunningLocalKms {
  endpoint: string;
  region: string;
  port: number;
  /** Kills local-kms and resolves once it has exited. */
  stop(): Promise<void>;
}

/** Starts local-kms as a child of this process (for tests) and resolves once it accepts connections. */
export async function startLocalKms(opts: { port?: number; dataDir: string; logFile?: string }): Promise<RunningLocalKms> {
  const port = opts.port ?? (await freePort());
  const { command, args, env } = localKmsCommand({ port, dataDir: opts.dataDir });
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });

  // Keep the end of the output so a failed start can say why; copy everything to logFile if asked.
  // The port answering is not enough to know it is ours (another process may have taken the free
  // port first): local-kms logs "Local KMS started on 0.0.0.0:<port>" once it is listening.
  const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  let tail = '';
  let announce = (): void => undefined;
  const announced = new Promise<void>((resolve) => (announce = resolve));
  const record = (chunk: Buffer): void => {
    log?.write(chunk);
    tail = (tail + chunk.toString()).slice(-2000);
    if (tail.includes(`Local KMS started on 0.0.0.0:${port}`)) announce();
  };
  child.stdout.on('data', record);
  child.stderr.on('data', record);

  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  void exited.then(() => log?.end());
  // Rejected by the first failure; only awaited during startup, so later ones are ignored.
  let fail = (_err: Error): void => undefined;
  const failedToStart = new Promise<never>((_, reject) => (fail = reject));
  failedToStart.catch(() => undefined);
  child.on('error', (err) => fail(new Error(`cannot run local-kms at ${command}: ${err.message}`)));
  void exited.then(() => fail(new Error(`local-kms exited during startup (port ${port}): ${tail.trim()}`)));
  const startupTimer = setTimeout(
    () => fail(new Error(`local-kms did not start within ${STARTUP_TIMEOUT_MS} ms (port ${port}): ${tail.trim()}`)),
    STARTUP_TIMEOUT_MS,
  );
  // A test process that dies without calling stop() must not leave local-kms behind.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const forceKill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(forceKill);
    }
    await exited;
  };

  try {
    await Promise.race([Promise.all([announced, waitForPort('127.0.0.1', port, STARTUP_TIMEOUT_MS)]), failedToStart]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(startupTimer);
  }
  return { endpoint: `http://127.0.0.1:${port}`, region: LOCAL_KMS_REGION, port, stop };
}
