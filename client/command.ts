// What every `byok` command shares: exit codes, usage errors, option parsing, the Temporal client.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Client, Connection, WorkflowFailedError, WorkflowNotFoundError, type Workflow, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { dataConverterFromEnv } from '../codec/data-converter';
import { temporalSettings } from './connection';

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

export class CliError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/** One `byok <name>` command; each concern's file exports a record of them. */
export interface Command {
  /** One line for `byok --help`. */
  summary: string;
  /** Starts with "usage: byok <name>", printed by `byok <name> --help`. */
  usage: string;
  run(args: string[]): Promise<number>;
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError((err as Error).message, Exit.USAGE);
  }
}

export function showUsage(usage: string, code: number = Exit.OK): number {
  (code === Exit.OK ? console.log : console.error)(usage);
  return code;
}

export function oneWorkflowId(positionals: string[], command: string, usage: string): string {
  if (positionals.length !== 1) throw new CliError(`${command}: expected one workflow id\n${usage}`, Exit.USAGE);
  return positionals[0];
}

export const print = (json: boolean | undefined, value: unknown, human: () => void) =>
  json ? console.log(JSON.stringify(value, null, 2)) : human();

export async function connect(): Promise<{ client: Client; namespace: string; close: () => Promise<void> }> {
  const settings = temporalSettings();
  const dataConverter = dataConverterFromEnv();
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey, connectTimeout: '5s' });
  } catch (err) {
    throw new CliError(`cannot reach Temporal at ${settings.address}: ${(err as Error).message} (is "byok stack up" running?)`, Exit.ERROR);
  }
  return { client: new Client({ connection, namespace: settings.namespace, dataConverter }), namespace: settings.namespace, close: () => connection.close() };
}

/** Runs `fn` with a handle on `workflowId`, turning "not found" into one clear line. */
export async function withWorkflow<W extends Workflow = Workflow>(
  workflowId: string,
  fn: (handle: WorkflowHandle<W>) => Promise<number>,
): Promise<number> {
  const { client, close } = await connect();
  const handle = client.workflow.getHandle<W>(workflowId);
  try {
    return await fn(handle);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      // Also what a message to a finished workflow gets: tell the two apart.
      const ended = await handle.describe().then((d) => d.status.name, () => undefined);
      throw new CliError(ended ? `workflow "${workflowId}" has already ended (${ended})` : `no workflow with id "${workflowId}"`, Exit.REFUSED);
    }
    throw err;
  } finally {
    await close();
  }
}

/** A failed workflow as every `result`-like command reports it: its stable type and message, exit 6. */
/** The workflow's result; undefined once a failed workflow's failure was printed (exit code FAILED). */
export async function resultOrPrintedFailure<R>(handle: WorkflowHandle, workflowId: string, json: boolean | undefined): Promise<R | undefined> {
  try {
    return (await handle.result()) as R;
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
    const failure = { outcome: 'FAILED', type: cause?.type ?? err.cause?.name, message: err.cause?.message ?? err.message };
    print(json, failure, () => console.error(`${workflowId}: FAILED (${failure.type}): ${failure.message}`));
    return undefined;
  }
}
