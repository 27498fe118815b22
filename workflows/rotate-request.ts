// The rotation request: which strategy, what the new material looks like (as for an import), and
// what happens to the previous key. Pure, shared by the CLI and the workflow, like import-request.
import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { invalidInput, planImport, type ImportKeyInput, type ImportPlan } from './import-request';

export const ROTATION_STRATEGIES = ['native', 'alias-swap'] as const;
export type RotationStrategy = (typeof ROTATION_STRATEGIES)[number];

/** Workflow input. The alias must name an EXTERNAL key already (the one being rotated). */
export interface RotateKeyInput
  extends Pick<
    ImportKeyInput,
    | 'alias'
    | 'wrappingAlgorithm'
    | 'wrappingKeySpec'
    | 'expirationModel'
    | 'validTo'
    | 'requester'
    | 'approvers'
    | 'requiredApprovals'
    | 'approvalTimeout'
    | 'tokenSafetyMargin'
    | 'maxTokenRefreshes'
    | 'approverKeys'
    | 'unsignedApprovals'
  > {
  /** Default 'alias-swap', which every KMS supports. */
  strategy?: RotationStrategy;
  /** native only: where the KMS cannot rotate imported material, swap the alias instead of failing. */
  fallbackToAliasSwap?: boolean;
  /** alias-swap: how long the previous key stays enabled after the alias moved; default 7d. */
  gracePeriod?: Duration;
  /** alias-swap: after the grace period, schedule the disabled previous key for deletion in this many days (7-30). */
  deletePreviousKeyAfterDays?: number;
}

export interface RotationPlan extends ImportPlan {
  strategy: RotationStrategy;
  fallbackToAliasSwap: boolean;
  gracePeriodMs: number;
  deletePreviousKeyAfterDays?: number;
}

const DAY = 24 * 3_600_000;
const MAX_GRACE_MS = 365 * DAY;
const HSM_LABEL_MAX = 127;

/**
 * The HSM label of a rotation's new material: the alias's label plus the rotation's workflow id,
 * so each rotation has its own key, and a retried rotation finds the key it generated.
 */
export function rotationHsmLabel(aliasName: string, rotationId: string): string {
  return `byok/${aliasName}/${rotationId}`;
}

/** Applies defaults and checks every field; throws InvalidInput naming the field. */
export function planRotation(input: RotateKeyInput, now: Date, rotationId: string): RotationPlan {
  if (typeof input !== 'object' || input === null) throw invalidInput('input', 'expected an object');
  const strategy = input.strategy ?? 'alias-swap';
  if (!ROTATION_STRATEGIES.includes(strategy)) {
    throw invalidInput('strategy', `expected one of ${ROTATION_STRATEGIES.join(', ')}, got ${JSON.stringify(input.strategy)}`);
  }
  const base = planImport({ ...pickImportFields(input), createKmsKey: false }, now);
  const hsmKeyLabel = rotationHsmLabel(base.aliasName, rotationId);
  if (hsmKeyLabel.length > HSM_LABEL_MAX || !/^[\x21-\x7e]+$/.test(hsmKeyLabel)) {
    throw invalidInput('alias', `the new HSM key label ${JSON.stringify(hsmKeyLabel)} must be 1-${HSM_LABEL_MAX} printable ASCII characters; use a shorter alias or workflow id`);
  }
  if (input.fallbackToAliasSwap !== undefined && typeof input.fallbackToAliasSwap !== 'boolean') {
    throw invalidInput('fallbackToAliasSwap', 'expected true or false');
  }
  let gracePeriodMs = 7 * DAY;
  if (input.gracePeriod !== undefined) {
    try {
      gracePeriodMs = msToNumber(input.gracePeriod);
    } catch {
      throw invalidInput('gracePeriod', `expected a duration such as "7d" or "12h", got ${JSON.stringify(input.gracePeriod)}`);
    }
    if (!Number.isFinite(gracePeriodMs) || gracePeriodMs < 0 || gracePeriodMs > MAX_GRACE_MS) {
      throw invalidInput('gracePeriod', `expected 0 to 365 days, got ${gracePeriodMs} ms`);
    }
  }
  const days = input.deletePreviousKeyAfterDays;
  if (days !== undefined && (!Number.isInteger(days) || days < 7 || days > 30)) {
    throw invalidInput('deletePreviousKeyAfterDays', `expected a whole number from 7 to 30 (the KMS waiting period), got ${JSON.stringify(days)}`);
  }
  return {
    ...base,
    description: `BYOK key ${base.alias}, material from HSM key ${hsmKeyLabel}`,
    hsmKeyLabel,
    generateHsmKey: true,
    strategy,
    fallbackToAliasSwap: input.fallbackToAliasSwap ?? false,
    gracePeriodMs,
    deletePreviousKeyAfterDays: days,
  };
}

/** Only the fields an import knows: the import's own checks then apply to them unchanged. */
function pickImportFields(input: RotateKeyInput): ImportKeyInput {
  const { strategy: _s, fallbackToAliasSwap: _f, gracePeriod: _g, deletePreviousKeyAfterDays: _d, ...rest } = input;
  return rest;
}
