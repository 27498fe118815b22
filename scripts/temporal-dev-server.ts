// The Temporal dev server (`temporal server start-dev`, CLI 1.5.1): one process with the
// frontend, the other services, SQLite persistence and the Web UI.
import type { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType, type SearchAttributeKey, type SearchAttributeType } from '@temporalio/common/lib/search-attributes';
import { CLI_TYPE_NAMES, SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { tools } from './paths';

/**
 * How to run the dev server. Starts nothing. Notes on the flags (CLI 1.5.1):
 * - `--namespace` creates the namespace at launch if it is missing ("default" always exists,
 *   and naming it again is harmless, also on a database that already has it).
 * - `--ui-port` keeps the Web UI on (`--headless` would turn it off); it binds to `--ip` too.
 * - the HTTP API and metrics ports, and the internal services' ports, are random free ones.
 * - `--ui-codec-endpoint` makes the Web UI (in the browser) send payloads to that codec server
 *   to show them decoded; the codec server must allow the UI's origin (CORS).
 * - only one process may use a `--db-filename` at a time (SQLite lock): wait for the old one
 *   to exit before starting a new one on the same file.
 * - `--search-attribute NAME=TYPE` registers the BYOK search attributes when it creates the
 *   database; on a database that has them already it is harmless (checked), but on one from
 *   before they existed it adds nothing: see registerSearchAttributes.
 */
export function temporalDevServerCommand(opts: {
  port: number;
  uiPort: number;
  dbFile: string;
  namespace: string;
  ip?: string;
  /** A codec server for the Web UI. */
  codecEndpoint?: string;
  /** Server dynamic config, `--dynamic-config-value KEY=VALUE` (VALUE is JSON). */
  dynamicConfig?: Record<string, string>;
}): { command: string; args: string[] } {
  return {
    command: tools.temporal,
    args: [
      'server',
      'start-dev',
      '--ip',
      opts.ip ?? '127.0.0.1',
      '--port',
      String(opts.port),
      '--ui-port',
      String(opts.uiPort),
      '--db-filename',
      opts.dbFile,
      '--namespace',
      opts.namespace,
      ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=${CLI_TYPE_NAMES[key.type]}`]),
      '--log-level',
      'warn',
      ...(opts.codecEndpoint ? ['--ui-codec-endpoint', opts.codecEndpoint] : []),
      ...Object.entries(opts.dynamicConfig ?? {}).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${value}`]),
    ],
  };
}

/**
 * Registers the BYOK search attributes that `namespace` lacks; returns the names it added.
 * Needed because `--search-attribute` is applied only when the dev server creates its database
 * (checked with CLI 1.5.1): a database from an earlier version of the stack would stay without them.
 */
export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = SEARCH_ATTRIBUTES.filter((key) => !Object.hasOwn(customAttributes ?? {}, key.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: indexedValueTypes(missing) });
  return missing.map((key) => key.name);
}

/** The addSearchAttributes request body for `keys` (the time-skipping test server takes it too, but cannot list). */
export function indexedValueTypes(keys: readonly SearchAttributeKey<SearchAttributeType>[] = SEARCH_ATTRIBUTES) {
  return Object.fromEntries(keys.map((key) => [key.name, encodeSearchAttributeIndexedValueType(key.type)!]));
}
