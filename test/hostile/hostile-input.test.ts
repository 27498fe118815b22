// Hostile and bad input, table-driven, across the CLI, the workflow input (on a real local-kms and
// a real SoftHSM2 token, through the real activities) and what a KMS may answer. Every case must
// be refused with an error naming the field or condition, and leave nothing behind: the test
// counts the KMS keys (ListKeys) and the objects on the HSM token before and after each case.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CreateAliasCommand, CreateKeyCommand, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { KeyType, Module, ObjectClass, type Session, SessionFlag } from 'graphene-pk11';
import '../quiet-runtime';
import { createHsmActivities, type HsmConfig } from '../../activities/hsm';
import { createKmsActivities, type KmsActivities } from '../../activities/kms';
import { freePort } from '../../scripts/net';
import { tools } from '../../scripts/paths';
import { importKey, type ImportKeyInput } from '../../workflows/import-key';
import { HSM_TASK_QUEUE, KMS_TASK_QUEUE } from '../../workflows/model';
import { indexedValueTypes } from '../../scripts/temporal-dev-server';
import { runByok } from '../byok-cli';
import { PIN, TOKEN_LABEL, makeToken, type SoftHsmToken } from '../hsm/softhsm-fixture';
import { countKeys, startKmsFixture, type KmsFixture } from '../kms/local-kms-fixture';
import { approver, keysOf } from '../signing-fixture';
import { startHostileKms, type HostileKms } from './hostile-kms';

let kms: KmsFixture;
let kmsActivities: KmsActivities;
let token: SoftHsmToken;
let pkcs11: Module;
let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let hostile: HostileKms;
/** Public keys for the CLI cases: good ones for alice and bob, unusable ones for "rsa" and "garbage". */
const keysDir = path.join(os.tmpdir(), `byok-hostile-keys-${process.pid}`);
let closedPort: number;
/** An EXTERNAL key in PendingImport, and a real token for it, for the import cases. */
let pendingKey: string;
let realToken: string;

const alice = approver('alice');
const bob = approver('bob');
const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

/** A session of the test's own on the token, closed after use (which ends its login too). */
function withSession<T>(fn: (session: Session) => T): T {
  try {
    pkcs11.initialize();
  } catch (e) {
    if ((e as Error).message !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw e;
  }
  const slot = [...pkcs11.getSlots(true)].find((s) => s.getToken().label === TOKEN_LABEL);
  assert.ok(slot, 'test token not found');
  const session = slot.open(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION);
  try {
    try {
      session.login(PIN);
    } catch (e) {
      if ((e as Error).message !== 'CKR_USER_ALREADY_LOGGED_IN') throw e;
    }
    return fn(session);
  } finally {
    session.close();
  }
}

/** Every object on the token, and any session object a still-open activity session holds. */
const hsmObjects = () => withSession((session) => [...session.find()].length);

function createAesKey(session: Session, label: string, bytes: number, extractable: boolean, id = label): void {
  session.create({
    class: ObjectClass.SECRET_KEY,
    keyType: KeyType.AES,
    label,
    id: Buffer.from(id),
    value: randomBytes(bytes),
    token: true,
    private: true,
    sensitive: true,
    extractable,
    encrypt: true,
  });
}

async function keyUnderAlias(alias: string, origin: 'AWS_KMS' | 'EXTERNAL'): Promise<string> {
  const out = await kms.client.send(new CreateKeyCommand({ Origin: origin, KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }));
  await kms.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: out.KeyMetadata!.KeyId! }));
  return out.KeyMetadata!.KeyId!;
}

