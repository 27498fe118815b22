// Payloads in the proto3 JSON form the codec server protocol uses: metadata values and data are
// base64 strings.
import type { Payload } from '@temporalio/common';

export interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function bytes(value: unknown, where: string): Uint8Array {
  if (typeof value !== 'string' || !BASE64.test(value)) throw new TypeError(`${where}: expected a base64 string`);
  return Buffer.from(value, 'base64');
}

/** The `payloads` of a request body; a TypeError names the first field that is not as expected. */
export function payloadsFromJson(body: unknown): Payload[] {
  const list = (body as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(list)) throw new TypeError('expected a JSON object with a "payloads" array');
  return list.map((p: unknown, i) => {
    if (!p || typeof p !== 'object') throw new TypeError(`payloads[${i}]: expected an object`);
    const { metadata = {}, data = '' } = p as Record<string, unknown>;
    if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw new TypeError(`payloads[${i}].metadata: expected an object`);
    return {
      metadata: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, bytes(v, `payloads[${i}].metadata.${k}`)])),
      data: bytes(data, `payloads[${i}].data`),
    };
  });
}

export function payloadsToJson(payloads: Payload[]): { payloads: JsonPayload[] } {
  return {
    payloads: payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
      data: Buffer.from(p.data ?? []).toString('base64'),
    })),
  };
}
