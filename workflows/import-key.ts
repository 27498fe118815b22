// The BYOK import workflow: KMS key + HSM key, wrap inside the HSM, wait for M-of-N approvals,
// import (refreshing an expired token), verify. Deterministic: all I/O is in activities.
import { ActivityFailure, ApplicationFailure, defineQuery, log, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { HsmActivities, HsmKeyRef } from '../activities/hsm';
import type { ImportParameters, KeyVerification, KmsActivities, KmsKeyRef } from '../activities/kms';
import { ApprovalGate, type ApprovalSubject, type Decision } from './approval';
import { acceptDecisions, awaitDecision } from './decisions';
import { ErrorType } from './errors';
import { planImport, type ImportKeyInput, type ImportPlan } from './import-request';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE, type ExpirationModel, type WrappingAlgorithm, type WrappingKeySpec } from './model';
import { progressReporter } from './progress';
import type { OperationState } from './search-attributes';

export type { ImportKeyInput } from './import-request';

export type ImportStep =
  | 'PREPARING_KEYS'
  | 'WRAPPING'
  | 'AWAITING_APPROVAL'
  | 'IMPORTING'
  | 'VERIFYING'
  | 'DONE'
  | 'REJECTED'
  | 'APPROVAL_EXPIRED'
  | 'FAILED';

export interface ImportStatus {
  step: ImportStep;
  alias: string;
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  approvalsNeeded: number;
  approvals: Decision[];
  rejection?: Decision;
  approvalDeadline: string;
  wrappingAlgorithm: WrappingAlgorithm;
  kmsKey?: { keyId: string; keyArn: string };
  hsmKey?: { label: string; keyId: string; kcv: string };
  /** Query time is the last workflow task's time, so the caller judges validity with its own clock. */
  importToken?: { parametersValidTo: string; refreshAfter: string };
  tokenRefreshes: number;
  /** false when the request turned signed decisions off. */
  signedApprovals: boolean;
  failure?: string;
}

export interface ImportKeyResult {
  outcome: 'IMPORTED' | 'REJECTED' | 'APPROVAL_EXPIRED';
  alias: string;
  keyId: string;
  keyArn: string;
  hsmKey: { label: string; keyId: string; kcv: string };
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: WrappingKeySpec;
  expirationModel: ExpirationModel;
  validTo?: string;
  requester: string;
  approvals: Decision[];
  rejection?: Decision;
  tokenRefreshes: number;
  startedAt: string;
  decidedAt?: string;
  importedAt?: string;
  verification?: KeyVerification;
}

// Approvals arrive as the shared approve/reject messages of ./decisions.
export const statusQuery = defineQuery<ImportStatus>('status');

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' } as const;
const kms = proxyActivities<KmsActivities>({
  taskQueue: KMS_TASK_QUEUE,
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '1h',
  retry,
});
// Finding the key a lost attempt created may scan every key of the account: long, so it heartbeats.
const { ensureKmsKey } = proxyActivities<KmsActivities>({
  taskQueue: KMS_TASK_QUEUE,
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  scheduleToCloseTimeout: '1h',
  retry,
});
const hsm = proxyActivities<HsmActivities>({
  taskQueue: HSM_TASK_QUEUE,
  startToCloseTimeout: '1m',
  scheduleToCloseTimeout: '1h',
  retry,
});

const TOKEN_ERRORS: string[] = [ErrorType.ImportTokenExpired, ErrorType.ImportTokenInvalid];
/** Runs recorded before search attributes existed have no upserts in their history, and must not get any. */
export const SEARCH_ATTRIBUTES_PATCH = 'byok-search-attributes';

