// Misconfiguration is reported as typed, non-retryable failures, without the PIN in them.
// Each case has activities of its own; close() finalizes the library between them.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { type HsmConfig, createHsmActivities } from '../../activities/hsm';
import { initSoftHsmToken } from '../../scripts/softhsm';
import { ErrorType } from '../../workflows/errors';
import { PIN, SO_PIN, type SoftHsmToken, TOKEN_LABEL, makeToken, rejectsWith } from './softhsm-fixture';

let token: SoftHsmToken;
before(async () => {
  token = await makeToken();
});
after(async () => {
  await token.remove();
});

async function ensureWith(overrides: Partial<HsmConfig>) {
  const hsm = createHsmActivities({ ...token.config, ...overrides });
  try {
    return await hsm.activities.ensureHsmKey({ label: 'any', generate: true });
  } finally {
    await hsm.close();
  }
}

test('a wrong PIN is HsmLoginFailed, and neither PIN appears in the message', async () => {
  const wrongPin = '97531864';
  const failure = await rejectsWith(ensureWith({ pin: wrongPin }), ErrorType.HsmLoginFailed);
  assert.match(failure.message, /CKR_PIN_INCORRECT/);
  assert.ok(!failure.message.includes(wrongPin));
  assert.ok(!failure.message.includes(PIN));
});

test('a module path that does not exist is HsmModuleNotFound', async () => {
  const missing = path.join(path.dirname(token.config.module), 'no-such-pkcs11.so');
  const failure = await rejectsWith(ensureWith({ module: missing }), ErrorType.HsmModuleNotFound);
  assert.match(failure.message, /no-such-pkcs11\.so/);
});

test('an unknown token label is HsmTokenNotFound, listing the labels present', async () => {
  const failure = await rejectsWith(ensureWith({ tokenLabel: 'no-such-token' }), ErrorType.HsmTokenNotFound);
  assert.match(failure.message, /no HSM token labelled "no-such-token"/);
  assert.match(failure.message, new RegExp(`tokens present: "${TOKEN_LABEL}"$`));
});

test('a library that fails to initialise is a plain, retryable error (a network HSM may come back)', async () => {
  const conf = process.env.SOFTHSM2_CONF;
  // SoftHSM2 reads its configuration in C_Initialize, from the process environment.
  process.env.SOFTHSM2_CONF = path.join(token.dir, 'no-such-softhsm2.conf');
  try {
    const error = await ensureWith({}).then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e,
    );
    // Crossed from the session's thread as what it was: not turned into a typed failure.
    assert.ok(error instanceof Error && !(error instanceof ApplicationFailure), `expected a plain Error, got ${String(error)}`);
    assert.match(error.message, /^cannot initialise PKCS#11 module .*libsofthsm2\.so: CKR_GENERAL_ERROR/);
  } finally {
    process.env.SOFTHSM2_CONF = conf;
  }
});

test('the right configuration works after the failed ones', async () => {
  const ref = await ensureWith({});
  assert.equal(ref.created, true);
});

test('initSoftHsmToken on the same folder again keeps the one token and its keys', async () => {
  await initSoftHsmToken({ dir: token.dir, label: TOKEN_LABEL, soPin: SO_PIN, pin: PIN });
  // A second token with this label would be HsmTokenNotFound ("2 HSM tokens are labelled ...").
  const ref = await ensureWith({});
  assert.equal(ref.created, false);
});
