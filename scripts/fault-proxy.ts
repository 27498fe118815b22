// A fault-injecting HTTP proxy between the AWS SDK and local-kms, for the fault suite and by hand.
// Loopback only. Faults are drawn from a seeded generator, so the same seed gives the same fault
// sequence (which request gets which fault still follows arrival order under concurrency):
// - ThrottlingException (HTTP 400, as KMS sends it) and HTTP 500 (KMSInternalException), answered
//   without forwarding;
// - connection resets (TCP RST), half before the request reaches KMS, half after KMS answered,
//   so the caller cannot tell whether a CreateKey happened;
// - added latency.
// A test can also hold the next request of one operation (X-Amz-Target), before it is forwarded
// or after KMS answered, until it releases it: a kill -9 then lands at a known step.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

export interface FaultRates {
  /** Share of requests answered with ThrottlingException, 0..1. */
  throttle?: number;
  /** Share answered with HTTP 500. */
  serverError?: number;
  /** Share whose connection is reset. */
  reset?: number;
  /** Share delayed by `latencyMs` (independent of the faults above). */
  latency?: number;
  latencyMs?: number;
  /** Operations to inject faults into, e.g. ["CreateKey"]; all when unset. Holds ignore this. */
  operations?: string[];
}

export type FaultKind = 'throttle' | 'serverError' | 'resetBefore' | 'resetAfter' | 'latency';

export interface Held {
  /** Resolves once a matching request is held. */
  arrived: Promise<void>;
  /** Lets it go on; a request whose client has gone meanwhile is dropped, never forwarded. */
  release(): void;
}

export interface FaultProxyOptions {
  /** local-kms, e.g. http://127.0.0.1:4599 (loopback only). */
  upstream: string;
  /** 0 or unset: a free port. */
  port?: number;
  seed: number;
  rates?: FaultRates;
}

