// Approve/reject messages and the wait for a quorum, shared by every workflow that needs approvers
// (import, rotation, revoke). The rules live in ApprovalGate; this module feeds it messages.
import { ApplicationFailure, condition, defineQuery, defineSignal, defineUpdate, log, setHandler, workflowInfo } from '@temporalio/workflow';
import { ApprovalGate, type ApprovalSubject, type Decision, type GateState, type GateView } from './approval';
import { ErrorType } from './errors';
import { statementRefusal, type SignedStatement } from './signed-approval';

export interface DecisionInput {
  approver: string;
  comment?: string;
  /** The approver's signed statement of this decision; required unless signatures are off. */
  signed?: SignedStatement;
}

/** Where a request stands for its approvers: what `byok approve` needs, whatever the workflow. */
export interface ApprovalView extends GateView {
  state: GateState;
  /** Decisions are accepted now (the subject is known and the request is pending). */
  decidable: boolean;
  deadline: string;
  subject?: ApprovalSubject;
  /** Decisions must carry a signed statement (see ./signed-approval). */
  signedDecisions: boolean;
}

export const approveSignal = defineSignal<[DecisionInput]>('approve');
export const rejectSignal = defineSignal<[DecisionInput]>('reject');
/** Same decisions as the signals, but the caller learns at once whether it counted. */
export const approveUpdate = defineUpdate<ApprovalView, [DecisionInput]>('approve');
export const rejectUpdate = defineUpdate<ApprovalView, [DecisionInput]>('reject');
export const approvalQuery = defineQuery<ApprovalView>('approval');

const MAX_APPROVER = 64;
const MAX_COMMENT = 1000;

export interface DecisionsOptions {
  gate: ApprovalGate;
  deadline: Date;
  /** What a decision is bound to; undefined while it is still being prepared. */
  subject: () => ApprovalSubject | undefined;
  /** Why nothing can be decided yet, e.g. the step the workflow is in. */
  notReady: () => string;
  /** Called after each decision that counted, e.g. to publish the approvals still needed. */
  onDecided?: () => void;
  /**
   * Each approver's Ed25519 public key (hex): decisions must be signed with it. null turns
   * signatures off: an explicit choice of the request, logged here and shown by the caller.
   */
  approverKeys: Readonly<Record<string, string>> | null;
}

/** Installs the approve/reject signals and updates and the approval query. */
export function acceptDecisions({ gate, deadline, subject, notReady, onDecided, approverKeys }: DecisionsOptions): void {
  const { workflowId } = workflowInfo();
  if (!approverKeys) log.warn('approval signatures are off for this request: decisions are not signed', { workflowId });
  const view = (): ApprovalView => ({
    state: gate.state,
    decidable: gate.state === 'PENDING' && subject() !== undefined,
    ...gate.view(),
    deadline: deadline.toISOString(),
    subject: subject(),
    signedDecisions: approverKeys !== null,
  });

  // Signals carry whatever the sender sent: check the shape before the gate's rules.
  const refusalOf = (decision: Decision['decision'], d: DecisionInput | undefined): string | undefined => {
    if (typeof d?.approver !== 'string' || d.approver.length > MAX_APPROVER) {
      return `approver must be an id of at most ${MAX_APPROVER} characters`;
    }
    if (d.comment !== undefined && (typeof d.comment !== 'string' || d.comment.length > MAX_COMMENT)) {
      return `comment must be a string of at most ${MAX_COMMENT} characters`;
    }
    // A decision binds to what it is about, so that must be known first.
    const about = subject();
    if (!about) return `nothing to decide yet: ${notReady()}`;
    const refusal = gate.refusal(d.approver, decision);
    if (refusal || !approverKeys) return refusal;
    const expected = { workflowId, subject: about, decision, approver: d.approver, comment: d.comment, now: Date.now() };
    return statementRefusal(d.signed, expected, approverKeys[d.approver]);
  };
  // Synchronous on purpose: recording before the next message's validator runs means two
  // decisions racing in one workflow task cannot both be accepted.
  const decide = (decision: Decision['decision'], d: DecisionInput | undefined): ApprovalView => {
    const refusal = refusalOf(decision, d);
    if (refusal) throw ApplicationFailure.nonRetryable(refusal, ErrorType.DecisionRefused);
    const signed = approverKeys ? d!.signed : undefined;
    gate.record({ approver: d!.approver, decision, comment: d!.comment, at: new Date().toISOString(), subject: subject()!, signed });
    onDecided?.();
    return view();
  };
  const signalled = (decision: Decision['decision']) => (d: DecisionInput) => {
    try {
      decide(decision, d);
    } catch (err) {
      // A signal cannot answer its sender; the refusal is logged (the update reports it).
      log.warn('decision refused', { decision, refusal: (err as Error).message });
    }
  };
  const validate = (decision: Decision['decision']) => (d: DecisionInput | undefined) => {
    const refusal = refusalOf(decision, d);
    if (refusal) throw new Error(refusal);
  };
  setHandler(approveSignal, signalled('APPROVE'));
  setHandler(rejectSignal, signalled('REJECT'));
  setHandler(approveUpdate, (d) => decide('APPROVE', d), { validator: validate('APPROVE') });
  setHandler(rejectUpdate, (d) => decide('REJECT', d), { validator: validate('REJECT') });
  setHandler(approvalQuery, view);
}

/** Waits until the gate is decided or the deadline passes (then it expires); returns its state. */
export async function awaitDecision(gate: ApprovalGate, deadline: Date): Promise<Exclude<GateState, 'PENDING'>> {
  const remainingMs = deadline.getTime() - Date.now();
  const decided = remainingMs > 0 && (await condition(() => gate.state !== 'PENDING', remainingMs, { summary: 'approval deadline' }));
  if (!decided) gate.expire();
  return gate.state as Exclude<GateState, 'PENDING'>;
}
