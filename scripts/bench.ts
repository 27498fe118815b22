// The fleet benchmark (`npm run bench`): N imports through the importKey workflow (worker
// process, dev server, SoftHSM2, local-kms; the approval sent by the benchmark as soon as the
// workflow accepts it), and the same N through scripts/direct-import.ts, which makes the same
// KMS and HSM calls without Temporal, at the same concurrency. Each run starts on an empty
// local-kms and an empty token. Prints medians over the repetitions.
//
//   npm run bench -- --n 1,50,200 --concurrency 1,4,16 --repeat 3 [--workers split|combined]
//     [--hsm-sessions S] [--kms-rate PER_SECOND] [--kms-concurrency K] [--hsm-concurrency H]
//     [--kms-latency-ms MS] [--hsm-latency-ms MS]
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { temporal } from '@temporalio/proto';
import { pool, type CallTimes } from './direct-import';
import { Fleet } from './fleet';
import { projectRoot } from './paths';
import { buildPkcs11Shim, shimEnv } from './pkcs11-shim';
import { approveUpdate } from '../workflows/decisions';
import { importKey } from '../workflows/import-key';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const HSM_ACTIVITIES = new Set(['ensureHsmKey', 'wrapKey']);
type Layout = 'split' | 'combined';

/** CPU seconds used so far by each child process of this one, by command name (utime + stime). */
function childCpuSeconds(): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) !== process.pid) continue;
    // utime and stime, in clock ticks (100 per second on Linux).
    byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return byName;
}

/** Microseconds that runnable tasks waited for a CPU, machine-wide (Linux PSI); undefined without PSI. */
function cpuStallMicros(): number | undefined {
  try {
    return Number(/^some .*total=(\d+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

function cpuSince(before: Record<string, number>, clientBefore: NodeJS.CpuUsage): Record<string, number> {
  const now = childCpuSeconds();
  const used: Record<string, number> = {};
  for (const [name, s] of Object.entries(now)) used[name] = s - (before[name] ?? 0);
  const client = process.cpuUsage(clientBefore);
  used.bench = (client.user + client.system) / 1e6;
  return used;
}

interface Run {
  wallSeconds: number;
  /** Per import, ms, approval wait excluded. */
  latencies: number[];
  /** Per import, ms spent in HSM and KMS activity code (workflow: from the history). */
  hsmMs: number[];
  kmsMs: number[];
  peakRssMiB: number;
  /** CPU seconds during the run, by process. */
  cpu: Record<string, number>;
  /** Share of the run during which some runnable task on the machine waited for a CPU. */
  cpuStall: number;
  /** Workflow runs: KMS activity attempts started per second, first to last start (from the histories). */
  kmsStartsPerSecond?: number;
}

const median = (xs: number[]): number => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

const eventMs = (e: HistoryEvent): number => {
  const t = e.eventTime;
  return Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
};

/** When each KMS activity attempt started (ms), from a history. */
function kmsStarts(events: HistoryEvent[]): number[] {
  const scheduled = new Map<number, string>();
  const starts: number[] = [];
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) scheduled.set(Number(e.eventId), e.activityTaskScheduledEventAttributes.activityType?.name ?? '?');
    const started = e.activityTaskStartedEventAttributes;
    if (started && !HSM_ACTIVITIES.has(scheduled.get(Number(started.scheduledEventId)) ?? '')) starts.push(eventMs(e));
  }
  return starts;
}

/** Time each activity type spent executing (started to completed, last attempt), from a history. */
function activityTimes(events: HistoryEvent[]): CallTimes {
  const scheduled = new Map<number, string>();
  const started = new Map<number, number>();
  const times: CallTimes = {};
  for (const e of events) {
    const id = Number(e.eventId);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(id, e.activityTaskScheduledEventAttributes.activityType?.name ?? '?');
    if (e.activityTaskStartedEventAttributes) started.set(Number(e.activityTaskStartedEventAttributes.scheduledEventId), eventMs(e));
    if (e.activityTaskCompletedEventAttributes) {
      const sid = Number(e.activityTaskCompletedEventAttributes.scheduledEventId);
      const name = scheduled.get(sid) ?? '?';
      times[name] = (times[name] ?? 0) + eventMs(e) - (started.get(sid) ?? eventMs(e));
    }
  }
  return times;
}

function split(calls: CallTimes): { hsm: number; kms: number } {
  let hsm = 0;
  let kms = 0;
  for (const [name, ms] of Object.entries(calls)) {
    if (HSM_ACTIVITIES.has(name)) hsm += ms;
    else kms += ms;
  }
  return { hsm, kms };
}

/** Long-polls the history (server only, no worker query) until the workflow has taken in the wrap result. */
async function decidable(fleet: Fleet, workflowId: string, runId: string): Promise<void> {
  const service = fleet.connection.workflowService;
  const wrapScheduled = new Set<number>();
  let wrapped = false;
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    const page = await service.getWorkflowExecutionHistory({
      namespace: 'default',
      execution: { workflowId, runId },
      waitNewEvent: true,
      nextPageToken,
    });
    for (const e of page.history?.events ?? []) {
      if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'wrapKey') wrapScheduled.add(Number(e.eventId));
      if (e.activityTaskCompletedEventAttributes && wrapScheduled.has(Number(e.activityTaskCompletedEventAttributes.scheduledEventId))) wrapped = true;
      if (wrapped && e.workflowTaskCompletedEventAttributes) return;
      if (e.workflowExecutionCompletedEventAttributes || e.workflowExecutionFailedEventAttributes) {
        throw new Error(`${workflowId} ended before awaiting approval`);
      }
    }
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  }
}

