// How the CLI and the workers reach Temporal, from the environment variables the Temporal CLI and
// SDKs use: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, so one
// environment configures both.
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';

export interface TemporalSettings {
  address: string;
  namespace: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const address = env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
  const apiKey = env.TEMPORAL_API_KEY || undefined;
  const certPath = env.TEMPORAL_TLS_CLIENT_CERT_PATH;
  const keyPath = env.TEMPORAL_TLS_CLIENT_KEY_PATH;
  if (Boolean(certPath) !== Boolean(keyPath)) {
    throw new Error('TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together');
  }
  const caPath = env.TEMPORAL_TLS_SERVER_CA_CERT_PATH;
  const serverName = env.TEMPORAL_TLS_SERVER_NAME;
  // TLS is on when asked for, when any TLS file is given, or with an API key (Temporal Cloud).
  const tlsWanted = env.TEMPORAL_TLS ? env.TEMPORAL_TLS === 'true' : Boolean(certPath || caPath || serverName || apiKey);
  if (!tlsWanted) return { address, namespace, apiKey };
  const tls: TLSConfig = {
    ...(certPath && keyPath ? { clientCertPair: { crt: readFileSync(certPath), key: readFileSync(keyPath) } } : {}),
    ...(caPath ? { serverRootCACertificate: readFileSync(caPath) } : {}),
    ...(serverName ? { serverNameOverride: serverName } : {}),
  };
  return { address, namespace, apiKey, tls: Object.keys(tls).length ? tls : true };
}

/** Where the Web UI shows a workflow; BYOK_UI_URL for a UI that is not the dev server's default. */
export function workflowUrl(namespace: string, workflowId: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = (env.BYOK_UI_URL ?? 'http://127.0.0.1:8233').replace(/\/$/, '');
  return `${base}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
