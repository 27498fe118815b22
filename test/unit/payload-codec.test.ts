// The AES-256-GCM payload codec and its keys: round trip, rotation, refusals.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { codecKeyLine, codecKeysFromEnv, parseCodecKeys, CodecKeyError } from '../../codec/keys';
import { AesGcmPayloadCodec, CodecError, ENCODING, KEY_ID_METADATA } from '../../codec/payload-codec';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const keys = (...entries: Array<[string, Buffer]>) => parseCodecKeys(entries.map(([id, key]) => codecKeyLine(id, key)).join('\n'), 'test');
const str = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString();

const VALUE = { keyArn: 'arn:aws:kms:eu-central-1:111122223333:key/abc', kcv: 'A1B2C3' };
const payload = (): Payload => defaultPayloadConverter.toPayload(VALUE);

describe('payload codec', () => {
  it('round-trips a payload, metadata included, and leaves nothing readable in the encoded one', async () => {
    const codec = new AesGcmPayloadCodec(keys(['k1', k1]));
    const original = payload();
    const [encoded] = await codec.encode([original]);
    assert.deepEqual(Object.keys(encoded.metadata ?? {}).sort(), ['encoding', KEY_ID_METADATA]);
    assert.equal(str(encoded.metadata?.encoding), ENCODING);
    assert.equal(str(encoded.metadata?.[KEY_ID_METADATA]), 'k1');
    const data = Buffer.from(encoded.data!);
    assert.ok(!data.includes(Buffer.from(VALUE.kcv)) && !data.includes(Buffer.from('json/plain')));
    const [decoded] = await codec.decode([encoded]);
    assert.equal(str(decoded.metadata?.encoding), 'json/plain');
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded), VALUE);
  });

  it('uses a fresh nonce per payload: the same value encrypts differently each time', async () => {
    const codec = new AesGcmPayloadCodec(keys(['k1', k1]));
    const [a, b] = await codec.encode([payload(), payload()]);
    assert.notDeepEqual(Buffer.from(a.data!), Buffer.from(b.data!));
  });

  it('encodes with the first key and still decodes payloads encrypted under an older one', async () => {
    const [old] = await new AesGcmPayloadCodec(keys(['k1', k1])).encode([payload()]);
    const rotated = new AesGcmPayloadCodec(keys(['k2', k2], ['k1', k1]));
    const [fresh] = await rotated.encode([payload()]);
    assert.equal(str(fresh.metadata?.[KEY_ID_METADATA]), 'k2');
    for (const p of await rotated.decode([old, fresh])) assert.deepEqual(defaultPayloadConverter.fromPayload(p), VALUE);
  });

  it('names the key id when a payload was encrypted under a key that is not configured', async () => {
    const [old] = await new AesGcmPayloadCodec(keys(['k1', k1])).encode([payload()]);
    const other = new AesGcmPayloadCodec(keys(['k2', k2]));
    await assert.rejects(other.decode([old]), (err: Error) => {
      assert.ok(err instanceof CodecError);
      assert.match(err.message, /payload encrypted with codec key "k1", which is not configured here \(configured: k2\)/);
      return true;
    });
  });

  it('detects tampering: a flipped bit, a truncated payload, a key id swapped for another configured key', async () => {
    const codec = new AesGcmPayloadCodec(keys(['k1', k1], ['k2', k2]));
    const [encoded] = await codec.encode([payload()]);
    const flipped = Buffer.from(encoded.data!);
    flipped[20] ^= 1;
    await assert.rejects(codec.decode([{ ...encoded, data: flipped }]), /does not authenticate under codec key "k1": it was altered/);
    await assert.rejects(codec.decode([{ ...encoded, data: flipped.subarray(0, 20) }]), /is truncated \(20 bytes\)/);
    const swapped = { ...encoded, metadata: { ...encoded.metadata, [KEY_ID_METADATA]: Buffer.from('k2') } };
    await assert.rejects(codec.decode([swapped]), /does not authenticate under codec key "k2"/);
    const noId = { ...encoded, metadata: { encoding: encoded.metadata!.encoding } };
    await assert.rejects(codec.decode([noId]), /without "encryption-key-id" metadata/);
  });

  it('passes payloads it did not encrypt through decode unchanged (histories from before the codec)', async () => {
    const plain = payload();
    const [decoded] = await new AesGcmPayloadCodec(keys(['k1', k1])).decode([plain]);
    assert.equal(decoded, plain);
  });
});

describe('codec keys', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'byok-codec-keys-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a mode-600 key file with comments; the first entry is the current key', async () => {
    const file = path.join(dir, 'keys');
    await writeFile(file, `# rotated 2026-12\n${codecKeyLine('k2', k2)}\n${codecKeyLine('k1', k1)}\n`, { mode: 0o600 });
    const ring = codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: file })!;
    assert.equal(ring.current.id, 'k2');
    assert.deepEqual(ring.current.key, k2);
    assert.deepEqual([...ring.byId.keys()], ['k2', 'k1']);
    assert.equal(codecKeysFromEnv({}), undefined, 'no codec configured');
    assert.equal(codecKeysFromEnv({ BYOK_CODEC_KEYS: `${codecKeyLine('a', k1)},${codecKeyLine('b', k2)}` })!.current.id, 'a');
  });

  it('refuses a key file readable by group or others, a missing one, and both sources at once', async () => {
    const file = path.join(dir, 'open-keys');
    await writeFile(file, codecKeyLine('k1', k1), { mode: 0o600 });
    await chmod(file, 0o640);
    assert.throws(() => codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: file }), (err: Error) => {
      assert.ok(err instanceof CodecKeyError);
      assert.match(err.message, /BYOK_CODEC_KEY_FILE .*open-keys is readable by group or others; chmod 600 it/);
      return true;
    });
    assert.throws(() => codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: path.join(dir, 'absent') }), /absent: ENOENT/);
    assert.throws(() => codecKeysFromEnv({ BYOK_CODEC_KEY_FILE: file, BYOK_CODEC_KEYS: codecKeyLine('k1', k1) }), /not both/);
  });

  it('refuses malformed entries without echoing the key material', () => {
    const short = randomBytes(16).toString('base64');
    const cases: Array<[string, RegExp]> = [
      ['', /no codec key/],
      [`k1=${short}`, /key "k1": expected the base64 of exactly 32 bytes/],
      [`k1=${k1.toString('base64')}!`, /key "k1": expected the base64/],
      [k1.toString('base64'), /entry 1: expected <key id>=<base64 key>/],
      // A bare key whose only "=" is its padding: never taken for an id (which would be echoed).
      ['A'.repeat(43) + '=', /entry 1: expected <key id>=<base64 key>/],
      [`bad id=${k1.toString('base64')}`, /entry 1: expected <key id>=<base64 key>/],
      [`${codecKeyLine('k1', k1)}\n${codecKeyLine('k1', k2)}`, /key id "k1" appears twice/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseCodecKeys(text, 'BYOK_CODEC_KEYS'), (err: Error) => {
        assert.match(err.message, message);
        assert.ok(!err.message.includes(short) && !err.message.includes(k1.toString('base64')), 'key echoed');
        assert.ok(!err.message.includes('A'.repeat(43)), 'bare key echoed');
        return true;
      });
    }
  });
});
