// Worker configuration from the environment. Secrets (the HSM PIN, AWS credentials) are read here,
// on the worker that needs them, and never travel in workflow inputs.
import { readFileSync, statSync } from 'node:fs';
import type { HsmConfig } from '../activities/hsm';

export type Queue = 'hsm' | 'kms';

export interface KmsSettings {
  region: string;
  /** local-kms or another endpoint; unset means the real AWS endpoint. */
  endpoint?: string;
}

export class ConfigError extends Error {}

/** How much work each queue takes on; the limits protect the HSM and the AWS KMS request quotas. */
export interface ConcurrencySettings {
  /** KMS activities one worker runs at once (BYOK_KMS_ACTIVITY_CONCURRENCY). */
  kmsActivities: number;
  /** HSM activities one worker runs at once (BYOK_HSM_ACTIVITY_CONCURRENCY). */
  hsmActivities: number;
  /** KMS activities the server hands out per second to all workers of the queue together (BYOK_KMS_ACTIVITIES_PER_SECOND). */
  kmsActivitiesPerSecond?: number;
  /** Workflow tasks one worker runs at once (BYOK_WORKFLOW_TASK_CONCURRENCY). */
  workflowTasks: number;
}

// KMS: the SDK's default for activities. HSM: each call needs one of the worker's HSM sessions
// (BYOK_HSM_SESSIONS), so activities beyond the sessions only wait for one.
const DEFAULT_CONCURRENCY: ConcurrencySettings = { kmsActivities: 100, hsmActivities: 8, workflowTasks: 40 };

function positiveSetting(env: NodeJS.ProcessEnv, name: string, fallback: number | undefined, integer: boolean): number | undefined {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    throw new ConfigError(`${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function concurrencySettings(env: NodeJS.ProcessEnv): ConcurrencySettings {
  const positive = (name: string, fallback: number | undefined, integer: boolean) => positiveSetting(env, name, fallback, integer);
  return {
    kmsActivities: positive('BYOK_KMS_ACTIVITY_CONCURRENCY', DEFAULT_CONCURRENCY.kmsActivities, true)!,
    hsmActivities: positive('BYOK_HSM_ACTIVITY_CONCURRENCY', DEFAULT_CONCURRENCY.hsmActivities, true)!,
    kmsActivitiesPerSecond: positive('BYOK_KMS_ACTIVITIES_PER_SECOND', undefined, false),
    workflowTasks: positive('BYOK_WORKFLOW_TASK_CONCURRENCY', DEFAULT_CONCURRENCY.workflowTasks, true)!,
  };
}

export function parseQueues(value: string): Queue[] {
  const queues = value.split(',').map((q) => q.trim()).filter(Boolean);
  const wrong = queues.filter((q) => q !== 'hsm' && q !== 'kms');
  if (queues.length === 0 || wrong.length) {
    throw new ConfigError(`queues: expected "hsm", "kms" or "hsm,kms", got ${JSON.stringify(value)}`);
  }
  return [...new Set(queues)] as Queue[];
}

/** PKCS11_MODULE, PKCS11_TOKEN_LABEL, exactly one of PKCS11_PIN / PKCS11_PIN_FILE, and BYOK_HSM_SESSIONS. */
export function hsmSettings(env: NodeJS.ProcessEnv): HsmConfig {
  const module = env.PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
  const tokenLabel = env.PKCS11_TOKEN_LABEL;
  if (!tokenLabel) throw new ConfigError('PKCS11_TOKEN_LABEL is required for the hsm queue');
  if (env.PKCS11_PIN && env.PKCS11_PIN_FILE) throw new ConfigError('set PKCS11_PIN or PKCS11_PIN_FILE, not both');
  let pin = env.PKCS11_PIN;
  if (env.PKCS11_PIN_FILE) {
    const file = env.PKCS11_PIN_FILE;
    let mode: number;
    try {
      mode = statSync(file).mode;
      pin = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ConfigError(`PKCS11_PIN_FILE ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
    if (mode & 0o077) throw new ConfigError(`PKCS11_PIN_FILE ${file} is readable by group or others; chmod 600 it`);
  }
  if (!pin) throw new ConfigError('PKCS11_PIN or PKCS11_PIN_FILE is required for the hsm queue');
  const sessions = positiveSetting(env, 'BYOK_HSM_SESSIONS', 1, true)!;
  return { module, tokenLabel, pin, sessions };
}

/** AWS_REGION (or AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL_KMS; credentials come from the SDK's default chain. */
export function kmsSettings(env: NodeJS.ProcessEnv, endpointFlag?: string): KmsSettings {
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!region) throw new ConfigError('AWS_REGION is required for the kms queue');
  const endpoint = endpointFlag ?? (env.AWS_ENDPOINT_URL_KMS || undefined);
  if (endpoint && !/^https?:\/\//.test(endpoint)) {
    throw new ConfigError(`KMS endpoint: expected an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  return { region, endpoint };
}
