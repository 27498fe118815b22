import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError, concurrencySettings, hsmSettings, kmsSettings, parseQueues } from '../../worker/config';

describe('worker configuration', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'byok-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('says what is wrong in one JSON line when JSON logs are asked for', async () => {
    const worker = path.join(__dirname, '..', '..', 'worker', 'main.js');
    const run = await promisify(execFile)(process.execPath, [worker, '--log-format', 'json', '--queues', 'hsm'], {
      env: { PATH: process.env.PATH, PKCS11_TOKEN_LABEL: 'byok-test' },
    }).then(
      () => assert.fail('the worker started without a PIN'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(run.code, 2);
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, run.stderr);
    const line = JSON.parse(lines[0]);
    assert.equal(line.level, 'ERROR');
    assert.match(line.message, /^byok-worker: .*PKCS11_PIN/);
  });

  it('parses --queues and refuses anything but hsm and kms', () => {
    assert.deepEqual(parseQueues('hsm,kms'), ['hsm', 'kms']);
    assert.deepEqual(parseQueues(' kms '), ['kms']);
    assert.throws(() => parseQueues('hsm,aws'), /queues: expected "hsm", "kms" or "hsm,kms", got "hsm,aws"/);
    assert.throws(() => parseQueues(''), ConfigError);
  });

  it('reads the PIN from a mode-600 file without its newline, and never from both sources', async () => {
    const file = path.join(dir, 'pin');
    await writeFile(file, 's3cret\n', { mode: 0o600 });
    assert.deepEqual(hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN_FILE: file }), {
      module: '/usr/lib/softhsm/libsofthsm2.so',
      tokenLabel: 't',
      pin: 's3cret',
      sessions: 1,
    });
    assert.equal(hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN: 'x', BYOK_HSM_SESSIONS: '4' }).sessions, 4);
    assert.throws(() => hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN: 'x', BYOK_HSM_SESSIONS: '0' }), /BYOK_HSM_SESSIONS: expected a positive integer, got "0"/);
    assert.throws(() => hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN_FILE: file, PKCS11_PIN: 'x' }), /not both/);
    await chmod(file, 0o644);
    assert.throws(() => hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN_FILE: file }), /readable by group or others; chmod 600 it/);
  });

  it('names what is missing, without echoing a PIN', () => {
    assert.throws(() => hsmSettings({ PKCS11_PIN: 'x' }), /PKCS11_TOKEN_LABEL is required/);
    assert.throws(() => hsmSettings({ PKCS11_TOKEN_LABEL: 't' }), /PKCS11_PIN or PKCS11_PIN_FILE is required/);
    assert.throws(
      () => hsmSettings({ PKCS11_TOKEN_LABEL: 't', PKCS11_PIN_FILE: path.join(dir, 'absent') }),
      (err: Error) => /PKCS11_PIN_FILE .*absent: ENOENT/.test(err.message),
    );
  });

  it('needs a region for KMS and takes the endpoint from the flag or AWS_ENDPOINT_URL_KMS', () => {
    assert.throws(() => kmsSettings({}), /AWS_REGION is required/);
    assert.deepEqual(kmsSettings({ AWS_DEFAULT_REGION: 'eu-west-1' }), { region: 'eu-west-1', endpoint: undefined });
    assert.deepEqual(kmsSettings({ AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:4599' }), {
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:4599',
    });
    assert.equal(kmsSettings({ AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_KMS: 'http://a' }, 'http://b').endpoint, 'http://b');
    assert.throws(() => kmsSettings({ AWS_REGION: 'us-east-1' }, 'localhost:4599'), /expected an http\(s\) URL/);
  });

  it('reads the concurrency knobs, with defaults, and names a wrong one', () => {
    assert.deepEqual(concurrencySettings({}), { kmsActivities: 100, hsmActivities: 8, kmsActivitiesPerSecond: undefined, workflowTasks: 40 });
    assert.deepEqual(
      concurrencySettings({
        BYOK_KMS_ACTIVITY_CONCURRENCY: '16',
        BYOK_HSM_ACTIVITY_CONCURRENCY: '2',
        BYOK_KMS_ACTIVITIES_PER_SECOND: '12.5',
        BYOK_WORKFLOW_TASK_CONCURRENCY: '10',
      }),
      { kmsActivities: 16, hsmActivities: 2, kmsActivitiesPerSecond: 12.5, workflowTasks: 10 },
    );
    assert.throws(() => concurrencySettings({ BYOK_HSM_ACTIVITY_CONCURRENCY: '1.5' }), /BYOK_HSM_ACTIVITY_CONCURRENCY: expected a positive integer, got "1.5"/);
    assert.throws(() => concurrencySettings({ BYOK_KMS_ACTIVITIES_PER_SECOND: '0' }), /BYOK_KMS_ACTIVITIES_PER_SECOND: expected a positive number/);
  });
});
