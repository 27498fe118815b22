// The worker's logs and metrics: one Runtime.install before anything else touches the SDK.
// Metrics go to a Prometheus endpoint (the Temporal runtime's own, the workflows' byok_* from
// workflows/progress.ts, and the HSM/KMS call latencies measured here); logs are human lines
// or JSON lines on stderr. Neither carries secrets: activity arguments are never logged.
import { isIP } from 'node:net';
import { Context } from '@temporalio/activity';
import type { LogMetadata } from '@temporalio/common';
import { DefaultLogger, Runtime, type ActivityInterceptorsFactory, type LogEntry } from '@temporalio/worker';
import { HSM_TASK_QUEUE } from '../workflows/model';
import { ConfigError } from './config';

export type LogFormat = 'human' | 'json';

export interface TelemetrySettings {
  /** host:port of the Prometheus endpoint (GET /metrics); unset: no endpoint. */
  metricsAddress?: string;
  logFormat: LogFormat;
}

/** From --metrics-address / BYOK_METRICS_ADDRESS and --log-format / BYOK_LOG_FORMAT. */
export function telemetrySettings(env: NodeJS.ProcessEnv, flags: { 'metrics-address'?: string; 'log-format'?: string }): TelemetrySettings {
  const logFormat = flags['log-format'] ?? env.BYOK_LOG_FORMAT ?? 'human';
  if (logFormat !== 'human' && logFormat !== 'json') {
    throw new ConfigError(`log format: expected "human" or "json", got ${JSON.stringify(logFormat)}`);
  }
  const metricsAddress = flags['metrics-address'] ?? (env.BYOK_METRICS_ADDRESS || undefined);
  if (metricsAddress !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(metricsAddress);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (!m || !isIP(host!) || port < 1 || port > 65535) {
      throw new ConfigError(`metrics address: expected IP:PORT such as 127.0.0.1:9464 or [::]:9464, got ${JSON.stringify(metricsAddress)}`);
    }
  }
  return { metricsAddress, logFormat };
}

/** JSON-safe: errors by name and message (their stack too), bigints as strings. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

/** One log entry as one JSON line: time, level, message, then the entry's metadata. */
export function jsonLogLine(entry: LogEntry): string {
  const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
  const meta: LogMetadata = entry.meta ?? {};
  return JSON.stringify({ time, level: entry.level, message: entry.message, ...meta }, jsonReplacer);
}

export function installTelemetry(settings: TelemetrySettings): void {
  const json = settings.logFormat === 'json';
  const logger = json ? new DefaultLogger('INFO', (entry) => process.stderr.write(`${jsonLogLine(entry)}\n`)) : new DefaultLogger('INFO');
  if (json) {
    // Node prints process warnings (such as the AWS SDK's Node version notice) as plain text.
    process.removeAllListeners('warning');
    process.on('warning', (w) => logger.warn(w.message, { warning: w.name }));
  }
  Runtime.install({
    logger,
    telemetryOptions: {
      // The Rust core's own logs go through the same logger, so JSON means all of them.
      logging: { forward: {}, filter: { core: 'WARN', other: 'INFO' } },
      ...(settings.metricsAddress ? { metrics: { prometheus: { bindAddress: settings.metricsAddress } } } : {}),
    },
  });
}

/**
 * Latency of every activity, as byok_hsm_call_latency or byok_kms_call_latency (ms, tagged with
 * its outcome; the SDK adds activityType): what the HSM and AWS KMS take, retries counted one by one.
 */
export const callLatency: ActivityInterceptorsFactory = (ctx: Context) => {
  const side = ctx.info.taskQueue === HSM_TASK_QUEUE ? 'hsm' : 'kms';
  const histogram = ctx.metricMeter.createHistogram(`byok_${side}_call_latency`, 'int', 'ms', `${side.toUpperCase()} activity latency`);
  return {
    inbound: {
      async execute(input, next) {
        const started = performance.now();
        let outcome = 'ok';
        try {
          return await next(input);
        } catch (err) {
          outcome = 'error';
          throw err;
        } finally {
          histogram.record(Math.round(performance.now() - started), { outcome });
        }
      },
    },
  };
};
