import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson } from '../../workflows/canonical-json';

describe('canonicalJson', () => {
  it('sorts keys at every depth and writes no whitespace', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } }), '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}');
  });

  it('gives the same text whatever order the members were added in', () => {
    assert.equal(canonicalJson({ kcv: 'ab', hsmKeyId: '01' }), canonicalJson({ hsmKeyId: '01', kcv: 'ab' }));
  });

  it('leaves undefined members out, as JSON does, and escapes strings as JSON does', () => {
    assert.equal(canonicalJson({ a: undefined, b: 'quote " and \u00e9 and \n' }), '{"b":"quote \\" and \u00e9 and \\n"}');
    assert.equal(canonicalJson([undefined, 1]), '[null,1]');
  });

  it('sorts keys by UTF-16 code units, not by locale', () => {
    assert.equal(canonicalJson({ b: 1, B: 2, a: 3, '\u00e9': 4 }), '{"B":2,"a":3,"b":1,"\u00e9":4}');
  });

  it('refuses what JSON cannot represent', () => {
    assert.throws(() => canonicalJson({ a: Number.NaN }), /no representation for NaN/);
    assert.throws(() => canonicalJson({ a: () => 1 }), /no representation for a function/);
  });
});