export async function importKey(input: ImportKeyInput): Promise<ImportKeyResult> {
  const startedAt = new Date();
  // Imports started before signed decisions existed carry no approver keys: they keep deciding unsigned.
  const plan = planImport(patched('signed-approvals') ? input : { ...input, unsignedApprovals: true }, startedAt);
  const { workflowId } = workflowInfo();
  const gate = new ApprovalGate({ requester: plan.requester, approvers: plan.approvers, required: plan.requiredApprovals });
  const deadline = new Date(startedAt.getTime() + plan.approvalTimeoutMs);

  let step: ImportStep = 'PREPARING_KEYS';
  let failure: string | undefined;
  let kmsKey: KmsKeyRef | undefined;
  let hsmKey: HsmKeyRef | undefined;
  let params: ImportParameters | undefined;
  let encryptedKeyMaterial: string | undefined;
  let tokenRefreshes = 0;
  let decidedAt: string | undefined;

  // Known once both keys exist; decisions are refused until then, so each is bound to what gets imported.
  let subject: ApprovalSubject | undefined;

  const progress = progressReporter('import', { searchAttributes: patched(SEARCH_ATTRIBUTES_PATCH) });
  /** Publishes the step (search attributes, the UI's current details, metrics); `doing` says what happens now. */
  const report = (doing: string) =>
    progress.report({
      state: operationState(step, decidedAt !== undefined),
      alias: plan.alias,
      requester: plan.requester,
      kmsKeyId: kmsKey?.keyId,
      approvalsNeeded: gate.remaining,
      pendingApprovers: plan.approvers.filter((a) => a !== plan.requester && !gate.approvals.some((d) => d.approver === a)),
      approvalDeadline: deadline,
      tokenValidTo: params && new Date(params.parametersValidTo),
      tokenRefreshes,
      activity: doing,
    });

  const refreshAfter = (p: ImportParameters) => new Date(Date.parse(p.parametersValidTo) - plan.tokenSafetyMarginMs);

  const status = (): ImportStatus => ({
    step,
    alias: plan.alias,
    requester: plan.requester,
    approvers: plan.approvers,
    requiredApprovals: plan.requiredApprovals,
    approvalsNeeded: gate.remaining,
    approvals: gate.approvals,
    rejection: gate.rejection,
    approvalDeadline: deadline.toISOString(),
    wrappingAlgorithm: plan.wrappingAlgorithm,
    kmsKey: kmsKey && { keyId: kmsKey.keyId, keyArn: kmsKey.keyArn },
    hsmKey: hsmKey && { label: hsmKey.label, keyId: hsmKey.keyId, kcv: hsmKey.kcv },
    importToken: params && { parametersValidTo: params.parametersValidTo, refreshAfter: refreshAfter(params).toISOString() },
    tokenRefreshes,
    signedApprovals: plan.approverKeys !== null,
    failure,
  });

  acceptDecisions({
    gate,
    deadline,
    subject: () => subject,
    notReady: () => `the import is still preparing the keys (${step})`,
    onDecided: () => report(gate.state === 'PENDING' ? 'waiting for approvals' : 'decided'),
    approverKeys: plan.approverKeys,
  });
  setHandler(statusQuery, status);

  const run = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      throw stepFailure(what, err);
    }
  };

  const wrapUnderFreshParameters = async (key: KmsKeyRef, target: HsmKeyRef) => {
    step = 'WRAPPING';
    report('getting a wrapping key and import token from KMS');
    params = await run('GetParametersForImport', () =>
      kms.getImportParameters.executeWithOptions({ summary: `GetParametersForImport for ${key.keyId} (${plan.wrappingAlgorithm}, ${plan.wrappingKeySpec})` }, [
        { keyId: key.keyId, wrappingAlgorithm: plan.wrappingAlgorithm, wrappingKeySpec: plan.wrappingKeySpec },
      ]),
    );
    report('wrapping the HSM key in the HSM');
    const wrapped = await run('wrapping in the HSM', () =>
      hsm.wrapKey.executeWithOptions({ summary: `Wrap HSM key ${target.label} (KCV ${target.kcv}) under the KMS wrapping key` }, [
        { label: target.label, keyId: target.keyId, publicKey: params!.publicKey, wrappingAlgorithm: plan.wrappingAlgorithm },
      ]),
    );
    encryptedKeyMaterial = wrapped.encryptedKeyMaterial;
  };

  const refreshToken = async (key: KmsKeyRef, target: HsmKeyRef, why: string) => {
    if (tokenRefreshes >= plan.maxTokenRefreshes) {
      throw ApplicationFailure.nonRetryable(
        `import token ${why}, and the limit of ${plan.maxTokenRefreshes} token refreshes is reached`,
        ErrorType.TokenRefreshLimit,
      );
    }
    tokenRefreshes++;
    log.info('refreshing import parameters', { why, tokenRefreshes });
    await wrapUnderFreshParameters(key, target);
  };

  const result = (outcome: ImportKeyResult['outcome'], extra: Partial<ImportKeyResult> = {}): ImportKeyResult => ({
    outcome,
    alias: plan.alias,
    keyId: kmsKey!.keyId,
    keyArn: kmsKey!.keyArn,
    hsmKey: { label: hsmKey!.label, keyId: hsmKey!.keyId, kcv: hsmKey!.kcv },
    wrappingAlgorithm: plan.wrappingAlgorithm,
    wrappingKeySpec: plan.wrappingKeySpec,
    expirationModel: plan.expirationModel,
    validTo: plan.validTo,
    requester: plan.requester,
    approvals: gate.approvals,
    rejection: gate.rejection,
    tokenRefreshes,
    startedAt: startedAt.toISOString(),
    decidedAt,
    ...extra,
  });

  try {
    report('preparing the KMS key and the HSM key');
    // What the real KMS and HSM refuse (a key that is not EXTERNAL, a wrong PIN, a missing HSM key)
    // is refused before either side creates a key, so a refused request leaves nothing behind.
    if (patched('check-before-creating-keys')) {
      await Promise.all([
        run('checking the KMS key', () => kms.checkImportTarget({ alias: plan.alias, createIfMissing: plan.createKmsKey })),
        run('checking the HSM key', () => hsm.checkHsmKey({ label: plan.hsmKeyLabel, generate: plan.generateHsmKey })),
      ]);
    }
    [kmsKey, hsmKey] = await Promise.all([
      run('preparing the KMS key', () =>
        ensureKmsKey.executeWithOptions({ summary: `${plan.createKmsKey ? 'Find or create' : 'Find'} the EXTERNAL KMS key of ${plan.alias}` }, [
          { alias: plan.alias, description: plan.description, createIfMissing: plan.createKmsKey, requestId: workflowId },
        ]),
      ),
      run('preparing the HSM key', () =>
        hsm.ensureHsmKey.executeWithOptions({ summary: `${plan.generateHsmKey ? 'Find or generate' : 'Find'} AES-256 key ${plan.hsmKeyLabel} in the HSM` }, [
          { label: plan.hsmKeyLabel, generate: plan.generateHsmKey },
        ]),
      ),
    ]);
    const key = kmsKey;
    const target = hsmKey;
    await wrapUnderFreshParameters(key, target);

    subject = subjectOf(plan, key, target);
    step = 'AWAITING_APPROVAL';
    report('waiting for approvals');
    await awaitDecision(gate, deadline);
    decidedAt = new Date().toISOString();
    if (gate.state !== 'APPROVED') {
      step = gate.state === 'REJECTED' ? 'REJECTED' : 'APPROVAL_EXPIRED';
      report(gate.state === 'REJECTED' ? `rejected by ${gate.rejection!.approver}; nothing imported` : 'no quorum by the deadline; nothing imported');
      return result(gate.state === 'REJECTED' ? 'REJECTED' : 'APPROVAL_EXPIRED');
    }

    step = 'IMPORTING';
    if (Date.now() >= refreshAfter(params!).getTime()) {
      await refreshToken(key, target, `valid only until ${params!.parametersValidTo}`);
    }
    for (;;) {
      step = 'IMPORTING';
      report('importing the wrapped key material into KMS');
      try {
        await kms.importKeyMaterial.executeWithOptions({ summary: `ImportKeyMaterial into ${key.keyId} (${plan.expirationModel})` }, [
          {
            keyId: key.keyId,
            importToken: params!.importToken,
            encryptedKeyMaterial: encryptedKeyMaterial!,
            expirationModel: plan.expirationModel,
            validTo: plan.validTo,
          },
        ]);
        break;
      } catch (err) {
        const type = failureType(err);
        if (!type || !TOKEN_ERRORS.includes(type)) throw stepFailure('ImportKeyMaterial', err);
        await refreshToken(key, target, `refused by KMS (${type})`);
      }
    }
    const importedAt = new Date().toISOString();

    step = 'VERIFYING';
    report('verifying the key: Enabled, EXTERNAL, encrypt/decrypt');
    const verification = await run('verifying the key', () =>
      kms.verifyKey.executeWithOptions({ summary: `Verify ${key.keyId}: Enabled, EXTERNAL, encrypt/decrypt round trip` }, [
        { keyId: key.keyId, expirationModel: plan.expirationModel, validTo: plan.validTo },
      ]),
    );
    step = 'DONE';
    report(`imported into ${key.keyArn}`);
    return result('IMPORTED', { importedAt, verification });
  } catch (err) {
    step = 'FAILED';
    failure = err instanceof Error ? err.message : String(err);
    report(failure);
    throw err;
  }
}

