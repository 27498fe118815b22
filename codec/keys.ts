// The payload codec's keys, from BYOK_CODEC_KEYS or BYOK_CODEC_KEY_FILE (mode 600), never from
// workflow inputs. Each entry is `<key id>=<base64 of 32 bytes>`; the first one encrypts, all of
// them decrypt, so a key is rotated by putting a new entry first and keeping the old ones below
// until no history that needs them is retained.
import { readSecretFile } from './secret-file';

export interface CodecKey {
  id: string;
  key: Buffer;
}

export interface CodecKeyring {
  /** Encrypts every new payload. */
  current: CodecKey;
  /** Every configured key by id, the current one included. */
  byId: ReadonlyMap<string, Buffer>;
}

export class CodecKeyError extends Error {}

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const KEY_BYTES = 32;

/** Entries separated by newlines, commas or spaces; `#` starts a comment line. */
export function parseCodecKeys(text: string, source: string): CodecKeyring {
  const entries = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .flatMap((line) => line.split(/[\s,]+/))
    .filter(Boolean);
  if (entries.length === 0) throw new CodecKeyError(`${source}: no codec key; expected lines of <key id>=<base64 of ${KEY_BYTES} bytes>`);
  const byId = new Map<string, Buffer>();
  for (const [i, entry] of entries.entries()) {
    const at = entry.indexOf('=');
    const id = at > 0 ? entry.slice(0, at) : '';
    // Never echo the entry: it holds the key. A bare key has "=" only as its padding, at the end.
    if (!KEY_ID.test(id) || at === entry.length - 1) throw new CodecKeyError(`${source}: entry ${i + 1}: expected <key id>=<base64 key>, the id of letters, digits, ".", "_" or "-" (at most 64)`);
    const encoded = entry.slice(at + 1);
    const key = Buffer.from(encoded, 'base64');
    if (key.length !== KEY_BYTES || key.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '')) {
      throw new CodecKeyError(`${source}: key "${id}": expected the base64 of exactly ${KEY_BYTES} bytes (AES-256)`);
    }
    if (byId.has(id)) throw new CodecKeyError(`${source}: key id "${id}" appears twice`);
    byId.set(id, key);
  }
  const [id, key] = byId.entries().next().value as [string, Buffer];
  return { current: { id, key }, byId };
}

/** The keyring the environment configures, or undefined when neither variable is set (payloads in clear). */
export function codecKeysFromEnv(env: NodeJS.ProcessEnv = process.env): CodecKeyring | undefined {
  const inline = env.BYOK_CODEC_KEYS;
  const file = env.BYOK_CODEC_KEY_FILE;
  if (inline && file) throw new CodecKeyError('set BYOK_CODEC_KEYS or BYOK_CODEC_KEY_FILE, not both');
  if (inline) return parseCodecKeys(inline, 'BYOK_CODEC_KEYS');
  if (!file) return undefined;
  let text: string;
  try {
    text = readSecretFile('BYOK_CODEC_KEY_FILE', file);
  } catch (err) {
    throw new CodecKeyError((err as Error).message);
  }
  return parseCodecKeys(text, `BYOK_CODEC_KEY_FILE ${file}`);
}

/** A key file line for a new key (used by the demo stack; `openssl rand -base64 32` does the same). */
export function codecKeyLine(id: string, key: Buffer): string {
  return `${id}=${key.toString('base64')}`;
}