async function workflowRun(fleet: Fleet, n: number, concurrency: number, tag: string, env: Record<string, string>, layout: Layout): Promise<Run> {
  await fleet.freshState();
  // split: the production layout (README), the HSM worker apart from the one running the workflows.
  const workers =
    layout === 'split'
      ? await Promise.all([
          fleet.startWorker({ name: `bench-${tag}-kms`, queues: 'kms', env }),
          fleet.startWorker({ name: `bench-${tag}-hsm`, queues: 'hsm', env }),
        ])
      : [await fleet.startWorker({ name: `bench-${tag}`, env })];
  const cpuBefore = childCpuSeconds();
  const clientBefore = process.cpuUsage();
  const stallBefore = cpuStallMicros();
  const start = performance.now();
  const imports = await pool(n, concurrency, async (i) => {
    const alias = `bench-${tag}-${i}`;
    const begun = performance.now();
    const handle = await fleet.client.workflow.start(importKey, {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId: `import-${alias}`,
      // Unsigned: the direct script has no approvals to compare signature checks with.
      args: [{ alias, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', requester: 'bench', approvers: ['bench-approver'], requiredApprovals: 1, unsignedApprovals: true }],
    });
    await decidable(fleet, handle.workflowId, handle.firstExecutionRunId);
    const ready = performance.now();
    await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bench-approver' }] });
    const approved = performance.now();
    const result = await handle.result();
    if (result.outcome !== 'IMPORTED') throw new Error(`${alias}: ${result.outcome}`);
    // The approval itself is the benchmark's doing: excluded, as an approver's thinking time is.
    return { ms: ready - begun + (performance.now() - approved), workflowId: handle.workflowId };
  });
  const wallSeconds = (performance.now() - start) / 1000;
  const cpu = cpuSince(cpuBefore, clientBefore);
  const cpuStall = stallShare(stallBefore, wallSeconds);
  cpu.worker = cpu.node ?? 0;
  delete cpu.node;
  const peakRssMiB = Math.max(...workers.map((w) => w.peakRssMiB() ?? NaN));
  for (const w of workers) await w.stop();
  const hsmMs: number[] = [];
  const kmsMs: number[] = [];
  const starts: number[] = [];
  for (const { workflowId } of imports) {
    const history = await fleet.client.workflow.getHandle(workflowId).fetchHistory();
    const { hsm, kms } = split(activityTimes(history.events ?? []));
    hsmMs.push(hsm);
    kmsMs.push(kms);
    starts.push(...kmsStarts(history.events ?? []));
  }
  const span = (Math.max(...starts) - Math.min(...starts)) / 1000;
  const kmsStartsPerSecond = starts.length > 1 && span > 0 ? starts.length / span : NaN;
  return { wallSeconds, latencies: imports.map((r) => r.ms), hsmMs, kmsMs, peakRssMiB, cpu, cpuStall, kmsStartsPerSecond };
}

async function directRun(fleet: Fleet, n: number, concurrency: number, tag: string, env: Record<string, string>): Promise<Run> {
  await fleet.freshState();
  const cpuBefore = childCpuSeconds();
  const clientBefore = process.cpuUsage();
  const stallBefore = cpuStallMicros();
  const started = performance.now();
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(projectRoot, 'dist', 'scripts', 'direct-import.js'), '--n', String(n), '--concurrency', String(concurrency), '--prefix', `bench-${tag}`],
    { env: { ...process.env, ...fleet.env(), ...env }, maxBuffer: 64 * 1024 * 1024 },
  );
  const out = JSON.parse(stdout.trim().split('\n').pop()!) as {
    wallSeconds: number;
    peakRssKiB: number;
    cpuSeconds: number;
    imports: Array<{ ms: number; calls: CallTimes }>;
  };
  const cpu = cpuSince(cpuBefore, clientBefore);
  const cpuStall = stallShare(stallBefore, (performance.now() - started) / 1000);
  // The script has exited by now: it reports its own CPU time.
  delete cpu.node;
  cpu.direct = out.cpuSeconds;
  const parts = out.imports.map((i) => split(i.calls));
  return {
    wallSeconds: out.wallSeconds,
    latencies: out.imports.map((i) => i.ms),
    hsmMs: parts.map((p) => p.hsm),
    kmsMs: parts.map((p) => p.kms),
    peakRssMiB: out.peakRssKiB / 1024,
    cpu,
    cpuStall,
  };
}