before(async () => {
  kms = await startKmsFixture();
  kmsActivities = createKmsActivities(kms.client);
  token = await makeToken();
  pkcs11 = Module.load(tools.softhsmModule);
  hostile = await startHostileKms();
  await mkdir(keysDir, { recursive: true });
  closedPort = await freePort();
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: tools.temporalTestServer } },
  });
  // The workflow upserts its search attributes; unregistered ones would fail its tasks.
  await env.connection.operatorService.addSearchAttributes({ namespace: env.namespace ?? 'default', searchAttributes: indexedValueTypes() });
  bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger });

  // What the cases find already there: set up before any count is taken.
  await keyUnderAlias('alias/hostile-aws-origin', 'AWS_KMS');
  const doomed = await keyUnderAlias('alias/hostile-pending-deletion', 'EXTERNAL');
  await kms.client.send(new ScheduleKeyDeletionCommand({ KeyId: doomed, PendingWindowInDays: 7 }));
  pendingKey = await keyUnderAlias('alias/hostile-pending-import', 'EXTERNAL');
  realToken = (await kmsActivities.getImportParameters({ keyId: pendingKey, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' })).importToken;
  withSession((session) => {
    createAesKey(session, 'hostile/aes-128', 16, true);
    createAesKey(session, 'hostile/not-extractable', 32, false);
    createAesKey(session, 'hostile/twins', 32, true, 'twin-1');
    createAesKey(session, 'hostile/twins', 32, true, 'twin-2');
  });
  for (const a of [alice, bob]) {
    await writeFile(path.join(keysDir, `${a.name}.pub`), createPublicKey(a.privateKey).export({ format: 'pem', type: 'spki' }));
  }
  await writeFile(path.join(keysDir, 'rsa.pub'), generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' }));
  await writeFile(path.join(keysDir, 'garbage.pub'), 'not a key\n');
});

after(async () => {
  await env?.teardown();
  await hostile?.close();
  pkcs11?.close();
  await token?.remove();
  await kms?.close();
  await rm(keysDir, { recursive: true, force: true });
});

interface Refusal {
  message: string;
  /** The ApplicationFailure type, where there is one (not for the CLI). */
  type?: string;
}

interface HostileCase {
  name: string;
  run: () => Promise<Refusal>;
  message: RegExp;
  type?: string;
}

// ------------------------------------------------------------------------------------------------
// CLI: refused before anything is started (Temporal is not even reachable: exit 2, not 1)

const IMPORT = ['import', '--requester', 'rita', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1'];

function cli(args: string[]): () => Promise<Refusal> {
  return async () => {
    const run = await runByok([...IMPORT, ...args], { BYOK_KEYS_DIR: keysDir, BYOK_APPROVER_KEYS_DIR: keysDir, TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` });
    assert.equal(run.code, 2, `exit ${run.code}: ${run.stderr}`);
    return { message: run.stderr };
  };
}

const daysAhead = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();
const ok = ['--approvers', 'alice,bob'];

const cliCases: HostileCase[] = [
  { name: 'alias with invalid characters', run: cli(['--alias', 'pay ments!', ...ok]), message: /invalid alias: expected 1-250 characters of A-Z a-z 0-9 \/ _ -/ },
  { name: 'alias/aws/ prefix', run: cli(['--alias', 'alias/aws/ebs', ...ok]), message: /invalid alias: "alias\/aws\/" is reserved for AWS managed keys/ },
  { name: 'oversized description', run: cli(['--alias', 'a', '--description', 'x'.repeat(8193), ...ok]), message: /invalid description: expected a string of at most 8192 characters/ },
  { name: 'unknown wrapping algorithm', run: cli(['--alias', 'a', ...ok, '--wrapping-algorithm', 'RSAES_PKCS1_V1_5']), message: /invalid wrappingAlgorithm: expected one of RSAES_OAEP_SHA_256, .* got "RSAES_PKCS1_V1_5"/ },
  { name: 'unknown wrapping key spec', run: cli(['--alias', 'a', ...ok, '--wrapping-key-spec', 'RSA_1024']), message: /invalid wrappingKeySpec: expected one of RSA_2048, RSA_3072, RSA_4096, got "RSA_1024"/ },
  { name: 'ValidTo in the past', run: cli(['--alias', 'a', ...ok, '--valid-to', '2020-01-01T00:00:00Z']), message: /invalid validTo: 2020-01-01T00:00:00Z is in the past/ },
  { name: 'ValidTo more than 365 days ahead', run: cli(['--alias', 'a', ...ok, '--valid-to', daysAhead(366)]), message: /invalid validTo: AWS KMS accepts at most 365 days ahead/ },
  { name: 'ValidTo that is not a time', run: cli(['--alias', 'a', ...ok, '--valid-to', 'next tuesday']), message: /invalid validTo: expected an ISO-8601 time, got "next tuesday"/ },
  { name: 'empty approver set', run: cli(['--alias', 'a', '--approvers', ',']), message: /invalid approvers: expected at least one approver/ },
  { name: 'required approvals larger than the set', run: cli(['--alias', 'a', ...ok, '--required', '3']), message: /invalid requiredApprovals: expected a whole number from 1 to 2, got 3/ },
  { name: 'zero required approvals', run: cli(['--alias', 'a', ...ok, '--required', '0']), message: /invalid requiredApprovals: expected a whole number from 1 to 2, got 0/ },
  { name: 'negative approval deadline', run: cli(['--alias', 'a', ...ok, '--approval-timeout=-5m']), message: /invalid approvalTimeout: must be between 1 minutes and 720 hours, got -300000 ms/ },
  { name: 'absurd approval deadline', run: cli(['--alias', 'a', ...ok, '--approval-timeout', '10000d']), message: /invalid approvalTimeout: must be between 1 minutes and 720 hours/ },
  { name: 'token margin as long as the token', run: cli(['--alias', 'a', ...ok, '--token-margin', '24h']), message: /invalid tokenSafetyMargin: must be between 0 minutes and 12 hours/ },
  { name: 'requester among the approvers', run: cli(['--alias', 'a', '--approvers', 'alice,rita']), message: /invalid approvers: the requester "rita" cannot be one of the approvers/ },
  { name: 'approver listed twice', run: cli(['--alias', 'a', '--approvers', 'alice,alice']), message: /invalid approvers: "alice" is listed twice/ },
  { name: 'approver name with shell characters', run: cli(['--alias', 'a', '--approvers', 'alice,bob;rm -rf ~']), message: /invalid approvers\[1\]: expected 1-64 characters/ },
  { name: 'HSM label with a control character', run: cli(['--alias', 'a', ...ok, '--hsm-key-label', 'byok/a\nb']), message: /invalid hsmKeyLabel: expected 1-127 printable ASCII characters/ },
  { name: 'approver without a public key file', run: cli(['--alias', 'a', '--approvers', 'alice,carol']), message: /no public key for approver "carol": .*carol\.pub is missing/ },
  { name: 'approver public key that is RSA, not Ed25519', run: cli(['--alias', 'a', '--approvers', 'alice,rsa']), message: /public key of approver "rsa" in .*rsa\.pub is unusable: expected an Ed25519 key, got rsa/ },
  { name: 'approver public key file that is no key', run: cli(['--alias', 'a', '--approvers', 'alice,garbage']), message: /public key of approver "garbage" in .*garbage\.pub is unusable/ },
  { name: 'approver keys and unsigned approvals at once', run: cli(['--alias', 'a', ...ok, '--unsigned-approvals', '--approver-keys', keysDir]), message: /--approver-keys and --unsigned-approvals exclude each other/ },
];

// ------------------------------------------------------------------------------------------------
// Workflow input: started directly (no CLI to catch it), served by workers with the real
// activities on local-kms and SoftHSM2. Must fail with a typed failure before anything is created.

let seq = 0;
const input = (over: Partial<ImportKeyInput> = {}): ImportKeyInput => ({
  alias: `hostile-${++seq}`,
  wrappingAlgorithm: 'RSAES_OAEP_SHA_1',
  requester: 'rita',
  approvers: ['alice', 'bob'],
  requiredApprovals: 2,
  approverKeys: keysOf([alice, bob]),
  ...over,
});

function workflow(request: () => ImportKeyInput, hsmConfig: () => HsmConfig = () => token.config): () => Promise<Refusal> {
  return async () => {
    const hsm = createHsmActivities(hsmConfig());
    const opts = { connection: env.nativeConnection, namespace: env.namespace ?? 'default' };
    try {
      const kmsWorker = await Worker.create({ ...opts, taskQueue: KMS_TASK_QUEUE, workflowBundle: bundle, activities: kmsActivities });
      const hsmWorker = await Worker.create({ ...opts, taskQueue: HSM_TASK_QUEUE, activities: hsm.activities });
      return await kmsWorker.runUntil(
        hsmWorker.runUntil(async () => {
          const h = await env.client.workflow.start(importKey, { taskQueue: KMS_TASK_QUEUE, workflowId: `hostile-wf-${seq}`, args: [request()] });
          const err = await h.result().then(
            (r) => assert.fail(`expected a failure, got ${r.outcome}`),
            (e: unknown) => e,
          );
          assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, `expected a typed failure, got ${err}`);
          assert.equal(err.cause.nonRetryable, true);
          return { message: err.cause.message, type: err.cause.type ?? undefined };
        }),
      );
    } finally {
      await hsm.close();
    }
  };
}

const sharedKey = keysOf([alice]).alice;
const workflowCases: HostileCase[] = [
  { name: 'input that is not an object', run: workflow(() => null as never), message: /invalid input: expected an object/, type: 'InvalidInput' },
  { name: 'alias that is not a string', run: workflow(() => input({ alias: 42 as never })), message: /invalid alias: required/, type: 'InvalidInput' },
  { name: 'approvers that are not a list', run: workflow(() => input({ approvers: 'alice' as never })), message: /invalid approvers: expected at least one approver/, type: 'InvalidInput' },
  { name: 'fractional required approvals', run: workflow(() => input({ requiredApprovals: 1.5 })), message: /invalid requiredApprovals: expected a whole number from 1 to 2, got 1.5/, type: 'InvalidInput' },
  { name: 'ValidTo without KEY_MATERIAL_EXPIRES', run: workflow(() => input({ validTo: daysAhead(30) })), message: /invalid validTo: only allowed with expirationModel KEY_MATERIAL_EXPIRES/, type: 'InvalidInput' },
  { name: 'absurd token refresh limit', run: workflow(() => input({ maxTokenRefreshes: 1e9 })), message: /invalid maxTokenRefreshes: expected a whole number from 0 to 10/, type: 'InvalidInput' },
  { name: 'no approver keys (signatures on by default)', run: workflow(() => input({ approverKeys: undefined })), message: /invalid approverKeys: expected \{approver: Ed25519 public key \(hex\)\}/, type: 'InvalidInput' },
  { name: 'truncated approver key', run: workflow(() => input({ approverKeys: { alice: sharedKey, bob: sharedKey.slice(2) } })), message: /invalid approverKeys\.bob: expected a raw Ed25519 public key/, type: 'InvalidInput' },
  { name: 'two approvers with one key', run: workflow(() => input({ approverKeys: { alice: sharedKey, bob: sharedKey } })), message: /invalid approverKeys\.bob: is the same key as another approver's/, type: 'InvalidInput' },
  { name: 'alias of a key that is not EXTERNAL', run: workflow(() => input({ alias: 'hostile-aws-origin' })), message: /^checking the KMS key failed: key \S+ \(alias\/hostile-aws-origin\) has origin AWS_KMS; importing key material needs a key created with Origin EXTERNAL/, type: 'KeyNotExternal' },
  { name: 'alias of a key pending deletion', run: workflow(() => input({ alias: 'hostile-pending-deletion' })), message: /^checking the KMS key failed: key \S+ \(alias\/hostile-pending-deletion\) is scheduled for deletion/, type: 'KeyPendingDeletion' },
  { name: 'existing KMS key required, alias unknown', run: workflow(() => input({ alias: 'hostile-nowhere', createKmsKey: false })), message: /^checking the KMS key failed: alias alias\/hostile-nowhere does not exist and createIfMissing is false/, type: 'UnknownAlias' },
  { name: 'existing HSM key required, label unknown', run: workflow(() => input({ hsmKeyLabel: 'hostile/nowhere', generateHsmKey: false })), message: /^checking the HSM key failed: no secret key labelled "hostile\/nowhere" on HSM token "byok-test", and generation was not requested/, type: 'HsmKeyNotFound' },
  { name: 'HSM key that is AES-128', run: workflow(() => input({ hsmKeyLabel: 'hostile/aes-128' })), message: /HSM key "hostile\/aes-128" is AES-128, not AES-256 \(CKA_VALUE_LEN=16\)/, type: 'HsmKeyUnsuitable' },
  { name: 'HSM key that is not extractable', run: workflow(() => input({ hsmKeyLabel: 'hostile/not-extractable' })), message: /HSM key "hostile\/not-extractable" is not extractable \(CKA_EXTRACTABLE=false\)/, type: 'HsmKeyUnsuitable' },
  { name: 'HSM label shared by two keys', run: workflow(() => input({ hsmKeyLabel: 'hostile/twins' })), message: /2 secret keys labelled "hostile\/twins" on HSM token "byok-test"; refusing to guess/, type: 'HsmKeyAmbiguous' },
  { name: 'wrong HSM PIN', run: workflow(() => input(), () => ({ ...token.config, pin: 'wrong-pin-0000' })), message: /^checking the HSM key failed: login to HSM token "byok-test" failed: CKR_PIN_INCORRECT$/, type: 'HsmLoginFailed' },
  { name: 'PKCS#11 module path that does not exist', run: workflow(() => input(), () => ({ ...token.config, module: '/nonexistent/libpkcs11.so' })), message: /^checking the HSM key failed: cannot load PKCS#11 module \/nonexistent\/libpkcs11\.so/, type: 'HsmModuleNotFound' },
  { name: 'HSM token label that does not exist', run: workflow(() => input(), () => ({ ...token.config, tokenLabel: 'no-such-token' })), message: /no HSM token labelled "no-such-token" .*tokens present: "byok-test"/, type: 'HsmTokenNotFound' },
];

// ------------------------------------------------------------------------------------------------
// What KMS answers: GetParametersForImport bodies from an endpoint the SDK takes for KMS, and
// activity input a corrupted history could carry, through the real activities and the real HSM.

const rsaSpki = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'der', type: 'spki' });
const parametersBody = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    KeyId: 'hostile-key',
    PublicKey: rsaSpki(2048).toString('base64'),
    ImportToken: randomBytes(256).toString('base64'),
    ParametersValidTo: Math.floor(Date.now() / 1000) + 86_400,
    ...over,
  });

/** The parameters from the hostile endpoint; should they pass, the HSM wraps under them. */
function answered(body: () => string, wrappingKeySpec: 'RSA_2048' | 'RSA_3072' = 'RSA_2048'): () => Promise<Refusal> {
  return async () => {
    hostile.body = body();
    const hsm = createHsmActivities(token.config);
    try {
      const params = await createKmsActivities(hostile.client).getImportParameters({ keyId: 'hostile-key', wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec });
      await hsm.activities.wrapKey({ label: 'hostile/aes-128', keyId: '', publicKey: params.publicKey, wrappingAlgorithm: 'RSAES_OAEP_SHA_1' });
      return assert.fail('hostile parameters were accepted');
    } catch (err) {
      return refusal(err);
    } finally {
      await hsm.close();
    }
  };
}

function refusal(err: unknown): Refusal {
  if (err instanceof ApplicationFailure) {
    assert.equal(err.nonRetryable, true, `retryable: ${err.message}`);
    return { message: err.message, type: err.type ?? undefined };
  }
  throw err;
}

/** An activity called directly with input a corrupted or forged history could carry. */
function activityInput(call: () => Promise<unknown>): () => Promise<Refusal> {
  return () => call().then(() => assert.fail('hostile activity input was accepted'), refusal);
}

function wrapWith(over: Partial<Parameters<ReturnType<typeof createHsmActivities>['activities']['wrapKey']>[0]>): () => Promise<Refusal> {
  return async () => {
    const hsm = createHsmActivities(token.config);
    try {
      return await activityInput(() =>
        hsm.activities.wrapKey({ label: 'hostile/twins', keyId: Buffer.from('twin-1').toString('hex'), publicKey: rsaSpki(2048).toString('base64'), wrappingAlgorithm: 'RSAES_OAEP_SHA_1', ...over }),
      )();
    } finally {
      await hsm.close();
    }
  };
}

const ecSpki = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
const activityCases: HostileCase[] = [
  { name: 'KMS public key that is not DER', run: answered(() => parametersBody({ PublicKey: randomBytes(294).toString('base64') })), message: /returned a PublicKey that is not a DER SubjectPublicKeyInfo/, type: 'InvalidWrappingPublicKey' },
  { name: 'KMS public key under 2048 bits', run: answered(() => parametersBody({ PublicKey: rsaSpki(1024).toString('base64') })), message: /returned a 1024-bit PublicKey; at least 2048 bits are required/, type: 'InvalidWrappingPublicKey' },
  { name: 'KMS public key that is not RSA', run: answered(() => parametersBody({ PublicKey: ecSpki() })), message: /returned a ec PublicKey, not RSA/, type: 'InvalidWrappingPublicKey' },
  { name: 'KMS public key of another size than asked', run: answered(() => parametersBody(), 'RSA_3072'), message: /returned a 2048-bit PublicKey, but RSA_3072 was requested/, type: 'InvalidWrappingPublicKey' },
  { name: 'KMS answer without an import token', run: answered(() => parametersBody({ ImportToken: '' })), message: /returned no ImportToken/, type: 'InvalidImportParameters' },
  { name: 'KMS parameters that expired already', run: answered(() => parametersBody({ ParametersValidTo: Math.floor(Date.now() / 1000) - 60 })), message: /returned parameters that expired already/, type: 'InvalidImportParameters' },
  { name: 'truncated import token sent to KMS', run: activityInput(() => kmsActivities.importKeyMaterial({ keyId: pendingKey, importToken: realToken.slice(0, 100), encryptedKeyMaterial: randomBytes(256).toString('base64'), expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' })), message: /ImportKeyMaterial on key \S+: the import token is not the current one/, type: 'ImportTokenInvalid' },
  { name: 'import token that is not base64', run: activityInput(() => kmsActivities.importKeyMaterial({ keyId: pendingKey, importToken: 'not base64!', encryptedKeyMaterial: randomBytes(256).toString('base64'), expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' })), message: /invalid importToken: expected non-empty base64/, type: 'InvalidInput' },
  { name: 'wrap under a public key under 2048 bits', run: wrapWith({ publicKey: rsaSpki(1024).toString('base64') }), message: /AWS wrapping public key has a 1024-bit modulus; at least 2048 bits are required/, type: 'InvalidWrappingPublicKey' },
  { name: 'wrap with an unknown algorithm', run: wrapWith({ wrappingAlgorithm: 'RSAES_PKCS1_V1_5' as never }), message: /unknown wrapping algorithm "RSAES_PKCS1_V1_5"/, type: 'InvalidInput' },
  { name: 'wrap of an HSM key id that is not hex', run: wrapWith({ keyId: '../../etc' }), message: /HSM key id "..\/..\/etc" is not hex/, type: 'InvalidInput' },
];

describe('hostile and bad input', () => {
  const cases: Array<[string, HostileCase]> = [
    ...cliCases.map((c): [string, HostileCase] => ['CLI', c]),
    ...workflowCases.map((c): [string, HostileCase] => ['workflow input', c]),
    ...activityCases.map((c): [string, HostileCase] => ['activity', c]),
  ];
  it('has at least 30 cases', () => assert.ok(cases.length >= 30, `only ${cases.length}`));

  for (const [layer, c] of cases) {
    it(`${layer}: refuses ${c.name}, and creates no KMS key and no HSM object`, async () => {
      const kmsBefore = await countKeys(kms.client);
      const hsmBefore = hsmObjects();
      const { message, type } = await c.run();
      assert.match(message, c.message);
      if (c.type) assert.equal(type, c.type, message);
      assert.equal(await countKeys(kms.client), kmsBefore, 'a KMS key was created');
      assert.equal(hsmObjects(), hsmBefore, 'an HSM object was left behind');
    });
  }
});
