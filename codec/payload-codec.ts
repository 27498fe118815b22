// AES-256-GCM payload codec: every payload the client or a worker sends to Temporal is replaced by
// one whose data is nonce ‖ ciphertext ‖ tag of the whole original payload (metadata included),
// and whose metadata names the key that encrypted it, so keys can rotate.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { CodecKeyring } from './keys';

export const ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const CIPHER = 'aes-256-gcm';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export class CodecError extends Error {}

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

/** The key id is authenticated too: a payload moved under another id does not decrypt. */
const aad = (keyId: string) => Buffer.from(`byok-codec-v1:${keyId}`);

export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(private readonly keys: CodecKeyring) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keys.current;
    return payloads.map((payload) => {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv(CIPHER, key, nonce).setAAD(aad(id));
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const data = Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: text(ENCODING), [KEY_ID_METADATA]: text(id) }, data };
    });
  }

  /** Payloads not encrypted by this codec (written before it was enabled) pass through unchanged. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (str(payload.metadata?.encoding) !== ENCODING) return payload;
      const id = str(payload.metadata?.[KEY_ID_METADATA]);
      if (!id) throw new CodecError(`encrypted payload without "${KEY_ID_METADATA}" metadata: cannot tell which codec key to use`);
      const key = this.keys.byId.get(id);
      if (!key) {
        throw new CodecError(
          `payload encrypted with codec key "${id}", which is not configured here (configured: ${[...this.keys.byId.keys()].join(', ')}); ` +
            'add it to BYOK_CODEC_KEY_FILE or BYOK_CODEC_KEYS',
        );
      }
      const data = Buffer.from(payload.data ?? []);
      if (data.length < NONCE_BYTES + TAG_BYTES) throw new CodecError(`encrypted payload under codec key "${id}" is truncated (${data.length} bytes)`);
      const decipher = createDecipheriv(CIPHER, key, data.subarray(0, NONCE_BYTES)).setAAD(aad(id));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new CodecError(`encrypted payload does not authenticate under codec key "${id}": it was altered, or the key with that id is not the one that encrypted it`);
      }
      return temporal.api.common.v1.Payload.decode(plain);
    });
  }
}
