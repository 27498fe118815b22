// The kill switch: after M-of-N approvals, delete a key's imported material (and optionally
// disable the key first), so nothing can encrypt or decrypt with it. The HSM copy is kept:
// `restore` puts the same material back under the same key ARN.
import { ApplicationFailure, defineQuery, setHandler } from '@temporalio/workflow';
import type { KeyDescription, RecordedHsmKey } from '../activities/kms';
import { ApprovalGate, type ApprovalSubject, type Decision, type GateView } from './approval';
import { acceptDecisions, awaitDecision } from './decisions';
import { ErrorType } from './errors';
import { checkedAliasName, invalidInput, planApprovals, type ApprovalRequest } from './import-request';
import { approvalProgress, operationState, progressReporter } from './progress';
import { kms } from './proxies';
import { runStep } from './step-failure';

export interface RevokeKeyInput extends ApprovalRequest {
  /** KMS alias, with or without the "alias/" prefix. */
  alias: string;
  /** Also disable the key (before deleting the material, so it is unusable at once). */
  disableKey?: boolean;
}

export type RevokeStep = 'DESCRIBING' | 'AWAITING_APPROVAL' | 'DISABLING' | 'DELETING_MATERIAL' | 'DONE' | 'REJECTED' | 'APPROVAL_EXPIRED' | 'FAILED';

export interface RevokeStatus extends GateView {
  step: RevokeStep;
  alias: string;
  disableKey: boolean;
  kmsKey?: { keyId: string; keyArn: string; keyState: string };
  /** The HSM key the KMS key records; it stays in the HSM for a restore. */
  hsmKey?: RecordedHsmKey;
  approvalDeadline: string;
  signedApprovals: boolean;
  failure?: string;
}

export interface RevokeKeyResult {
  outcome: 'REVOKED' | 'REJECTED' | 'APPROVAL_EXPIRED';
  alias: string;
  keyArn: string;
  hsmKey?: RecordedHsmKey;
  disabled: boolean;
  /** KeyState after the revocation: PendingImport once the material is gone. */
  keyState: string;
  requester: string;
  approvals: Decision[];
  rejection?: Decision;
  startedAt: string;
  revokedAt?: string;
}

export const revokeStatusQuery = defineQuery<RevokeStatus>('revokeStatus');

export async function revokeKey(input: RevokeKeyInput): Promise<RevokeKeyResult> {
  const startedAt = new Date();
  if (typeof input !== 'object' || input === null) throw invalidInput('input', 'expected an object');
  const alias = `alias/${checkedAliasName(input.alias)}`;
  if (input.disableKey !== undefined && typeof input.disableKey !== 'boolean') throw invalidInput('disableKey', 'expected true or false');
  const disableKey = input.disableKey ?? false;
  const policy = planApprovals(input);
  const gate = new ApprovalGate({ requester: policy.requester, approvers: policy.approvers, required: policy.requiredApprovals, operation: 'revoke' });
  const deadline = new Date(startedAt.getTime() + policy.approvalTimeoutMs);

  let step: RevokeStep = 'DESCRIBING';
  let key: KeyDescription | undefined;
  let subject: ApprovalSubject | undefined;
  let failure: string | undefined;

  const progress = progressReporter('revoke', { searchAttributes: true });
  const to = (next: RevokeStep, doing: string) => {
    step = next;
    progress.report({
      state: operationState(step, gate.state !== 'PENDING'),
      alias,
      requester: policy.requester,
      kmsKeyId: key?.keyId,
      ...approvalProgress(gate, deadline),
      activity: doing,
    });
  };

  acceptDecisions({
    gate,
    deadline,
    subject: () => subject,
    notReady: () => `the revocation is still looking up ${alias} (${step})`,
    approverKeys: policy.approverKeys,
    onDecided: () => to(step, gate.state === 'PENDING' ? 'waiting for approvals' : 'decided'),
  });
  setHandler(revokeStatusQuery, () => ({
    step,
    alias,
    disableKey,
    kmsKey: key && { keyId: key.keyId, keyArn: key.keyArn, keyState: key.keyState },
    hsmKey: key?.hsmKey,
    ...gate.view(),
    approvalDeadline: deadline.toISOString(),
    signedApprovals: policy.approverKeys !== null,
    failure,
  }));

  const result = (outcome: RevokeKeyResult['outcome'], extra: Partial<RevokeKeyResult> = {}): RevokeKeyResult => ({
    outcome,
    alias,
    keyArn: key!.keyArn,
    hsmKey: key!.hsmKey,
    disabled: false,
    keyState: key!.keyState,
    requester: policy.requester,
    approvals: gate.approvals,
    rejection: gate.rejection,
    startedAt: startedAt.toISOString(),
    ...extra,
  });

  try {
    to('DESCRIBING', `looking up ${alias}`);
    key = await runStep('describing the KMS key', () =>
      kms.describeKey.executeWithOptions({ summary: `Describe ${alias}: state and the recorded HSM key` }, [{ keyId: alias }]),
    );
    checkRevocable(alias, key);
    subject = {
      operation: 'revoke',
      kmsKeyArn: key.keyArn,
      // Empty when the key was imported before the HSM key was recorded on it.
      hsmKeyId: key.hsmKey?.keyId ?? '',
      kcv: key.hsmKey?.kcv ?? '',
      disableKey,
    };
    to('AWAITING_APPROVAL', 'waiting for approvals');
    const decision = await awaitDecision(gate, deadline);
    if (decision !== 'APPROVED') {
      const outcome = decision === 'REJECTED' ? 'REJECTED' : 'APPROVAL_EXPIRED';
      to(outcome, decision === 'REJECTED' ? `rejected by ${gate.rejection!.approver}; nothing revoked` : 'no quorum by the deadline; nothing revoked');
      return result(outcome);
    }
    const keyId = key.keyId;
    // Disabled first: unusable at once, even if the deletion then fails.
    if (disableKey) {
      to('DISABLING', `disabling ${keyId}`);
      await runStep('DisableKey', () => kms.disableKey.executeWithOptions({ summary: `Disable ${keyId} (revocation)` }, [{ keyId }]));
    }
    to('DELETING_MATERIAL', `deleting the imported material of ${keyId}; the HSM key is kept`);
    const { keyState } = await runStep('DeleteImportedKeyMaterial', () =>
      kms.deleteImportedKeyMaterial.executeWithOptions({ summary: `DeleteImportedKeyMaterial of ${keyId} (revocation; the HSM key is kept)` }, [{ keyId }]),
    );
    key = { ...key, keyState };
    to('DONE', `revoked ${key.keyArn}: ${keyState}`);
    return result('REVOKED', { disabled: disableKey, keyState, revokedAt: new Date().toISOString() });
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
    to('FAILED', failure);
    throw err;
  }
}

/** Only a key that holds imported material can be revoked. */
function checkRevocable(alias: string, key: KeyDescription): void {
  if (key.origin !== 'EXTERNAL') {
    throw ApplicationFailure.nonRetryable(`${alias} has origin ${key.origin}; only keys with imported material can be revoked`, ErrorType.KeyNotExternal);
  }
  if (key.keyState !== 'Enabled' && key.keyState !== 'Disabled') {
    throw ApplicationFailure.nonRetryable(
      `${alias} (key ${key.keyArn}) is ${key.keyState}; revoke expects a key that holds its material (Enabled or Disabled)`,
      ErrorType.KeyStateMismatch,
    );
  }
}
