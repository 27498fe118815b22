// End to end on the real stack (Temporal dev server, local-kms, SoftHSM2, the worker process),
// driven through the `byok` CLI as a key custodian would. The payload codec is off here, so the
// secret scan can prove it reads payload contents; secrets-at-rest.test.ts runs with it on.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { Client, Connection } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import '../quiet-runtime';
import { runByok, type CliRun } from '../byok-cli';
import { findSecrets, haystacksOf, type Haystack } from '../secret-scan';
import { createKnownKey } from './known-key';
import { nodeKcv } from '../hsm/softhsm-fixture';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';
import type { ImportKeyResult } from '../../workflows/import-key';

const KNOWN_KEY = randomBytes(32);
const KNOWN_LABEL = 'byok/it-known';

let opts: StackOptions;
let info: StackInfo;
let kms: KMSClient;
let temporal: Connection;
const cliOutput: string[] = [];
const runs: Array<{ workflowId: string; runId: string }> = [];

/** Approvers' key pairs (byok keygen) and where import reads their public keys. */
let keysEnv: NodeJS.ProcessEnv;

async function byok(...args: string[]): Promise<CliRun> {
  const run = await runByok(args, { ...info.env, ...keysEnv });
  cliOutput.push(run.stdout, run.stderr);
  return run;
}

