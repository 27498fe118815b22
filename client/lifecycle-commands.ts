// `byok restore|reimport|revoke|revoke-result|guard`: the key lifecycle after an import. Restore and
// reimport are imports (follow them with `byok status|result`); all of them wait for approvers
// (`byok approve|reject`).
import { userInfo } from 'node:os';
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { guardKey, guardStatusQuery, planGuard, type GuardKeyInput, type GuardStatus } from '../workflows/guard-key';
import { importKey, type ImportKeyInput } from '../workflows/import-key';
import { checkedAliasName, planApprovals, planImport, type ApprovalRequest, type ImportOperation } from '../workflows/import-request';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { revokeKey, type RevokeKeyInput, type RevokeKeyResult } from '../workflows/revoke-key';
import { ByokAlias, ByokOperation, ByokRequester, ByokState, type Operation } from '../workflows/search-attributes';
import { approverKeysDir, readApproverKeys } from './approver-keys';
import { CliError, connect, Exit, oneWorkflowId, parse, print, resultOrPrintedFailure, showUsage, withWorkflow, type Command } from './command';
import { workflowUrl } from './connection';

const APPROVAL_OPTIONS = `  --approvers a,b,c           who may approve (the requester may not be one of them)
  --required N                approvals needed (default: all approvers)
  --requester R               who asks (default $BYOK_REQUESTER or the login name)
  --approval-timeout D        how long approvers have, e.g. 72h (default)
  --approver-keys DIR         folder with each approver's NAME.pub, as for import
  --unsigned-approvals        accept decisions without signatures (not recommended; logged)`;

const RESTORE_USAGE = `usage: byok restore --alias A --approvers a,b,c [options]

Re-imports the HSM key recorded on the KMS key (at its last import) into that same key after its
material was deleted (revoke, DeleteImportedKeyMaterial) or expired; the key ARN stays, data
encrypted before the loss decrypts again. Refused unless the key is in PendingImport.

  --alias A                   KMS alias (with or without "alias/")
${APPROVAL_OPTIONS}
  --valid-to ISO              the restored material expires then (default: does not expire)
  --hsm-key-label L           HSM key to use when the KMS key records none
  --wrapping-algorithm ALG    as for import (default RSAES_OAEP_SHA_256)
  --workflow-id ID            default "restore-<alias name>"
  --json                      print JSON

Follow it with "byok status|result <workflow-id>".`;

const REIMPORT_USAGE = `usage: byok reimport --alias A --valid-to ISO --approvers a,b,c [options]

Imports the same HSM material again into the Enabled key behind the alias with a new ValidTo
(what the expiry guardian does before the material expires). Options as for restore.

  --workflow-id ID            default "reimport-<alias name>"`;

const REVOKE_USAGE = `usage: byok revoke --alias A --approvers a,b,c [--disable] [options]

Kill switch: after approval, deletes the key's imported material (DeleteImportedKeyMaterial), so
Encrypt and Decrypt fail; with --disable the key is disabled first. The HSM key is kept:
"byok restore --alias A" brings the key back under the same ARN.

  --alias A                   KMS alias (with or without "alias/")
  --disable                   also disable the key
${APPROVAL_OPTIONS}
  --workflow-id ID            default "revoke-<alias name>"
  --json                      print JSON

Follow it with "byok revoke-result <workflow-id>".`;

const REVOKE_RESULT_USAGE = `usage: byok revoke-result <workflow-id> [--json]

Waits for a revocation to end. Exit 0 revoked, 4 rejected, 5 approval expired, 6 failed.`;

const GUARD_USAGE = `usage: byok guard start|status|stop --alias A [options]

  start    start the expiry guardian of a key imported with --valid-to (workflow "guard-<alias name>"):
           it re-imports the same material with a new ValidTo a lead time before the old one,
           each re-import approved like an import (byok approve <id shown by guard status>)
  status   where the guardian stands: phase, ValidTo, next wake-up, the alert if any
  stop     cancel the guardian (and a re-import it is waiting on)

start options:
  --lead D                    re-import this long before ValidTo (default 7d)
  --validity D                new ValidTo this long after the re-import (default 365d, at most)
  --recheck D                 look again this often while in alert (default 1d)
${APPROVAL_OPTIONS}
  --wrapping-algorithm ALG    as for import (default RSAES_OAEP_SHA_256)
  --hsm-key-label L           HSM key to use when the KMS key records none
  --json                      print JSON (start, status)

Exit codes of status: 0 no alert, 7 the guardian is in alert.`;

