// Stand-ins for the KMS and HSM activities, for workflow tests on the time-skipping server. They
// record every call and can be told to fail, so a test can assert what the workflow asked for.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { HsmActivities } from '../../activities/hsm';
import type { KeyDescription, KeyMaterial, KeyMaterials, KmsActivities } from '../../activities/kms';

const DAY_MS = 24 * 3_600_000;

export interface Fakes {
  kms: KmsActivities;
  hsm: HsmActivities;
  calls: Record<string, unknown[]>;
  /** Set to make the next calls of an activity throw, one entry per call. */
  failures: Record<string, Array<() => Error>>;
  /** Set to hold an activity until the promise settles. */
  holds: Record<string, Promise<void>>;
  /** What the fake KMS holds: alias -> key id, and each key's materials (ListKeyRotations). */
  aliases: Record<string, string>;
  materials: Record<string, KeyMaterial[]>;
  /** Per key id: its state after disableKey / scheduleKeyDeletion. */
  keyStates: Record<string, string>;
  /** What dueAliases answers. */
  due: string[];
  /** false: no material ids and no RotateKeyOnDemand, as on local-kms. */
  nativeRotation: boolean;
  /** false: DescribeKey names the current material but there is no ListKeyRotations, as on LocalStack. */
  listsRotations: boolean;
  /** What describeKey reports (key-1); importing, deleting material, disabling and tagging change it as KMS would. */
  key: KeyDescription;
}

const arn = (keyId: string) => `arn:aws:kms:us-east-1:111122223333:key/${keyId}`;

