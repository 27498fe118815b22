// The data converter the CLI and every worker use: with codec keys configured, payloads and
// failure messages are AES-256-GCM encrypted; without, the SDK's default (payloads in clear).
import type { DataConverter } from '@temporalio/common';
import { codecKeysFromEnv, type CodecKeyring } from './keys';
import { AesGcmPayloadCodec, ENCODING } from './payload-codec';

export function encryptingDataConverter(keys: CodecKeyring): DataConverter {
  return { payloadCodecs: [new AesGcmPayloadCodec(keys)], failureConverterPath: require.resolve('./failure-converter') };
}

/** From BYOK_CODEC_KEYS / BYOK_CODEC_KEY_FILE; undefined when neither is set. */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): DataConverter | undefined {
  const keys = codecKeysFromEnv(env);
  return keys && encryptingDataConverter(keys);
}

/** The SDK's error for an encrypted payload read without the codec, with what to set. */
export function withCodecHint(message: string): string {
  return message.includes(`Unknown encoding: ${ENCODING}`)
    ? `${message}: the payloads are encrypted; set BYOK_CODEC_KEY_FILE (the local stack's is <stack dir>/codec/codec.keys) or BYOK_CODEC_KEYS`
    : message;
}
