// `byok keygen`: an approver's key pair on disk, private key 0600, never overwritten.
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runByok as byok } from '../byok-cli';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'byok-keygen-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('byok keygen', () => {
  it('writes an Ed25519 pair: the private key readable by its owner only, the public key printed', async () => {
    const keys = path.join(dir, 'keys');
    const run = await byok(['keygen', '--as', 'alice', '--json'], { BYOK_KEYS_DIR: keys });
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.privateKey, path.join(keys, 'alice.key'));
    assert.equal((await stat(out.privateKey)).mode & 0o777, 0o600);
    assert.equal((await stat(keys)).mode & 0o777, 0o700);
    const privateKey = createPrivateKey(await readFile(out.privateKey, 'utf8'));
    const publicKey = createPublicKey(await readFile(out.publicKey, 'utf8'));
    assert.equal(privateKey.asymmetricKeyType, 'ed25519');
    assert.equal(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex'), out.publicKeyHex);
    const message = Buffer.from('statement');
    assert.ok(verify(null, message, publicKey, sign(null, message, privateKey)), 'the two files are one pair');
    assert.doesNotMatch(run.stdout, /PRIVATE KEY/);
  });

  it('refuses to overwrite an existing key and leaves it as it was', async () => {
    const first = await byok(['keygen', '--as', 'bob', '--dir', dir]);
    assert.equal(first.code, 0, first.stderr);
    const before = await readFile(path.join(dir, 'bob.key'));
    const beforePub = await readFile(path.join(dir, 'bob.pub'));
    const second = await byok(['keygen', '--as', 'bob', '--dir', dir]);
    assert.equal(second.code, 3);
    assert.match(second.stderr, /bob\.key exists; refusing to overwrite a key/);
    assert.deepEqual(await readFile(path.join(dir, 'bob.key')), before);
    assert.deepEqual(await readFile(path.join(dir, 'bob.pub')), beforePub);
  });

  it('refuses a name that could leave the folder', async () => {
    for (const name of ['../alice', '.hidden', 'a/b', '']) {
      const run = await byok(['keygen', '--as', name, '--dir', dir]);
      assert.equal(run.code, 2, `${name}: ${run.stderr}`);
      assert.match(run.stderr, /--as NAME is required: 1-64 characters/);
    }
  });
});
