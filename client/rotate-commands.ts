// `byok rotate` (one key, a list, or every due key) and `byok rotation` (where a rotation stands).
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { aliasName } from '../workflows/import-request';
import { WORKFLOW_TASK_QUEUE } from '../workflows/model';
import { rotateKey, rotationStatusQuery, type RotateKeyResult } from '../workflows/rotate-key';
import { childRotationId, rotateKeys, rotateKeysProgressQuery, type RotateKeysInput, type RotateKeysResult } from '../workflows/rotate-keys';
import { planRotation } from '../workflows/rotate-request';
import { CliError, connect, Exit, oneWorkflowId, parse, print, resultOrPrintedFailure, showUsage, withWorkflow, type Command } from './command';
import { workflowUrl } from './connection';
import { ROTATION_OPTIONS, ROTATION_USAGE, rotationSettings } from './rotation-options';
import { rotationScheduleId } from './schedule-commands';

const ROTATE_USAGE = `usage: byok rotate (--alias A | --aliases a,b,c | --all-due --older-than D) --approvers a,b [options]

Rotates keys to new HSM material; each rotation waits for approvals like an import
(byok approve <workflow-id>). With several aliases or --all-due, one parent workflow runs
the rotations, --concurrency at a time, and reports each key's outcome.

  --alias A                   one key: workflow id "rotate-<alias name>"
  --aliases a,b,c             several keys: children "<parent id>.<alias name>"
  --all-due                   every alias naming an Enabled EXTERNAL key whose current material
                              is older than --older-than (last native rotation, else the key's
                              creation date), optionally only names starting with --prefix
  --older-than D              e.g. 90d
  --prefix P                  alias name prefix for --all-due
  --concurrency N             rotations at once (default 5)
${ROTATION_USAGE}
  --workflow-id ID            override the workflow id
  --json                      print JSON`;

const ROTATION_STATUS_USAGE = `usage: byok rotation <workflow-id> [--wait] [--json]

Shows where a rotation (or a run of several) stands; --wait waits for it to end.
Exit 0 rotated (all keys), 4 rejected, 5 approval expired, 6 failed (any key).`;

