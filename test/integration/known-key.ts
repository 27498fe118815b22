// Puts an AES key of known value on a stack's SoftHSM token, as an operator would before
// importing it, so tests can look for its bytes afterwards. Run it before the worker opens the token.
import assert from 'node:assert/strict';
import { KeyType, Module, ObjectClass, SessionFlag } from 'graphene-pk11';
import { tools } from '../../scripts/paths';

export function createKnownKey(softhsmConf: string, tokenLabel: string, pin: string, key: { label: string; id: string; value: Buffer }): void {
  process.env.SOFTHSM2_CONF = softhsmConf;
  const mod = Module.load(tools.softhsmModule);
  mod.initialize();
  try {
    const slot = [...mod.getSlots(true)].find((s) => s.getToken().label === tokenLabel);
    assert.ok(slot, `token ${tokenLabel} not found`);
    const session = slot.open(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION);
    session.login(pin);
    session.create({
      class: ObjectClass.SECRET_KEY,
      keyType: KeyType.AES,
      label: key.label,
      id: Buffer.from(key.id),
      value: key.value,
      token: true,
      private: true,
      sensitive: true,
      extractable: true,
    });
    session.logout();
    session.close();
  } finally {
    mod.finalize();
    mod.close();
  }
}
