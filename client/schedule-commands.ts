// `byok schedule create|list|describe|pause|unpause|trigger|delete`: rotation on a Temporal
// Schedule, one per alias. The schedule starts rotateKey with overlap policy SKIP, so two
// rotations of one key never run at once; each run's workflow id is the schedule's
// "rotate-<alias name>" plus the time it was due, as Temporal appends it.
import { ScheduleNotFoundError, type ScheduleDescription, type ScheduleSpec } from '@temporalio/client';
import { msToNumber } from '@temporalio/common/lib/time';
import { aliasName } from '../workflows/import-request';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { rotateKey } from '../workflows/rotate-key';
import { planRotation, type RotateKeyInput } from '../workflows/rotate-request';
import { CliError, connect, Exit, parse, print, showUsage, type Command } from './command';
import { ROTATION_OPTIONS, ROTATION_USAGE, rotationSettings } from './rotation-options';

/** One schedule per key, named for its alias. */
export function rotationScheduleId(alias: string): string {
  return `rotate-${aliasName(alias)}`;
}

const USAGE = `usage: byok schedule <create|list|describe|pause|unpause|trigger|delete> ...

  byok schedule create --alias A (--every 90d | --cron "0 3 1 */3 *") --approvers a,b [options]
  byok schedule list [--json]
  byok schedule describe --alias A [--json]
  byok schedule pause|unpause --alias A [--note TEXT]
  byok schedule trigger --alias A      start a rotation now (skipped if one is running)
  byok schedule delete --alias A       running rotations go on; no new ones start

Options of create:
  --every D                   interval, e.g. 90d or 12h (at least 1m)
  --cron EXPR                 cron expression (UTC), instead of --every
  --paused                    create it paused
  --note TEXT                 why (shown by describe)
${ROTATION_USAGE}

Each run is a rotateKey workflow "rotate-<alias name>-<time it was due>" that waits for
approvals (byok approve <workflow-id>). Overlap policy SKIP: a run due while the previous
one still runs (e.g. waits for approvers) is skipped, never started beside it.`;

const MIN_EVERY_MS = 60_000;

async function create(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    ...ROTATION_OPTIONS,
    alias: { type: 'string' },
    every: { type: 'string' },
    cron: { type: 'string' },
    paused: { type: 'boolean' },
    note: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(USAGE);
  const alias = required(v.alias, 'create');
  if (Boolean(v.every) === Boolean(v.cron)) throw new CliError('schedule create: give exactly one of --every and --cron', Exit.USAGE);
  let spec: ScheduleSpec;
  if (v.every) {
    let ms: number;
    try {
      ms = msToNumber(v.every as never);
    } catch {
      throw new CliError(`schedule create: --every: expected a duration such as 90d or 12h, got ${JSON.stringify(v.every)}`, Exit.USAGE);
    }
    if (!(ms >= MIN_EVERY_MS)) throw new CliError(`schedule create: --every must be at least 1m, got ${v.every}`, Exit.USAGE);
    spec = { intervals: [{ every: ms }] };
  } else {
    spec = { cronExpressions: [v.cron!] };
  }
  const input: RotateKeyInput = { ...rotationSettings('schedule create', v), alias };
  const scheduleId = rotationScheduleId(alias);
  try {
    // A run's id is the schedule's plus its time: check the longest, for the HSM label it derives.
    planRotation(input, new Date(), `${scheduleId}-0000-00-00T00:00:00Z`);
  } catch (err) {
    throw new CliError(`schedule create: ${(err as Error).message}`, Exit.USAGE);
  }
  const { client, close } = await connect();
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: rotateKey,
        workflowId: scheduleId,
        taskQueue: WORKFLOW_TASK_QUEUE,
        args: [input],
        staticSummary: `Scheduled rotation of alias/${aliasName(alias)} (${input.strategy ?? 'alias-swap'})`,
      },
      policies: { overlap: 'SKIP', catchupWindow: '1d', pauseOnFailure: false },
      state: { paused: v.paused ?? false, note: v.note },
    });
  } catch (err) {
    if ((err as Error).name === 'ScheduleAlreadyRunning') {
      throw new CliError(`schedule create: ${scheduleId} exists already; delete it first to change it`, Exit.REFUSED);
    }
    throw err;
  } finally {
    await close();
  }
  print(v.json, { scheduleId }, () => console.log(`created schedule ${scheduleId} (${v.every ? `every ${v.every}` : `cron ${v.cron}`})`));
  return Exit.OK;
}

