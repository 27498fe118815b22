import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { planImport, type ImportKeyInput } from '../../workflows/import-request';

const now = new Date('2026-06-01T12:00:00.000Z');
const publicKeyHex = () => Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
const approverKeys = { alice: publicKeyHex(), bob: publicKeyHex() };
const base: ImportKeyInput = { alias: 'payments', requester: 'rita', approvers: ['alice', 'bob'], requiredApprovals: 2, approverKeys };

describe('planImport', () => {
  it('applies the documented defaults', () => {
    const plan = planImport(base, now);
    assert.deepEqual(plan, {
      operation: 'import',
      alias: 'alias/payments',
      aliasName: 'payments',
      description: 'BYOK key alias/payments, material from the HSM',
      createKmsKey: true,
      wrappingAlgorithm: 'RSAES_OAEP_SHA_256',
      wrappingKeySpec: 'RSA_2048',
      expirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      validTo: undefined,
      hsmKeyLabel: 'byok/payments',
      hsmKeyLabelFromKey: false,
      generateHsmKey: true,
      requester: 'rita',
      approvers: ['alice', 'bob'],
      requiredApprovals: 2,
      approverKeys,
      approvalTimeoutMs: 72 * 3_600_000,
      tokenSafetyMarginMs: 3_600_000,
      maxTokenRefreshes: 3,
    });
  });

  it('restore and reimport use the existing keys and take the HSM label from the KMS key unless given', () => {
    const restore = planImport({ ...base, operation: 'restore' }, now);
    assert.equal(restore.createKmsKey, false);
    assert.equal(restore.generateHsmKey, false);
    assert.equal(restore.hsmKeyLabelFromKey, true);
    assert.equal(planImport({ ...base, operation: 'restore', hsmKeyLabel: 'vault/x' }, now).hsmKeyLabelFromKey, false);
    assert.throws(() => planImport({ ...base, operation: 'restore', generateHsmKey: true }, now), /invalid generateHsmKey: must be false for restore/);
    assert.throws(() => planImport({ ...base, operation: 'reimport' }, now), /invalid expirationModel: reimport sets a new ValidTo/);
    assert.throws(() => planImport({ ...base, operation: 'delete' as never }, now), /invalid operation: expected one of import, restore, reimport/);
  });

  it('turns signatures off only when asked to, explicitly', () => {
    assert.equal(planImport({ ...base, approverKeys: undefined, unsignedApprovals: true }, now).approverKeys, null);
  });

  it('accepts an "alias/" prefix, RSA_4096, and rounds ValidTo down to whole seconds', () => {
    const plan = planImport(
      { ...base, alias: 'alias/team/app_1', wrappingKeySpec: 'RSA_4096', expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: '2026-09-01T00:00:00.750Z' },
      now,
    );
    assert.equal(plan.alias, 'alias/team/app_1');
    assert.equal(plan.wrappingKeySpec, 'RSA_4096');
    assert.equal(plan.validTo, '2026-09-01T00:00:00.000Z');
  });

  const refused: Array<[string, Partial<ImportKeyInput> & Record<string, unknown>, RegExp]> = [
    ['alias with a space', { alias: 'my key' }, /invalid alias: expected 1-250 characters/],
    ['alias/aws/ prefix', { alias: 'alias/aws/s3' }, /invalid alias: "alias\/aws\/" is reserved/],
    ['empty alias', { alias: '' }, /invalid alias/],
    ['oversized description', { description: 'x'.repeat(8193) }, /invalid description: expected a string of at most 8192/],
    ['unknown wrapping algorithm', { wrappingAlgorithm: 'RSAES_PKCS1_V1_5' as never }, /invalid wrappingAlgorithm: expected one of RSAES_OAEP_SHA_256/],
    ['unknown key spec', { wrappingKeySpec: 'RSA_1024' as never }, /invalid wrappingKeySpec: expected one of RSA_2048, RSA_3072, RSA_4096/],
    ['unknown expiration model', { expirationModel: 'SOMETIMES' as never }, /invalid expirationModel/],
    ['expiring without ValidTo', { expirationModel: 'KEY_MATERIAL_EXPIRES' }, /invalid validTo: required with KEY_MATERIAL_EXPIRES/],
    ['ValidTo in the past', { expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: '2026-05-01T00:00:00Z' }, /invalid validTo: .* is in the past/],
    ['ValidTo over 365 days', { expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: '2027-06-02T12:00:01Z' }, /invalid validTo: AWS KMS accepts at most 365 days/],
    ['ValidTo not a time', { expirationModel: 'KEY_MATERIAL_EXPIRES', validTo: 'tomorrow' }, /invalid validTo: expected an ISO-8601 time/],
    ['ValidTo without expiry', { validTo: '2026-09-01T00:00:00Z' }, /invalid validTo: only allowed with expirationModel KEY_MATERIAL_EXPIRES/],
    ['HSM label with control characters', { hsmKeyLabel: 'a\nb' }, /invalid hsmKeyLabel/],
    ['empty approver set', { approvers: [] }, /invalid approvers: expected at least one approver/],
    ['approver listed twice', { approvers: ['alice', 'alice'] }, /invalid approvers: "alice" is listed twice/],
    ['requester among the approvers', { approvers: ['alice', 'rita'] }, /invalid approvers: the requester "rita" cannot be one of the approvers/],
    ['bad approver id', { approvers: ['alice', 'bob;rm'] }, /invalid approvers\[1\]/],
    ['missing requester', { requester: undefined as never }, /invalid requester/],
    ['required larger than the set', { requiredApprovals: 3 }, /invalid requiredApprovals: expected a whole number from 1 to 2, got 3/],
    ['required zero', { requiredApprovals: 0 }, /invalid requiredApprovals/],
    ['required fractional', { requiredApprovals: 1.5 }, /invalid requiredApprovals/],
    ['negative deadline', { approvalTimeout: -5 }, /invalid approvalTimeout: must be between 1 minutes and 720 hours/],
    ['absurd deadline', { approvalTimeout: '400d' }, /invalid approvalTimeout/],
    ['deadline not a duration', { approvalTimeout: 'soon' as never }, /invalid approvalTimeout: expected a duration/],
    ['token margin of a day', { tokenSafetyMargin: '24h' }, /invalid tokenSafetyMargin/],
    ['too many token refreshes', { maxTokenRefreshes: 50 }, /invalid maxTokenRefreshes/],
    ['non-boolean createKmsKey', { createKmsKey: 'yes' as never }, /invalid createKmsKey: expected true or false/],
    ['no approver keys', { approverKeys: undefined }, /invalid approverKeys: expected \{approver: Ed25519 public key \(hex\)\} for every approver, or unsignedApprovals: true/],
    ['an approver without a key', { approverKeys: { alice: approverKeys.alice } }, /invalid approverKeys\.bob: missing/],
    ['a truncated approver key', { approverKeys: { ...approverKeys, bob: approverKeys.bob.slice(0, 62) } }, /invalid approverKeys\.bob: expected a raw Ed25519 public key: 64 lower-case hex/],
    ['an approver key off the curve', { approverKeys: { ...approverKeys, bob: 'ff'.repeat(32) } }, /invalid approverKeys\.bob: is not a point on the Ed25519 curve/],
    ['two approvers sharing a key', { approverKeys: { alice: approverKeys.alice, bob: approverKeys.alice } }, /invalid approverKeys\.bob: is the same key as another approver's/],
    ['a key for someone not an approver', { approverKeys: { ...approverKeys, mallory: publicKeyHex() } }, /invalid approverKeys\.mallory: is not one of the approvers/],
    ['keys with signatures turned off', { unsignedApprovals: true }, /invalid approverKeys: not used with unsignedApprovals: true/],
    ['non-boolean unsignedApprovals', { unsignedApprovals: 'yes' as never }, /invalid unsignedApprovals: expected true or false/],
  ];
  for (const [name, change, message] of refused) {
    it(`refuses ${name} with InvalidInput`, () => {
      assert.throws(
        () => planImport({ ...base, ...change } as ImportKeyInput, now),
        (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput' && err.nonRetryable && message.test(err.message),
      );
    });
  }
});
