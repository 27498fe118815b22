// The same import without Temporal: the workflow's KMS and HSM calls, made by calling the very
// activity functions the worker runs, in the workflow's order, with no approval, no durability
// and no retries. The benchmark's baseline for what Temporal costs.
//
//   node dist/scripts/direct-import.js --n 50 --concurrency 4 [--prefix direct]
// with the worker's environment (PKCS11_*, AWS_REGION, AWS_ENDPOINT_URL_KMS).
import { parseArgs } from 'node:util';
import { createHsmActivities, type HsmActivities } from '../activities/hsm';
import { createKmsActivities, kmsClient, type KmsActivities } from '../activities/kms';
import { hsmSettings, kmsSettings } from '../worker/config';
import { planImport } from '../workflows/import-request';

export interface DirectActivities {
  kms: KmsActivities;
  hsm: HsmActivities;
}

/** Milliseconds per call of one import, by activity name. */
export type CallTimes = Record<string, number>;

async function timed<T>(times: CallTimes, name: string, call: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await call();
  } finally {
    times[name] = (times[name] ?? 0) + performance.now() - start;
  }
}

/** One import, as importKey does it between its approval-free steps. */
export async function importDirect(a: DirectActivities, alias: string): Promise<CallTimes> {
  const plan = planImport(
    { alias, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', requester: 'bench', approvers: ['bench-approver'], requiredApprovals: 1, unsignedApprovals: true },
    new Date(),
  );
  const times: CallTimes = {};
  // The read-only checks importKey makes before either side creates a key.
  await Promise.all([
    timed(times, 'checkImportTarget', () => a.kms.checkImportTarget({ alias: plan.alias, createIfMissing: true })),
    timed(times, 'checkHsmKey', () => a.hsm.checkHsmKey({ label: plan.hsmKeyLabel, generate: true })),
  ]);
  const [kmsKey, hsmKey] = await Promise.all([
    timed(times, 'ensureKmsKey', () =>
      a.kms.ensureKmsKey({ alias: plan.alias, description: plan.description, createIfMissing: true, requestId: `import-${plan.aliasName}` }),
    ),
    timed(times, 'ensureHsmKey', () => a.hsm.ensureHsmKey({ label: plan.hsmKeyLabel, generate: true })),
  ]);
  const params = await timed(times, 'getImportParameters', () =>
    a.kms.getImportParameters({ keyId: kmsKey.keyId, wrappingAlgorithm: plan.wrappingAlgorithm, wrappingKeySpec: plan.wrappingKeySpec }),
  );
  const wrapped = await timed(times, 'wrapKey', () =>
    a.hsm.wrapKey({ label: hsmKey.label, keyId: hsmKey.keyId, publicKey: params.publicKey, wrappingAlgorithm: plan.wrappingAlgorithm }),
  );
  await timed(times, 'importKeyMaterial', () =>
    a.kms.importKeyMaterial({
      keyId: kmsKey.keyId,
      importToken: params.importToken,
      encryptedKeyMaterial: wrapped.encryptedKeyMaterial,
      expirationModel: plan.expirationModel,
      validTo: plan.validTo,
    }),
  );
  await timed(times, 'verifyKey', () =>
    a.kms.verifyKey({ keyId: kmsKey.keyId, expirationModel: plan.expirationModel, validTo: plan.validTo }),
  );
  return times;
}

/** Runs `count` jobs, at most `concurrency` at a time. */
export async function pool<T>(count: number, concurrency: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      results[i] = await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return results;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { n: { type: 'string', default: '1' }, concurrency: { type: 'string', default: '1' }, prefix: { type: 'string', default: 'direct' } },
  });
  const n = Number(values.n);
  const concurrency = Number(values.concurrency);
  const hsm = createHsmActivities(hsmSettings(process.env));
  const client = kmsClient(kmsSettings(process.env));
  // Each call is a first attempt, as in a workflow run without faults: no search for an earlier
  // attempt's KMS key (outside an activity the default is to search, as a retry does).
  const activities = { kms: createKmsActivities(client, { attemptOutsideActivity: 1 }), hsm: hsm.activities };
  try {
    const cpuBefore = process.cpuUsage();
    const start = performance.now();
    const imports = await pool(n, concurrency, async (i) => {
      const begun = performance.now();
      const calls = await importDirect(activities, `${values.prefix}-${i}`);
      return { ms: performance.now() - begun, calls };
    });
    const wallSeconds = (performance.now() - start) / 1000;
    // One JSON line for the benchmark; maxRSS is in KiB.
    const cpu = process.cpuUsage(cpuBefore);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const { maxRSS } = process.resourceUsage();
    console.log(JSON.stringify({ n, concurrency, wallSeconds, keysPerSecond: n / wallSeconds, peakRssKiB: maxRSS, cpuSeconds, imports }));
  } finally {
    await hsm.close();
    client.destroy();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`direct-import: ${err?.stack ?? err}`);
    process.exit(1);
  });
}
