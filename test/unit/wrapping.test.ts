// The AWS wrapping algorithm -> PKCS#11 mapping, down to the CK_MECHANISM structure handed to
// pkcs11js. SoftHSM 2.6 refuses OAEP with SHA-256, so this is where the SHA-256 paths are checked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { Mechanism } from 'graphene-pk11';
import { aesKeyWrapStep, checkWrapOutputLengths, wrapPlan } from '../../activities/wrapping';
import { ErrorType } from '../../workflows/errors';
import { WRAPPING_ALGORITHMS, type WrappingAlgorithm } from '../../workflows/model';

// Values from the PKCS#11 specification (pkcs11t.h), not from graphene, so a wrong enum is caught.
const CKM_RSA_PKCS_OAEP = 0x00000009;
const CKM_AES_KEY_WRAP_PAD = 0x0000210a;
const CKM_AES_KEY_WRAP_KWP = 0x0000210b; // PKCS#11 3.0
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

test('only RSA_AES_KEY_WRAP_* add an AES key wrap', () => {
  for (const algorithm of WRAPPING_ALGORITHMS) {
    assert.equal(wrapPlan(algorithm).aesKeyWrap, expected[algorithm].aesKeyWrap, algorithm);
  }
});

test('the AES key wrap is CKM_AES_KEY_WRAP_KWP where the HSM lists it, without parameter (default IV)', () => {
  const step = aesKeyWrapStep(new Set([CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP]));
  assert.deepEqual(Mechanism.create(step.mechanism), { mechanism: CKM_AES_KEY_WRAP_KWP, parameter: null });
  assert.equal(step.description, 'CKM_AES_KEY_WRAP_KWP(RFC 5649)');
});

test('else CKM_AES_KEY_WRAP_PAD, named so that errors show KWP was not available', () => {
  for (const mechanisms of [new Set([CKM_AES_KEY_WRAP_PAD]), new Set<number>()]) {
    const step = aesKeyWrapStep(mechanisms);
    assert.deepEqual(Mechanism.create(step.mechanism), { mechanism: CKM_AES_KEY_WRAP_PAD, parameter: null });
    assert.equal(step.description, 'CKM_AES_KEY_WRAP_PAD(HSM lists no CKM_AES_KEY_WRAP_KWP)');
  }
});

const HSM = 'Some HSM';
const OAEP = 'CKM_RSA_PKCS_OAEP(SHA-1, MGF1-SHA1)';
const PAD = 'CKM_AES_KEY_WRAP_PAD(HSM lists no CKM_AES_KEY_WRAP_KWP)';
const lengths = (modulusBytes: number, rsaLength: number, aesLength?: number) => ({
  hsmName: HSM,
  algorithm: aesLength === undefined ? ('RSAES_OAEP_SHA_1' as const) : ('RSA_AES_KEY_WRAP_SHA_1' as const),
  modulusBytes,
  rsa: { description: OAEP, length: rsaLength },
  aesKeyWrap: aesLength === undefined ? undefined : { description: PAD, length: aesLength },
});
// assert.throws compares each property: strings exactly, regular expressions by match.
const refusal = (message: string | RegExp) => ({ type: ErrorType.HsmMechanismUnsupported, nonRetryable: true, message });

test('wrap output of the lengths AWS KMS unwraps is accepted: modulus-sized RSA part, 40-byte RFC 5649 part', () => {
  for (const modulusBytes of [256, 384, 512]) {
    checkWrapOutputLengths(lengths(modulusBytes, modulusBytes));
    checkWrapOutputLengths(lengths(modulusBytes, modulusBytes, 40));
  }
});

test('an AES key wrap part of any length but 40 is HsmMechanismUnsupported, naming mechanism, length and RFC 5649', () => {
  assert.throws(
    () => checkWrapOutputLengths(lengths(256, 256, 48)),
    refusal(
      `${HSM}: for RSA_AES_KEY_WRAP_SHA_1, ${PAD} produced 48 bytes from the AES-256 key, but AWS KMS expects ` +
        'RFC 5649, which gives 40 (48 would be PKCS#7 padding + RFC 3394)',
    ),
  );
  for (const length of [0, 32, 39, 41, 56]) {
    assert.throws(
      () => checkWrapOutputLengths(lengths(256, 256, length)),
      refusal(new RegExp(`produced ${length} bytes from the AES-256 key, but AWS KMS expects RFC 5649`)),
    );
  }
});

test('an RSA part not as long as the modulus is HsmMechanismUnsupported, for either algorithm family', () => {
  assert.throws(
    () => checkWrapOutputLengths(lengths(256, 255)),
    refusal(`${HSM}: for RSAES_OAEP_SHA_1, ${OAEP} produced 255 bytes, but the RSA modulus has 256`),
  );
  assert.throws(
    () => checkWrapOutputLengths(lengths(384, 256, 40)),
    refusal(`${HSM}: for RSA_AES_KEY_WRAP_SHA_1, ${OAEP} produced 256 bytes, but the RSA modulus has 384`),
  );
});

test('an unknown algorithm name is a non-retryable InvalidInput', () => {
  assert.throws(
    () => wrapPlan('RSAES_PKCS1_V1_5' as WrappingAlgorithm),
    (e: unknown) =>
      e instanceof ApplicationFailure && e.type === ErrorType.InvalidInput && e.nonRetryable && /RSAES_PKCS1_V1_5/.test(e.message),
  );
});
