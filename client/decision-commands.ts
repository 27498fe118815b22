// `byok approve|reject`: an approver's decision on any request that waits for approvers.
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { approvalQuery, approveUpdate, rejectUpdate, type ApprovalView, type DecisionInput } from '../workflows/decisions';
import { DEFAULT_STATEMENT_VALIDITY_MS } from '../workflows/signed-approval';
import { keysDir, privateKeyPath, signStatement } from './approver-keys';
import { CliError, Exit, oneWorkflowId, parse, print, showUsage, withWorkflow, type Command } from './command';

const KEY_OPTION = `Your decision is signed with your Ed25519 key (--key FILE, default $BYOK_KEYS_DIR/NAME.key or
~/.byok/keys/NAME.key, made by "byok keygen"): a statement of the workflow id, exactly what is
decided on, your decision and the time, valid for 15 minutes.`;

const APPROVE_USAGE = `usage: byok approve <workflow-id> --as NAME [--key FILE] [--comment TEXT] [--json]

Records your approval of what "byok status" shows (for an import: the KMS key, the HSM key and
its key check value). Waits (up to a minute) while a new request is still preparing that; then
refused at once (exit 3) if you are not an approver, are the requester, already approved, the
signature does not verify, or the request is already decided or ended.
${KEY_OPTION}`;

const REJECT_USAGE = `usage: byok reject <workflow-id> --as NAME [--key FILE] [--comment TEXT] [--json]

Rejects the request; nothing is imported or changed. Any approver may reject while it is pending.
${KEY_OPTION}`;

async function decideCommand(command: 'approve' | 'reject', args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    as: { type: 'string' },
    key: { type: 'string' },
    comment: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (v.help) return showUsage(command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  const workflowId = oneWorkflowId(positionals, command, command === 'approve' ? APPROVE_USAGE : REJECT_USAGE);
  if (!v.as) throw new CliError(`${command}: --as NAME is required`, Exit.USAGE);
  return withWorkflow(workflowId, async (handle) => {
    const before = await untilDecidable(handle);
    const decision: DecisionInput = { approver: v.as!, comment: v.comment };
    // Signed over the subject the workflow shows: if that differs from what it decides on, it refuses.
    // Someone who is no approver has no key to sign with; the workflow's refusal says why.
    if (before.signedDecisions && before.subject && before.approvers.includes(v.as!)) {
      const now = Date.now();
      decision.signed = signStatement(v.key ?? privateKeyPath(keysDir(), v.as!), {
        workflowId,
        subject: before.subject,
        decision: command === 'approve' ? 'APPROVE' : 'REJECT',
        approver: v.as!,
        comment: v.comment,
        signedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + DEFAULT_STATEMENT_VALIDITY_MS).toISOString(),
      });
    }
    let view: ApprovalView;
    try {
      view = await handle.executeUpdate(command === 'approve' ? approveUpdate : rejectUpdate, { args: [decision] });
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
async function untilDecidable(handle: WorkflowHandle): Promise<ApprovalView> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const view = await handle.query(approvalQuery);
    // Still preparing at the deadline: the update's refusal says so.
    if (view.decidable || view.state !== 'PENDING' || Date.now() >= deadline) return view;
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const decisionCommands: Record<string, Command> = {
  approve: { summary: 'approve a request (as one of its approvers)', usage: APPROVE_USAGE, run: (args) => decideCommand('approve', args) },
  reject: { summary: 'reject a request (as one of its approvers)', usage: REJECT_USAGE, run: (args) => decideCommand('reject', args) },
};
