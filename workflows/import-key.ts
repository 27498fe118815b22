// The BYOK import workflow: KMS key + HSM key, wrap inside the HSM, wait for M-of-N approvals,
// import (refreshing an expired token), verify. Deterministic: all I/O is in activities.
import { ApplicationFailure, defineQuery, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import type { HsmKeyRef } from '../activities/hsm';
import type { KeyDescription, KeyVerification, KmsKeyRef, RecordedHsmKey } from '../activities/kms';
import { ApprovalGate, type ApprovalSubject, type Decision, type GateView } from './approval';
import { acceptDecisions, awaitDecision } from './decisions';
import { ErrorType } from './errors';
import { planImport, type ImportKeyInput, type ImportOperation, type ImportPlan } from './import-request';
import { MaterialImport, recordHsmKey } from './material-import';
import type { ExpirationModel, WrappingAlgorithm, WrappingKeySpec } from './model';
import { approvalProgress, operationState, progressReporter, tokenProgress } from './progress';
import { ensureKmsKey, hsm, kms } from './proxies';
import { SEARCH_ATTRIBUTES_PATCH } from './search-attributes';
import { runStep } from './step-failure';

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

export interface ImportStatus extends GateView {
  step: ImportStep;
  /** import, or restore / reimport of the same HSM material into the same KMS key. */
  operation: ImportOperation;
  alias: string;
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
  operation: ImportOperation;
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

export async function importKey(input: ImportKeyInput): Promise<ImportKeyResult> {
  const startedAt = new Date();
  // Imports started before signed decisions existed carry no approver keys: they keep deciding unsigned.
  const plan = planImport(patched('signed-approvals') ? input : { ...input, unsignedApprovals: true }, startedAt);
  const { workflowId } = workflowInfo();
  const gate = new ApprovalGate({ requester: plan.requester, approvers: plan.approvers, required: plan.requiredApprovals, operation: plan.operation });
  const deadline = new Date(startedAt.getTime() + plan.approvalTimeoutMs);

  let step: ImportStep = 'PREPARING_KEYS';
  let failure: string | undefined;
  let kmsKey: KmsKeyRef | undefined;
  let hsmKey: HsmKeyRef | undefined;
  let material: MaterialImport | undefined;
  let decidedAt: string | undefined;

  // Known once both keys exist; decisions are refused until then, so each is bound to what gets imported.
  let subject: ApprovalSubject | undefined;

  const progress = progressReporter(plan.operation, { searchAttributes: patched(SEARCH_ATTRIBUTES_PATCH) });
  /** Publishes the step (search attributes, the UI's current details, metrics); `doing` says what happens now. */
  const report = (doing: string) =>
    progress.report({
      state: operationState(step, decidedAt !== undefined),
      alias: plan.alias,
      requester: plan.requester,
      kmsKeyId: kmsKey?.keyId,
      ...approvalProgress(gate, deadline),
      ...tokenProgress(material),
      activity: doing,
    });

  const status = (): ImportStatus => ({
    step,
    operation: plan.operation,
    alias: plan.alias,
    ...gate.view(),
    approvalDeadline: deadline.toISOString(),
    wrappingAlgorithm: plan.wrappingAlgorithm,
    kmsKey: kmsKey && { keyId: kmsKey.keyId, keyArn: kmsKey.keyArn },
    hsmKey: hsmKey && { label: hsmKey.label, keyId: hsmKey.keyId, kcv: hsmKey.kcv },
    importToken: material?.params && {
      parametersValidTo: material.params.parametersValidTo,
      refreshAfter: material.refreshAfter().toISOString(),
    },
    tokenRefreshes: material?.tokenRefreshes ?? 0,
    signedApprovals: plan.approverKeys !== null,
    failure,
  });

  acceptDecisions({
    gate,
    deadline,
    subject: () => subject,
    notReady: () => `the ${plan.operation} is still preparing the keys (${step})`,
    onDecided: () => report(gate.state === 'PENDING' ? 'waiting for approvals' : 'decided'),
    approverKeys: plan.approverKeys,
  });
  setHandler(statusQuery, status);

  const result = (outcome: ImportKeyResult['outcome'], extra: Partial<ImportKeyResult> = {}): ImportKeyResult => ({
    outcome,
    operation: plan.operation,
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
    tokenRefreshes: material?.tokenRefreshes ?? 0,
    startedAt: startedAt.toISOString(),
    decidedAt,
    ...extra,
  });

  try {
    report('preparing the KMS key and the HSM key');
    // Restore and reimport: the key must be in the state they fix, and names its HSM key.
    let recorded: RecordedHsmKey | undefined;
    let hsmKeyLabel = plan.hsmKeyLabel;
    if (plan.operation !== 'import') {
      const current = await runStep('describing the KMS key', () =>
        kms.describeKey.executeWithOptions({ summary: `Describe ${plan.alias}: state, expiry and the recorded HSM key` }, [{ keyId: plan.alias }]),
      );
      checkLifecycleState(plan.operation, plan.alias, current);
      recorded = current.hsmKey;
      if (plan.hsmKeyLabelFromKey && recorded?.label) hsmKeyLabel = recorded.label;
    }
    // What the real KMS and HSM refuse (a key that is not EXTERNAL, a wrong PIN, a missing HSM key)
    // is refused before either side creates a key, so a refused request leaves nothing behind.
    if (patched('check-before-creating-keys')) {
      await Promise.all([
        runStep('checking the KMS key', () => kms.checkImportTarget({ alias: plan.alias, createIfMissing: plan.createKmsKey })),
        runStep('checking the HSM key', () => hsm.checkHsmKey({ label: hsmKeyLabel, generate: plan.generateHsmKey })),
      ]);
    }
    [kmsKey, hsmKey] = await Promise.all([
      runStep('preparing the KMS key', () =>
        ensureKmsKey.executeWithOptions({ summary: `${plan.createKmsKey ? 'Find or create' : 'Find'} the EXTERNAL KMS key of ${plan.alias}` }, [
          { alias: plan.alias, description: plan.description, createIfMissing: plan.createKmsKey, requestId: workflowId },
        ]),
      ),
      runStep('preparing the HSM key', () =>
        hsm.ensureHsmKey.executeWithOptions({ summary: `${plan.generateHsmKey ? 'Find or generate' : 'Find'} AES-256 key ${hsmKeyLabel} in the HSM` }, [
          { label: hsmKeyLabel, generate: plan.generateHsmKey },
        ]),
      ),
    ]);
    checkRecordedHsmKey(recorded, hsmKey);
    const key = kmsKey;
    const target = hsmKey;
    material = new MaterialImport({
      keyId: key.keyId,
      hsmKey: target,
      wrappingAlgorithm: plan.wrappingAlgorithm,
      wrappingKeySpec: plan.wrappingKeySpec,
      tokenSafetyMarginMs: plan.tokenSafetyMarginMs,
      maxTokenRefreshes: plan.maxTokenRefreshes,
      onStep: (s, doing) => {
        step = s;
        report(doing);
      },
    });
    await material.wrap();

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

    await material.importApproved({ expirationModel: plan.expirationModel, validTo: plan.validTo });
    const importedAt = new Date().toISOString();

    step = 'VERIFYING';
    report('verifying the key: Enabled, EXTERNAL, encrypt/decrypt');
    const verification = await runStep('verifying the key', () =>
      kms.verifyKey.executeWithOptions({ summary: `Verify ${key.keyId}: Enabled, EXTERNAL, encrypt/decrypt round trip` }, [
        { keyId: key.keyId, expirationModel: plan.expirationModel, validTo: plan.validTo },
      ]),
    );
    await recordHsmKey(key.keyId, target);
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

function subjectOf(plan: ImportPlan, key: KmsKeyRef, target: HsmKeyRef): ApprovalSubject {
  return {
    // Absent for an import, so subjects (and signed statements) of imports stay as they were.
    ...(plan.operation === 'import' ? {} : { operation: plan.operation }),
    kmsKeyArn: key.keyArn,
    hsmKeyId: target.keyId,
    kcv: target.kcv,
    wrappingAlgorithm: plan.wrappingAlgorithm,
    expirationModel: plan.expirationModel,
    validTo: plan.validTo,
  };
}

/** Restore expects lost material (PendingImport); reimport an Enabled key. Anything else is refused, naming the way out. */
function checkLifecycleState(operation: Exclude<ImportOperation, 'import'>, alias: string, key: KeyDescription): void {
  const refuse = (why: string): never => {
    throw ApplicationFailure.nonRetryable(`${operation} of ${alias} (key ${key.keyArn}): ${why}`, ErrorType.KeyStateMismatch);
  };
  if (key.origin !== 'EXTERNAL') throw ApplicationFailure.nonRetryable(`${alias} has origin ${key.origin}, not EXTERNAL`, ErrorType.KeyNotExternal);
  if (operation === 'restore') {
    if (key.keyState === 'PendingImport') return;
    if (key.keyState === 'Enabled') refuse('the key is Enabled and holds its material; nothing to restore (to extend its expiry, reimport)');
    // DescribeKey does not say whether a Disabled key holds material (local-kms disables a
    // PendingImport key and keeps it without any), so the text is true of both.
    if (key.keyState === 'Disabled') refuse('the key is Disabled; restore expects PendingImport (material deleted or expired). If it holds its material, enable it (kms:EnableKey)');
    refuse(`the key is ${key.keyState}; restore expects PendingImport (material deleted or expired)`);
  }
  if (key.keyState === 'PendingImport') refuse('the key has no material (deleted or expired); restore it instead');
  if (key.keyState !== 'Enabled') refuse(`the key is ${key.keyState}; reimport expects an Enabled key`);
}

/** The HSM key found must be the one whose material the KMS key records holding. */
function checkRecordedHsmKey(recorded: RecordedHsmKey | undefined, found: HsmKeyRef): void {
  const differences = [
    recorded?.keyId && recorded.keyId !== found.keyId && `id ${found.keyId}, the KMS key records ${recorded.keyId}`,
    recorded?.kcv && recorded.kcv !== found.kcv && `KCV ${found.kcv}, the KMS key records ${recorded.kcv}`,
  ].filter((d): d is string => typeof d === 'string');
  if (differences.length > 0) {
    throw ApplicationFailure.nonRetryable(`HSM key ${found.label} has ${differences.join('; ')}`, ErrorType.HsmKeyMismatch);
  }
}
