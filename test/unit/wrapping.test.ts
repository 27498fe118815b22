// The AWS wrapping algorithm -> PKCS#11 mapping, down to the CK_MECHANISM structure handed to
// pkcs11js. SoftHSM 2.6 refuses OAEP with SHA-256, so this is where the SHA-256 paths are checked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { Mechanism } from 'graphene-pk11';
import { wrapPlan } from '../../activities/wrapping';
import { ErrorType } from '../../workflows/errors';
import { WRAPPING_ALGORITHMS, type WrappingAlgorithm } from '../../workflows/model';

// Values from the PKCS#11 specification (pkcs11t.h), not from graphene, so a wrong enum is caught.
const CKM_RSA_PKCS_OAEP = 0x00000009;
const CKM_AES_KEY_WRAP_PAD = 0x0000210a;
const CKM_SHA_1 = 0x00000220;
const CKM_SHA256 = 0x00000250;
const CKG_MGF1_SHA1 = 0x00000001;
const CKG_MGF1_SHA256 = 0x00000002;
const CKZ_DATA_SPECIFIED = 0x00000001;

const oaep = (hashAlg: number, mgf: number) => ({
  mechanism: CKM_RSA_PKCS_OAEP,
  // No OAEP label, as AWS KMS uses none. `type` tells pkcs11js which parameter struct this is.
  parameter: { hashAlg, mgf, source: CKZ_DATA_SPECIFIED, sourceData: null, type: 4 },
});

const expected: Record<WrappingAlgorithm, { oaep: object; description: string; aesKeyWrap: boolean }> = {
  RSAES_OAEP_SHA_1: { oaep: oaep(CKM_SHA_1, CKG_MGF1_SHA1), description: 'CKM_RSA_PKCS_OAEP(SHA-1, MGF1-SHA1)', aesKeyWrap: false },
  RSAES_OAEP_SHA_256: { oaep: oaep(CKM_SHA256, CKG_MGF1_SHA256), description: 'CKM_RSA_PKCS_OAEP(SHA-256, MGF1-SHA256)', aesKeyWrap: false },
  RSA_AES_KEY_WRAP_SHA_1: { oaep: oaep(CKM_SHA_1, CKG_MGF1_SHA1), description: 'CKM_RSA_PKCS_OAEP(SHA-1, MGF1-SHA1)', aesKeyWrap: true },
  RSA_AES_KEY_WRAP_SHA_256: { oaep: oaep(CKM_SHA256, CKG_MGF1_SHA256), description: 'CKM_RSA_PKCS_OAEP(SHA-256, MGF1-SHA256)', aesKeyWrap: true },
};

for (const algorithm of WRAPPING_ALGORITHMS) {
  test(`${algorithm} maps to the right OAEP parameters`, () => {
    const plan = wrapPlan(algorithm);
    assert.equal(plan.algorithm, algorithm);
    assert.deepEqual(Mechanism.create(plan.oaep.mechanism), expected[algorithm].oaep);
    assert.equal(plan.oaep.description, expected[algorithm].description);
  });
}

test('only RSA_AES_KEY_WRAP_* add an RFC 5649 key wrap, without an explicit IV', () => {
  for (const algorithm of WRAPPING_ALGORITHMS) {
    const { aesKeyWrap } = wrapPlan(algorithm);
    assert.equal(aesKeyWrap !== undefined, expected[algorithm].aesKeyWrap, algorithm);
    if (aesKeyWrap) {
      assert.deepEqual(Mechanism.create(aesKeyWrap.mechanism), { mechanism: CKM_AES_KEY_WRAP_PAD, parameter: null });
      assert.equal(aesKeyWrap.description, 'CKM_AES_KEY_WRAP_PAD(RFC 5649, default IV)');
    }
  }
});

test('an unknown algorithm name is a non-retryable InvalidInput', () => {
  assert.throws(
    () => wrapPlan('RSAES_PKCS1_V1_5' as WrappingAlgorithm),
    (e: unknown) =>
      e instanceof ApplicationFailure && e.type === ErrorType.InvalidInput && e.nonRetryable && /RSAES_PKCS1_V1_5/.test(e.message),
  );
});