async function list(args: string[]): Promise<number> {
  const { values: v } = parse(args, { json: { type: 'boolean' } });
  if (v.help) return showUsage(USAGE);
  const { client, close } = await connect();
  const rows: Array<{ scheduleId: string; paused: boolean; next?: string; last?: string }> = [];
  try {
    for await (const s of client.schedule.list()) {
      if (s.action?.type !== 'startWorkflow' || s.action.workflowType !== 'rotateKey') continue;
      rows.push({
        scheduleId: s.scheduleId,
        paused: s.state.paused,
        next: s.info.nextActionTimes[0]?.toISOString(),
        last: s.info.recentActions.at(-1)?.action.workflow.workflowId,
      });
    }
  } finally {
    await close();
  }
  print(v.json, rows, () => {
    if (rows.length === 0) console.log('no rotation schedules');
    for (const r of rows) console.log(`${r.scheduleId.padEnd(32)} ${r.paused ? 'paused ' : 'active '} next ${r.next ?? '-'}  last ${r.last ?? '-'}`);
  });
  return Exit.OK;
}

/** Runs `fn` on the alias's schedule, turning "not found" into one clear line. */
async function onSchedule(command: string, args: string[], extra: { note?: boolean; json?: boolean }, fn: (h: ReturnType<Awaited<ReturnType<typeof connect>>['client']['schedule']['getHandle']>, v: { note?: string; json?: boolean }) => Promise<void>): Promise<number> {
  const { values: v } = parse(args, {
    alias: { type: 'string' },
    ...(extra.note ? { note: { type: 'string' as const } } : {}),
    ...(extra.json ? { json: { type: 'boolean' as const } } : {}),
  });
  if (v.help) return showUsage(USAGE);
  const scheduleId = rotationScheduleId(required(v.alias as string | undefined, command));
  const { client, close } = await connect();
  try {
    await fn(client.schedule.getHandle(scheduleId), v as { note?: string; json?: boolean });
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new CliError(`schedule ${command}: no schedule ${scheduleId}`, Exit.REFUSED);
    throw err;
  } finally {
    await close();
  }
  return Exit.OK;
}

function describeView(d: ScheduleDescription) {
  const action = d.action.type === 'startWorkflow' ? d.action : undefined;
  return {
    scheduleId: d.scheduleId,
    paused: d.state.paused,
    note: d.state.note,
    intervals: d.spec.intervals?.map((i) => `${i.every}ms`),
    calendars: d.spec.calendars?.length,
    overlap: d.policies.overlap,
    request: action?.args?.[0] as RotateKeyInput | undefined,
    nextActionTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
    recent: d.info.recentActions.map((a) => ({ scheduledAt: a.scheduledAt.toISOString(), workflowId: a.action.workflow.workflowId })),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
  };
}

const sub: Record<string, (args: string[]) => Promise<number>> = {
  create,
  list,
  describe: (args) =>
    onSchedule('describe', args, { json: true }, async (h, v) => {
      const d = describeView(await h.describe());
      print(v.json, d, () => {
        console.log(`${d.scheduleId}  ${d.paused ? 'PAUSED' : 'ACTIVE'}${d.note ? ` (${d.note})` : ''}`);
        console.log(`  when        ${d.intervals ? `every ${d.intervals.join(', ')}` : `cron (${d.calendars} calendar spec)`}, overlap ${d.overlap}`);
        console.log(`  rotates     ${d.request?.alias} (${d.request?.strategy ?? 'alias-swap'}), ${d.request?.requiredApprovals} of ${d.request?.approvers.join(', ')}`);
        console.log(`  next        ${d.nextActionTimes[0] ?? '-'}`);
        console.log(`  running     ${d.running.join(', ') || '-'}`);
        for (const r of d.recent) console.log(`  ran         ${r.workflowId} (due ${r.scheduledAt})`);
      });
    }),
  pause: (args) => onSchedule('pause', args, { note: true }, async (h, v) => h.pause(v.note ?? 'paused with byok')),
  unpause: (args) => onSchedule('unpause', args, { note: true }, async (h, v) => h.unpause(v.note ?? 'unpaused with byok')),
  trigger: (args) => onSchedule('trigger', args, {}, async (h) => h.trigger('SKIP')),
  delete: (args) => onSchedule('delete', args, {}, async (h) => h.delete()),
};

function required(alias: string | undefined, command: string): string {
  if (!alias) throw new CliError(`schedule ${command}: --alias is required`, Exit.USAGE);
  return alias;
}

async function scheduleCommand(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) return showUsage(USAGE, Exit.USAGE);
  if (name === '-h' || name === '--help') return showUsage(USAGE);
  const run = Object.hasOwn(sub, name) ? sub[name] : undefined;
  if (!run) throw new CliError(`schedule: unknown subcommand "${name}"; expected one of ${Object.keys(sub).join(', ')}`, Exit.USAGE);
  return run(rest);
}

export const scheduleCommands: Record<string, Command> = {
  schedule: { summary: 'rotate a key on a Temporal Schedule (create, list, describe, ...)', usage: USAGE, run: scheduleCommand },
};
