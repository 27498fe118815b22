// The signed-statement rules, signing with node:crypto as `byok approve` does and verifying with
// the workflow's pure-JS verifier.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApprovalSubject } from '../../workflows/approval';
import { statementRefusal, type ApprovalStatement, type Expectation } from '../../workflows/signed-approval';
import { approver, signStatement, statementFor } from '../signing-fixture';

const subject: ApprovalSubject = {
  kmsKeyArn: 'arn:aws:kms:eu-central-1:111122223333:key/k-1',
  hsmKeyId: '0a0b0c',
  kcv: 'abcdef',
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  expirationModel: 'KEY_MATERIAL_EXPIRES',
  validTo: '2027-01-01T00:00:00.000Z',
};
const now = Date.parse('2026-12-03T12:00:00.000Z');
const expected: Expectation = { workflowId: 'import-payments', subject, decision: 'APPROVE', approver: 'alice', now };
const alice = approver('alice');
const mallory = approver('mallory');

/** Signed a minute before workflow time, valid 15 minutes. */
const statement = (over: Partial<ApprovalStatement> = {}) => statementFor(alice, 'import-payments', subject, over, now - 60_000);
const signed = (st: ApprovalStatement, by = alice) => signStatement(alice, st, by.privateKey);

describe('statementRefusal', () => {
  it('accepts a statement signed by the approver for this workflow and subject', () => {
    assert.equal(statementRefusal(signed(statement()), expected, alice.publicKeyHex), undefined);
    const withComment = signed(statement({ comment: 'CHG-1', decision: 'REJECT' }));
    assert.equal(statementRefusal(withComment, { ...expected, decision: 'REJECT', comment: 'CHG-1' }, alice.publicKeyHex), undefined);
  });

  it('signs the subject as a whole: a field it gains is covered too', () => {
    const revoke = { ...subject, operation: 'revoke' } as ApprovalSubject;
    assert.equal(statementRefusal(signed(statement({ subject: revoke })), { ...expected, subject: revoke }, alice.publicKeyHex), undefined);
    assert.match(statementRefusal(signed(statement()), { ...expected, subject: revoke }, alice.publicKeyHex)!, /operation is "revoke" here but undefined in the statement/);
  });

  const refused: Array<[string, unknown, RegExp, Partial<Expectation>?]> = [
    ['no statement at all', undefined, /this request requires signed decisions: no signed statement/],
    ['a signature without a statement', { signature: 'ab'.repeat(64) }, /statement is missing/],
    ['a malformed signature', { statement: statement(), signature: 'xyz' }, /signature must be an Ed25519 signature, 128 lower-case hex/],
    ['a forged signature (another key)', signed(statement(), mallory), /signature does not verify with the public key configured for "alice"/],
    ['a statement changed after signing', { ...signed(statement()), statement: statement({ expiresAt: new Date(now + 15 * 60_000).toISOString() }) }, /signature does not verify/],
    ['a statement by another approver', signed(statement({ approver: 'bob' })), /signed statement is by "bob", not "alice"/],
    ['a rejection sent as an approval', signed(statement({ decision: 'REJECT' })), /signed statement decides "REJECT", but this is APPROVE/],
    ['a comment that was not signed', signed(statement()), /different comment/, { comment: 'added later' }],
    ['a statement replayed from another workflow', signed(statement({ workflowId: 'import-other' })), /for workflow "import-other", not "import-payments" \(replayed from another request\?\)/],
    ['a statement about another key', signed(statement({ subject: { ...subject, kcv: '123456' } })), /about something else: kcv is "abcdef" here but "123456" in the statement/],
    ['a statement about another KMS key', signed(statement({ subject: { ...subject, kmsKeyArn: 'arn:other' } })), /kmsKeyArn is/],
    ['an expired statement', signed(statement({ signedAt: new Date(now - 20 * 60_000).toISOString(), expiresAt: new Date(now - 1).toISOString() })), /expired at .*workflow time is 2026-12-03T12:00:00.000Z\); sign again/],
    ['a statement signed in the future', signed(statement({ signedAt: new Date(now + 10 * 60_000).toISOString(), expiresAt: new Date(now + 20 * 60_000).toISOString() })), /not valid yet: signed at/],
    ['a statement valid for a week', signed(statement({ expiresAt: new Date(now + 7 * 86_400_000).toISOString() })), /valid for more than 24 hours/],
    ['times that are not times', signed(statement({ signedAt: 'yesterday' })), /signedAt and expiresAt must be ISO-8601 times/],
  ];
  for (const [name, input, message, over] of refused) {
    it(`refuses ${name}`, () => {
      assert.match(statementRefusal(input, { ...expected, ...over }, alice.publicKeyHex) ?? 'accepted', message);
    });
  }

  it('allows a signer clock a little ahead of workflow time', () => {
    const ahead = statement({ signedAt: new Date(now + 60_000).toISOString() });
    assert.equal(statementRefusal(signed(ahead), expected, alice.publicKeyHex), undefined);
  });
});