export function fakes(): Fakes {
  const calls: Record<string, unknown[]> = {};
  const failures: Record<string, Array<() => Error>> = {};
  const holds: Record<string, Promise<void>> = {};
  const aliases: Record<string, string> = {};
  const materials: Record<string, KeyMaterial[]> = {};
  const keyStates: Record<string, string> = {};
  const requestKeys: Record<string, string> = {};
  const due: string[] = [];
  let tokens = 0;
  const state = { nativeRotation: true, listsRotations: true };
  const key: KeyDescription = {
    keyId: 'key-1',
    keyArn: arn('key-1'),
    keyState: 'Enabled',
    origin: 'EXTERNAL',
    hsmKey: { label: 'byok/payments', keyId: '0a0b0c', kcv: 'abcdef' },
  };
  const materialsOf = (keyId: string) => (materials[keyId] ??= [{ keyMaterialId: `${keyId}-m0`, state: 'CURRENT', importState: 'IMPORTED' }]);
  const describeMaterials = (keyId: string): KeyMaterials => {
    if (!state.nativeRotation) throw unsupported();
    const all = materialsOf(keyId);
    return {
      currentKeyMaterialId: all.find((m) => m.state === 'CURRENT')?.keyMaterialId,
      materials: state.listsRotations ? all.map((m) => ({ ...m })) : undefined,
    };
  };
  const unsupported = () => ApplicationFailure.nonRetryable('this KMS does not implement ListKeyRotations', 'NativeRotationUnsupported');
  const called = async (name: string, input: unknown) => {
    (calls[name] ??= []).push(input);
    await holds[name];
    const fail = failures[name]?.shift();
    if (fail) throw fail();
  };
  const kms: KmsActivities = {
    async checkImportTarget(input) {
      await called('checkImportTarget', input);
    },
    async ensureKmsKey(input) {
      await called('ensureKmsKey', input);
      const known = aliases[input.alias];
      if (known) return { keyId: known, keyArn: arn(known), created: false, keyState: 'Enabled' };
      return { keyId: 'key-1', keyArn: arn('key-1'), created: true, keyState: 'PendingImport' };
    },
    async ensureRequestKey(input) {
      await called('ensureRequestKey', input);
      const created = !requestKeys[input.requestId];
      const keyId = (requestKeys[input.requestId] ??= `key-${Object.keys(requestKeys).length + 2}`);
      return { keyId, keyArn: arn(keyId), created, keyState: 'PendingImport' };
    },
    async updateAlias(input) {
      await called('updateAlias', input);
      aliases[input.alias] = input.keyId;
    },
    async disableKey(input) {
      await called('disableKey', input);
      keyStates[input.keyId] = 'Disabled';
      if (input.keyId === key.keyId) key.keyState = 'Disabled';
      return { keyState: 'Disabled' };
    },
    async scheduleKeyDeletion(input) {
      await called('scheduleKeyDeletion', input);
      keyStates[input.keyId] = 'PendingDeletion';
      const now = Context.current().info.currentAttemptScheduledTimestampMs;
      return { deletionDate: new Date(now + input.pendingWindowInDays * DAY_MS).toISOString() };
    },
    async keyMaterials(input) {
      await called('keyMaterials', input);
      return describeMaterials(input.keyId);
    },
    async dueAliases(input) {
      await called('dueAliases', input);
      return due.map((alias) => ({ alias, keyId: aliases[alias] ?? 'key-1', materialSince: '2026-01-01T00:00:00.000Z' }));
    },
    async rotateKeyOnDemand(input) {
      await called('rotateKeyOnDemand', input);
      if (!state.nativeRotation) throw unsupported();
      const all = materialsOf(input.keyId);
      const next = all.find((m) => m.keyMaterialId === input.keyMaterialId);
      if (!next) throw ApplicationFailure.nonRetryable(`no material ${input.keyMaterialId}`, 'KmsRequestRejected');
      for (const m of all) if (m.state === 'CURRENT') m.state = 'NON_CURRENT';
      next.state = 'CURRENT';
      return describeMaterials(input.keyId);
    },
    async getImportParameters(input) {
      await called('getImportParameters', input);
      tokens++;
      // The server's (skipped) clock, so token expiry follows workflow time.
      const now = Context.current().info.currentAttemptScheduledTimestampMs;
      return { publicKey: 'cHVibGlj', importToken: `token-${tokens}`, parametersValidTo: new Date(now + DAY_MS).toISOString() };
    },
    async importKeyMaterial(input) {
      await called('importKeyMaterial', input);
      if (input.keyId === key.keyId) Object.assign(key, { keyState: 'Enabled', expirationModel: input.expirationModel, validTo: input.validTo });
      if (input.importType !== 'NEW_KEY_MATERIAL') return {};
      const all = materialsOf(input.keyId);
      const material = { keyMaterialId: `${input.keyId}-m${all.length}`, description: input.keyMaterialDescription, state: 'PENDING_ROTATION', importState: 'IMPORTED' };
      all.push(material);
      return { keyMaterialId: material.keyMaterialId };
    },
    async verifyKey(input) {
      await called('verifyKey', input);
      return { keyState: 'Enabled', origin: 'EXTERNAL', expirationModel: input.expirationModel, validTo: input.validTo, roundTrip: true };
    },
    async describeKey(input) {
      await called('describeKey', input);
      return structuredClone(key);
    },
    async recordHsmKey(input) {
      await called('recordHsmKey', input);
      if (input.keyId === key.keyId) key.hsmKey = { ...input.hsmKey };
    },
    async deleteImportedKeyMaterial(input) {
      await called('deleteImportedKeyMaterial', input);
      Object.assign(key, { keyState: 'PendingImport', expirationModel: undefined, validTo: undefined });
      return { keyState: 'PendingImport' };
    },
  };
  const hsm: HsmActivities = {
    async checkHsmKey(input) {
      await called('checkHsmKey', input);
    },
    async ensureHsmKey(input) {
      await called('ensureHsmKey', input);
      return { label: input.label, keyId: '0a0b0c', kcv: 'abcdef', created: true };
    },
    async wrapKey(input) {
      await called('wrapKey', input);
      return { encryptedKeyMaterial: `wrapped-under-${input.publicKey}` };
    },
  };
  return {
    kms,
    hsm,
    calls,
    failures,
    holds,
    aliases,
    materials,
    keyStates,
    due,
    key,
    get nativeRotation() {
      return state.nativeRotation;
    },
    set nativeRotation(on: boolean) {
      state.nativeRotation = on;
    },
    get listsRotations() {
      return state.listsRotations;
    },
    set listsRotations(on: boolean) {
      state.listsRotations = on;
    },
  };
}

export const tokenExpired = () => ApplicationFailure.nonRetryable('import token expired', 'ImportTokenExpired');
export const tokenInvalid = () => ApplicationFailure.nonRetryable('import token is not the current one', 'ImportTokenInvalid');
