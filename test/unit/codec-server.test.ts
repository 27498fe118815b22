// The codec server over real HTTP on loopback: the protocol, CORS, the bearer token; and the
// `byok codec-server` command that runs it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { createCodecServer } from '../../codec/codec-server';
import { codecKeyLine, parseCodecKeys } from '../../codec/keys';
import { AesGcmPayloadCodec, ENCODING } from '../../codec/payload-codec';
import { payloadsFromJson, payloadsToJson } from '../../codec/payload-json';
import { projectRoot } from '../../scripts/paths';
import { runByok } from '../byok-cli';

const UI = 'http://127.0.0.1:8233';
const TOKEN = randomBytes(16).toString('hex');
const codec = new AesGcmPayloadCodec(parseCodecKeys(codecKeyLine('k1', randomBytes(32)), 'test'));
const VALUE = { step: 'AWAITING_APPROVAL', kcv: 'A1B2C3' };

async function serve(token?: string) {
  const log: string[] = [];
  const server = createCodecServer({ codec, allowedOrigins: [UI, 'http://localhost:8233'], token, namespace: 'default', log: (l) => log.push(l) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, log, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function encodedBody() {
  return JSON.stringify(payloadsToJson(await codec.encode([defaultPayloadConverter.toPayload(VALUE)])));
}

describe('codec server', () => {
  let open: Awaited<ReturnType<typeof serve>>;
  let guarded: Awaited<ReturnType<typeof serve>>;
  before(async () => {
    open = await serve();
    guarded = await serve(TOKEN);
  });
  after(async () => {
    await open?.close();
    await guarded?.close();
  });

  it('decodes a payload the codec encrypted, as the Web UI asks for it', async () => {
    const res = await fetch(`${open.url}/decode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: UI },
      body: await encodedBody(),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), UI);
    const [decoded] = payloadsFromJson(await res.json());
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded), VALUE);
  });

  it('encodes, also when mounted under a path prefix, and the result decodes', async () => {
    const body = JSON.stringify(payloadsToJson([defaultPayloadConverter.toPayload(VALUE)]));
    // An empty X-Namespace (what the Temporal CLI sends) names no namespace.
    const res = await fetch(`${open.url}/codec/default/encode`, { method: 'POST', headers: { 'X-Namespace': '' }, body });
    assert.equal(res.status, 200);
    const [encoded] = payloadsFromJson(await res.json());
    assert.equal(Buffer.from(encoded.metadata!.encoding!).toString(), ENCODING);
    const [decoded] = await codec.decode([encoded]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded), VALUE);
  });

  it('answers a preflight from the UI origin, and refuses one from any other origin', async () => {
    const preflight = (origin: string) =>
      fetch(`${open.url}/decode`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace,authorization' },
      });
    const allowed = await preflight('http://localhost:8233');
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://localhost:8233');
    assert.equal(allowed.headers.get('access-control-allow-methods'), 'POST');
    assert.match(allowed.headers.get('access-control-allow-headers') ?? '', /X-Namespace.*Authorization/);
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');
    for (const origin of ['https://evil.example', 'http://127.0.0.1:8234', 'null']) {
      const denied = await preflight(origin);
      assert.equal(denied.status, 403, origin);
      assert.equal(denied.headers.get('access-control-allow-origin'), null, origin);
    }
  });

  it('refuses to decode for a browser on another origin', async () => {
    const res = await fetch(`${open.url}/decode`, { method: 'POST', headers: { Origin: 'https://evil.example' }, body: await encodedBody() });
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.match(((await res.json()) as { message: string }).message, /origin https:\/\/evil\.example is not allowed/);
  });

  it('with a token, requires exactly that bearer token (preflight excepted)', async () => {
    const decode = (headers: Record<string, string>) =>
      fetch(`${guarded.url}/decode`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ payloads: [] }) });
    for (const headers of [{} as Record<string, string>, { Authorization: `Bearer ${TOKEN}x` }, { Authorization: `Basic ${TOKEN}` }, { Authorization: 'Bearer ' }]) {
      const res = await decode(headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    }
    const right = await decode({ Authorization: `Bearer ${TOKEN}` });
    assert.equal(right.status, 200);
    assert.deepEqual(await right.json(), { payloads: [] });
    const preflight = await fetch(`${guarded.url}/decode`, { method: 'OPTIONS', headers: { Origin: UI, 'Access-Control-Request-Method': 'POST' } });
    assert.equal(preflight.status, 204);
    assert.ok(!guarded.log.join('\n').includes(TOKEN), 'the token is never logged');
  });

  it('gives a clear error for bad requests: path, method, namespace, body, unknown key', async () => {
    const post = (p: string, body: string, headers: Record<string, string> = {}) => fetch(`${open.url}${p}`, { method: 'POST', headers, body });
    const cases: Array<[Promise<Response>, number, RegExp]> = [
      [post('/decode/x', '{}'), 404, /answers POST \/encode and POST \/decode/],
      [post('/transcode', '{}'), 404, /answers POST \/encode and POST \/decode/],
      [fetch(`${open.url}/decode`), 405, /method GET not allowed/],
      [post('/decode', '{"payloads":[]}', { 'X-Namespace': 'prod' }), 403, /serves namespace "default", not "prod"/],
      [post('/decode', 'not json'), 400, /body: not valid JSON/],
      [post('/decode', '{"payload":[]}'), 400, /a "payloads" array/],
      [post('/decode', '{"payloads":[{"data":"%%%"}]}'), 400, /payloads\[0\]\.data: expected a base64 string/],
      [
        post('/decode', JSON.stringify(payloadsToJson(await new AesGcmPayloadCodec(parseCodecKeys(codecKeyLine('k0', randomBytes(32)), 't')).encode([defaultPayloadConverter.toPayload(1)])))),
        400,
        /codec key "k0", which is not configured here/,
      ],
    ];
    for (const [request, status, message] of cases) {
      const res = await request;
      assert.equal(res.status, status, message.source);
      assert.match(((await res.json()) as { message: string }).message, message);
    }
  });
});

describe('byok codec-server (the command)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'byok-codec-cmd-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Starts the real command on a free port; resolves with its URL once it prints its banner. */
  async function start(env: Record<string, string>, args: string[] = []) {
    const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'byok'), 'codec-server', '--port', '0', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = /codec server on (http:\/\/\S+) /.exec(out);
        if (m) resolve(m[1]);
      });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
    });
    return { url, banner: out, stop: async () => (child.kill('SIGTERM'), exited) };
  }

  it('serves the codec from a key file, requires the token from a mode-600 token file, and stops on SIGTERM', async () => {
    const keyFile = path.join(dir, 'codec.keys');
    const key = randomBytes(32);
    await writeFile(keyFile, `${codecKeyLine('k1', key)}\n`, { mode: 0o600 });
    const tokenFile = path.join(dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const server = await start({ BYOK_CODEC_KEY_FILE: keyFile, BYOK_CODEC_SERVER_TOKEN_FILE: tokenFile }, ['--ui-origin', UI]);
    try {
      assert.match(server.banner, /encrypting with key "k1".*UI origins http:\/\/127\.0\.0\.1:8233; bearer token required/);
      assert.ok(!server.banner.includes(TOKEN) && !server.banner.includes(key.toString('base64')), 'no secret in the banner');
      const [encoded] = await new AesGcmPayloadCodec(parseCodecKeys(codecKeyLine('k1', key), 't')).encode([defaultPayloadConverter.toPayload(VALUE)]);
      const decode = (auth: string) =>
        fetch(`${server.url}/decode`, { method: 'POST', headers: { Authorization: auth, Origin: UI }, body: JSON.stringify(payloadsToJson([encoded])) });
      assert.equal((await decode('Bearer wrong')).status, 401);
      const res = await decode(`Bearer ${TOKEN}`);
      assert.equal(res.status, 200);
      assert.deepEqual(defaultPayloadConverter.fromPayload(payloadsFromJson(await res.json())[0]), VALUE);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('refuses to start without keys, with a group-readable token file, or with an origin that has a path', async () => {
    const keyFile = path.join(dir, 'refusals.keys');
    await writeFile(keyFile, codecKeyLine('k1', randomBytes(32)), { mode: 0o600 });
    const openToken = path.join(dir, 'open-token');
    await writeFile(openToken, TOKEN, { mode: 0o644 });
    const cases: Array<[Record<string, string>, string[], number, RegExp]> = [
      [{ BYOK_CODEC_KEY_FILE: '', BYOK_CODEC_KEYS: '' }, [], 2, /no codec keys; set BYOK_CODEC_KEY_FILE/],
      [{ BYOK_CODEC_KEY_FILE: keyFile, BYOK_CODEC_SERVER_TOKEN_FILE: openToken }, [], 1, /open-token is readable by group or others; chmod 600 it/],
      [{ BYOK_CODEC_KEY_FILE: keyFile }, ['--ui-origin', 'http://127.0.0.1:8233/ui'], 2, /--ui-origin: expected scheme:\/\/host\[:port\] with no path/],
      [{ BYOK_CODEC_KEY_FILE: keyFile }, ['--host', 'example.com'], 2, /--host: expected an IP address/],
    ];
    for (const [env, args, code, message] of cases) {
      const run = await runByok(['codec-server', '--port', '0', ...args], env);
      assert.equal(run.code, code, run.stderr);
      assert.match(run.stderr, message);
    }
  });
});
