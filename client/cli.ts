// The `byok` command line: start an import, decide on it, watch it, and run the local stack.
import { userInfo } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  Client,
  Connection,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../scripts/stack';
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
import { temporalSettings, workflowUrl } from './connection';
import { printResult, printStatus } from './render';

/** Exit codes scripts can rely on. */
export const Exit = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  REFUSED: 3,
  REJECTED: 4,
  APPROVAL_EXPIRED: 5,
  FAILED: 6,
} as const;

class CliError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

const HELP: Record<string, string> = {
  main: `usage: byok <command> [options]

Commands:
  import     start a BYOK import of an HSM key into AWS KMS
  approve    approve an import (as one of its approvers)
  reject     reject an import (as one of its approvers)
  status     show where an import stands
  result     wait for an import to finish and print its outcome
  stack      run the local stack: Temporal dev server, local-kms, SoftHSM2 token, worker

Run "byok <command> --help" for a command's options.
Temporal is reached through TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY and TEMPORAL_TLS_*; BYOK_UI_URL sets the Web UI base for links.

Exit codes: 0 ok, 1 error, 2 bad usage or input, 3 refused (e.g. not an approver),
4 rejected, 5 approval expired, 6 import failed.`,
  import: `usage: byok import --alias A --approvers a,b,c [options]

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
  --json                      print JSON`,
  approve: `usage: byok approve <workflow-id> --as NAME [--comment TEXT] [--json]

Records your approval of the KMS key, HSM key and key check value shown by "byok status".
Waits (up to a minute) while a new import is still preparing its keys; then refused at
once (exit 3) if you are not an approver, requested the import yourself, already approved,
or the import is already decided or ended.`,
  reject: `usage: byok reject <workflow-id> --as NAME [--comment TEXT] [--json]

Rejects the import; nothing is imported. Any approver may reject while it is pending.`,
  status: `usage: byok status <workflow-id> [--json]`,
  result: `usage: byok result <workflow-id> [--json]

Waits for the import to end. Exit 0 imported, 4 rejected, 5 approval expired, 6 failed.`,
  stack: `usage: byok stack up|down|status

  up       start (or reuse) the Temporal dev server with its Web UI, local-kms, a SoftHSM2
           token and the worker; safe to run twice
  down     stop what "up" started; data is kept
  status   show each component

Environment: BYOK_STACK_DIR (default .byok), BYOK_TEMPORAL_PORT (7233), BYOK_UI_PORT (8233),
BYOK_KMS_PORT (4599), BYOK_TOKEN_LABEL (byok-demo), BYOK_DEMO_PIN / BYOK_DEMO_SO_PIN (demo token only).`,
};

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError((err as Error).message, Exit.USAGE);
  }
}

async function connect(): Promise<{ client: Client; namespace: string; close: () => Promise<void> }> {
  const settings = temporalSettings();
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey, connectTimeout: '5s' });
  } catch (err) {
    throw new CliError(`cannot reach Temporal at ${settings.address}: ${(err as Error).message} (is "byok stack up" running?)`, Exit.ERROR);
  }
  return { client: new Client({ connection, namespace: settings.namespace }), namespace: settings.namespace, close: () => connection.close() };
}

function oneWorkflowId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new CliError(`${command}: expected one workflow id\n${HELP[command]}`, Exit.USAGE);
  return positionals[0];
}

const print = (json: boolean | undefined, value: unknown, human: () => void) => (json ? console.log(JSON.stringify(value, null, 2)) : human());

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
  if (v.help) return help('import');
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
  if (v.help) return help(command);
  const workflowId = oneWorkflowId(positionals, command);
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
  if (v.help) return help('status');
  const workflowId = oneWorkflowId(positionals, 'status');
  return withHandle(workflowId, async (handle) => {
    const status = await handle.query(statusQuery);
    print(v.json, status, () => printStatus(workflowId, status, new Date()));
    return Exit.OK;
  });
}

async function resultCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return help('result');
  const workflowId = oneWorkflowId(positionals, 'result');
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

async function stackCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {});
  if (v.help || positionals.length !== 1) return help('stack', v.help ? Exit.OK : Exit.USAGE);
  const opts = stackOptionsFromEnv();
  switch (positionals[0]) {
    case 'up': {
      const info = await stackUp(opts);
      console.log(`stack up in ${opts.dir}`);
      console.log(`  Temporal  ${info.temporalAddress} (namespace ${info.namespace})`);
      console.log(`  Web UI    ${info.uiUrl}`);
      console.log(`  local-kms ${info.kmsEndpoint}`);
      console.log(`  SoftHSM2  token "${info.tokenLabel}" (${info.softhsmConf})`);
      console.log(`  logs      ${info.logsDir}`);
      return Exit.OK;
    }
    case 'down':
      await stackDown(opts);
      console.log(`stack down (data kept in ${opts.dir})`);
      return Exit.OK;
    case 'status': {
      const rows = await stackStatus(opts);
      for (const r of rows) console.log(`${r.component.padEnd(10)} ${r.running ? 'running' : 'stopped'}  ${r.pid ?? ''}  ${r.detail}`);
      return rows.every((r) => r.running) ? Exit.OK : Exit.ERROR;
    }
    default:
      throw new CliError(`stack: unknown action "${positionals[0]}"; expected up, down or status`, Exit.USAGE);
  }
}

function help(command: string, code: number = Exit.OK): number {
  (code === Exit.OK ? console.log : console.error)(HELP[command]);
  return code;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case 'import':
        return await importCommand(args);
      case 'approve':
      case 'reject':
        return await decideCommand(command, args);
      case 'status':
        return await statusCommand(args);
      case 'result':
        return await resultCommand(args);
      case 'stack':
        return await stackCommand(args);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        return help('main', command === undefined ? Exit.USAGE : Exit.OK);
      default:
        throw new CliError(`unknown command "${command}"; run "byok --help"`, Exit.USAGE);
    }
  } catch (err) {
    console.error(`byok: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof CliError ? err.code : Exit.ERROR;
  }
}
