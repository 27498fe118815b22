// The local stack with real processes: Temporal dev server, local-kms, a SoftHSM token and the
// codec server in a temporary folder on free ports (the worker is left out: it is tested with the import).
// The tests run in order and share one stack.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CreateKeyCommand, DescribeKeyCommand, KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { codecKeysFromEnv } from '../../codec/keys';
import { AesGcmPayloadCodec } from '../../codec/payload-codec';
import { payloadsFromJson, payloadsToJson } from '../../codec/payload-json';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { runByok } from '../byok-cli';
import { canConnect, freePort } from '../../scripts/net';
import { stackDown, stackStatus, stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

let opts: StackOptions;
let info: StackInfo;
const WORKFLOW_ID = 'stack-test-persisted';
let kmsKeyId: string;
let codecKeyText: string;

before(async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'byok-stack-'));
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  const [temporalPort, uiPort, kmsPort, codecPort] = [...ports];
  opts = {
    dir,
    temporalPort,
    uiPort,
    kmsPort,
    namespace: 'byok-stack-test', // not "default": proves the dev server creates it
    tokenLabel: 'stack-test',
    pin: '4321',
    soPin: '87654321',
    worker: false,
    codec: { port: codecPort },
  };
});

after(async () => {
  if (!opts) return;
  await stackDown(opts);
  await rm(opts.dir, { recursive: true, force: true });
});

function kmsClient(): KMSClient {
  return new KMSClient({
    region: info.region,
    endpoint: info.kmsEndpoint,
    credentials: { accessKeyId: info.env.AWS_ACCESS_KEY_ID, secretAccessKey: info.env.AWS_SECRET_ACCESS_KEY },
  });
}

async function withTemporal<T>(use: (client: Client, connection: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address: info.temporalAddress });
  try {
    return await use(new Client({ connection, namespace: info.namespace }), connection);
  } finally {
    await connection.close();
  }
}