async function ok(...args: string[]): Promise<string> {
  const run = await byok(...args);
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

/** One import through the CLI: start, two approvals, the result. */
async function importWithApprovals(...importArgs: string[]): Promise<ImportKeyResult> {
  const started = JSON.parse(
    await ok('import', ...importArgs, '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita', '--approvers', 'alice,bob,carol', '--required', '2', '--json'),
  );
  runs.push(started);
  const { workflowId } = started;
  await ok('approve', workflowId, '--as', 'alice', '--comment', 'change CHG-42');
  await ok('approve', workflowId, '--as', 'bob');
  return JSON.parse(await ok('result', workflowId, '--json'));
}

async function keyCount(): Promise<number> {
  return (await kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys?.length ?? 0;
}

describe('byok on the real stack', () => {
  before(async () => {
    opts = await testStackOptions('it', { worker: false });
    info = await stackUp(opts);
    // The known key goes in before the worker opens the token.
    createKnownKey(info.softhsmConf, opts.tokenLabel, opts.pin, { label: KNOWN_LABEL, id: 'it-known', value: KNOWN_KEY });
    info = await stackUp({ ...opts, worker: true });
    keysEnv = { BYOK_KEYS_DIR: path.join(opts.dir, 'approver-keys') };
    for (const name of ['alice', 'bob', 'carol']) await ok('keygen', '--as', name);
    kms = new KMSClient({ region: info.region, endpoint: info.kmsEndpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    temporal = await Connection.connect({ address: info.temporalAddress });
  });

  after(async () => {
    await temporal?.close();
    await removeTestStack(opts);
  });

  it('imports an existing HSM key after two CLI approvals; the KMS key is Enabled and encrypts', async () => {
    const started = JSON.parse(
      await ok('import', '--alias', 'it-known', '--hsm-key-label', KNOWN_LABEL, '--existing-hsm-key', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1',
        '--requester', 'rita', '--approvers', 'alice,bob,carol', '--required', '2', '--json'),
    );
    runs.push(started);
    const { workflowId } = started;
    const self = await byok('approve', workflowId, '--as', 'rita');
    assert.equal(self.code, 3);
    assert.match(self.stderr, /refused: "rita" requested this import and cannot decide on it/);
    await ok('approve', workflowId, '--as', 'alice');
    const status = JSON.parse(await ok('status', workflowId, '--json'));
    assert.equal(status.step, 'AWAITING_APPROVAL');
    assert.equal(status.approvalsNeeded, 1);
    await ok('approve', workflowId, '--as', 'carol');
    const result: ImportKeyResult = JSON.parse(await ok('result', workflowId, '--json'));

    assert.equal(result.outcome, 'IMPORTED');
    const late = await byok('approve', workflowId, '--as', 'bob');
    assert.equal(late.code, 3);
    assert.match(late.stderr, /workflow "import-it-known" has already ended \(COMPLETED\)/);
    assert.equal(result.hsmKey.label, KNOWN_LABEL);
    assert.equal(result.hsmKey.kcv, nodeKcv(KNOWN_KEY));
    assert.deepEqual(result.approvals.map((a) => a.approver), ['alice', 'carol']);
    const { KeyMetadata: meta } = await kms.send(new DescribeKeyCommand({ KeyId: 'alias/it-known' }));
    assert.equal(meta?.KeyState, 'Enabled');
    assert.equal(meta?.Origin, 'EXTERNAL');
    assert.equal(meta?.Arn, result.keyArn);
    const plaintext = Buffer.from('round trip through the imported key');
    const { CiphertextBlob } = await kms.send(new EncryptCommand({ KeyId: 'alias/it-known', Plaintext: plaintext }));
    const { Plaintext } = await kms.send(new DecryptCommand({ CiphertextBlob }));
    assert.deepEqual(Buffer.from(Plaintext!), plaintext);
  });

  it('gives an evidence record of that import that verifies offline with the approvers\' keys, and only with them', async () => {
    const json = await ok('evidence', 'import-it-known', '--json');
    const record = JSON.parse(json);
    assert.equal(record.outcome, 'IMPORTED');
    assert.equal(record.requester, 'rita');
    assert.equal(record.hsmKey.kcv, nodeKcv(KNOWN_KEY));
    assert.match(record.kmsKeyArn, /^arn:aws:kms:/);
    assert.deepEqual(record.decisions.filter((d: { counted: boolean }) => d.counted).map((d: { approver: string }) => d.approver), ['alice', 'carol']);
    const file = path.join(opts.dir, 'evidence.json');
    await writeFile(file, json);
    const verified = await byok('evidence', 'verify', file, '--keys', keysEnv.BYOK_KEYS_DIR!);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /ok {3}APPROVE by alice[\s\S]*ok {3}APPROVE by carol[\s\S]*every counted decision verifies/);

    const otherKeys = path.join(opts.dir, 'other-keys');
    for (const name of ['alice', 'bob', 'carol']) await ok('keygen', '--as', name, '--dir', otherKeys);
    const refused = await byok('evidence', 'verify', file, '--keys', otherKeys);
    assert.equal(refused.code, 3);
    assert.match(refused.stdout, /FAIL APPROVE by alice .*the signature does not verify with alice's public key/);
    assert.match(refused.stdout, /VERIFICATION FAILED/);
    assert.match(await ok('evidence', 'import-it-known', '--markdown'), /^# Evidence: import-it-known[\s\S]*\| KMS key \| arn:aws:kms:/);
  });

  it('generates the HSM key when missing, and a second import of the same alias creates no second key', async () => {
    const first = await importWithApprovals('--alias', 'it-generated');
    assert.equal(first.outcome, 'IMPORTED');
    assert.equal(first.hsmKey.label, 'byok/it-generated');
    const keys = await keyCount();

    const second = await importWithApprovals('--alias', 'it-generated');
    assert.equal(second.outcome, 'IMPORTED');
    assert.equal(second.keyArn, first.keyArn);
    assert.equal(second.hsmKey.keyId, first.hsmKey.keyId);
    assert.equal(second.hsmKey.kcv, first.hsmKey.kcv);
    assert.equal(await keyCount(), keys, 'no second KMS key');
  });

  it('finishes an import after its worker was killed (kill -9) while it waited for approval', async () => {
    const started = JSON.parse(
      await ok('import', '--alias', 'it-crash', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita', '--approvers', 'alice,bob', '--required', '2', '--json'),
    );
    runs.push(started);
    await ok('approve', started.workflowId, '--as', 'alice');
    const keys = await keyCount();
    const workerPid = Number(await readFile(path.join(opts.dir, 'pids', 'worker.pid'), 'utf8'));
    process.kill(workerPid, 'SIGKILL');
    info = await stackUp({ ...opts, worker: true }); // starts a new worker
    const newPid = Number(await readFile(path.join(opts.dir, 'pids', 'worker.pid'), 'utf8'));
    assert.notEqual(newPid, workerPid);

    await ok('approve', started.workflowId, '--as', 'bob');
    const result: ImportKeyResult = JSON.parse(await ok('result', started.workflowId, '--json'));
    assert.equal(result.outcome, 'IMPORTED');
    assert.deepEqual(result.approvals.map((a) => a.approver), ['alice', 'bob']);
    assert.equal(await keyCount(), keys, 'no key created after the crash');
  });

  it('leaves neither the PIN nor the key bytes in any history, log or CLI output', async () => {
    const haystacks: Haystack[] = [];
    for (const [i, history] of (await histories()).entries()) haystacks.push(...haystacksOf(`history of ${runs[i].workflowId}`, history));
    for (const log of await readdir(info.logsDir)) haystacks.push({ source: log, bytes: await readFile(path.join(info.logsDir, log)) });
    haystacks.push({ source: 'CLI output', bytes: Buffer.from(cliOutput.join('\n')) });
    assert.equal(runs.length, 4);
    // Positive control: the scan reads payload contents (the KCV is in every history, by design: no codec here).
    assert.ok(haystacks.some((h) => h.bytes.includes(Buffer.from(nodeKcv(KNOWN_KEY)))), 'payloads were searched');

    const secrets = [{ name: 'PIN', value: Buffer.from(opts.pin) }, { name: 'key bytes', value: KNOWN_KEY }];
    assert.deepEqual(findSecrets(haystacks, secrets), []);
  });

  it('replays the histories it just produced with the current workflow code', async () => {
    const recorded = (await histories()).map((history, i) => ({ workflowId: runs[i].workflowId, history }));
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: require.resolve('../../workflows') }, recorded)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${result.error}`);
      replayed++;
    }
    assert.equal(replayed, runs.length);
  });
});

/** The histories of every run this file started, as the server stores them. */
async function histories() {
  const client = new Client({ connection: temporal, namespace: info.namespace });
  return Promise.all(runs.map(({ workflowId, runId }) => client.workflow.getHandle(workflowId, runId).fetchHistory()));
}
