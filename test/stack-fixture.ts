// The real stack (dev server, local-kms, a SoftHSM2 token, the worker) a test file starts for
// itself: its own temp dir, distinct free loopback ports, and PINs made up per run so that a
// scan for them cannot hit by chance (unlike the demo's "1234").
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePorts } from '../scripts/net';
import { stackDown, type StackOptions } from '../scripts/stack';

export interface TestStackChoices {
  /** Start the worker with the stack; default true. */
  worker?: boolean;
  /** Encrypt payloads and serve the codec to the Web UI. */
  codec?: boolean;
  /** Serve the worker's Prometheus metrics. */
  metrics?: boolean;
}

/** Options for `stackUp`, named after the test file (`name` labels the dir, the token and the PIN). */
export async function testStackOptions(name: string, choices: TestStackChoices = {}): Promise<StackOptions> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `byok-${name}-`));
  const [temporalPort, uiPort, kmsPort, codecPort, metricsPort] = await freePorts(5);
  return {
    dir,
    temporalPort,
    uiPort,
    kmsPort,
    namespace: 'default',
    tokenLabel: `byok-${name}`,
    pin: `${name}-${randomBytes(8).toString('hex')}`,
    soPin: `so-${randomBytes(8).toString('hex')}`,
    worker: choices.worker ?? true,
    ...(choices.codec && { codec: { port: codecPort } }),
    ...(choices.metrics && { metricsPort }),
  };
}

/** Stops what `stackUp(opts)` started and removes its dir; nothing when the stack never got options. */
export async function removeTestStack(opts: StackOptions | undefined): Promise<void> {
  if (!opts) return;
  await stackDown(opts);
  await rm(opts.dir, { recursive: true, force: true });
}
