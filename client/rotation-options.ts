// The rotation settings shared by `byok rotate` and `byok schedule create`: options, and the
// request they make.
import { userInfo } from 'node:os';
import type { RotateKeyInput } from '../workflows/rotate-request';
import { approverKeysDir, readApproverKeys } from './approver-keys';
import { CliError, Exit } from './command';

export const ROTATION_OPTIONS = {
  approvers: { type: 'string' },
  required: { type: 'string' },
  requester: { type: 'string' },
  strategy: { type: 'string' },
  'fallback-alias-swap': { type: 'boolean' },
  grace: { type: 'string' },
  'delete-after-days': { type: 'string' },
  'wrapping-algorithm': { type: 'string' },
  'wrapping-key-spec': { type: 'string' },
  'approval-timeout': { type: 'string' },
  'approver-keys': { type: 'string' },
  'unsigned-approvals': { type: 'boolean' },
} as const;

export const ROTATION_USAGE = `  --approvers a,b,c           who may approve each rotation (not the requester)
  --required N                approvals needed (default: all approvers)
  --requester R               who asks (default $BYOK_REQUESTER or the login name)
  --strategy S                alias-swap (default: new KMS key, alias moved) or native
                              (new material in the same key: ImportType NEW_KEY_MATERIAL,
                              RotateKeyOnDemand; needs a KMS that has them)
  --fallback-alias-swap       native only: swap the alias where the KMS cannot rotate natively
  --grace D                   alias-swap: previous key stays enabled this long (default 7d)
  --delete-after-days N       alias-swap: then schedule it for deletion in N days (7-30)
  --wrapping-algorithm ALG    as for import (default RSAES_OAEP_SHA_256)
  --wrapping-key-spec S       as for import (default RSA_2048)
  --approval-timeout D        how long approvers have (default 72h)
  --approver-keys DIR         folder with each approver's NAME.pub, as for import
  --unsigned-approvals        accept decisions without signatures (not recommended; logged)`;

type Values = { [K in keyof typeof ROTATION_OPTIONS]?: (typeof ROTATION_OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

/** The rotation request for every alias, from the shared options (checked by planRotation later). */
export function rotationSettings(command: string, v: Values): Omit<RotateKeyInput, 'alias'> {
  if (!v.approvers) throw new CliError(`${command}: --approvers is required, e.g. --approvers alice,bob`, Exit.USAGE);
  const approvers = v.approvers.split(',').map((a) => a.trim());
  const days = v['delete-after-days'];
  if (v['unsigned-approvals'] && v['approver-keys']) {
    throw new CliError(`${command}: --approver-keys and --unsigned-approvals exclude each other`, Exit.USAGE);
  }
  let approverKeys: Record<string, string> | undefined;
  if (!v['unsigned-approvals']) {
    try {
      approverKeys = readApproverKeys(v['approver-keys'] ?? approverKeysDir(), approvers);
    } catch (err) {
      throw new CliError(`${command}: ${(err as Error).message}`, Exit.USAGE);
    }
  }
  return {
    strategy: v.strategy as RotateKeyInput['strategy'],
    fallbackToAliasSwap: v['fallback-alias-swap'] || undefined,
    gracePeriod: v.grace as RotateKeyInput['gracePeriod'],
    deletePreviousKeyAfterDays: days === undefined ? undefined : Number(days),
    wrappingAlgorithm: v['wrapping-algorithm'] as RotateKeyInput['wrappingAlgorithm'],
    wrappingKeySpec: v['wrapping-key-spec'] as RotateKeyInput['wrappingKeySpec'],
    requester: v.requester ?? process.env.BYOK_REQUESTER ?? userInfo().username,
    approvers,
    requiredApprovals: v.required === undefined ? approvers.length : Number(v.required),
    approvalTimeout: v['approval-timeout'] as RotateKeyInput['approvalTimeout'],
    approverKeys,
    unsignedApprovals: v['unsigned-approvals'] || undefined,
  };
}
