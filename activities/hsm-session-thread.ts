// The thread of one pooled HSM session (hsm-sessions.ts starts it): serves one request at a time
// on its own PKCS#11 session, so synchronous PKCS#11 calls of different sessions run in parallel.
import { parentPort, workerData } from 'node:worker_threads';
import { ApplicationFailure } from '@temporalio/common';
import { HsmConnection } from './hsm-connection';
import { checkKey, ensureKey, parseWrappingKey, wrap } from './hsm-keys';
import type { HsmConfig, HsmReply, HsmRequest, ThreadError } from './hsm-sessions';
import { wrapPlan } from './wrapping';

const config = workerData as HsmConfig;
const connection = new HsmConnection(config);

function perform(request: HsmRequest): unknown {
  switch (request.op) {
    case 'check':
      connection.use((session) => checkKey(session, config.tokenLabel, request.input));
      return undefined;
    case 'ensure':
      return connection.use((session) => ensureKey(session, config.tokenLabel, request.input));
    case 'wrap': {
      const { input } = request;
      // Checked before touching the HSM: neither can get better on retry.
      const plan = wrapPlan(input.wrappingAlgorithm);
      const rsa = parseWrappingKey(input.publicKey);
      return connection.use((session) => wrap(session, connection.info, config.tokenLabel, input, plan, rsa));
    }
    case 'close':
      connection.close();
      return undefined;
  }
}

/** What crosses back to the activity: the message and, for a typed failure, its type. */
function threadError(e: unknown): ThreadError {
  if (e instanceof ApplicationFailure) {
    return { message: e.message, applicationFailure: { type: e.type ?? undefined, nonRetryable: e.nonRetryable === true } };
  }
  return { message: e instanceof Error ? e.message : String(e) };
}

parentPort!.on('message', (request: HsmRequest) => {
  let reply: HsmReply;
  try {
    reply = { ok: true, value: perform(request) };
  } catch (e) {
    reply = { ok: false, error: threadError(e) };
  }
  parentPort!.postMessage(reply);
  if (request.op === 'close') parentPort!.close();
});