/** mulberry32: small, fast and good enough to spread faults; not for anything secret. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

interface Hold {
  operation: string;
  phase: 'request' | 'response';
  arrive: () => void;
  released: Promise<void>;
}

export class FaultProxy {
  /** Faults injected so far, by kind. */
  readonly injected: Record<FaultKind, number> = { throttle: 0, serverError: 0, resetBefore: 0, resetAfter: 0, latency: 0 };
  /** Requests seen, by operation. */
  readonly requests: Record<string, number> = {};
  private rates: FaultRates;
  private readonly random: () => number;
  private readonly holds: Hold[] = [];
  private readonly forced: Array<{ operation: string; kind: Exclude<FaultKind, 'latency'> }> = [];
  private readonly upstream: URL;

  private constructor(
    private readonly server: http.Server,
    opts: FaultProxyOptions,
  ) {
    this.rates = opts.rates ?? {};
    this.random = seeded(opts.seed);
    this.upstream = new URL(opts.upstream);
  }

  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    const upstream = new URL(opts.upstream);
    if (upstream.protocol !== 'http:' || !LOOPBACK.has(upstream.hostname)) {
      throw new Error(`fault proxy: upstream must be http on loopback, got ${opts.upstream}`);
    }
    const server = http.createServer();
    const proxy = new FaultProxy(server, opts);
    server.on('request', (req, res) => void proxy.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', resolve);
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get faults(): number {
    return Object.values(this.injected).reduce((a, b) => a + b, 0);
  }

  setRates(rates: FaultRates): void {
    this.rates = rates;
  }

  /** Holds the next request of `operation` (e.g. "CreateKey"), before forwarding or after KMS answered. */
  hold(operation: string, phase: 'request' | 'response'): Held {
    let arrive!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((r) => (arrive = r));
    const released = new Promise<void>((r) => (release = r));
    this.holds.push({ operation, phase, arrive, released });
    return { arrived, release };
  }

  /** The next request of `operation` gets this fault, whatever the rates. */
  failNext(operation: string, kind: Exclude<FaultKind, 'latency'>): void {
    this.forced.push({ operation, kind });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private takeHold(operation: string, phase: Hold['phase']): Hold | undefined {
    const i = this.holds.findIndex((h) => h.operation === operation && h.phase === phase);
    return i < 0 ? undefined : this.holds.splice(i, 1)[0];
  }

  /** Waits for the test to release a held request; false if the client went away meanwhile. */
  private async wait(hold: Hold | undefined, res: http.ServerResponse): Promise<boolean> {
    if (!hold) return true;
    hold.arrive();
    await hold.released;
    return !res.destroyed && !res.socket?.destroyed;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.slice(target.indexOf('.') + 1);
    this.requests[operation] = (this.requests[operation] ?? 0) + 1;

    if (!(await this.wait(this.takeHold(operation, 'request'), res))) return;

    // Three draws per request whatever the rates, so the sequence depends on the seed only.
    const [fault, side, slow] = [this.random(), this.random(), this.random()];
    const r = this.rates;
    const eligible = !r.operations || r.operations.includes(operation);
    if (eligible && slow < (r.latency ?? 0)) {
      this.injected.latency++;
      await new Promise((resolve) => setTimeout(resolve, r.latencyMs ?? 100));
    }
    const kind = this.takeForced(operation) ?? (eligible ? this.draw(fault, side) : undefined);
    if (kind) this.injected[kind]++;
    if (kind === 'throttle') return this.answer(res, 400, 'ThrottlingException', 'Rate exceeded (fault proxy)');
    if (kind === 'serverError') return this.answer(res, 500, 'KMSInternalException', 'internal error (fault proxy)');
    if (kind === 'resetBefore') return void req.socket.resetAndDestroy();

    let upstream: { status: number; headers: http.IncomingHttpHeaders; body: Buffer };
    try {
      upstream = await this.forward(req, body);
    } catch {
      // local-kms is down: the caller sees what it would see without the proxy, a reset.
      return void req.socket.resetAndDestroy();
    }
    if (kind === 'resetAfter') return void req.socket.resetAndDestroy();
    if (!(await this.wait(this.takeHold(operation, 'response'), res))) return;
    res.writeHead(upstream.status, upstream.headers);
    res.end(upstream.body);
  }

  private takeForced(operation: string): Exclude<FaultKind, 'latency'> | undefined {
    const i = this.forced.findIndex((f) => f.operation === operation);
    return i < 0 ? undefined : this.forced.splice(i, 1)[0].kind;
  }

  private draw(fault: number, side: number): Exclude<FaultKind, 'latency'> | undefined {
    const r = this.rates;
    const throttle = r.throttle ?? 0;
    const serverError = throttle + (r.serverError ?? 0);
    const reset = serverError + (r.reset ?? 0);
    if (fault < throttle) return 'throttle';
    if (fault < serverError) return 'serverError';
    if (fault < reset) return side < 0.5 ? 'resetBefore' : 'resetAfter';
    return undefined;
  }

  private answer(res: http.ServerResponse, status: number, type: string, message: string): void {
    const body = JSON.stringify({ __type: type, message });
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': `fault-proxy-${Date.now()}` });
    res.end(body);
  }

  private forward(req: http.IncomingMessage, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const out = http.request(
        {
          host: this.upstream.hostname,
          port: this.upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: this.upstream.host },
        },
        async (answer) => {
          const chunks: Buffer[] = [];
          try {
            for await (const chunk of answer) chunks.push(chunk as Buffer);
          } catch (err) {
            return reject(err);
          }
          const headers = { ...answer.headers };
          delete headers['transfer-encoding'];
          headers['content-length'] = String(Buffer.concat(chunks).length);
          resolve({ status: answer.statusCode ?? 502, headers, body: Buffer.concat(chunks) });
        },
      );
      out.once('error', reject);
      out.end(body);
    });
  }
}

/** `node dist/scripts/fault-proxy.js --upstream http://127.0.0.1:4599 --seed 7 --throttle 0.1 ...` */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      upstream: { type: 'string' },
      port: { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
      throttle: { type: 'string', default: '0' },
      'server-error': { type: 'string', default: '0' },
      reset: { type: 'string', default: '0' },
      latency: { type: 'string', default: '0' },
      'latency-ms': { type: 'string', default: '100' },
    },
  });
  if (!values.upstream) {
    console.error(
      'usage: fault-proxy --upstream http://127.0.0.1:PORT [--port N] [--seed N] [--throttle P] [--server-error P] [--reset P] [--latency P --latency-ms MS]',
    );
    process.exit(2);
  }
  const rate = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (!(n >= 0 && n <= 1)) throw new Error(`--${name}: expected a share between 0 and 1, got ${v}`);
    return n;
  };
  const proxy = await FaultProxy.start({
    upstream: values.upstream,
    port: Number(values.port),
    seed: Number(values.seed),
    rates: {
      throttle: rate('throttle', values.throttle),
      serverError: rate('server-error', values['server-error']),
      reset: rate('reset', values.reset),
      latency: rate('latency', values.latency),
      latencyMs: Number(values['latency-ms']),
    },
  });
  console.log(`fault proxy on ${proxy.endpoint} -> ${values.upstream}`);
  process.on('SIGINT', () => {
    console.log(JSON.stringify({ requests: proxy.requests, injected: proxy.injected }));
    void proxy.close().then(() => process.exit(0));
  });
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`fault-proxy: ${err.message}`);
    process.exit(1);
  });
}
