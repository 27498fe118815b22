// No secret at rest, with the payload codec on as the demo stack runs it: the full import path
// through the CLI on the real stack, then a scan of what Temporal stores (the raw history, fetched
// without the codec, and the same history decoded), the search attributes, every process log and
// the CLI output, for the secrets in raw, hex, base64 and base64url form.
import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal as proto } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import '../quiet-runtime';
import { runByok, useApproverKeys, type CliRun } from '../byok-cli';
import { nodeKcv } from '../hsm/softhsm-fixture';
import { findSecrets, haystacksOf, payloadsIn, secretForms, type Haystack, type Secret } from '../secret-scan';
import { createKnownKey } from './known-key';
import { encryptingDataConverter } from '../../codec/data-converter';
import { codecKeyLine, codecKeysFromEnv, type CodecKeyring } from '../../codec/keys';
import { AesGcmPayloadCodec, ENCODING, KEY_ID_METADATA } from '../../codec/payload-codec';
import { payloadsFromJson, payloadsToJson } from '../../codec/payload-json';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';
import type { ImportKeyResult } from '../../workflows/import-key';

const KNOWN_KEY = randomBytes(32);
const KNOWN_LABEL = 'byok/sar-known';
const MISSING_LABEL = 'byok/sar-missing-key';

let opts: StackOptions;
let info: StackInfo;
let keys: CodecKeyring;
let temporal: Connection;
const cliOutput: string[] = [];
const runs: Array<{ workflowId: string; runId: string }> = [];
/** Values every import history holds by design (decoded), to prove what the scans can see. */
const published: string[] = [];

async function byok(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const run = await runByok(args, { ...info.env, ...env });
  cliOutput.push(run.stdout, run.stderr);
  return run;
}

