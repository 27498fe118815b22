// `byok list|pending|watch`: what runs, what waits for whom, and one operation live. list and
// pending are visibility queries on the search attributes of workflows/search-attributes.ts, so
// they see every BYOK operation (import, rotate, restore, revoke) without asking a worker.
import type { Client, WorkflowExecutionDescription, WorkflowExecutionInfo } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import {
  ByokAlias,
  ByokApprovalDeadline,
  ByokApprovalsNeeded,
  ByokKmsKeyId,
  ByokOperation,
  ByokPendingApprovers,
  ByokRequester,
  ByokState,
  ByokTokenValidTo,
  OPERATION_STATES,
  OPERATIONS,
  type OperationState,
} from '../workflows/search-attributes';
import { aliasName } from '../workflows/import-request';
import { CliError, connect, Exit, oneWorkflowId, parse, print, showUsage, type Command } from './command';
import { left } from './render';

const LIST_USAGE = `usage: byok list [--state S] [--alias A] [--operation O] [--limit N] [--json]

Lists BYOK operations (newest first) through a visibility query on their search attributes.
  --state S       ${OPERATION_STATES.join(', ')}
  --alias A       KMS alias (with or without "alias/")
  --operation O   ${OPERATIONS.join(', ')}
  --limit N       at most N rows (default 50)
Visibility lags the workflows by a moment; "byok status" asks the workflow itself.`;

const PENDING_USAGE = `usage: byok pending --as NAME [--json]

Lists the operations awaiting approval that NAME may still approve or reject.`;

const WATCH_USAGE = `usage: byok watch <workflow-id> [--json]

Follows one operation: its state, approvals, time left on the approval deadline and the import
token. Prints a line (one JSON object per line with --json) on every change and exits when the workflow
ends: 0 done, 4 rejected, 5 approval expired, 6 failed.`;

/** One operation as its search attributes describe it. */
export interface OperationRow {
  workflowId: string;
  operation?: string;
  state?: string;
  alias?: string;
  requester?: string;
  kmsKeyId?: string;
  approvalsNeeded?: number;
  pendingApprovers: string[];
  approvalDeadline?: string;
  tokenValidTo?: string;
  status: string;
  startTime: string;
  closeTime?: string;
}

function rowOf(w: Omit<WorkflowExecutionInfo, 'raw'>): OperationRow {
  const sa = w.typedSearchAttributes;
  return {
    workflowId: w.workflowId,
    operation: sa.get(ByokOperation),
    state: sa.get(ByokState),
    alias: sa.get(ByokAlias),
    requester: sa.get(ByokRequester),
    kmsKeyId: sa.get(ByokKmsKeyId),
    approvalsNeeded: sa.get(ByokApprovalsNeeded),
    pendingApprovers: sa.get(ByokPendingApprovers) ?? [],
    approvalDeadline: sa.get(ByokApprovalDeadline)?.toISOString(),
    tokenValidTo: sa.get(ByokTokenValidTo)?.toISOString(),
    status: w.status.name,
    startTime: w.startTime.toISOString(),
    closeTime: w.closeTime?.toISOString(),
  };
}

/** A value inside a visibility query's quotes; refusing quotes is simpler than escaping them. */
function literal(option: string, value: string): string {
  if (/['"\\]/.test(value) || value.length === 0 || value.length > 256) {
    throw new CliError(`${option}: expected a non-empty value without quotes or backslashes, got ${JSON.stringify(value)}`, Exit.USAGE);
  }
  return `'${value}'`;
}

function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new CliError(`${option}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`, Exit.USAGE);
  }
  return value as T;
}

/** The visibility query behind `byok list`. */
export function listQuery(filters: { state?: string; alias?: string; operation?: string }): string {
  const clauses = [`${ByokOperation.name} IN (${OPERATIONS.map((o) => `'${o}'`).join(', ')})`];
  if (filters.operation) clauses.push(`${ByokOperation.name} = '${oneOf('--operation', filters.operation, OPERATIONS)}'`);
  if (filters.state) clauses.push(`${ByokState.name} = '${oneOf('--state', filters.state, OPERATION_STATES)}'`);
  if (filters.alias) clauses.push(`${ByokAlias.name} = ${literal('--alias', `alias/${aliasName(filters.alias)}`)}`);
  return clauses.join(' AND ');
}

/** The visibility query behind `byok pending --as NAME`. */
export function pendingQuery(approver: string): string {
  const waiting: OperationState = 'AWAITING_APPROVAL';
  return `${ByokState.name} = '${waiting}' AND ${ByokPendingApprovers.name} = ${literal('--as', approver)}`;
}

async function rows(client: Client, query: string, limit: number): Promise<OperationRow[]> {
  const found: OperationRow[] = [];
  for await (const w of client.workflow.list({ query, pageSize: Math.min(limit, 100) })) {
    found.push(rowOf(w));
    if (found.length >= limit) break;
  }
  return found;
}

function table(header: string[], body: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  for (const r of [header, ...body]) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
}

