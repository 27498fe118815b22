// The activity proxies every workflow uses, with one set of timeouts and retries per kind of call.
import { proxyActivities } from '@temporalio/workflow';
import type { HsmActivities } from '../activities/hsm';
import type { KmsActivities } from '../activities/kms';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE } from './model';

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' } as const;

export const kms = proxyActivities<KmsActivities>({
  taskQueue: KMS_TASK_QUEUE,
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '1h',
  retry,
});
// Finding the key a lost attempt created may scan every key of the account: long, so it heartbeats.
export const { ensureKmsKey, ensureRequestKey } = proxyActivities<KmsActivities>({
  taskQueue: KMS_TASK_QUEUE,
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  scheduleToCloseTimeout: '1h',
  retry,
});
export const hsm = proxyActivities<HsmActivities>({
  taskQueue: HSM_TASK_QUEUE,
  startToCloseTimeout: '1m',
  scheduleToCloseTimeout: '1h',
  retry,
});