/** `guard status` exit code while the guardian shows an alert, for monitoring scripts. */
const ALERTING = 7;

const approvalOptions = {
  approvers: { type: 'string' },
  required: { type: 'string' },
  requester: { type: 'string' },
  'approval-timeout': { type: 'string' },
  'approver-keys': { type: 'string' },
  'unsigned-approvals': { type: 'boolean' },
} as const;

type ApprovalValues = { [K in keyof typeof approvalOptions]?: (typeof approvalOptions)[K]['type'] extends 'boolean' ? boolean : string };

/** Who asks and who decides, with the approvers' public keys unless signatures are turned off (checked). */
function approvalsFrom(command: string, v: ApprovalValues): ApprovalRequest {
  if (!v.approvers) throw new CliError(`${command}: --approvers is required, e.g. --approvers alice,bob`, Exit.USAGE);
  const approvers = v.approvers.split(',').map((a) => a.trim()).filter((a) => a !== '');
  if (v['unsigned-approvals'] && v['approver-keys']) {
    throw new CliError(`${command}: --approver-keys and --unsigned-approvals exclude each other`, Exit.USAGE);
  }
  const request: ApprovalRequest = {
    requester: v.requester ?? process.env.BYOK_REQUESTER ?? userInfo().username,
    approvers,
    requiredApprovals: v.required === undefined ? approvers.length : Number(v.required),
    approvalTimeout: v['approval-timeout'] as ApprovalRequest['approvalTimeout'],
    unsignedApprovals: v['unsigned-approvals'] || undefined,
  };
  try {
    // The approvers first, then their keys: a typo names the approver, not a missing file.
    planApprovals({ ...request, unsignedApprovals: true, approverKeys: undefined });
    if (!request.unsignedApprovals) request.approverKeys = readApproverKeys(v['approver-keys'] ?? approverKeysDir(), approvers);
    planApprovals(request);
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`, Exit.USAGE);
  }
  return request;
}

/** Listed at once; a namespace without the BYOK search attributes refuses the start instead of stalling the workflow. */
const startAttributes = (operation: Operation, alias: string, requester: string) => [
  { key: ByokOperation, value: operation },
  { key: ByokState, value: 'PREPARING' },
  { key: ByokAlias, value: alias },
  { key: ByokRequester, value: requester },
];

function aliasNameOf(command: string, alias: string | undefined): string {
  if (!alias) throw new CliError(`${command}: --alias is required`, Exit.USAGE);
  try {
    return checkedAliasName(alias);
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`, Exit.USAGE);
  }
}

/** Starts a workflow, refusing (exit 3) one whose id is already running; prints where to follow it. */
async function startWorkflow(
  command: string,
  json: boolean | undefined,
  start: (client: Client) => Promise<{ workflowId: string; firstExecutionRunId: string }>,
  workflowId: string,
  next: string,
): Promise<number> {
  const { client, namespace, close } = await connect();
  let runId: string;
  try {
    ({ firstExecutionRunId: runId } = await start(client));
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`${command}: a workflow with id "${workflowId}" is already running`, Exit.REFUSED);
    }
    const why = ((err as Error).cause as Error | undefined)?.message ?? '';
    if (/search attribute/i.test(why)) {
      throw new CliError(`${command}: ${why}: register the BYOK search attributes first (README, "Watching it")`, Exit.ERROR);
    }
    throw err;
  } finally {
    await close();
  }
  const url = workflowUrl(namespace, workflowId);
  print(json, { workflowId, runId, url }, () => {
    console.log(`started ${workflowId}`);
    console.log(`  ${next}`);
    console.log(`  ${url}`);
  });
  return Exit.OK;
}