function stallShare(before: number | undefined, seconds: number): number {
  const after = cpuStallMicros();
  return before === undefined || after === undefined ? NaN : (after - before) / 1e6 / seconds;
}

/** CPU seconds per process, medians over the runs, biggest first: "temporal 12.1, worker 8.0, ...". */
function cpuLine(runs: Run[]): string {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.cpu)))];
  return names
    .map((name) => [name, median(runs.map((r) => r.cpu[name] ?? 0))] as const)
    .sort((a, b) => b[1] - a[1])
    .map(([name, s]) => `${name} ${s.toFixed(1)}`)
    .join(', ');
}

/**
 * Which resource limited the workflow runs. When the processes used nearly every CPU for the
 * whole run, the CPU did, and the biggest user names the component; otherwise the imports
 * mostly waited, and the median time per import in HSM activities, KMS activities and the rest
 * (Temporal: task dispatch, workflow tasks, persistence) says on what.
 */
function limit(workflow: Run[]): string {
  const lat = median(workflow.map((r) => median(r.latencies)));
  const hsm = median(workflow.map((r) => median(r.hsmMs)));
  const kms = median(workflow.map((r) => median(r.kmsMs)));
  // ensureKmsKey and ensureHsmKey run in parallel, so this is an upper bound on activity time.
  const temporalMs = Math.max(0, lat - hsm - kms);
  const split = `HSM ${hsm.toFixed(0)} / KMS ${kms.toFixed(0)} / Temporal ${temporalMs.toFixed(0)} ms per import`;
  const wall = median(workflow.map((r) => r.wallSeconds));
  const cpu = workflow.map((r) => Object.values(r.cpu).reduce((a, b) => a + b, 0));
  const busy = median(cpu) / wall / os.cpus().length;
  // Other users of the machine count too: PSI says how long runnable tasks waited for a CPU.
  const stall = median(workflow.map((r) => r.cpuStall));
  if (busy >= 0.8 || stall >= 0.5) {
    return `CPU: ours ${(busy * 100).toFixed(0)}% busy, tasks waited for a CPU ${(stall * 100).toFixed(0)}% of the time (${split})`;
  }
  const top = (Object.entries({ HSM: hsm, KMS: kms, Temporal: temporalMs }) as Array<[string, number]>).sort((a, b) => b[1] - a[1])[0][0];
  return `${top} (${split}; CPU: ours ${(busy * 100).toFixed(0)}% busy, waited for ${(stall * 100).toFixed(0)}%)`;
}

function nonNegative(flag: string, value: string | undefined): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!(n >= 0)) throw new Error(`${flag}: expected a number of milliseconds, got ${JSON.stringify(value)}`);
  return n;
}

