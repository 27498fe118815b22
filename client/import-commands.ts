// `byok import|status|result`: start an import and follow it (deciding is in decision-commands.ts).
import { userInfo } from 'node:os';
import { WorkflowExecutionAlreadyStartedError, type QueryDefinition } from '@temporalio/common';
import { guardStatusQuery } from '../workflows/guard-key';
import { importKey, statusQuery, type ImportKeyInput, type ImportKeyResult } from '../workflows/import-key';
import { revokeStatusQuery } from '../workflows/revoke-key';
import { rotationStatusQuery } from '../workflows/rotate-key';
import { rotateKeysProgressQuery } from '../workflows/rotate-keys';
import { planImport } from '../workflows/import-request';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { ByokAlias, ByokOperation, ByokRequester, ByokState } from '../workflows/search-attributes';
import { approverKeysDir, readApproverKeys } from './approver-keys';
import { CliError, connect, Exit, oneWorkflowId, parse, print, resultOrPrintedFailure, showUsage, withWorkflow, type Command } from './command';
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
  --approver-keys DIR         folder with each approver's NAME.pub (from "byok keygen"); default
                              $BYOK_APPROVER_KEYS_DIR, else $BYOK_KEYS_DIR, else ~/.byok/keys
  --unsigned-approvals        accept decisions without signatures (not recommended; logged and
                              shown in the status)
  --approval-timeout D        how long approvers have, e.g. 72h (default)
  --token-margin D            refresh the import token when less is left (default 1h)
  --workflow-id ID            default "import-<alias name>": one import of an alias at a time
  --json                      print JSON`;

const STATUS_USAGE = `usage: byok status <workflow-id> [--json]

Where any BYOK workflow stands: an import (restore, re-import) in words, a rotation, a run of
several, a revocation or an expiry guardian as its status query's JSON.`;

/** The status query of every other BYOK workflow type. */
const STATUS_QUERIES: Record<string, QueryDefinition<unknown>> = {
  rotateKey: rotationStatusQuery,
  rotateKeys: rotateKeysProgressQuery,
  revokeKey: revokeStatusQuery,
  guardKey: guardStatusQuery,
};

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
    'approver-keys': { type: 'string' },
    'unsigned-approvals': { type: 'boolean' },
    'approval-timeout': { type: 'string' },
    'token-margin': { type: 'string' },
    'workflow-id': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(IMPORT_USAGE);
  if (!v.alias) throw new CliError('import: --alias is required', Exit.USAGE);
  if (!v.approvers) throw new CliError('import: --approvers is required, e.g. --approvers alice,bob', Exit.USAGE);
  const approvers = v.approvers.split(',').map((a) => a.trim()).filter((a) => a !== '');
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
    unsignedApprovals: v['unsigned-approvals'] || undefined,
    approvalTimeout: v['approval-timeout'] as ImportKeyInput['approvalTimeout'],
    tokenSafetyMargin: v['token-margin'] as ImportKeyInput['tokenSafetyMargin'],
  };
  // The workflow validates again; checking here refuses bad input before anything starts.
  let plan;
  try {
    if (!input.unsignedApprovals) {
      planImport({ ...input, unsignedApprovals: true }, new Date()); // the approvers, before reading their keys
      input.approverKeys = readApproverKeys(v['approver-keys'] ?? approverKeysDir(), approvers);
    } else if (v['approver-keys']) {
      throw new CliError('import: --approver-keys and --unsigned-approvals exclude each other', Exit.USAGE);
    }
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
      // Listed at once, and a namespace without the BYOK search attributes refuses the start
      // here instead of failing the workflow's tasks when it upserts them.
      typedSearchAttributes: [
        { key: ByokOperation, value: 'import' },
        { key: ByokState, value: 'PREPARING' },
        { key: ByokAlias, value: plan.alias },
        { key: ByokRequester, value: plan.requester },
      ],
    }));
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`import: an import with workflow id "${workflowId}" is already running`, Exit.REFUSED);
    }
    const why = ((err as Error).cause as Error | undefined)?.message ?? '';
    if (/search attribute/i.test(why)) {
      throw new CliError(`import: ${why}: register the BYOK search attributes first (README, "Watching it")`, Exit.ERROR);
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

async function statusCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(STATUS_USAGE);
  const workflowId = oneWorkflowId(positionals, 'status', STATUS_USAGE);
  return withWorkflow<typeof importKey>(workflowId, async (handle) => {
    const { type } = await handle.describe();
    if (type !== 'importKey') {
      const query = STATUS_QUERIES[type];
      if (!query) throw new CliError(`status: "${workflowId}" is a ${type} workflow, not a BYOK one`, Exit.REFUSED);
      console.log(JSON.stringify(await handle.query(query), null, 2));
      return Exit.OK;
    }
    const status = await handle.query(statusQuery);
    print(v.json, status, () => printStatus(workflowId, status, new Date()));
    return Exit.OK;
  });
}

async function resultCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(RESULT_USAGE);
  const workflowId = oneWorkflowId(positionals, 'result', RESULT_USAGE);
  return withWorkflow<typeof importKey>(workflowId, async (handle) => {
    const result = await resultOrPrintedFailure<ImportKeyResult>(handle, workflowId, v.json);
    if (!result) return Exit.FAILED;
    print(v.json, result, () => printResult(workflowId, result));
    return result.outcome === 'IMPORTED' ? Exit.OK : result.outcome === 'REJECTED' ? Exit.REJECTED : Exit.APPROVAL_EXPIRED;
  });
}

export const importCommands: Record<string, Command> = {
  import: { summary: 'start a BYOK import of an HSM key into AWS KMS', usage: IMPORT_USAGE, run: importCommand },
  status: { summary: 'show where an import, rotation, revocation or guardian stands', usage: STATUS_USAGE, run: statusCommand },
  result: { summary: 'wait for an import to finish and print its outcome', usage: RESULT_USAGE, run: resultCommand },
};
