// `byok import|approve|reject|status|result`: start an import, decide on it, follow it.
import { userInfo } from 'node:os';
import { WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  approveUpdate,
  importKey,
  rejectUpdate,
  statusQuery,
  type ImportKeyInput,
  type ImportKeyResult,
  type ImportStatus,
} from '../workflows/import-key';
import { planImport } from '../workflows/import-request';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { CliError, connect, Exit, oneWorkflowId, parse, print, showUsage, type Command } from './command';
import { workflowUrl } from './connection';
import { printResult, printStatus } from './render';

const IMPORT_USAGE = `usage: byok import --alias A --approvers a,b,c [options]

  --alias A                   KMS alias (with or without "alias/")
  --approvers a,b,c           who may approve (the requester may not be one of them)
  --required N                approvals needed (default: all approvers)
  --requester R               who asks (default $BYOK_REQUESTER or the login name)
  --description D             KMS key description
  --wrapping-algorithm ALG    RSAES_OAEP_SHA_256 (default), RSAES_OAEP_SHA_1,
                              RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256
  --wrapping-key-spec S       RSA_2048 (default), RSA_3072, RSA_4096
  --valid-to ISO              material expires then (sets KEY_MATERIAL_EXPIRES; at most 365 days)
  --hsm-key-label L           HSM key to import (default "byok/<alias name>"; generated if missing)
  --existing-hsm-key          the HSM key must exist already; never generate
  --existing-kms-key          the alias must exist already; never create a KMS key
  --approval-timeout D        how long approvers have, e.g. 72h (default)
  --token-margin D            refresh the import token when less is left (default 1h)
  --workflow-id ID            default "import-<alias name>": one import of an alias at a time
  --json                      print JSON`;

const APPROVE_USAGE = `usage: byok approve <workflow-id> --as NAME [--comment TEXT] [--json]

Records your approval of the KMS key, HSM key and key check value shown by "byok status".
Waits (up to a minute) while a new import is still preparing its keys; then refused at
once (exit 3) if you are not an approver, requested the import yourself, already approved,
or the import is already decided or ended.`;

const REJECT_USAGE = `usage: byok reject <workflow-id> --as NAME [--comment TEXT] [--json]

Rejects the import; nothing is imported. Any approver may reject while it is pending.`;

const STATUS_USAGE = `usage: byok status <workflow-id> [--json]`;

const RESULT_USAGE = `usage: byok result <workflow-id> [--json]

Waits for the import to end. Exit 0 imported, 4 rejected, 5 approval expired, 6 failed.`;

async function importCommand(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    alias: { type: 'string' },
    approvers: { type: 'string' },
    required: { type: 'string' },
    requester: { type: 'string' },
    description: { type: 'string' },
    'wrapping-algorithm': { type: 'string' },
    'wrapping-key-spec': { type: 'string' },
    'valid-to': { type: 'string' },
    'hsm-key-label': { type: 'string' },
    'existing-hsm-key': { type: 'boolean' },
    'existing-kms-key': { type: 'boolean' },
    'approval-timeout': { type: 'string' },
    'token-margin': { type: 'string' },
    'workflow-id': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(IMPORT_USAGE);
  if (!v.alias) throw new CliError('import: --alias is required', Exit.USAGE);
  if (!v.approvers) throw new CliError('import: --approvers is required, e.g. --approvers alice,bob', Exit.USAGE);
  const approvers = v.approvers.split(',').map((a) => a.trim());
  const required = v.required === undefined ? approvers.length : Number(v.required);
  const input: ImportKeyInput = {
    alias: v.alias,
    description: v.description,
    createKmsKey: !v['existing-kms-key'],
    wrappingAlgorithm: v['wrapping-algorithm'] as ImportKeyInput['wrappingAlgorithm'],
    wrappingKeySpec: v['wrapping-key-spec'] as ImportKeyInput['wrappingKeySpec'],
    expirationModel: v['valid-to'] ? 'KEY_MATERIAL_EXPIRES' : undefined,
    validTo: v['valid-to'],
    hsmKeyLabel: v['hsm-key-label'],
    generateHsmKey: !v['existing-hsm-key'],
    requester: v.requester ?? process.env.BYOK_REQUESTER ?? userInfo().username,
    approvers,
    requiredApprovals: required,
    approvalTimeout: v['approval-timeout'] as ImportKeyInput['approvalTimeout'],
    tokenSafetyMargin: v['token-margin'] as ImportKeyInput['tokenSafetyMargin'],
  };
  // The workflow validates again; checking here refuses bad input before anything starts.
  let plan;
  try {
    plan = planImport(input, new Date());
  } catch (err) {
    throw new CliError(`import: ${(err as Error).message}`, Exit.USAGE);
  }
  const workflowId = v['workflow-id'] ?? `import-${plan.aliasName}`;
  const { client, namespace, close } = await connect();
  let runId: string;
  try {
    ({ firstExecutionRunId: runId } = await client.workflow.start(importKey, {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      staticSummary: `Import ${plan.alias} from HSM key ${plan.hsmKeyLabel}`,
      staticDetails: `Requested by ${plan.requester}; needs ${plan.requiredApprovals} of ${plan.approvers.join(', ')}; wrapping ${plan.wrappingAlgorithm}.`,
    }));
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`import: an import with workflow id "${workflowId}" is already running`, Exit.REFUSED);
    }
    throw err;
  } finally {
    await close();
  }
  const url = workflowUrl(namespace, workflowId);
  print(v.json, { workflowId, runId, url }, () => {
    console.log(`started ${workflowId}`);
    console.log(`  approvers: ${plan.requiredApprovals} of ${plan.approvers.join(', ')} (byok approve ${workflowId} --as NAME)`);
    console.log(`  ${url}`);
  });
  return Exit.OK;
}