function row(cells: Array<string | number>): string {
  return `| ${cells.join(' | ')} |`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '1,50,200' },
      concurrency: { type: 'string', default: '1,4,16' },
      repeat: { type: 'string', default: '1' },
      'kms-concurrency': { type: 'string' },
      'hsm-concurrency': { type: 'string' },
      /** BYOK_HSM_SESSIONS, for the workers and the direct script. */
      'hsm-sessions': { type: 'string' },
      /** BYOK_KMS_ACTIVITIES_PER_SECOND, for the workers. */
      'kms-rate': { type: 'string' },
      /** split: a kms and an hsm worker process; combined: one process serving both queues. */
      workers: { type: 'string', default: 'split' },
      /** Added to every KMS request, both modes (the fault proxy): AWS KMS over a WAN instead of loopback. */
      'kms-latency-ms': { type: 'string' },
      /** Added to every PKCS#11 call the imports make, both modes (the PKCS#11 shim): a network HSM. */
      'hsm-latency-ms': { type: 'string' },
      /** Let the server hand a KMS activity to the worker in the reply to the workflow task that scheduled it. */
      'eager-activities': { type: 'boolean', default: false },
    },
  });
  const layout = values.workers as Layout;
  if (layout !== 'split' && layout !== 'combined') throw new Error(`--workers: expected split or combined, got ${values.workers}`);
  const list = (v: string) => v.split(',').map((x) => Number(x.trim()));
  const ns = list(values.n);
  const cs = list(values.concurrency);
  const repeat = Number(values.repeat);
  const env: Record<string, string> = {};
  if (values['kms-concurrency']) env.BYOK_KMS_ACTIVITY_CONCURRENCY = values['kms-concurrency'];
  if (values['hsm-concurrency']) env.BYOK_HSM_ACTIVITY_CONCURRENCY = values['hsm-concurrency'];
  if (values['hsm-sessions']) env.BYOK_HSM_SESSIONS = values['hsm-sessions'];
  if (values['kms-rate']) env.BYOK_KMS_ACTIVITIES_PER_SECOND = values['kms-rate'];

  const kmsLatencyMs = nonNegative('--kms-latency-ms', values['kms-latency-ms']);
  const hsmLatencyMs = nonNegative('--hsm-latency-ms', values['hsm-latency-ms']);

  const loadBefore = os.loadavg()[0].toFixed(2);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'byok-bench-'));
  if (hsmLatencyMs) Object.assign(env, shimEnv(await buildPkcs11Shim(dir), { BYOK_P11_LATENCY_US: String(Math.round(hsmLatencyMs * 1000)) }));
  const serverConfig = values['eager-activities'] ? { 'system.enableActivityEagerExecution': 'true' } : undefined;
  // Latency for every request and no fault rates: the proxy delays, it fails nothing.
  const proxy = kmsLatencyMs ? { proxySeed: 1, proxyRates: { latency: 1, latencyMs: kmsLatencyMs } } : {};
  const fleet = await Fleet.start({ dir, pin: `bench-${process.pid}`, serverConfig, ...proxy });
  const lines: string[] = [
    row(['N', 'concurrency', 'workflow wall s', 'direct wall s', 'ratio', 'workflow keys/s', 'direct keys/s',
      'workflow p50 / p95 ms', 'direct p50 / p95 ms', 'worker peak RSS MiB (largest process)', 'limited by (workflow)',
      'direct HSM / KMS ms per import', 'CPU s, workflow run', 'CPU s, direct run', 'KMS activities started per s (workflow)']),
    row(Array(15).fill('---')),
  ];
  try {
    for (const n of ns) {
      for (const c of cs) {
        const wf: Run[] = [];
        const direct: Run[] = [];
        for (let r = 0; r < repeat; r++) {
          // Alternate the order, so neither mode always runs on a warmer machine.
          const tag = `${n}-${c}-${r}`;
          if (r % 2 === 0) {
            wf.push(await workflowRun(fleet, n, c, `w${tag}`, env, layout));
            direct.push(await directRun(fleet, n, c, `d${tag}`, env));
          } else {
            direct.push(await directRun(fleet, n, c, `d${tag}`, env));
            wf.push(await workflowRun(fleet, n, c, `w${tag}`, env, layout));
          }
        }
        const wWall = median(wf.map((x) => x.wallSeconds));
        const dWall = median(direct.map((x) => x.wallSeconds));
        const p = (runs: Run[], q: number) => median(runs.map((x) => quantile(x.latencies, q))).toFixed(0);
        const line = row([
          n,
          c,
          wWall.toFixed(2),
          dWall.toFixed(2),
          (wWall / dWall).toFixed(2),
          (n / wWall).toFixed(1),
          (n / dWall).toFixed(1),
          `${p(wf, 0.5)} / ${p(wf, 0.95)}`,
          `${p(direct, 0.5)} / ${p(direct, 0.95)}`,
          median(wf.map((x) => x.peakRssMiB)).toFixed(0),
          limit(wf),
          `${median(direct.map((x) => median(x.hsmMs))).toFixed(0)} / ${median(direct.map((x) => median(x.kmsMs))).toFixed(0)}`,
          cpuLine(wf),
          cpuLine(direct),
          median(wf.map((x) => x.kmsStartsPerSecond ?? NaN)).toFixed(1),
        ]);
        lines.push(line);
        process.stderr.write(`${line}\n`);
      }
    }
  } finally {
    await fleet.close();
    await rm(dir, { recursive: true, force: true });
  }
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const knobs =
    [
      ...Object.entries(env).filter(([k]) => k.startsWith('BYOK_') && !k.startsWith('BYOK_P11_')).map(([k, v]) => `${k}=${v}`),
      ...(kmsLatencyMs ? [`KMS latency +${kmsLatencyMs} ms per request`] : []),
      ...(hsmLatencyMs ? [`HSM latency +${hsmLatencyMs} ms per PKCS#11 call`] : []),
    ].join(', ') || 'default knobs';
  console.log(`\nBenchmark: ${layout} workers, ${knobs}, medians of ${repeat} run(s) per cell; ${os.cpus().length} CPUs, load average (1 min) ${loadBefore} at the start, ${load} (1, 5, 15 min) at the end\n`);
  console.log(lines.join('\n'));
}

main().catch((err) => {
  console.error(`bench: ${err?.stack ?? err}`);
  process.exit(1);
});
