// Looks for secrets where they must never be: histories, logs, CLI output, search attributes.
// A secret is searched for in every form code tends to write bytes in.
import type { Payload } from '@temporalio/common';

export interface Secret {
  name: string;
  value: Buffer;
}

/** Something scanned: where it comes from, and its bytes. */
export interface Haystack {
  source: string;
  bytes: Buffer;
}

/** raw, hex (both cases), base64 and base64url. */
export function secretForms({ name, value }: Secret): Array<[string, Buffer]> {
  return [
    [`${name} raw`, value],
    [`${name} hex`, Buffer.from(value.toString('hex'))],
    [`${name} HEX`, Buffer.from(value.toString('hex').toUpperCase())],
    [`${name} base64`, Buffer.from(value.toString('base64'))],
    [`${name} base64url`, Buffer.from(value.toString('base64url'))],
  ];
}

/** "<form> in <source>" for every secret form found; empty when the haystacks are clean. */
export function findSecrets(haystacks: Haystack[], secrets: Secret[]): string[] {
  const hits: string[] = [];
  for (const secret of secrets) {
    for (const [form, needle] of secretForms(secret)) {
      for (const h of haystacks) if (h.bytes.includes(needle)) hits.push(`${form} in ${h.source}`);
    }
  }
  return hits;
}

/** A decoded or raw protobuf object as haystacks: each byte array in it, and its JSON form. */
export function haystacksOf(source: string, value: unknown): Haystack[] {
  const found: Haystack[] = [{ source: `${source} (JSON)`, bytes: Buffer.from(JSON.stringify(value)) }];
  const walk = (v: unknown, path: string): void => {
    if (v instanceof Uint8Array) found.push({ source: `${source} ${path}`, bytes: Buffer.from(v) });
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
  };
  walk(value, '');
  return found;
}

/**
 * Every payload in a history or a describe answer, with where it sits. Search attributes are
 * left out unless asked for: the server indexes them, so they are never encrypted.
 */
export function payloadsIn(value: unknown, { searchAttributes = false } = {}): Array<{ path: string; payload: Payload }> {
  const found: Array<{ path: string; payload: Payload }> = [];
  const walk = (v: unknown, path: string, inSearchAttributes: boolean): void => {
    if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
    const o = v as Record<string, unknown>;
    if (o.metadata && typeof o.metadata === 'object' && o.data instanceof Uint8Array) {
      if (inSearchAttributes === searchAttributes) found.push({ path, payload: o as Payload });
      return;
    }
    for (const [k, x] of Object.entries(o)) walk(x, `${path}.${k}`, inSearchAttributes || k === 'searchAttributes');
  };
  walk(value, '', false);
  return found;
}
