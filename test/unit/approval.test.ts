import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApprovalGate, type Decision } from '../../workflows/approval';

const subject = { kmsKeyArn: 'arn', hsmKeyId: '01', kcv: 'abcdef', wrappingAlgorithm: 'RSAES_OAEP_SHA_1', expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' };
const decision = (approver: string, d: Decision['decision'] = 'APPROVE'): Decision => ({ approver, decision: d, at: '2026-01-01T00:00:00.000Z', subject });
const gate = () => new ApprovalGate({ requester: 'rita', approvers: ['alice', 'bob', 'carol'], required: 2 });

describe('ApprovalGate', () => {
  it('is approved at the quorum, not before', () => {
    const g = gate();
    g.record(decision('alice'));
    assert.equal(g.state, 'PENDING');
    assert.equal(g.remaining, 1);
    g.record(decision('bob'));
    assert.equal(g.state, 'APPROVED');
    assert.equal(g.remaining, 0);
  });

  it('refuses the requester, strangers and a second approval by the same approver', () => {
    const g = gate();
    assert.match(g.refusal('rita', 'APPROVE')!, /requested this import/);
    assert.match(g.refusal('rita', 'REJECT')!, /requested this import/);
    assert.match(g.refusal('mallory', 'APPROVE')!, /not one of the approvers/);
    g.record(decision('alice'));
    assert.match(g.refusal('alice', 'APPROVE')!, /already approved/);
    assert.throws(() => g.record(decision('alice')), /already approved/);
    assert.equal(g.approvals.length, 1);
  });

  it('names the operation the requester asked for when refusing their decision', () => {
    const named = (operation: 'rotate' | 'restore' | 'reimport' | 'revoke') =>
      new ApprovalGate({ requester: 'rita', approvers: ['alice'], required: 1, operation }).refusal('rita', 'APPROVE');
    assert.equal(named('rotate'), '"rita" requested this rotation and cannot decide on it');
    assert.equal(named('restore'), '"rita" requested this restore and cannot decide on it');
    assert.equal(named('reimport'), '"rita" requested this re-import and cannot decide on it');
    assert.equal(named('revoke'), '"rita" requested this revocation and cannot decide on it');
  });

  it('lets any approver veto while pending, even one who approved', () => {
    const g = gate();
    g.record(decision('alice'));
    assert.equal(g.refusal('alice', 'REJECT'), undefined);
    g.record(decision('alice', 'REJECT'));
    assert.equal(g.state, 'REJECTED');
    assert.equal(g.rejection?.approver, 'alice');
  });

  it('takes no decision once decided, and only a pending gate expires', () => {
    const approved = gate();
    approved.record(decision('alice'));
    approved.record(decision('bob'));
    approved.expire();
    assert.equal(approved.state, 'APPROVED');
    assert.match(approved.refusal('carol', 'REJECT')!, /already decided \(APPROVED\)/);

    const expired = gate();
    expired.expire();
    assert.equal(expired.state, 'EXPIRED');
    assert.match(expired.refusal('alice', 'APPROVE')!, /already decided \(EXPIRED\)/);
  });
});
