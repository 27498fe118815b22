// The Temporal codec server protocol over HTTP, so the Web UI and `temporal --codec-endpoint` can
// show decrypted payloads to operators: POST .../encode and .../decode (only the last path
// segment counts, so it can be mounted anywhere), body and answer {"payloads": [...]} in proto3
// JSON. Browsers may call it only from the configured UI origins; with a token, every POST needs
// `Authorization: Bearer <token>`.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { PayloadCodec } from '@temporalio/common';
import { CodecError } from './payload-codec';
import { payloadsFromJson, payloadsToJson } from './payload-json';

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Exact origins (scheme://host:port) of the Web UI allowed to call from a browser. */
  allowedOrigins: string[];
  /** When set, required as a bearer token on /encode and /decode. */
  token?: string;
  /** When set, requests whose X-Namespace names another namespace are refused. */
  namespace?: string;
  /** One line per refused or failed request; never payload contents. */
  log?: (line: string) => void;
}

/** A Temporal payload is at most 2 MB; a batch from the UI holds a few of them. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const PATH = /\/(encode|decode)$/;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export function createCodecServer(opts: CodecServerOptions): Server {
  return createServer((req, res) => {
    handle(opts, req, res).catch((err) => {
      const refusal = err instanceof HttpError ? err : new HttpError(500, 'internal error');
      opts.log?.(`${req.method} ${req.url}: ${refusal.status} ${err instanceof Error ? err.message : err}`);
      for (const [k, v] of Object.entries(refusal.headers)) res.setHeader(k, v);
      send(res, refusal.status, { message: refusal.message });
    });
  });
}

async function handle(opts: CodecServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.setHeader('Vary', 'Origin');
  const origin = req.headers.origin;
  // Requests without an Origin come from the CLI or scripts, not a browser: the token guards those.
  if (origin !== undefined) {
    if (!opts.allowedOrigins.includes(origin)) throw new HttpError(403, `origin ${origin} is not allowed to use this codec server`);
    res.setHeader('Access-Control-Allow-Origin', origin);
    // For the UI's "include cross-origin credentials" (cookies for a proxy in front); this server uses none.
    res.setHeader('Access-Control-Allow-Credentials', 'true');
  }
  const match = PATH.exec(new URL(req.url ?? '/', 'http://codec').pathname);
  if (!match) throw new HttpError(404, 'not found: the codec server answers POST /encode and POST /decode');
  if (req.method === 'OPTIONS') {
    // Preflight: browsers send no Authorization header with it.
    res.setHeader('Access-Control-Allow-Methods', 'POST');
    // What the Web UI sends (Authorization and Authorization-Extras only when it passes the user's tokens).
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization, Authorization-Extras');
    res.setHeader('Access-Control-Max-Age', '600');
    res.writeHead(204).end();
    return;
  }
  if (req.method !== 'POST') throw new HttpError(405, `method ${req.method} not allowed; use POST`, { Allow: 'POST, OPTIONS' });
  if (opts.token !== undefined && !bearerMatches(req.headers.authorization, opts.token)) {
    throw new HttpError(401, 'a bearer token is required (Authorization: Bearer <token>)', { 'WWW-Authenticate': 'Bearer' });
  }
  // The Temporal CLI (1.5.1) sends an empty X-Namespace: that names no namespace.
  const namespace = header(req, 'x-namespace') || undefined;
  if (opts.namespace !== undefined && namespace !== undefined && namespace !== opts.namespace) {
    throw new HttpError(403, `this codec server serves namespace "${opts.namespace}", not "${namespace}"`);
  }
  let body: unknown;
  try {
    body = JSON.parse((await readBody(req)).toString('utf8'));
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'body: not valid JSON');
  }
  let payloads;
  try {
    payloads = payloadsFromJson(body);
  } catch (err) {
    throw new HttpError(400, `body: ${(err as Error).message}`);
  }
  try {
    const result = match[1] === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
    send(res, 200, payloadsToJson(result));
  } catch (err) {
    if (err instanceof CodecError) throw new HttpError(400, err.message);
    throw err;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function bearerMatches(authorization: string | undefined, token: string): boolean {
  const given = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1] ?? '';
  // Compare digests: constant time, and no length leak.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return given !== '' && timingSafeEqual(digest(given), digest(token));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}