async function lifecycleImport(operation: Exclude<ImportOperation, 'import'>, args: string[]): Promise<number> {
  const usage = operation === 'restore' ? RESTORE_USAGE : REIMPORT_USAGE;
  const { values: v } = parse(args, {
    alias: { type: 'string' },
    ...approvalOptions,
    'valid-to': { type: 'string' },
    'hsm-key-label': { type: 'string' },
    'wrapping-algorithm': { type: 'string' },
    'workflow-id': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(usage);
  const name = aliasNameOf(operation, v.alias);
  if (operation === 'reimport' && !v['valid-to']) throw new CliError('reimport: --valid-to is required (the new ValidTo)', Exit.USAGE);
  const input: ImportKeyInput = {
    operation,
    alias: name,
    expirationModel: v['valid-to'] ? 'KEY_MATERIAL_EXPIRES' : undefined,
    validTo: v['valid-to'],
    hsmKeyLabel: v['hsm-key-label'],
    wrappingAlgorithm: v['wrapping-algorithm'] as ImportKeyInput['wrappingAlgorithm'],
    ...approvalsFrom(operation, v),
  };
  let plan;
  try {
    plan = planImport(input, new Date());
  } catch (err) {
    throw new CliError(`${operation}: ${(err as Error).message}`, Exit.USAGE);
  }
  const workflowId = v['workflow-id'] ?? `${operation}-${name}`;
  return startWorkflow(
    operation,
    v.json,
    (client) =>
      client.workflow.start(importKey, {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        staticSummary: operation === 'restore' ? `Restore ${plan.alias} from its HSM key` : `Re-import ${plan.alias} with ValidTo ${plan.validTo}`,
        staticDetails: `Requested by ${plan.requester}; needs ${plan.requiredApprovals} of ${plan.approvers.join(', ')}.`,
        typedSearchAttributes: startAttributes(operation, plan.alias, plan.requester),
      }),
    workflowId,
    `approvers: ${plan.requiredApprovals} of ${plan.approvers.join(', ')} (byok approve ${workflowId} --as NAME)`,
  );
}

async function revokeCommand(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    alias: { type: 'string' },
    disable: { type: 'boolean' },
    ...approvalOptions,
    'workflow-id': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(REVOKE_USAGE);
  const name = aliasNameOf('revoke', v.alias);
  const input: RevokeKeyInput = { alias: name, disableKey: v.disable ?? false, ...approvalsFrom('revoke', v) };
  const workflowId = v['workflow-id'] ?? `revoke-${name}`;
  return startWorkflow(
    'revoke',
    v.json,
    (client) =>
      client.workflow.start(revokeKey, {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        staticSummary: `Revoke alias/${name}${input.disableKey ? ' and disable it' : ''}`,
        staticDetails: `Requested by ${input.requester}; needs ${input.requiredApprovals} of ${input.approvers.join(', ')}.`,
        typedSearchAttributes: startAttributes('revoke', `alias/${name}`, input.requester),
      }),
    workflowId,
    `approvers: ${input.requiredApprovals} of ${input.approvers.join(', ')} (byok approve ${workflowId} --as NAME)`,
  );
}

async function revokeResultCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(REVOKE_RESULT_USAGE);
  const workflowId = oneWorkflowId(positionals, 'revoke-result', REVOKE_RESULT_USAGE);
  return withWorkflow<typeof revokeKey>(workflowId, async (handle) => {
    const result = await resultOrPrintedFailure<RevokeKeyResult>(handle, workflowId, v.json);
    if (!result) return Exit.FAILED;
    print(v.json, result, () => {
      console.log(`${workflowId}  ${result.outcome}`);
      console.log(`  KMS key     ${result.keyArn} (${result.keyState}${result.disabled ? ', disabled first' : ''})`);
      if (result.hsmKey) console.log(`  HSM key     ${result.hsmKey.label ?? '?'} (id ${result.hsmKey.keyId}, KCV ${result.hsmKey.kcv}), kept for restore`);
      for (const a of result.approvals) console.log(`  approved    by ${a.approver} at ${a.at}`);
    });
    return result.outcome === 'REVOKED' ? Exit.OK : result.outcome === 'REJECTED' ? Exit.REJECTED : Exit.APPROVAL_EXPIRED;
  });
}

async function guardCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    alias: { type: 'string' },
    lead: { type: 'string' },
    validity: { type: 'string' },
    recheck: { type: 'string' },
    ...approvalOptions,
    'wrapping-algorithm': { type: 'string' },
    'hsm-key-label': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(GUARD_USAGE);
  const action = positionals[0];
  if (positionals.length !== 1 || !['start', 'status', 'stop'].includes(action)) {
    throw new CliError(`guard: expected start, status or stop\n${GUARD_USAGE}`, Exit.USAGE);
  }
  const name = aliasNameOf('guard', v.alias);
  const workflowId = `guard-${name}`;
  if (action === 'start') {
    const input: GuardKeyInput = {
      alias: name,
      leadTime: v.lead as GuardKeyInput['leadTime'],
      validity: v.validity as GuardKeyInput['validity'],
      recheckInterval: v.recheck as GuardKeyInput['recheckInterval'],
      wrappingAlgorithm: v['wrapping-algorithm'] as GuardKeyInput['wrappingAlgorithm'],
      hsmKeyLabel: v['hsm-key-label'],
      ...approvalsFrom('guard start', v),
    };
    try {
      planGuard(input, new Date());
    } catch (err) {
      throw new CliError(`guard start: ${(err as Error).message}`, Exit.USAGE);
    }
    return startWorkflow(
      'guard start',
      v.json,
      (client) =>
        client.workflow.start(guardKey, {
          taskQueue: WORKFLOW_TASK_QUEUE,
          workflowId,
          args: [input],
          workflowIdConflictPolicy: 'FAIL',
          staticSummary: `Expiry guardian of alias/${name}: re-import ${v.lead ?? '7d'} before ValidTo`,
          typedSearchAttributes: startAttributes('guard', `alias/${name}`, input.requester),
        }),
      workflowId,
      `byok guard status --alias ${name}`,
    );
  }
  return withWorkflow<typeof guardKey>(workflowId, async (handle) => {
    if (action === 'stop') {
      await handle.cancel();
      console.log(`${workflowId}: stop requested`);
      return Exit.OK;
    }
    const status: GuardStatus = await handle.query(guardStatusQuery);
    print(v.json, status, () => {
      console.log(`${workflowId}  ${status.phase}${status.alert ? `  ALERT ${status.alert.kind}` : ''}`);
      console.log(`  alias       ${status.alias}`);
      if (status.validTo) console.log(`  ValidTo     ${status.validTo}`);
      if (status.nextWake) console.log(`  next wake   ${status.nextWake}`);
      if (status.reimportWorkflowId) console.log(`  re-import   ${status.reimportWorkflowId} (byok approve ${status.reimportWorkflowId} --as NAME)`);
      console.log(`  re-imports  ${status.reimports}${status.lastReimport ? `, last ${status.lastReimport.at} to ValidTo ${status.lastReimport.validTo}` : ''}`);
      if (status.alert) console.log(`  alert       ${status.alert.at}: ${status.alert.message}`);
    });
    return status.alert && status.alert.kind !== 'WOKE_LATE' ? ALERTING : Exit.OK;
  });
}

export const lifecycleCommands: Record<string, Command> = {
  restore: { summary: 'restore a key whose material was deleted or expired, from its HSM key', usage: RESTORE_USAGE, run: (a) => lifecycleImport('restore', a) },
  reimport: { summary: 'import the same material again with a new ValidTo', usage: REIMPORT_USAGE, run: (a) => lifecycleImport('reimport', a) },
  revoke: { summary: "kill switch: delete a key's imported material (after approval)", usage: REVOKE_USAGE, run: revokeCommand },
  'revoke-result': { summary: 'wait for a revocation to finish and print its outcome', usage: REVOKE_RESULT_USAGE, run: revokeResultCommand },
  guard: { summary: 'expiry guardian: re-import before ValidTo (start|status|stop)', usage: GUARD_USAGE, run: guardCommand },
};