async function decideCommand(command: 'approve' | 'reject', args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { as: { type: 'string' }, comment: { type: 'string' }, json: { type: 'boolean' } });
  if (v.help) return showUsage(command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  const workflowId = oneWorkflowId(positionals, command, command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  if (!v.as) throw new CliError(`${command}: --as NAME is required`, Exit.USAGE);
  return withHandle(workflowId, async (handle) => {
    await untilDecidable(handle);
    let status: ImportStatus;
    try {
      status = await handle.executeUpdate(command === 'approve' ? approveUpdate : rejectUpdate, {
        args: [{ approver: v.as!, comment: v.comment }],
      });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        throw new CliError(`${command}: refused: ${(err.cause as Error | undefined)?.message ?? err.message}`, Exit.REFUSED);
      }
      throw err;
    }
    print(v.json, status, () => {
      if (command === 'reject') console.log(`${workflowId}: rejected by ${v.as}; nothing will be imported`);
      else if (status.approvalsNeeded === 0) console.log(`${workflowId}: approved by ${v.as}; quorum reached, the import proceeds`);
      else console.log(`${workflowId}: approved by ${v.as}; ${status.approvalsNeeded} more approval(s) needed`);
    });
    return Exit.OK;
  });
}

/** Decisions are refused until the keys to decide on exist; a fresh import takes a moment to get there. */
async function untilDecidable(handle: WorkflowHandle<typeof importKey>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { step } = await handle.query(statusQuery);
    if (step !== 'PREPARING_KEYS' && step !== 'WRAPPING') return;
    await new Promise((r) => setTimeout(r, 250));
  }
  // Still preparing: the update's refusal says so.
}

async function statusCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(STATUS_USAGE);
  const workflowId = oneWorkflowId(positionals, 'status', STATUS_USAGE);
  return withHandle(workflowId, async (handle) => {
    const status = await handle.query(statusQuery);
    print(v.json, status, () => printStatus(workflowId, status, new Date()));
    return Exit.OK;
  });
}

async function resultCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(RESULT_USAGE);
  const workflowId = oneWorkflowId(positionals, 'result', RESULT_USAGE);
  return withHandle(workflowId, async (handle) => {
    let result: ImportKeyResult;
    try {
      result = await handle.result();
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
      const failure = { outcome: 'FAILED', type: cause?.type ?? err.cause?.name, message: err.cause?.message ?? err.message };
      print(v.json, failure, () => console.error(`${workflowId}: FAILED (${failure.type}): ${failure.message}`));
      return Exit.FAILED;
    }
    print(v.json, result, () => printResult(workflowId, result));
    return result.outcome === 'IMPORTED' ? Exit.OK : result.outcome === 'REJECTED' ? Exit.REJECTED : Exit.APPROVAL_EXPIRED;
  });
}

async function withHandle(workflowId: string, fn: (handle: WorkflowHandle<typeof importKey>) => Promise<number>): Promise<number> {
  const { client, close } = await connect();
  const handle = client.workflow.getHandle<typeof importKey>(workflowId);
  try {
    return await fn(handle);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      // Also what a message to a finished import gets: tell the two apart.
      const ended = await handle.describe().then((d) => d.status.name, () => undefined);
      throw new CliError(ended ? `import "${workflowId}" has already ended (${ended})` : `no import with workflow id "${workflowId}"`, Exit.REFUSED);
    }
    throw err;
  } finally {
    await close();
  }
}

export const importCommands: Record<string, Command> = {
  import: { summary: 'start a BYOK import of an HSM key into AWS KMS', usage: IMPORT_USAGE, run: importCommand },
  approve: { summary: 'approve an import (as one of its approvers)', usage: APPROVE_USAGE, run: (args) => decideCommand('approve', args) },
  reject: { summary: 'reject an import (as one of its approvers)', usage: REJECT_USAGE, run: (args) => decideCommand('reject', args) },
  status: { summary: 'show where an import stands', usage: STATUS_USAGE, run: statusCommand },
  result: { summary: 'wait for an import to finish and print its outcome', usage: RESULT_USAGE, run: resultCommand },
};
