// Many rotations at once: a parent workflow runs one rotateKey child per alias, at most
// `concurrency` at a time, and reports each key's outcome. A failed child is one outcome among
// others, never the parent's failure.
import { ApplicationFailure, ChildWorkflowFailure, defineQuery, executeChild, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import type { KmsActivities } from '../activities/kms';
import { aliasName, invalidInput } from './import-request';
import { KMS_TASK_QUEUE } from './model';
import { rotateKey, type RotateKeyResult } from './rotate-key';
import { planRotation, type RotateKeyInput } from './rotate-request';

export interface RotateKeysInput {
  /** The aliases to rotate; or */
  aliases?: string[];
  /** every alias whose key is due (see the dueAliases activity): material current for longer than olderThan. */
  allDue?: { olderThan: Duration; prefix?: string };
  /** Rotations running at once; default 5. */
  concurrency?: number;
  /** Settings shared by every rotation (approvers, strategy, grace period, ...). */
  rotation: Omit<RotateKeyInput, 'alias'>;
}

export interface KeyOutcome {
  alias: string;
  workflowId: string;
  outcome: RotateKeyResult['outcome'] | 'FAILED';
  newKeyArn?: string;
  /** FAILED: the failure's stable type and message. */
  errorType?: string;
  error?: string;
}

export interface RotateKeysProgress {
  total: number;
  running: string[];
  finished: KeyOutcome[];
}

export interface RotateKeysResult {
  outcomes: KeyOutcome[];
  rotated: number;
  failed: number;
}

export const rotateKeysProgressQuery = defineQuery<RotateKeysProgress>('rotateKeysProgress');

const MAX_KEYS = 500;
const MAX_CONCURRENCY = 50;

const { dueAliases } = proxyActivities<KmsActivities>({
  taskQueue: KMS_TASK_QUEUE,
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 10 },
});

/** The child's id: the parent's id and the alias, so each key's rotation in a run is named once. */
export function childRotationId(parentId: string, alias: string): string {
  return `${parentId}.${aliasName(alias)}`;
}

export async function rotateKeys(input: RotateKeysInput): Promise<RotateKeysResult> {
  const { workflowId } = workflowInfo();
  const concurrency = input.concurrency ?? 5;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw invalidInput('concurrency', `expected a whole number from 1 to ${MAX_CONCURRENCY}, got ${JSON.stringify(input.concurrency)}`);
  }
  if (Boolean(input.aliases) === Boolean(input.allDue)) throw invalidInput('aliases', 'give either aliases or allDue, not both or neither');

  let aliases: string[];
  if (input.aliases) {
    aliases = input.aliases.map((a) => `alias/${aliasName(a)}`);
  } else {
    let olderThanMs: number;
    try {
      olderThanMs = msToNumber(input.allDue!.olderThan);
    } catch {
      throw invalidInput('allDue.olderThan', `expected a duration such as "90d", got ${JSON.stringify(input.allDue!.olderThan)}`);
    }
    aliases = (await dueAliases({ olderThanMs, prefix: input.allDue!.prefix })).map((d) => d.alias);
  }
  const duplicate = aliases.find((a, i) => aliases.indexOf(a) !== i);
  if (duplicate) throw invalidInput('aliases', `${duplicate} is listed twice`);
  if (aliases.length > MAX_KEYS) throw invalidInput('aliases', `at most ${MAX_KEYS} keys per run, got ${aliases.length}; split them`);
  // Every child's input is checked before the first starts: bad input changes nothing.
  const now = new Date();
  for (const alias of aliases) planRotation({ ...input.rotation, alias }, now, childRotationId(workflowId, alias));

  const queue = [...aliases];
  const running = new Set<string>();
  const finished: KeyOutcome[] = [];
  setHandler(rotateKeysProgressQuery, () => ({ total: aliases.length, running: [...running], finished }));

  const rotateOne = async (alias: string): Promise<KeyOutcome> => {
    const childId = childRotationId(workflowId, alias);
    try {
      const r = await executeChild(rotateKey, {
        workflowId: childId,
        args: [{ ...input.rotation, alias }],
        staticSummary: `Rotate ${alias} (${input.rotation.strategy ?? 'alias-swap'})`,
      });
      return { alias, workflowId: childId, outcome: r.outcome, newKeyArn: r.newKey.keyArn };
    } catch (err) {
      const cause = err instanceof ChildWorkflowFailure ? err.cause : err;
      return {
        alias,
        workflowId: childId,
        outcome: 'FAILED',
        errorType: cause instanceof ApplicationFailure ? cause.type ?? undefined : (cause as Error)?.name,
        error: cause instanceof Error ? cause.message : String(cause),
      };
    }
  };
  // `concurrency` lanes, each taking the next alias when its rotation ends.
  const lane = async () => {
    for (let alias = queue.shift(); alias !== undefined; alias = queue.shift()) {
      running.add(alias);
      finished.push(await rotateOne(alias));
      running.delete(alias);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, aliases.length) }, lane));

  const outcomes = aliases.map((a) => finished.find((o) => o.alias === a)!);
  return {
    outcomes,
    rotated: outcomes.filter((o) => o.outcome === 'ROTATED').length,
    failed: outcomes.filter((o) => o.outcome === 'FAILED').length,
  };
}
