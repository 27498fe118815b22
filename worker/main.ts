// Worker process: serves byok-kms (the workflows and the KMS activities) and byok-hsm (the HSM
// activities), both by default. In production run `--queues hsm` next to the HSM and
// `--queues kms` where the AWS credentials are. SIGINT/SIGTERM shut down gracefully: running
// activities finish, then the HSM sessions are logged out.
import { parseArgs } from 'node:util';
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createHsmActivities } from '../activities/hsm';
import { createKmsActivities, kmsClient } from '../activities/kms';
import { temporalSettings } from '../client/connection';
import { dataConverterFromEnv } from '../codec/data-converter';
import { CodecKeyError } from '../codec/keys';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE } from '../workflows/model';
import { ConfigError, concurrencySettings, hsmSettings, kmsSettings, parseQueues } from './config';
import { callLatency, installTelemetry, telemetrySettings, type LogFormat } from './telemetry';

const USAGE = `usage: byok-worker [--queues hsm,kms] [--kms-endpoint URL] [--metrics-address IP:PORT] [--log-format human|json]

Environment:
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
  TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
  TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME
  BYOK_WORKER_QUEUES               same as --queues (default hsm,kms)
  BYOK_METRICS_ADDRESS             same as --metrics-address: Prometheus GET /metrics (default off)
  BYOK_LOG_FORMAT                  same as --log-format (default human)
  PKCS11_MODULE                    PKCS#11 library (default /usr/lib/softhsm/libsofthsm2.so)
  PKCS11_TOKEN_LABEL               token holding the keys
  PKCS11_PIN | PKCS11_PIN_FILE     user PIN, or a file (mode 600) holding it
  BYOK_CODEC_KEYS | BYOK_CODEC_KEY_FILE
                                   payload codec keys, or a file (mode 600) holding them
  AWS_REGION, AWS_ENDPOINT_URL_KMS AWS credentials come from the SDK's default chain

Concurrency (per worker process unless said otherwise):
  BYOK_KMS_ACTIVITY_CONCURRENCY    KMS activities run at once (default 100)
  BYOK_KMS_ACTIVITIES_PER_SECOND   KMS activities the server starts per second, for the whole
                                   byok-kms queue: keeps a fleet under the AWS KMS request quotas
                                   (most activities make 1 to 3 KMS requests, a retried
                                   ensureKmsKey's account scan one per key; default no limit)
  BYOK_HSM_ACTIVITY_CONCURRENCY    HSM activities run at once (default 8); each waits for an
                                   HSM session of its own
  BYOK_HSM_SESSIONS                logged-in HSM sessions kept open, each on a thread of its
                                   own (default 1): HSM activities run in parallel up to this
                                   many; one that may generate a key runs alone
  BYOK_WORKFLOW_TASK_CONCURRENCY   workflow tasks run at once (default 40)`;

let logFormat: LogFormat = 'human';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      queues: { type: 'string' },
      'kms-endpoint': { type: 'string' },
      'metrics-address': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  // Read all configuration before connecting, so a mistake fails at once with one line (in the log format asked for).
  const telemetry = telemetrySettings(process.env, values);
  logFormat = telemetry.logFormat;
  const queues = parseQueues(values.queues ?? process.env.BYOK_WORKER_QUEUES ?? 'hsm,kms');
  const temporal = temporalSettings();
  const hsmConfig = queues.includes('hsm') ? hsmSettings(process.env) : undefined;
  const kmsConfig = queues.includes('kms') ? kmsSettings(process.env, values['kms-endpoint']) : undefined;
  const dataConverter = dataConverterFromEnv();
  const concurrency = concurrencySettings(process.env);

  installTelemetry(telemetry);
  const log = Runtime.instance().logger;
  const connection = await NativeConnection.connect({ address: temporal.address, tls: temporal.tls, apiKey: temporal.apiKey });
  const hsm = hsmConfig && createHsmActivities(hsmConfig);
  try {
    const workers: Worker[] = [];
    if (kmsConfig) {
      workers.push(
        await Worker.create({
          connection,
          namespace: temporal.namespace,
          dataConverter,
          taskQueue: KMS_TASK_QUEUE,
          workflowsPath: require.resolve('../workflows'),
          activities: createKmsActivities(kmsClient(kmsConfig)),
          interceptors: { activity: [callLatency] },
          maxConcurrentActivityTaskExecutions: concurrency.kmsActivities,
          maxTaskQueueActivitiesPerSecond: concurrency.kmsActivitiesPerSecond,
          maxConcurrentWorkflowTaskExecutions: concurrency.workflowTasks,
          // The SDK sends heartbeats at most every 0.8 x heartbeatTimeout (48 s for ensureKmsKey's
          // 1 min): a server slow to take one by 12 s timed the scan out and started it again.
          maxHeartbeatThrottleInterval: '10s',
        }),
      );
    }
    if (hsm) {
      workers.push(
        await Worker.create({
          connection,
          namespace: temporal.namespace,
          dataConverter,
          taskQueue: HSM_TASK_QUEUE,
          activities: hsm.activities,
          interceptors: { activity: [callLatency] },
          maxConcurrentActivityTaskExecutions: concurrency.hsmActivities,
        }),
      );
    }
    log.info('byok worker started', {
      queues: workers.map((w) => w.options.taskQueue),
      temporal: temporal.address,
      namespace: temporal.namespace,
      pkcs11Module: hsmConfig?.module,
      tokenLabel: hsmConfig?.tokenLabel,
      hsmSessions: hsmConfig?.sessions,
      kmsRegion: kmsConfig?.region,
      kmsEndpoint: kmsConfig?.endpoint ?? 'AWS',
      payloadCodec: dataConverter ? 'AES-256-GCM' : 'none (payloads in clear)',
      metrics: telemetry.metricsAddress ? `http://${telemetry.metricsAddress}/metrics` : 'off',
      concurrency,
    });
    const runs = workers.map((w) => w.run());
    try {
      await Promise.all(runs);
    } catch (err) {
      // One worker failed: stop the other before the finally block closes what it uses.
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await Promise.allSettled(runs);
      throw err;
    }
  } finally {
    await hsm?.close();
    await connection.close();
  }
}

main().catch((err) => {
  const config = err instanceof ConfigError || err instanceof CodecKeyError;
  const message = `byok-worker: ${config ? err.message : err?.stack ?? err}`;
  // The last line follows the log format too, once it is known.
  if (logFormat === 'json') console.error(JSON.stringify({ time: new Date().toISOString(), level: 'ERROR', message }));
  else console.error(message);
  process.exit(config ? 2 : 1);
});