async function ok(...args: string[]): Promise<string> {
  const run = await byok(args);
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

async function start(...importArgs: string[]): Promise<string> {
  const started = JSON.parse(
    await ok('import', ...importArgs, '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita', '--approvers', 'alice,bob,carol', '--required', '2', '--json'),
  );
  runs.push(started);
  return started.workflowId;
}

/** The secrets no scan may find. Approvers' private keys (issue-4b) get one line each here. */
function secrets(): Secret[] {
  return [
    { name: 'HSM PIN', value: Buffer.from(opts.pin) },
    { name: 'HSM SO PIN', value: Buffer.from(opts.soPin) },
    ...[...keys.byId].map(([id, value]) => ({ name: `codec key ${id}`, value })),
    { name: 'known key bytes', value: KNOWN_KEY },
    ...['alice', 'bob', 'carol'].flatMap((name) => {
      const pem = readFileSync(path.join(process.env.BYOK_KEYS_DIR!, `${name}.key`), 'utf8');
      const seed = Buffer.from(createPrivateKey(pem).export({ format: 'jwk' }).d!, 'base64url');
      return [{ name: `${name}'s private key`, value: seed }, { name: `${name}'s private key file`, value: Buffer.from(pem) }];
    }),
  ];
}

/** Raw histories, as the server stores them: this client has no codec. */
async function rawHistories() {
  const client = new Client({ connection: temporal, namespace: info.namespace });
  return Promise.all(runs.map(({ workflowId, runId }) => client.workflow.getHandle(workflowId, runId).fetchHistory()));
}

const utf8 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');

const partition = (history: unknown) => {
  const all = payloadsIn(history);
  const isMarker = ({ path: at }: { path: string }) => at.includes('.markerRecordedEventAttributes.details.patch-data.');
  return { markers: all.filter(isMarker), stored: all.filter((p) => !isMarker(p)) };
};

describe('no secret at rest, payload codec on', () => {
  before(async () => {
    opts = await testStackOptions('sar', { worker: false, codec: true });
    info = await stackUp(opts);
    createKnownKey(info.softhsmConf, opts.tokenLabel, opts.pin, { label: KNOWN_LABEL, id: 'sar-known', value: KNOWN_KEY });
    info = await stackUp({ ...opts, worker: true });
    await useApproverKeys(path.join(opts.dir, 'approver-keys'));
    keys = codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: info.env.BYOK_CODEC_KEY_FILE })!;
    temporal = await Connection.connect({ address: info.temporalAddress });
  });

  after(async () => {
    await temporal?.close();
    await removeTestStack(opts);
  });

  it('imports, rejects and fails through the CLI; the CLI reads every answer through the codec', async () => {
    const known = await start('--alias', 'sar-known', '--hsm-key-label', KNOWN_LABEL, '--existing-hsm-key');
    const self = await byok(['approve', known, '--as', 'rita']);
    assert.equal(self.code, 3);
    assert.match(self.stderr, /refused: "rita" requested this import and cannot decide on it/, 'update refusals decode');
    await ok('approve', known, '--as', 'alice', '--comment', 'change CHG-7');
    assert.equal(JSON.parse(await ok('status', known, '--json')).approvalsNeeded, 1);
    await ok('approve', known, '--as', 'bob');
    const imported: ImportKeyResult = JSON.parse(await ok('result', known, '--json'));
    assert.equal(imported.outcome, 'IMPORTED');
    assert.equal(imported.hsmKey.kcv, nodeKcv(KNOWN_KEY));
    published.push(imported.keyArn, imported.hsmKey.kcv, imported.hsmKey.keyId);

    const generated = await start('--alias', 'sar-generated');
    await ok('approve', generated, '--as', 'carol');
    await ok('approve', generated, '--as', 'alice');
    const second: ImportKeyResult = JSON.parse(await ok('result', generated, '--json'));
    assert.equal(second.outcome, 'IMPORTED');
    published.push(second.keyArn, second.hsmKey.kcv);

    const rejected = await start('--alias', 'sar-rejected');
    await ok('reject', rejected, '--as', 'carol', '--comment', 'wrong account');
    assert.equal((await byok(['result', rejected])).code, 4);

    const failing = await start('--alias', 'sar-failing', '--hsm-key-label', MISSING_LABEL, '--existing-hsm-key');
    const failed = await byok(['result', failing, '--json']);
    assert.equal(failed.code, 6);
    assert.match(JSON.parse(failed.stdout).message, /no secret key labelled "byok\/sar-missing-key"/, 'failure messages decode');

    // A CLI without the codec keys cannot read the history, and says what to set.
    const blind = await byok(['status', known], { BYOK_CODEC_KEY_FILE: '' });
    assert.equal(blind.code, 1);
    assert.match(blind.stderr, /Unknown encoding: binary\/encrypted: the payloads are encrypted; set BYOK_CODEC_KEY_FILE/);
  });

  it('stores every payload as AES-GCM ciphertext under the stack key, and no failure message in clear', async () => {
    assert.equal(runs.length, 4);
    let payloads = 0;
    for (const [i, history] of (await rawHistories()).entries()) {
      const where = runs[i].workflowId;
      const { markers, stored } = partition(history);
      // Patch markers are written by the SDK's core in clear: they may hold nothing but a patch id.
      for (const { path: at, payload } of markers) {
        assert.deepEqual(Object.keys(JSON.parse(utf8(payload.data))).sort(), ['deprecated', 'id'], `${where}${at}`);
        assert.match(JSON.parse(utf8(payload.data)).id, /^[a-z][a-z0-9-]{0,63}$/, `${where}${at}: not a patch id`);
      }
      for (const { path: at, payload } of stored) {
        payloads++;
        assert.deepEqual(Object.keys(payload.metadata ?? {}).sort(), ['encoding', KEY_ID_METADATA], `${where}${at}`);
        assert.equal(utf8(payload.metadata?.encoding), ENCODING, `${where}${at}`);
        assert.equal(utf8(payload.metadata?.[KEY_ID_METADATA]), keys.current.id, `${where}${at}`);
        assert.ok((payload.data?.length ?? 0) >= 12 + 16, `${where}${at}: nonce and tag`);
        assert.throws(() => JSON.parse(utf8(payload.data)), SyntaxError, `${where}${at}: readable JSON`);
      }
      // Failure messages and stack traces are payloads too (encodeCommonAttributes).
      const ours = ourFailures(history);
      for (const message of stringsNamed(ours, 'message')) assert.equal(message, 'Encoded failure', `${where}: a failure message in clear`);
      for (const trace of stringsNamed(ours, 'stackTrace')) assert.equal(trace, '', `${where}: a stack trace in clear`);
      // Outside the search attributes, none of what the imports produced is readable.
      const clear = Buffer.from(JSON.stringify(history, (k, v) => (k === 'searchAttributes' ? undefined : v)));
      for (const value of [...published, MISSING_LABEL, 'CHG-7', 'wrong account']) assert.ok(!clear.includes(value), `${where}: "${value}" in clear`);
    }
    assert.ok(payloads >= 40, `only ${payloads} payloads`);
    console.log(`# raw histories: ${runs.length} workflows, ${payloads} payloads, all ${ENCODING} under key ${keys.current.id}`);
    const failures = (await rawHistories()).flatMap((h) => stringsNamed(ourFailures(h), 'message'));
    assert.ok(failures.length > 0, 'the failing import left encoded failures to check');
  });

  it('the codec server decodes a stored payload for the Web UI', async () => {
    const [history] = await rawHistories();
    const completed = history.events?.find((e) => e.workflowExecutionCompletedEventAttributes)?.workflowExecutionCompletedEventAttributes;
    const result = completed?.result?.payloads?.[0] as Payload;
    const res = await fetch(`${info.codecServerUrl}/decode`, {
      method: 'POST',
      headers: { Origin: info.uiUrl, 'Content-Type': 'application/json', 'X-Namespace': info.namespace },
      body: JSON.stringify(payloadsToJson([result])),
    });
    assert.equal(res.status, 200);
    const decoded = defaultPayloadConverter.fromPayload<ImportKeyResult>(payloadsFromJson(await res.json())[0]);
    assert.equal(decoded.keyArn, published[0]);
  });

  it('finds no secret in the raw or decoded histories, search attributes, logs or CLI output', async () => {
    const codec = new AesGcmPayloadCodec(keys);
    const raw: Haystack[] = [];
    const decoded: Haystack[] = [];
    const searchAttributes: Haystack[] = [];
    let decodedPayloads = 0;
    for (const [i, history] of (await rawHistories()).entries()) {
      const { workflowId, runId } = runs[i];
      raw.push(...haystacksOf(`raw history of ${workflowId}`, history));
      const plain = await codec.decode(payloadsIn(history).map((p) => p.payload));
      decodedPayloads += plain.length;
      decoded.push(...haystacksOf(`decoded history of ${workflowId}`, plain));
      const described = await temporal.workflowService.describeWorkflowExecution({ namespace: info.namespace, execution: { workflowId, runId } });
      for (const { path: at, payload } of payloadsIn(described, { searchAttributes: true })) {
        searchAttributes.push({ source: `search attribute ${workflowId}${at}`, bytes: Buffer.from(payload.data ?? []) });
      }
      raw.push(...haystacksOf(`describe of ${workflowId}`, described));
    }
    const logs: Haystack[] = [];
    for (const log of await readdir(info.logsDir)) logs.push({ source: log, bytes: await readFile(path.join(info.logsDir, log)) });
    assert.deepEqual(logs.map((l) => l.source).sort(), ['codec-server.log', 'local-kms.log', 'temporal.log', 'worker.log']);
    const cli: Haystack = { source: 'CLI output', bytes: Buffer.from(cliOutput.join('\n')) };

    // Positive controls: the decoded scan sees the imports' data and the failure messages.
    const has = (hs: Haystack[], value: string) => hs.some((h) => h.bytes.includes(Buffer.from(value)));
    assert.ok(has(decoded, nodeKcv(KNOWN_KEY)) && has(decoded, published[0]), 'decoded payloads were searched');
    assert.ok(has(decoded, 'no secret key labelled'), 'decoded failure messages were searched');

    // Control: the scan finds each form of each secret where it is.
    const forms = secrets().flatMap(secretForms);
    const planted = forms.map(([form, bytes]) => ({ source: form, bytes: Buffer.concat([Buffer.from('…'), bytes, Buffer.from('…')]) }));
    assert.equal(new Set(findSecrets(planted, secrets()).map((hit) => hit.split(' in ')[1])).size, forms.length);

    const all = [...raw, ...decoded, ...searchAttributes, ...logs, cli];
    const hits = findSecrets(all, secrets());
    const names = [...new Set(searchAttributes.map((h) => h.source.split('.').pop()))];
    console.log(
      `# scanned ${raw.length} raw and ${decoded.length} decoded history haystacks (${decodedPayloads} payloads), ` +
        `${searchAttributes.length} search attributes (${names.join(', ')}), ${logs.length} logs, CLI output (${cli.bytes.length} bytes) ` +
        `for ${secrets().length} secrets x 5 forms: ${hits.length} hits`,
    );
    assert.deepEqual(hits, []);
  });

  it('replays the encrypted histories with the current workflow code and the codec', async () => {
    const histories = (await rawHistories()).map((history, i) => ({ workflowId: runs[i].workflowId, history }));
    let replayed = 0;
    const replayOptions = { workflowsPath: require.resolve('../../workflows'), dataConverter: encryptingDataConverter(keys) };
    for await (const result of Worker.runReplayHistories(replayOptions, histories)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${result.error}`);
      replayed++;
    }
    assert.equal(replayed, runs.length);
  });

  it('rotates the codec key under a running import: old payloads still decode, new ones use the new key', async () => {
    const before = keys.current.id;
    const pending = await start('--alias', 'sar-rotation');
    const mixed = runs.pop()!; // not part of the scans above
    await ok('approve', pending, '--as', 'alice');

    // Rotate as an operator would: a new line on top, then restart the worker and the codec server.
    const keyFile = info.env.BYOK_CODEC_KEY_FILE;
    await writeFile(keyFile, `${codecKeyLine('rot-2', randomBytes(32))}\n${await readFile(keyFile, 'utf8')}`);
    for (const name of ['worker', 'codec-server']) {
      const pid = Number(await readFile(path.join(opts.dir, 'pids', `${name}.pid`), 'utf8'));
      process.kill(pid, 'SIGKILL');
      await gone(pid);
    }
    info = await stackUp({ ...opts, worker: true });
    const rotated = codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: keyFile })!;
    assert.equal(rotated.current.id, 'rot-2');

    await ok('approve', pending, '--as', 'bob');
    assert.equal(JSON.parse(await ok('result', pending, '--json')).outcome, 'IMPORTED');
    const history = await new Client({ connection: temporal, namespace: info.namespace }).workflow.getHandle(mixed.workflowId, mixed.runId).fetchHistory();
    const ids = new Set(partition(history).stored.map(({ payload }) => utf8(payload.metadata?.[KEY_ID_METADATA])));
    assert.deepEqual([...ids].sort(), [before, 'rot-2'].sort(), 'one history, both keys');

    // Histories from before the rotation: the CLI, the restarted codec server and replay still read them.
    assert.equal(JSON.parse(await ok('result', runs[0].workflowId, '--json')).outcome, 'IMPORTED');
    const [old] = await rawHistories();
    const res = await fetch(`${info.codecServerUrl}/decode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(payloadsToJson(payloadsIn(old).map((p) => p.payload))),
    });
    assert.equal(res.status, 200);
    const replays = Worker.runReplayHistories(
      { workflowsPath: require.resolve('../../workflows'), dataConverter: encryptingDataConverter(rotated) },
      [{ workflowId: mixed.workflowId, history }],
    );
    for await (const result of replays) assert.equal(result.error, undefined, `${result.workflowId}: ${result.error}`);

    // Without the old key, the old history cannot be read, and the error names the missing key id.
    const newOnly = await byok(['result', runs[0].workflowId], { BYOK_CODEC_KEY_FILE: '', BYOK_CODEC_KEYS: codecKeyLine('rot-2', rotated.current.key) });
    assert.equal(newOnly.code, 1);
    assert.match(newOnly.stderr, new RegExp(`payload encrypted with codec key "${before}", which is not configured here \\(configured: rot-2\\)`));
  });
});

/** Resolves once a killed process has released everything (gone, or a zombie with no threads left). */
async function gone(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let state: string | undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat[stat.lastIndexOf(')') + 2];
    } catch {
      return;
    }
    if (state === 'Z' || state === 'X') return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} still runs 10 s after SIGKILL`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The events whose failures the SDK wrote. The server writes "UnhandledCommand" workflow task
 * failures itself (a signal or update arrived while a task ran): a fixed text, no payload, no codec.
 */
function ourFailures(history: proto.api.history.v1.IHistory) {
  const unhandled = proto.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
  return (history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes?.cause !== unhandled);
}

/** Every string held by a field of this name anywhere in a protobuf object. */
function stringsNamed(value: unknown, field: string, found: string[] = []): string[] {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return found;
  for (const [k, v] of Object.entries(value)) {
    if (k === field && typeof v === 'string') found.push(v);
    else stringsNamed(v, field, found);
  }
  return found;
}
