// The Temporal dev server (`temporal server start-dev`, CLI 1.5.1): one process with the
// frontend, the other services, SQLite persistence and the Web UI.
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
 */
export function temporalDevServerCommand(opts: {
  port: number;
  uiPort: number;
  dbFile: string;
  namespace: string;
  ip?: string;
  /** A codec server for the Web UI. */
  codecEndpoint?: string;
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
      '--log-level',
      'warn',
      ...(opts.codecEndpoint ? ['--ui-codec-endpoint', opts.codecEndpoint] : []),
    ],
  };
}
