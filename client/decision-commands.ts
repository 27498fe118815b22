// `byok approve|reject`: an approver's decision on any request that waits for approvers.
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { approvalQuery, approveUpdate, rejectUpdate, type ApprovalView } from '../workflows/decisions';
import { CliError, Exit, oneWorkflowId, parse, print, showUsage, withWorkflow, type Command } from './command';

const APPROVE_USAGE = `usage: byok approve <workflow-id> --as NAME [--comment TEXT] [--json]

Records your approval of what "byok status" shows (for an import: the KMS key, the HSM key and
its key check value). Waits (up to a minute) while a new request is still preparing that; then
refused at once (exit 3) if you are not an approver, are the requester, already approved, or
the request is already decided or ended.`;

const REJECT_USAGE = `usage: byok reject <workflow-id> --as NAME [--comment TEXT] [--json]

Rejects the request; nothing is imported or changed. Any approver may reject while it is pending.`;

async function decideCommand(command: 'approve' | 'reject', args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { as: { type: 'string' }, comment: { type: 'string' }, json: { type: 'boolean' } });
  if (v.help) return showUsage(command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  const workflowId = oneWorkflowId(positionals, command, command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  if (!v.as) throw new CliError(`${command}: --as NAME is required`, Exit.USAGE);
  return withWorkflow(workflowId, async (handle) => {
    await untilDecidable(handle);
    let view: ApprovalView;
    try {
      view = await handle.executeUpdate(command === 'approve' ? approveUpdate : rejectUpdate, {
        args: [{ approver: v.as!, comment: v.comment }],
      });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        throw new CliError(`${command}: refused: ${(err.cause as Error | undefined)?.message ?? err.message}`, Exit.REFUSED);
      }
      throw err;
    }
    print(v.json, view, () => {
      if (command === 'reject') console.log(`${workflowId}: rejected by ${v.as}; nothing will be done`);
      else if (view.approvalsNeeded === 0) console.log(`${workflowId}: approved by ${v.as}; quorum reached, the request proceeds`);
      else console.log(`${workflowId}: approved by ${v.as}; ${view.approvalsNeeded} more approval(s) needed`);
    });
    return Exit.OK;
  });
}

/** Decisions are refused until what they bind to exists; a fresh request takes a moment to get there. */
async function untilDecidable(handle: WorkflowHandle): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { decidable, state } = await handle.query(approvalQuery);
    if (decidable || state !== 'PENDING') return;
    await new Promise((r) => setTimeout(r, 250));
  }
  // Still preparing: the update's refusal says so.
}

export const decisionCommands: Record<string, Command> = {
  approve: { summary: 'approve a request (as one of its approvers)', usage: APPROVE_USAGE, run: (args) => decideCommand('approve', args) },
  reject: { summary: 'reject a request (as one of its approvers)', usage: REJECT_USAGE, run: (args) => decideCommand('reject', args) },
};
