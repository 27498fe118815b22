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

export function parseQueues(value: string): Queue[] {
  const queues = value.split(',').map((q) => q.trim()).filter(Boolean);
  const wrong = queues.filter((q) => q !== 'hsm' && q !== 'kms');
  if (queues.length === 0 || wrong.length) {
    throw new ConfigError(`queues: expected "hsm", "kms" or "hsm,kms", got ${JSON.stringify(value)}`);
  }
  return [...new Set(queues)] as Queue[];
}

/** PKCS11_MODULE, PKCS11_TOKEN_LABEL and exactly one of PKCS11_PIN / PKCS11_PIN_FILE. */
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
  return { module, tokenLabel, pin };
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