/** Alive and not a zombie, read from /proc so the check does not lean on the code under test. */
function processRuns(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function runningPids(): Promise<Record<string, number>> {
  const status = await stackStatus(opts);
  const pids: Record<string, number> = {};
  for (const s of status) if (s.pid !== undefined) pids[s.component] = s.pid;
  return pids;
}

test('up starts the dev server, local-kms and the token', async () => {
  info = await stackUp(opts);
  assert.equal(info.temporalAddress, `127.0.0.1:${opts.temporalPort}`);

  const described = await withTemporal((_, connection) =>
    connection.workflowService.describeNamespace({ namespace: opts.namespace }),
  );
  assert.equal(described.namespaceInfo?.name, opts.namespace);
  // Left running with no worker: it must survive a restart of the dev server.
  await withTemporal((client) =>
    client.workflow.start('stackProbe', { taskQueue: 'stack-test-no-worker', workflowId: WORKFLOW_ID }),
  );

  const kms = kmsClient();
  const created = await kms.send(new CreateKeyCommand({ Description: 'stack test' }));
  kmsKeyId = created.KeyMetadata?.KeyId ?? assert.fail('CreateKey returned no key id');
  const listed = await kms.send(new ListKeysCommand({}));
  assert.ok(listed.Keys?.some((k) => k.KeyId === kmsKeyId));
  kms.destroy();

  // The PIN reaches the worker only through a private file.
  const pinFile = info.env.PKCS11_PIN_FILE;
  assert.equal(await readFile(pinFile, 'utf8'), `${opts.pin}\n`);
  assert.equal(statSync(pinFile).mode & 0o777, 0o600);
  assert.ok(!Object.values(info.env).includes(opts.pin), 'the PIN is not in the stack env');
  assert.equal(info.env.SOFTHSM2_CONF, info.softhsmConf);

  const status = await stackStatus(opts);
  const byName = Object.fromEntries(status.map((s) => [s.component, s]));
  assert.equal(byName.temporal.running, true, byName.temporal.detail);
  assert.equal(byName['local-kms'].running, true, byName['local-kms'].detail);
  assert.equal(byName['softhsm-token'].running, true, byName['softhsm-token'].detail);
  assert.equal(byName['codec-server'].running, true, byName['codec-server'].detail);
  assert.equal(byName.worker.running, false);
});

test('up makes a private codec key file, serves the codec to the UI origin and points the Web UI at it', async () => {
  const keyFile = info.env.BYOK_CODEC_KEY_FILE;
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const keys = codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: keyFile });
  assert.match(keys?.current.id ?? '', /^demo-[0-9a-f]{8}$/);
  assert.ok(!Object.values(info.env).some((v) => v.includes(keys!.current.key.toString('base64'))), 'the key is not in the stack env');
  // The dev server's UI tells the browser where the codec server is.
  const settings = (await (await fetch(`${info.uiUrl}/api/v1/settings`)).json()) as { Codec: { Endpoint: string } };
  assert.equal(settings.Codec.Endpoint, info.codecServerUrl);
  // What the browser does: preflight from the UI's origin, then decode what the codec encrypted.
  const preflight = await fetch(`${info.codecServerUrl}/decode`, { method: 'OPTIONS', headers: { Origin: info.uiUrl, 'Access-Control-Request-Method': 'POST' } });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), info.uiUrl);
  const [encoded] = await new AesGcmPayloadCodec(keys!).encode([defaultPayloadConverter.toPayload('probe')]);
  const decoded = await fetch(`${info.codecServerUrl}/decode`, {
    method: 'POST',
    headers: { Origin: info.uiUrl, 'Content-Type': 'application/json', 'X-Namespace': opts.namespace },
    body: JSON.stringify(payloadsToJson([encoded])),
  });
  assert.equal(decoded.status, 200);
  assert.equal(defaultPayloadConverter.fromPayload(payloadsFromJson(await decoded.json())[0]), 'probe');
  const foreign = await fetch(`${info.codecServerUrl}/decode`, { method: 'OPTIONS', headers: { Origin: 'http://127.0.0.1:1', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(foreign.status, 403);
});

test('a second up reuses the running processes', async () => {
  const before = await runningPids();
  assert.ok(before.temporal && before['local-kms'], JSON.stringify(before));
  await stackUp(opts);
  assert.deepEqual(await runningPids(), before);
});

test('up registers the BYOK search attributes, also in a database that lacks them', async () => {
  const registered = () =>
    withTemporal(async (_client, connection) => (await connection.operatorService.listSearchAttributes({ namespace: info.namespace })).customAttributes ?? {});
  const expected = Object.fromEntries(SEARCH_ATTRIBUTES.map((k) => [k.name, encodeSearchAttributeIndexedValueType(k.type)]));
  assert.deepEqual(await registered(), expected);
  // As in a database created before the attributes existed, which --search-attribute leaves alone.
  await withTemporal((_client, connection) =>
    connection.operatorService.removeSearchAttributes({ namespace: info.namespace, searchAttributes: ['ByokState', 'ByokPendingApprovers'] }),
  );
  assert.ok(!('ByokState' in (await registered())));
  // Then an import is refused at start, not left with failing workflow tasks.
  const refused = await runByok(['import', '--alias', 'no-attributes', '--approvers', 'alice', '--requester', 'rita', '--unsigned-approvals'], info.env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /no mapping defined for search attribute ByokState: register the BYOK search attributes first/);
  await stackUp(opts);
  assert.deepEqual(await registered(), expected);
});

test('down stops the processes it started and removes their pid files', async () => {
  codecKeyText = await readFile(info.env.BYOK_CODEC_KEY_FILE, 'utf8');
  const pids = await runningPids();
  await stackDown(opts);
  for (const [name, pid] of Object.entries(pids)) assert.equal(processRuns(pid), false, `${name} (pid ${pid}) still runs`);
  assert.equal(await canConnect('127.0.0.1', opts.temporalPort), false);
  assert.equal(await canConnect('127.0.0.1', opts.kmsPort), false);
  assert.equal(await canConnect('127.0.0.1', opts.codec!.port), false);
  for (const name of ['temporal', 'local-kms', 'codec-server']) {
    await assert.rejects(readFile(path.join(opts.dir, 'pids', `${name}.pid`)), { code: 'ENOENT' });
  }
  const status = await stackStatus(opts);
  assert.deepEqual(
    status.filter((s) => s.component !== 'softhsm-token').map((s) => [s.component, s.running]),
    [
      ['temporal', false],
      ['local-kms', false],
      ['codec-server', false],
      ['worker', false],
    ],
  );
});

test('a later up replaces a stale pid file and finds the data from before down', async () => {
  // A pid file naming a live process that is not local-kms (this test process): not to be reused or killed.
  await writeFile(path.join(opts.dir, 'pids', 'local-kms.pid'), `${process.pid}\n`);
  info = await stackUp(opts);
  const pids = await runningPids();
  assert.ok(pids['local-kms'] && pids['local-kms'] !== process.pid);

  const description = await withTemporal((client) => client.workflow.getHandle(WORKFLOW_ID).describe());
  assert.equal(description.status.name, 'RUNNING');
  assert.equal(await readFile(info.env.BYOK_CODEC_KEY_FILE, 'utf8'), codecKeyText, 'the codec key survives down and up');
  const kms = kmsClient();
  const key = await kms.send(new DescribeKeyCommand({ KeyId: kmsKeyId }));
  assert.equal(key.KeyMetadata?.KeyId, kmsKeyId);
  kms.destroy();
});

test('up refuses a port held by a process it did not start', async () => {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  const { port } = squatter.address() as net.AddressInfo;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'byok-stack-taken-'));
  try {
    await assert.rejects(stackUp({ ...opts, dir, temporalPort: port, uiPort: await freePort() }), (err: Error) => {
      assert.match(err.message, new RegExp(`port ${port} \\(Temporal frontend\\) is already in use`));
      return true;
    });
    assert.deepEqual(
      (await stackStatus({ ...opts, dir })).filter((s) => s.running),
      [],
      'nothing was started in the other folder',
    );
  } finally {
    squatter.close();
    await rm(dir, { recursive: true, force: true });
  }
});
