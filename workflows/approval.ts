// The approval gate: who may decide, the quorum, and what each decision was bound to. Pure state,
// no Temporal APIs, so every rule is unit-testable and the workflow only feeds it messages.
import type { SignedStatement } from './signed-approval';

export interface ApprovalPolicy {
  requester: string;
  approvers: string[];
  required: number;
  /** What is requested, as refusals name it; absent means an import. */
  operation?: ApprovalOperation;
}

export type ApprovalOperation = 'import' | 'rotate' | 'restore' | 'reimport' | 'revoke';

/** How a refusal names each request. */
const REQUEST_NOUN: Record<ApprovalOperation, string> = {
  import: 'import',
  rotate: 'rotation',
  restore: 'restore',
  reimport: 're-import',
  revoke: 'revocation',
};

/** What an approver approves: the exact key pair and the import parameters that are not secret. */
export interface ApprovalSubject {
  /** What is done with the keys; absent means an import ("reimport": the same material with a new ValidTo). */
  operation?: ApprovalOperation;
  /** Rotation: 'native' (new material in the same KMS key) or 'alias-swap' (a new KMS key). */
  strategy?: string;
  /** Rotation: the key the alias points to now (the same as kmsKeyArn for native rotation). */
  previousKmsKeyArn?: string;
  /** The KMS key that receives the material. */
  kmsKeyArn: string;
  hsmKeyId: string;
  kcv: string;
  /** Absent for operations that do not wrap (revoke). */
  wrappingAlgorithm?: string;
  /** Absent for operations that do not wrap (revoke). */
  expirationModel?: string;
  validTo?: string;
  /** Revoke: the key is also disabled. */
  disableKey?: boolean;
}

export interface Decision {
  approver: string;
  decision: 'APPROVE' | 'REJECT';
  comment?: string;
  /** ISO-8601, workflow time. */
  at: string;
  subject: ApprovalSubject;
  /** The approver's signed statement, when the request requires signatures (./signed-approval). */
  signed?: SignedStatement;
}

export type GateState = 'PENDING' | 'APPROVED' | 'REJECTED' | 'EXPIRED';

/** Who decides and how far they got: what every status query and the approval view show alike. */
export interface GateView {
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  approvalsNeeded: number;
  approvals: Decision[];
  rejection?: Decision;
}

export class ApprovalGate {
  private readonly decisions: Decision[] = [];
  private expired = false;

  constructor(readonly policy: ApprovalPolicy) {}

  get state(): GateState {
    if (this.decisions.some((d) => d.decision === 'REJECT')) return 'REJECTED';
    if (this.approvals.length >= this.policy.required) return 'APPROVED';
    return this.expired ? 'EXPIRED' : 'PENDING';
  }

  get approvals(): Decision[] {
    return this.decisions.filter((d) => d.decision === 'APPROVE');
  }

  get rejection(): Decision | undefined {
    return this.decisions.find((d) => d.decision === 'REJECT');
  }

  get remaining(): number {
    return Math.max(0, this.policy.required - this.approvals.length);
  }

  view(): GateView {
    const { requester, approvers, required } = this.policy;
    return { requester, approvers, requiredApprovals: required, approvalsNeeded: this.remaining, approvals: this.approvals, rejection: this.rejection };
  }

  /** Why `approver` may not record `decision` now, or undefined when it may. */
  refusal(approver: string, decision: Decision['decision']): string | undefined {
    if (this.state !== 'PENDING') return `this request is already decided (${this.state})`;
    if (approver === this.policy.requester) return `"${approver}" requested this ${REQUEST_NOUN[this.policy.operation ?? 'import']} and cannot decide on it`;
    if (!this.policy.approvers.includes(approver)) {
      return `"${approver}" is not one of the approvers (${this.policy.approvers.join(', ')})`;
    }
    // An approver who approved may still veto; approving twice counts once, so it is refused.
    const earlier = this.decisions.find((d) => d.approver === approver);
    if (decision === 'APPROVE' && earlier) return `"${approver}" already approved at ${earlier.at}`;
    return undefined;
  }

  record(decision: Decision): void {
    const refusal = this.refusal(decision.approver, decision.decision);
    if (refusal) throw new Error(refusal);
    this.decisions.push(decision);
  }

  /** The deadline passed; only a still-pending gate expires. */
  expire(): void {
    if (this.state === 'PENDING') this.expired = true;
  }
}