async function listCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    state: { type: 'string' },
    alias: { type: 'string' },
    operation: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(LIST_USAGE);
  if (positionals.length) throw new CliError(`list: unexpected argument "${positionals[0]}"\n${LIST_USAGE}`, Exit.USAGE);
  const limit = v.limit === undefined ? 50 : Number(v.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new CliError(`--limit: expected a positive integer, got ${JSON.stringify(v.limit)}`, Exit.USAGE);
  const query = listQuery(v);
  const { client, close } = await connect();
  try {
    const found = await rows(client, query, limit);
    const now = new Date();
    print(v.json, found, () => {
      if (found.length === 0) return console.log('no BYOK operations match');
      table(
        ['WORKFLOW ID', 'OPERATION', 'STATE', 'ALIAS', 'REQUESTER', 'NEEDS', 'DEADLINE', 'STARTED'],
        found.map((r) => [
          r.workflowId,
          r.operation ?? '',
          r.state ?? r.status,
          r.alias ?? '',
          r.requester ?? '',
          r.state === 'AWAITING_APPROVAL' ? `${r.approvalsNeeded} of ${r.pendingApprovers.join(',')}` : '',
          r.state === 'AWAITING_APPROVAL' && r.approvalDeadline ? left(r.approvalDeadline, now) : '',
          r.startTime,
        ]),
      );
    });
    return Exit.OK;
  } finally {
    await close();
  }
}

async function pendingCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { as: { type: 'string' }, json: { type: 'boolean' } });
  if (v.help) return showUsage(PENDING_USAGE);
  if (positionals.length) throw new CliError(`pending: unexpected argument "${positionals[0]}"\n${PENDING_USAGE}`, Exit.USAGE);
  if (!v.as) throw new CliError('pending: --as NAME is required', Exit.USAGE);
  const query = pendingQuery(v.as);
  const { client, close } = await connect();
  try {
    const found = await rows(client, query, 1000);
    const now = new Date();
    print(v.json, found, () => {
      if (found.length === 0) return console.log(`nothing awaits ${v.as}`);
      table(
        ['WORKFLOW ID', 'OPERATION', 'ALIAS', 'REQUESTER', 'NEEDS', 'DEADLINE', 'TOKEN'],
        found.map((r) => [
          r.workflowId,
          r.operation ?? '',
          r.alias ?? '',
          r.requester ?? '',
          `${r.approvalsNeeded} more`,
          r.approvalDeadline ? `${r.approvalDeadline} (${left(r.approvalDeadline, now)})` : '',
          r.tokenValidTo ? left(r.tokenValidTo, now) : '',
        ]),
      );
      console.log(`\ndecide with: byok approve|reject <workflow-id> --as ${v.as}`);
    });
    return Exit.OK;
  } finally {
    await close();
  }
}

const POLL_MS = 1000;

/** What watch prints: the describe() view of the search attributes, which is current (not the lagging index). */
function watchLine(d: WorkflowExecutionDescription, now: Date): { key: string; text: string; row: OperationRow } {
  const row = rowOf(d);
  const parts = [row.state ?? row.status];
  if (row.state === 'AWAITING_APPROVAL') {
    parts.push(`${row.approvalsNeeded} approval(s) needed, may decide: ${row.pendingApprovers.join(', ') || 'nobody'}`);
    if (row.approvalDeadline) parts.push(`deadline ${left(row.approvalDeadline, now)}`);
  }
  if (row.tokenValidTo && row.status === 'RUNNING') parts.push(`token ${left(row.tokenValidTo, now)}`);
  const key = JSON.stringify([row.state, row.status, row.approvalsNeeded, row.pendingApprovers, row.approvalDeadline, row.tokenValidTo]);
  return { key, text: parts.join('; '), row };
}

function exitFor(row: OperationRow): number {
  if (row.status === 'COMPLETED' && row.state === 'DONE') return Exit.OK;
  if (row.state === 'REJECTED') return Exit.REJECTED;
  if (row.state === 'APPROVAL_EXPIRED') return Exit.APPROVAL_EXPIRED;
  return Exit.FAILED;
}

async function watchCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(WATCH_USAGE);
  const workflowId = oneWorkflowId(positionals, 'watch', WATCH_USAGE);
  const { client, close } = await connect();
  const handle = client.workflow.getHandle(workflowId);
  // On a terminal the line is redrawn every second so the time left counts down; in a pipe or
  // a log, a line is printed only when something changes.
  const live = !v.json && process.stdout.isTTY;
  let last = '';
  try {
    for (;;) {
      let d: WorkflowExecutionDescription;
      try {
        d = await handle.describe();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new CliError(`no workflow with id "${workflowId}"`, Exit.REFUSED);
        throw err;
      }
      const now = new Date();
      const { key, text, row } = watchLine(d, now);
      const ended = row.status !== 'RUNNING';
      if (live) process.stdout.write(`\r\x1b[K${workflowId}  ${text}${ended ? '\n' : ''}`);
      else if (key !== last) {
        console.log(v.json ? JSON.stringify({ at: now.toISOString(), ...row }) : `${now.toISOString()}  ${workflowId}  ${text}`);
      }
      last = key;
      if (ended) {
        if (!v.json) console.log(`${workflowId} ended: ${row.status}${row.state ? ` (${row.state})` : ''}`);
        return exitFor(row);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    await close();
  }
}

export const opsCommands: Record<string, Command> = {
  list: { summary: 'list BYOK operations, by state, alias or operation', usage: LIST_USAGE, run: listCommand },
  pending: { summary: 'list what awaits your approval (--as NAME)', usage: PENDING_USAGE, run: pendingCommand },
  watch: { summary: 'follow one operation live until it ends', usage: WATCH_USAGE, run: watchCommand },
};