/** The state shared by every operation, from the import's finer steps. */
function operationState(step: ImportStep, decided: boolean): OperationState {
  switch (step) {
    case 'PREPARING_KEYS':
      return 'PREPARING';
    case 'WRAPPING': // before approval: preparing; after it: a token refresh on the way to the import
      return decided ? 'IMPORTING' : 'PREPARING';
    case 'VERIFYING':
      return 'IMPORTING';
    default:
      return step;
  }
}

function subjectOf(plan: ImportPlan, key: KmsKeyRef, target: HsmKeyRef): ApprovalSubject {
  return {
    kmsKeyArn: key.keyArn,
    hsmKeyId: target.keyId,
    kcv: target.kcv,
    wrappingAlgorithm: plan.wrappingAlgorithm,
    expirationModel: plan.expirationModel,
    validTo: plan.validTo,
  };
}

function failureType(err: unknown): string | undefined {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause.type ?? undefined : undefined;
}

/** Lifts an activity's typed failure to the workflow, naming the step, so the UI and CLI show one clear line. */
function stepFailure(what: string, err: unknown): unknown {
  if (!(err instanceof ActivityFailure)) return err;
  const cause = err.cause instanceof Error ? err.cause : undefined;
  return ApplicationFailure.create({
    message: `${what} failed: ${cause?.message ?? err.message}`,
    type: failureType(err) ?? 'ActivityFailed',
    nonRetryable: true,
    cause: err,
  });
}
