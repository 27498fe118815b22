// `byok codec-server`: serves the payload codec to the Temporal Web UI (and `temporal
// --codec-endpoint`), so operators see decrypted payloads without the keys leaving this process.
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createCodecServer } from '../codec/codec-server';
import { codecKeysFromEnv } from '../codec/keys';
import { AesGcmPayloadCodec } from '../codec/payload-codec';
import { readSecretFile } from '../codec/secret-file';
import { CliError, Exit, parse, showUsage, type Command } from './command';

const USAGE = `usage: byok codec-server [--host 127.0.0.1] [--port 8081] [--ui-origin URL ...]

Answers POST /encode and /decode (the Temporal codec server protocol) until SIGINT or SIGTERM.
Point the Web UI at it (temporal server start-dev --ui-codec-endpoint, or the UI's codec settings).

  --host H          address to listen on (default 127.0.0.1: loopback only)
  --port P          port (default 8081; 0 picks a free one)
  --ui-origin URL   a Web UI origin browsers may call from, repeatable (default: the origin of
                    $BYOK_UI_URL, http://127.0.0.1:8233, and its localhost/127.0.0.1 twin)

Environment: BYOK_CODEC_KEYS or BYOK_CODEC_KEY_FILE (required), TEMPORAL_NAMESPACE (requests for
another namespace are refused), BYOK_CODEC_SERVER_TOKEN or BYOK_CODEC_SERVER_TOKEN_FILE (mode 600):
when set, every request needs "Authorization: Bearer <token>".`;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function origins(given: string[] | undefined): string[] {
  if (given?.length) {
    for (const o of given) {
      let parsed: URL | undefined;
      try {
        parsed = new URL(o);
      } catch {
        // reported below
      }
      if (!parsed || parsed.origin !== o) throw new CliError(`codec-server: --ui-origin: expected scheme://host[:port] with no path, got ${JSON.stringify(o)}`, Exit.USAGE);
    }
    return given;
  }
  const ui = new URL(process.env.BYOK_UI_URL ?? 'http://127.0.0.1:8233');
  // Browsers send the host as typed: the local UI is reached under both names.
  const twin = { '127.0.0.1': 'localhost', localhost: '127.0.0.1' }[ui.hostname];
  return twin ? [ui.origin, new URL(ui.origin.replace(ui.hostname, twin)).origin] : [ui.origin];
}

function token(env: NodeJS.ProcessEnv): string | undefined {
  if (env.BYOK_CODEC_SERVER_TOKEN && env.BYOK_CODEC_SERVER_TOKEN_FILE) {
    throw new CliError('codec-server: set BYOK_CODEC_SERVER_TOKEN or BYOK_CODEC_SERVER_TOKEN_FILE, not both', Exit.USAGE);
  }
  const file = env.BYOK_CODEC_SERVER_TOKEN_FILE;
  const value = file ? readSecretFile('BYOK_CODEC_SERVER_TOKEN_FILE', file).trim() : env.BYOK_CODEC_SERVER_TOKEN;
  if (file && !value) throw new CliError(`codec-server: BYOK_CODEC_SERVER_TOKEN_FILE ${file} is empty`, Exit.USAGE);
  return value || undefined;
}

async function codecServerCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    host: { type: 'string' },
    port: { type: 'string' },
    'ui-origin': { type: 'string', multiple: true },
  });
  if (v.help) return showUsage(USAGE);
  if (positionals.length) throw new CliError(`codec-server: unexpected argument ${JSON.stringify(positionals[0])}\n${USAGE}`, Exit.USAGE);
  const host = v.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host) && !isIP(host)) throw new CliError(`codec-server: --host: expected an IP address, got ${JSON.stringify(host)}`, Exit.USAGE);
  const port = Number(v.port ?? 8081);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`codec-server: --port: not a TCP port: ${v.port}`, Exit.USAGE);
  const keys = codecKeysFromEnv();
  if (!keys) throw new CliError('codec-server: no codec keys; set BYOK_CODEC_KEY_FILE (or BYOK_CODEC_KEYS)', Exit.USAGE);
  const allowedOrigins = origins(v['ui-origin']);
  const bearer = token(process.env);
  const namespace = process.env.TEMPORAL_NAMESPACE || 'default';

  const server = createCodecServer({
    codec: new AesGcmPayloadCodec(keys),
    allowedOrigins,
    token: bearer,
    namespace,
    log: (line) => console.error(`codec-server: ${line}`),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new CliError(`codec-server: cannot listen on ${host}:${port}: ${err.message}`, Exit.ERROR)));
    server.listen(port, host, resolve);
  });
  const { port: bound } = server.address() as AddressInfo;
  console.log(
    `codec server on http://${host.includes(':') ? `[${host}]` : host}:${bound} for namespace ${namespace}; ` +
      `encrypting with key "${keys.current.id}", decrypting with ${keys.byId.size} key(s); ` +
      `UI origins ${allowedOrigins.join(', ')}; bearer token ${bearer ? 'required' : 'not required'}`,
  );
  if (!LOOPBACK.has(host) && !bearer) console.error('codec-server: warning: listening beyond loopback without a bearer token');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return Exit.OK;
}

export const codecCommands: Record<string, Command> = {
  'codec-server': { summary: 'serve the payload codec to the Temporal Web UI (decrypted payloads for ops)', usage: USAGE, run: codecServerCommand },
};
