// Rotation of a BYOK key to new HSM material, with the import's approval gate. Two strategies:
//  native:     new material into the same KMS key (ImportType NEW_KEY_MATERIAL), confirmed pending
//              in ListKeyRotations, then RotateKeyOnDemand; old ciphertexts still decrypt.
//  alias-swap: a new EXTERNAL key with the new material, UpdateAlias to it, the previous key kept
//              enabled for a grace period, then disabled (and optionally scheduled for deletion).
import { ApplicationFailure, defineQuery, log, patched, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { HsmKeyRef } from '../activities/hsm';
import type { KeyVerification, KmsKeyRef } from '../activities/kms';
import { ApprovalGate, type ApprovalSubject, type Decision, type GateView } from './approval';
import { acceptDecisions, awaitDecision } from './decisions';
import { ErrorType } from './errors';
import { MaterialImport, recordHsmKey } from './material-import';
import { approvalProgress, operationState, progressReporter, tokenProgress } from './progress';
import { ensureKmsKey, ensureRequestKey, hsm, kms } from './proxies';
import { planRotation, type RotateKeyInput, type RotationPlan, type RotationStrategy } from './rotate-request';
import { SEARCH_ATTRIBUTES_PATCH } from './search-attributes';
import { failureType, runStep, stepFailure } from './step-failure';

export type { RotateKeyInput } from './rotate-request';

export type RotationStep =
  | 'PREPARING_KEYS'
  | 'WRAPPING'
  | 'AWAITING_APPROVAL'
  | 'IMPORTING'
  | 'VERIFYING'
  | 'ROTATING'
  | 'SWITCHING_ALIAS'
  | 'GRACE_PERIOD'
  | 'DISABLING_PREVIOUS_KEY'
  | 'DONE'
  | 'REJECTED'
  | 'APPROVAL_EXPIRED'
  | 'FAILED';

interface KeyView {
  keyId: string;
  keyArn: string;
}

export interface RotationStatus extends GateView {
  step: RotationStep;
  alias: string;
  /** The strategy in use: 'alias-swap' after a fallback from native. */
  strategy: RotationStrategy;
  fellBackFromNative: boolean;
  approvalDeadline: string;
  previousKey?: KeyView;
  newKey?: KeyView;
  hsmKey?: { label: string; keyId: string; kcv: string };
  /** alias-swap: when the previous key will be disabled. */
  graceEndsAt?: string;
  tokenRefreshes: number;
  failure?: string;
}

export interface RotateKeyResult {
  outcome: 'ROTATED' | 'REJECTED' | 'APPROVAL_EXPIRED';
  alias: string;
  strategy: RotationStrategy;
  fellBackFromNative: boolean;
  previousKey: KeyView;
  /** The key the alias names afterwards: a new key for alias-swap, the same for native. */
  newKey: KeyView;
  hsmKey: { label: string; keyId: string; kcv: string };
  /** native: the KMS id of the new (now current) key material. */
  keyMaterialId?: string;
  requester: string;
  approvals: Decision[];
  rejection?: Decision;
  tokenRefreshes: number;
  startedAt: string;
  rotatedAt?: string;
  verification?: KeyVerification;
  /** alias-swap: what happened to the previous key. */
  previousKeyState?: string;
  previousKeyDisabledAt?: string;
  previousKeyDeletionDate?: string;
  /** alias-swap, rejected: the unused new key, scheduled for deletion. */
  unusedKeyDeletionDate?: string;
}

export const rotationStatusQuery = defineQuery<RotationStatus>('rotationStatus');

const view = (k: KmsKeyRef): KeyView => ({ keyId: k.keyId, keyArn: k.keyArn });
/** The shortest waiting period KMS allows, for a key that never received material. */
const UNUSED_KEY_DELETION_DAYS = 7;

export async function rotateKey(input: RotateKeyInput): Promise<RotateKeyResult> {
  const startedAt = new Date();
  const { workflowId } = workflowInfo();
  // Rotations recorded before signed decisions carry no approver keys: they keep deciding unsigned.
  const plan = planRotation(patched('signed-approvals') ? input : { ...input, unsignedApprovals: true }, startedAt, workflowId);
  const gate = new ApprovalGate({ requester: plan.requester, approvers: plan.approvers, required: plan.requiredApprovals, operation: 'rotate' });
  const deadline = new Date(startedAt.getTime() + plan.approvalTimeoutMs);

  let step: RotationStep = 'PREPARING_KEYS';
  let strategy = plan.strategy;
  let fellBackFromNative = false;
  let previousKey: KmsKeyRef | undefined;
  let newKey: KmsKeyRef | undefined;
  let hsmKey: HsmKeyRef | undefined;
  let material: MaterialImport | undefined;
  let graceEndsAt: string | undefined;
  let failure: string | undefined;
  let subject: ApprovalSubject | undefined;

  const progress = progressReporter('rotate', { searchAttributes: patched(SEARCH_ATTRIBUTES_PATCH) });
  /** Moves to `next` and publishes it (search attributes, the UI's current details, metrics). */
  const to = (next: RotationStep, doing: string) => {
    step = next;
    progress.report({
      state: operationState(step, gate.state !== 'PENDING'),
      alias: plan.alias,
      requester: plan.requester,
      kmsKeyId: (newKey ?? previousKey)?.keyId,
      ...approvalProgress(gate, deadline),
      ...tokenProgress(material),
      activity: doing,
    });
  };

  setHandler(rotationStatusQuery, (): RotationStatus => ({
    step,
    alias: plan.alias,
    strategy,
    fellBackFromNative,
    ...gate.view(),
    approvalDeadline: deadline.toISOString(),
    previousKey: previousKey && view(previousKey),
    newKey: newKey && view(newKey),
    hsmKey: hsmKey && { label: hsmKey.label, keyId: hsmKey.keyId, kcv: hsmKey.kcv },
    graceEndsAt,
    tokenRefreshes: material?.tokenRefreshes ?? 0,
    failure,
  }));
  acceptDecisions({
    gate,
    deadline,
    subject: () => subject,
    notReady: () => `the rotation is still preparing the new key material (${step})`,
    approverKeys: plan.approverKeys,
    onDecided: () => to(step, gate.state === 'PENDING' ? 'waiting for approvals' : 'decided'),
  });

  const result = (outcome: RotateKeyResult['outcome'], extra: Partial<RotateKeyResult> = {}): RotateKeyResult => ({
    outcome,
    alias: plan.alias,
    strategy,
    fellBackFromNative,
    previousKey: view(previousKey!),
    newKey: view(outcome === 'ROTATED' ? newKey! : previousKey!),
    hsmKey: { label: hsmKey!.label, keyId: hsmKey!.keyId, kcv: hsmKey!.kcv },
    requester: plan.requester,
    approvals: gate.approvals,
    rejection: gate.rejection,
    tokenRefreshes: material?.tokenRefreshes ?? 0,
    startedAt: startedAt.toISOString(),
    ...extra,
  });

  try {
    to('PREPARING_KEYS', `finding the key behind ${plan.alias}`);
    const current = await runStep('finding the key behind the alias', () =>
      ensureKmsKey({ alias: plan.alias, description: plan.description, createIfMissing: false, requestId: workflowId }),
    );
    previousKey = current;
    if (strategy === 'native') {
      // Asked before any material exists, so an unsupported KMS costs nobody an approval.
      try {
        await kms.keyMaterials({ keyId: current.keyId });
      } catch (err) {
        if (failureType(err) !== ErrorType.NativeRotationUnsupported || !plan.fallbackToAliasSwap) {
          throw stepFailure('checking native rotation support', err);
        }
        log.warn('native rotation unsupported by this KMS; rotating by alias swap as configured', { alias: plan.alias });
        strategy = 'alias-swap';
        fellBackFromNative = true;
      }
    }
    const native = strategy === 'native';
    const [target, generated] = await Promise.all([
      native
        ? Promise.resolve(current)
        : runStep('creating the new KMS key', () => ensureRequestKey({ requestId: workflowId, description: plan.description })),
      runStep('generating the new HSM key', () => hsm.ensureHsmKey({ label: plan.hsmKeyLabel, generate: true })),
    ]);
    newKey = target;
    hsmKey = generated;
    material = new MaterialImport({
      keyId: target.keyId,
      hsmKey: generated,
      wrappingAlgorithm: plan.wrappingAlgorithm,
      wrappingKeySpec: plan.wrappingKeySpec,
      tokenSafetyMarginMs: plan.tokenSafetyMarginMs,
      maxTokenRefreshes: plan.maxTokenRefreshes,
      onStep: (s, doing) => to(s, doing),
    });
    await material.wrap();

    subject = subjectOf(plan, strategy, current, target, generated);
    to('AWAITING_APPROVAL', 'waiting for approvals');
    await awaitDecision(gate, deadline);
    if (gate.state !== 'APPROVED') {
      to(gate.state === 'REJECTED' ? 'REJECTED' : 'APPROVAL_EXPIRED', gate.state === 'REJECTED' ? `rejected by ${gate.rejection!.approver}; nothing rotated` : 'no quorum by the deadline; nothing rotated');
      const outcome = gate.state === 'REJECTED' ? 'REJECTED' : 'APPROVAL_EXPIRED';
      if (native) return result(outcome);
      // The new key never got material and no alias names it: do not leave it behind.
      const { deletionDate } = await runStep('retiring the unused new key', () =>
        kms.scheduleKeyDeletion({ keyId: target.keyId, pendingWindowInDays: UNUSED_KEY_DELETION_DAYS }),
      );
      return result(outcome, { unusedKeyDeletionDate: deletionDate });
    }

    if (native) {
      const imported = await material.importApproved({
        expirationModel: plan.expirationModel,
        validTo: plan.validTo,
        importType: 'NEW_KEY_MATERIAL',
        keyMaterialDescription: workflowId,
      });
      to('ROTATING', 'confirming the new material is pending, then RotateKeyOnDemand');
      const keyMaterialId = await confirmPending(target.keyId, workflowId, imported.keyMaterialId);
      await runStep('RotateKeyOnDemand', () => kms.rotateKeyOnDemand({ keyId: target.keyId, keyMaterialId }));
      const rotatedAt = new Date().toISOString();
      to('VERIFYING', 'verifying the key: Enabled, EXTERNAL, encrypt/decrypt');
      const verification = await verify(plan, target);
      await recordHsmKey(target.keyId, generated);
      to('DONE', `rotated ${target.keyArn} to new material`);
      return result('ROTATED', { keyMaterialId, rotatedAt, verification });
    }

    await material.importApproved({ expirationModel: plan.expirationModel, validTo: plan.validTo });
    to('VERIFYING', 'verifying the new key: Enabled, EXTERNAL, encrypt/decrypt');
    const verification = await verify(plan, target);
    await recordHsmKey(target.keyId, generated);
    to('SWITCHING_ALIAS', `pointing ${plan.alias} at ${target.keyId}`);
    await runStep('UpdateAlias', () => kms.updateAlias({ alias: plan.alias, keyId: target.keyId }));
    const rotatedAt = new Date().toISOString();

    graceEndsAt = new Date(Date.now() + plan.gracePeriodMs).toISOString();
    to('GRACE_PERIOD', `previous key ${current.keyId} stays enabled until ${graceEndsAt}`);
    if (plan.gracePeriodMs > 0) await sleep(plan.gracePeriodMs, { summary: `grace period: previous key ${current.keyId} stays enabled` });
    to('DISABLING_PREVIOUS_KEY', `disabling the previous key ${current.keyId}`);
    const { keyState } = await runStep('disabling the previous key', () => kms.disableKey({ keyId: current.keyId }));
    const previousKeyDisabledAt = new Date().toISOString();
    let previousKeyDeletionDate: string | undefined;
    if (plan.deletePreviousKeyAfterDays !== undefined) {
      const days = plan.deletePreviousKeyAfterDays;
      ({ deletionDate: previousKeyDeletionDate } = await runStep('scheduling the previous key for deletion', () =>
        kms.scheduleKeyDeletion({ keyId: current.keyId, pendingWindowInDays: days }),
      ));
    }
    to('DONE', `${plan.alias} now names ${target.keyArn}`);
    return result('ROTATED', {
      rotatedAt,
      verification,
      previousKeyState: previousKeyDeletionDate ? 'PendingDeletion' : keyState,
      previousKeyDisabledAt,
      previousKeyDeletionDate,
    });
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
    to('FAILED', failure);
    throw err;
  }
}

function verify(plan: RotationPlan, key: KmsKeyRef): Promise<KeyVerification> {
  return runStep('verifying the key', () => kms.verifyKey({ keyId: key.keyId, expirationModel: plan.expirationModel, validTo: plan.validTo }));
}

/**
 * The new material must show as pending before rotating: PENDING_ROTATION in ListKeyRotations, or,
 * where the KMS has no such list (LocalStack), imported but not DescribeKey's current material.
 * After a crash mid-rotation it may be current already, which RotateKeyOnDemand then recognises.
 */
async function confirmPending(keyId: string, description: string, keyMaterialId: string | undefined): Promise<string> {
  const { currentKeyMaterialId, materials } = await runStep('ListKeyRotations', () => kms.keyMaterials({ keyId }));
  const mine = materials?.find((m) => (keyMaterialId ? m.keyMaterialId === keyMaterialId : m.description === description));
  const id = mine?.keyMaterialId ?? keyMaterialId;
  const pending = materials
    ? mine?.state === 'PENDING_ROTATION' || mine?.state === 'CURRENT'
    : id !== undefined && currentKeyMaterialId !== undefined;
  if (!pending || !id) {
    const seen = materials ? (mine ? mine.state : 'not listed') : `not known (current material ${currentKeyMaterialId ?? 'unknown'})`;
    throw ApplicationFailure.nonRetryable(
      `key ${keyId}: the imported material ${keyMaterialId ?? `described "${description}"`} is ${seen}, expected PENDING_ROTATION`,
      ErrorType.VerificationFailed,
    );
  }
  return id;
}

function subjectOf(plan: RotationPlan, strategy: RotationStrategy, previous: KmsKeyRef, key: KmsKeyRef, target: HsmKeyRef): ApprovalSubject {
  return {
    operation: 'rotate',
    strategy,
    previousKmsKeyArn: previous.keyArn,
    kmsKeyArn: key.keyArn,
    hsmKeyId: target.keyId,
    kcv: target.kcv,
    wrappingAlgorithm: plan.wrappingAlgorithm,
    expirationModel: plan.expirationModel,
    validTo: plan.validTo,
  };
}
