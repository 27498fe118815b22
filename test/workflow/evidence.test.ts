// The evidence record, built from real histories of the time-skipping server (fake activities),
// and the offline signature check, which must catch any change to what was signed.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { loadDataConverter } from '@temporalio/common/lib/internal-non-workflow';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { buildEvidence, checkSignatures, type EvidenceRecord } from '../../client/evidence-record';
import { projectRoot } from '../../scripts/paths';
import { approvalQuery, approveSignal, approveUpdate } from '../../workflows/decisions';
import { importKey } from '../../workflows/import-key';
import { KMS_TASK_QUEUE } from '../../workflows/model';
import { approver, keysOf, signStatement, statementFor, type Approver } from '../signing-fixture';
import { fakes } from './fakes';
import { harness, type Harness } from './harness';

let t: Harness;
let env: TestWorkflowEnvironment;
let record: EvidenceRecord;
const alice = approver('alice');
const bob = approver('bob');
const carol = approver('carol');
const keys = keysOf([alice, bob, carol]);

before(async () => {
  t = await harness();
  env = t.env;

  // One signed import: alice approves, 25 h pass (the token is refreshed), carol's unsigned signal
  // is refused, bob approves.
  await t.withWorkers(fakes(), async () => {
    const h = await env.client.workflow.start(importKey, {
      taskQueue: KMS_TASK_QUEUE,
      workflowId: 'evidence-1',
      args: [{ alias: 'payments', wrappingAlgorithm: 'RSAES_OAEP_SHA_1', requester: 'rita', approvers: ['alice', 'bob', 'carol'], requiredApprovals: 2, approverKeys: keys }],
    });
    while (!(await h.query(approvalQuery)).decidable) await new Promise((r) => setTimeout(r, 20));
    const decide = async (by: Approver, comment?: string) => {
      const { subject } = await h.query(approvalQuery);
      const statement = statementFor(by, h.workflowId, subject!, { comment }, await env.currentTimeMs());
      return h.executeUpdate(approveUpdate, { args: [{ approver: by.name, comment, signed: signStatement(by, statement) }] });
    };
    await decide(alice, 'CHG-1');
    await env.sleep('25h');
    await h.signal(approveSignal, { approver: 'carol' });
    await decide(bob);
    assert.equal((await h.result()).outcome, 'IMPORTED');
    record = await buildEvidence(h.workflowId, await h.fetchHistory(), env.client.options.loadedDataConverter);
  });
});
after(async () => {
  await t?.teardown();
});

const copy = (): EvidenceRecord => JSON.parse(JSON.stringify(record));

describe('evidence record', () => {
  it('states who asked, who decided with what signature, and what was imported, from the history alone', () => {
    assert.equal(record.status, 'COMPLETED');
    assert.equal(record.outcome, 'IMPORTED');
    assert.equal(record.requester, 'rita');
    assert.deepEqual(record.approverKeys, keys);
    assert.equal(record.kmsKeyArn, 'arn:aws:kms:us-east-1:111122223333:key/key-1');
    assert.deepEqual(record.hsmKey, { label: 'byok/payments', keyId: '0a0b0c', kcv: 'abcdef' });
    assert.equal(record.subject?.kcv, 'abcdef');
    assert.equal(record.tokenRefreshes, 1);
    assert.ok(record.importedAt && record.importedAt > record.startedAt);
    assert.deepEqual(
      record.decisions.map((d) => [d.approver, d.via, d.counted, d.comment, d.signed?.statement.approver]),
      [
        ['alice', 'update', true, 'CHG-1', 'alice'],
        ['carol', 'signal', false, undefined, undefined],
        ['bob', 'update', true, undefined, 'bob'],
      ],
    );
    assert.equal(record.signatureCheck?.ok, true, record.signatureCheck?.lines.join('\n'));
    assert.equal(record.signatureCheck?.lines.filter((l) => l.startsWith('ok ')).length, 2);
  });

  it('verifies offline with the approvers keys, and fails on any change to a signed statement', () => {
    assert.equal(checkSignatures(copy(), keys).ok, true);
    const cases: Array<[string, (r: EvidenceRecord) => void, RegExp]> = [
      ['a flipped signature bit', (r) => (r.decisions[0].signed!.signature = (r.decisions[0].signed!.signature.startsWith('0') ? '1' : '0') + r.decisions[0].signed!.signature.slice(1)), /APPROVE by alice .*: the signature does not verify/],
      ['an edited comment', (r) => (r.decisions[0].signed!.statement.comment = 'CHG-2'), /the signature does not verify/],
      ['another KCV in the record', (r) => (r.hsmKey!.kcv = '000000'), /names HSM key 0a0b0c \(KCV abcdef\), the import used 0a0b0c \(KCV 000000\)/],
      ['another subject in the record', (r) => (r.subject = { ...r.subject!, kmsKeyArn: 'arn:x' }), /about another subject/],
      ['a statement dropped', (r) => delete r.decisions[2].signed, /APPROVE by bob .*: no signed statement/],
      ['a quorum that is not there', (r) => (r.decisions[2].counted = false), /imported with 1 counted approvals, 2 required/],
    ];
    for (const [name, change, message] of cases) {
      const r = copy();
      change(r);
      const check = checkSignatures(r, keys);
      assert.equal(check.ok, false, name);
      assert.match(check.lines.join('\n'), message, name);
    }
    const check = checkSignatures(copy(), { ...keys, alice: approver('alice').publicKeyHex });
    assert.match(check.lines.join('\n'), /APPROVE by alice .*: the signature does not verify with alice's public key/);
  });

  it('says so when a recorded import decided without signatures', async () => {
    const file = path.join(projectRoot, 'test', 'replay', 'histories', 'import-key-approved.json');
    const history = historyFromJSON(JSON.parse(await readFile(file, 'utf8')));
    const old = await buildEvidence('import-demo', history, loadDataConverter());
    assert.equal(old.outcome, 'IMPORTED');
    assert.equal(old.signedApprovals, false);
    assert.equal(old.decisions.filter((d) => d.counted).length, 2);
    assert.equal(old.signatureCheck?.ok, false);
    assert.match(old.signatureCheck!.lines[0], /signatures were turned off for this request/);
  });
});