async function rotateCommand(args: string[]): Promise<number> {
  const { values: v } = parse(args, {
    ...ROTATION_OPTIONS,
    alias: { type: 'string' },
    aliases: { type: 'string' },
    'all-due': { type: 'boolean' },
    'older-than': { type: 'string' },
    prefix: { type: 'string' },
    concurrency: { type: 'string' },
    'workflow-id': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(ROTATE_USAGE);
  const targets = [v.alias, v.aliases, v['all-due']].filter((x) => x !== undefined).length;
  if (targets !== 1) throw new CliError('rotate: give exactly one of --alias, --aliases, --all-due', Exit.USAGE);
  if (v['all-due'] && !v['older-than']) throw new CliError('rotate: --all-due needs --older-than, e.g. --older-than 90d', Exit.USAGE);
  const settings = rotationSettings('rotate', v);
  const now = new Date();
  // Everything is checked before connecting: bad input changes nothing.
  const single = v.alias ? { ...settings, alias: v.alias } : undefined;
  const concurrency = v.concurrency === undefined ? undefined : Number(v.concurrency);
  const many: RotateKeysInput | undefined = single
    ? undefined
    : v.aliases
      ? { aliases: v.aliases.split(',').map((a) => a.trim()), concurrency, rotation: settings }
      : { allDue: { olderThan: v['older-than'] as never, prefix: v.prefix }, concurrency, rotation: settings };
  const workflowId = v['workflow-id'] ?? (single ? `rotate-${aliasName(single.alias)}` : `rotate-many-${now.toISOString().replace(/[:.]/g, '-')}`);
  if (single) checked('rotate', () => planRotation(single, now, workflowId));
  for (const alias of many?.aliases ?? []) checked('rotate', () => planRotation({ ...settings, alias }, now, childRotationId(workflowId, alias)));

  const { client, namespace, close } = await connect();
  try {
    let runId: string;
    if (single) {
      // The key's schedule never overlaps itself; a rotation by hand must not overlap it either.
      const running = await client.schedule
        .getHandle(rotationScheduleId(single.alias))
        .describe()
        .then((d) => d.info.runningActions, () => []);
      if (running.length > 0) {
        throw new CliError(`rotate: the schedule of ${single.alias} is running ${running[0].workflow.workflowId}; wait for it`, Exit.REFUSED);
      }
      ({ firstExecutionRunId: runId } = await start(() =>
        client.workflow.start(rotateKey, {
          taskQueue: WORKFLOW_TASK_QUEUE,
          workflowId,
          args: [single],
          workflowIdConflictPolicy: 'FAIL',
          staticSummary: `Rotate alias/${aliasName(single.alias)} (${settings.strategy ?? 'alias-swap'})`,
        }), workflowId));
    } else {
      const input = many!;
      ({ firstExecutionRunId: runId } = await start(() =>
        client.workflow.start(rotateKeys, {
          taskQueue: WORKFLOW_TASK_QUEUE,
          workflowId,
          args: [input],
          workflowIdConflictPolicy: 'FAIL',
          staticSummary: input.aliases ? `Rotate ${input.aliases.length} keys` : `Rotate every key older than ${v['older-than']}`,
        }), workflowId));
    }
    const url = workflowUrl(namespace, workflowId);
    print(v.json, { workflowId, runId, url }, () => {
      console.log(`started ${workflowId}`);
      console.log(`  approve each rotation: byok approve <workflow-id> --as NAME; follow: byok rotation ${workflowId}`);
      console.log(`  ${url}`);
    });
    return Exit.OK;
  } finally {
    await close();
  }
}

function checked(command: string, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`, Exit.USAGE);
  }
}

async function start<T>(fn: () => Promise<T>, workflowId: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`rotate: a rotation with workflow id "${workflowId}" is already running`, Exit.REFUSED);
    }
    throw err;
  }
}

async function rotationCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { wait: { type: 'boolean' }, json: { type: 'boolean' } });
  if (v.help) return showUsage(ROTATION_STATUS_USAGE);
  const workflowId = oneWorkflowId(positionals, 'rotation', ROTATION_STATUS_USAGE);
  return withWorkflow(workflowId, async (handle) => {
    const { type } = await handle.describe();
    const many = type === 'rotateKeys';
    if (!v.wait) {
      const status = many ? await handle.query(rotateKeysProgressQuery) : await handle.query(rotationStatusQuery);
      print(v.json, status, () => console.log(JSON.stringify(status, null, 2)));
      return Exit.OK;
    }
    const result = await resultOrPrintedFailure<RotateKeyResult | RotateKeysResult>(handle, workflowId, v.json);
    if (!result) return Exit.FAILED;
    if ('outcomes' in result) {
      const r = result;
      print(v.json, r, () => {
        console.log(`${workflowId}: ${r.rotated} rotated, ${r.failed} failed, ${r.outcomes.length} keys`);
        for (const o of r.outcomes) console.log(`  ${o.alias.padEnd(30)} ${o.outcome}${o.error ? ` (${o.errorType}): ${o.error}` : ''}`);
      });
      return r.outcomes.every((o) => o.outcome === 'ROTATED') ? Exit.OK : Exit.FAILED;
    }
    const r = result;
    print(v.json, r, () => {
      console.log(`${workflowId}  ${r.outcome} (${r.strategy}${r.fellBackFromNative ? ', fell back from native' : ''})`);
      console.log(`  alias       ${r.alias}`);
      console.log(`  previous    ${r.previousKey.keyArn}${r.previousKeyState ? ` (${r.previousKeyState})` : ''}`);
      console.log(`  now         ${r.newKey.keyArn}${r.keyMaterialId ? ` material ${r.keyMaterialId}` : ''}`);
      console.log(`  HSM key     ${r.hsmKey.label} (id ${r.hsmKey.keyId}, KCV ${r.hsmKey.kcv})`);
    });
    return r.outcome === 'ROTATED' ? Exit.OK : r.outcome === 'REJECTED' ? Exit.REJECTED : Exit.APPROVAL_EXPIRED;
  });
}

export const rotateCommands: Record<string, Command> = {
  rotate: { summary: 'rotate keys to new HSM material (one, several, or all due)', usage: ROTATE_USAGE, run: rotateCommand },
  rotation: { summary: 'show or wait for a rotation', usage: ROTATION_STATUS_USAGE, run: rotationCommand },
};
