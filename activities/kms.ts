// AWS KMS side of the import: find or create the EXTERNAL key, fetch import parameters, import the
// wrapped material, verify the result. Every KMS call goes through one error classifier, so the
// workflow sees stable ApplicationFailure types (workflows/errors.ts) and only transient failures retry.
import { createPublicKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DeleteImportedKeyMaterialCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EncryptCommand,
  GetParametersForImportCommand,
  ImportKeyMaterialCommand,
  KMSClient,
  ListAliasesCommand,
  ListKeyRotationsCommand,
  ListKeysCommand,
  ListResourceTagsCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  TagResourceCommand,
  UpdateAliasCommand,
  type KeyMetadata,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from '@aws-sdk/client-kms';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../workflows/errors';
import { invalidInput, wholeSecondsIso } from '../workflows/import-request';
import { EXPIRATION_MODELS, type ExpirationModel, type WrappingAlgorithm, type WrappingKeySpec } from '../workflows/model';

export interface EnsureKmsKeyInput {
  /** Full alias name, e.g. "alias/payments". */
  alias: string;
  description: string;
  /** false: the alias must already exist (else UnknownAlias). */
  createIfMissing: boolean;
  /** The workflow id; every key we create is tagged with it so a retry finds it instead of creating another. */
  requestId: string;
}
export interface CheckImportTargetInput {
  alias: string;
  /** false: the alias must already exist (else UnknownAlias). */
  createIfMissing: boolean;
}
export interface KmsKeyRef {
  keyId: string;
  keyArn: string;
  /** True only when this call created the key. */
  created: boolean;
  /** KMS KeyState at the time of the call, e.g. "PendingImport" or "Enabled". */
  keyState: string;
}
export interface GetImportParametersInput {
  keyId: string;
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: WrappingKeySpec;
}
export interface ImportParameters {
  /** Wrapping public key, DER SubjectPublicKeyInfo, base64. */
  publicKey: string;
  /** Import token, base64. */
  importToken: string;
  /** ISO-8601 instant after which the token is no longer accepted. */
  parametersValidTo: string;
}
export interface ImportKeyMaterialInput {
  keyId: string;
  importToken: string;
  /** Wrapped key material, base64. */
  encryptedKeyMaterial: string;
  expirationModel: ExpirationModel;
  /** ISO-8601, whole seconds; required when expirationModel is KEY_MATERIAL_EXPIRES. */
  validTo?: string;
  /**
   * Native rotation: NEW_KEY_MATERIAL adds material to a key that has some, pending until
   * RotateKeyOnDemand. Needs `keyMaterialDescription`, by which a retry finds what it imported.
   */
  importType?: 'NEW_KEY_MATERIAL';
  keyMaterialDescription?: string;
}
export interface ImportedMaterial {
  /** Returned by KMSs that keep several materials per key (AWS since 2025, LocalStack). */
  keyMaterialId?: string;
}
export interface VerifyKeyInput {
  keyId: string;
  expirationModel: ExpirationModel;
  validTo?: string;
}
export interface KeyVerification {
  keyState: string;
  origin: string;
  expirationModel: ExpirationModel;
  validTo?: string;
  /** Encrypt then Decrypt of a random probe gave the probe back. */
  roundTrip: boolean;
}

export interface EnsureRequestKeyInput {
  /** The workflow id: the key is tagged with it, so a retry finds it instead of creating another. */
  requestId: string;
  description: string;
}
export interface UpdateAliasInput {
  alias: string;
  keyId: string;
}
export interface KeyIdInput {
  keyId: string;
}
export interface ScheduleKeyDeletionInput {
  keyId: string;
  /** 7 to 30 days, as KMS allows. */
  pendingWindowInDays: number;
}
export interface KeyMaterial {
  keyMaterialId: string;
  description?: string;
  /** CURRENT, NON_CURRENT, PENDING_ROTATION, ... */
  state?: string;
  importState?: string;
  rotationDate?: string;
}
export interface DueAliasesInput {
  /** Material that became current longer ago than this is due (milliseconds). */
  olderThanMs: number;
  /** Only aliases whose name (without "alias/") starts with this. */
  prefix?: string;
}
export interface DueAlias {
  alias: string;
  keyId: string;
  /** When the key's current material became current, as far as KMS tells (see dueAliases). */
  materialSince: string;
}
export interface KeyMaterials {
  /** DescribeKey's CurrentKeyMaterialId: the material Encrypt uses. */
  currentKeyMaterialId?: string;
  /** Every material (ListKeyRotations); undefined where the KMS lacks the call (LocalStack 4.14). */
  materials?: KeyMaterial[];
}
export interface RotateKeyOnDemandInput {
  keyId: string;
  /** The pending material that must become current. */
  keyMaterialId: string;
}

/** Tag on every key this project creates; its value is the request (workflow) id. */
export const REQUEST_ID_TAG = 'byok:request-id';

/**
 * Tags naming the HSM key whose material a KMS key holds, set after each import, so that restore
 * and the expiry guardian find it from the alias alone. Identifiers, not secrets.
 */
export const HSM_KEY_TAGS = { label: 'byok:hsm-key-label', keyId: 'byok:hsm-key-id', kcv: 'byok:kcv' } as const;
/** What KMS accepts in a tag value; an HSM label outside it is not recorded (restore then needs it given). */
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;

export interface RecordedHsmKey {
  label?: string;
  keyId?: string;
  kcv?: string;
}
export interface KeyDescription {
  keyId: string;
  keyArn: string;
  /** KMS KeyState: "Enabled", "Disabled", "PendingImport", "PendingDeletion", ... */
  keyState: string;
  origin: string;
  /** Only while the key holds material. */
  expirationModel?: ExpirationModel;
  /** ISO-8601, whole seconds; only for material that expires. */
  validTo?: string;
  /** The HSM key recorded on the KMS key at import (HSM_KEY_TAGS), if any. */
  hsmKey?: RecordedHsmKey;
}
export interface RecordHsmKeyInput {
  keyId: string;
  hsmKey: { label: string; keyId: string; kcv: string };
}

/** A KMS client for the worker; credentials come from the default provider chain. */
export function kmsClient(opts: { region: string; endpoint?: string }): KMSClient {
  // The SDK sets no request timeout by default: a stalled connection would hold the activity
  // until its start-to-close timeout instead of failing fast and being retried.
  return new KMSClient({
    region: opts.region,
    endpoint: opts.endpoint,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
  });
}

// ---------------------------------------------------------------------------------------------
// Error classification

/** What a failed KMS call was about, for the failure message and its classification. */
export interface KmsCallContext {
  operation: string;
  /** The key the call addressed (id or ARN), if any. */
  keyId?: string;
  /** The alias the call addressed, if any. Without keyId, NotFound means the alias is unknown. */
  alias?: string;
  /** The key's state when known: tells a pending deletion from other KMSInvalidStateExceptions. */
  keyState?: string;
}

interface AwsErrorShape {
  name?: string;
  message?: string;
  code?: string;
  $fault?: 'client' | 'server';
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

// Error names without their "Exception" suffix: services and the SDK spell some either way.
const TRANSIENT = new Set([
  'Throttling',
  'TooManyRequests',
  'KMSInternal',
  'DependencyTimeout',
  'KeyUnavailable',
  'TimeoutError',
  'RequestTimeout',
  // Temporary credentials that ran out; the default provider chain fetches fresh ones.
  'ExpiredToken',
]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const ACCESS_DENIED = new Set([
  'AccessDenied',
  'UnrecognizedClient',
  'InvalidSignature',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'InvalidClientTokenId',
  'NotAuthorized',
]);

function errorName(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as AwsErrorShape).name : undefined;
}

function subject(ctx: KmsCallContext): string {
  if (ctx.alias && ctx.keyId) return `${ctx.alias} (key ${ctx.keyId})`;
  if (ctx.alias) return `alias ${ctx.alias}`;
  return ctx.keyId ? `key ${ctx.keyId}` : 'the account';
}

/**
 * Turns any error from a KMS call into an ApplicationFailure: non-retryable with an ErrorType
 * when retrying cannot help, retryable otherwise (throttling, KMS-side faults, network errors).
 */
export function classifyKmsError(err: unknown, ctx: KmsCallContext): ApplicationFailure {
  const e: AwsErrorShape = typeof err === 'object' && err !== null ? err : { message: String(err) };
  const name = e.name ?? 'Error';
  const base = name.replace(/Exception$/, '');
  const status = e.$metadata?.httpStatusCode;
  const requestId = e.$metadata?.requestId ? `, request id ${e.$metadata.requestId}` : '';
  const aws = `${name}: ${e.message ?? ''}${requestId}`;
  const what = subject(ctx);
  const cause = err instanceof Error ? err : undefined;
  const fail = (type: ErrorType, why: string): ApplicationFailure =>
    ApplicationFailure.create({ message: `${ctx.operation} on ${what}: ${why} (${aws})`, type, nonRetryable: true, cause });

  const networkCode = e.code !== undefined && NETWORK_CODES.has(e.code) ? e.code : undefined;
  if (e.$retryable || TRANSIENT.has(base) || networkCode || status === 429 || (status ?? 0) >= 500 || e.$fault === 'server') {
    return ApplicationFailure.create({
      message: `${ctx.operation} on ${what} failed and will be retried (${aws})`,
      type: networkCode ?? name,
      nonRetryable: false,
      cause,
    });
  }

  switch (base) {
    case 'NotFound':
      return ctx.alias && !ctx.keyId
        ? fail(ErrorType.UnknownAlias, `alias ${ctx.alias} does not exist in this account and region`)
        : fail(ErrorType.KmsRequestRejected, `${what} does not exist in this account and region`);
    case 'ExpiredImportToken':
      return fail(
        ErrorType.ImportTokenExpired,
        'the import token has expired (tokens are valid for 24 hours); get new import parameters and wrap the material again',
      );
    case 'InvalidImportToken':
      return fail(
        ErrorType.ImportTokenInvalid,
        `the import token is not the current one for ${what} (a newer GetParametersForImport replaces it, and a token ` +
          'only works for the key it was issued for); get new import parameters and wrap the material again',
      );
    case 'IncorrectKeyMaterial':
      return fail(
        ErrorType.KeyHasDifferentMaterial,
        `${what} already holds different key material; an EXTERNAL key only ever accepts the material first imported into it`,
      );
    case 'InvalidCiphertext':
      return fail(
        ErrorType.InvalidCiphertext,
        ctx.operation === 'ImportKeyMaterial'
          ? 'KMS could not unwrap the key material; expected material wrapped under the public key that came with this ' +
              'import token, using the wrapping algorithm requested with it'
          : `KMS could not decrypt the ciphertext with ${what}`,
      );
    case 'KMSInvalidState':
      return ctx.keyState === 'PendingDeletion' || ctx.keyState === 'PendingReplicaDeletion'
        ? fail(ErrorType.KeyPendingDeletion, `${what} is scheduled for deletion; cancel the deletion or use another key`)
        : fail(ErrorType.KeyUnusableState, `${what} is in state ${ctx.keyState ?? 'unknown'}, which ${ctx.operation} does not accept`);
    case 'Disabled':
      return fail(ErrorType.KeyUnusableState, `${what} is disabled; expected an enabled key`);
    case 'CredentialsProviderError':
      return fail(
        ErrorType.KmsAccessDenied,
        'the worker has no AWS credentials; configure them for the default provider chain: AWS_ACCESS_KEY_ID and ' +
          'AWS_SECRET_ACCESS_KEY in the environment, a profile (AWS_PROFILE, ~/.aws/config and credentials), or an ' +
          'instance or container role',
      );
  }
  if (ACCESS_DENIED.has(base)) {
    return fail(ErrorType.KmsAccessDenied, "denied; check the worker's AWS credentials, its IAM permissions and the key policy");
  }
  if ((status ?? 0) >= 400 || e.$fault === 'client') {
    return fail(ErrorType.KmsRequestRejected, 'KMS rejected the request');
  }
  // No response at all and nothing we recognise: most likely transient, and the retry policy bounds it.
  return ApplicationFailure.create({ message: `${ctx.operation} on ${what} failed (${aws})`, type: name, cause });
}

// ---------------------------------------------------------------------------------------------
// Activities

type DescribedKey = KeyMetadata & { KeyId: string; Arn: string };

/** The running activity's context; undefined when called directly, as the tests do. */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

function described(metadata: KeyMetadata | undefined, operation: string): DescribedKey {
  if (!metadata?.KeyId || !metadata.Arn) throw new Error(`${operation} returned no key metadata`);
  return metadata as DescribedKey;
}

/** Strict base64 (what GetParametersForImport and the HSM side produce); rejects anything else. */
function base64Input(value: string, field: string): Uint8Array {
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length === 0 || bytes.toString('base64') !== value) throw invalidInput(field, 'expected non-empty base64');
  return bytes;
}

/** The ValidTo to send or expect, in whole seconds; undefined for material that does not expire. */
function validToInput(model: ExpirationModel, validTo: string | undefined): string | undefined {
  if (!EXPIRATION_MODELS.includes(model)) {
    throw invalidInput('expirationModel', `expected one of ${EXPIRATION_MODELS.join(', ')}, got ${JSON.stringify(model)}`);
  }
  if (model === 'KEY_MATERIAL_DOES_NOT_EXPIRE') {
    if (validTo !== undefined) throw invalidInput('validTo', 'only allowed with expirationModel KEY_MATERIAL_EXPIRES');
    return undefined;
  }
  if (validTo === undefined) throw invalidInput('validTo', 'required with KEY_MATERIAL_EXPIRES');
  const ms = Date.parse(validTo);
  if (Number.isNaN(ms)) throw invalidInput('validTo', `expected an ISO-8601 time, got ${JSON.stringify(validTo)}`);
  return wholeSecondsIso(ms);
}

/** local-kms answers calls it lacks with HTTP 501; AWS endpoints with UnknownOperationException. */
function unsupportedOperation(err: unknown): boolean {
  const e = (typeof err === 'object' && err !== null ? err : {}) as AwsErrorShape;
  return e.$metadata?.httpStatusCode === 501 || /^UnknownOperation/.test(e.name ?? '');
}

function isPendingDeletion(key: DescribedKey): boolean {
  return key.KeyState === 'PendingDeletion' || key.KeyState === 'PendingReplicaDeletion';
}

/** Why the key cannot take imported material, or undefined if it can. */
function unsuitability(key: DescribedKey): { type: ErrorType; why: string } | undefined {
  if (key.Origin !== 'EXTERNAL') {
    return { type: ErrorType.KeyNotExternal, why: `has origin ${key.Origin}; importing key material needs a key created with Origin EXTERNAL` };
  }
  if (isPendingDeletion(key)) {
    const when = key.DeletionDate ? ` for ${key.DeletionDate.toISOString()}` : '';
    return { type: ErrorType.KeyPendingDeletion, why: `is scheduled for deletion${when}; cancel the deletion or use another key` };
  }
  if (key.KeyState === 'Disabled' || key.KeyState === 'Unavailable') {
    return { type: ErrorType.KeyUnusableState, why: `is ${key.KeyState}; expected PendingImport or Enabled` };
  }
  const spec = key.KeySpec ?? key.CustomerMasterKeySpec;
  if (spec !== 'SYMMETRIC_DEFAULT' || key.KeyUsage !== 'ENCRYPT_DECRYPT') {
    return { type: ErrorType.KeyUnusableState, why: `is a ${spec} ${key.KeyUsage} key; expected SYMMETRIC_DEFAULT for ENCRYPT_DECRYPT` };
  }
  return undefined;
}

/** `note`: anything else the caller did that the failure message must not hide. */
function checkImportTarget(key: DescribedKey, label: string, note?: string): DescribedKey {
  const problem = unsuitability(key);
  if (problem) {
    throw ApplicationFailure.nonRetryable(`key ${key.KeyId} (${label}) ${problem.why}${note ? `; ${note}` : ''}`, problem.type);
  }
  return key;
}

/**
 * Verification saw a key that is not usable yet although its material was imported. On AWS KMS
 * that is eventual consistency (the import has not reached every KMS host), so it is retried; the
 * workflow's schedule-to-close timeout bounds how long.
 */
function notYetUsable(keyId: string, seen: string, cause?: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    message: `key ${keyId}: ${seen} after its key material was imported; KMS may not have propagated the import yet, will retry`,
    type: 'KeyNotYetUsable',
    nonRetryable: false,
    cause: cause instanceof Error ? cause : undefined,
  });
}

const SPEC_BITS: Record<WrappingKeySpec, number> = { RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096 };

/**
 * Refuses import parameters that no KMS should send: the wrapping public key must be the RSA key
 * of the requested size (never under 2048 bits), the token present, its validity ahead. Only what
 * is checked here reaches the HSM.
 */
function checkedImportParameters(
  input: GetImportParametersInput,
  out: { PublicKey?: Uint8Array; ImportToken?: Uint8Array; ParametersValidTo?: Date },
): ImportParameters {
  const refuse = (type: ErrorType, problem: string) =>
    ApplicationFailure.nonRetryable(`GetParametersForImport for key ${input.keyId} returned ${problem}`, type);
  if (!out.PublicKey?.length) throw refuse(ErrorType.InvalidWrappingPublicKey, 'no PublicKey');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' });
  } catch (err) {
    throw refuse(ErrorType.InvalidWrappingPublicKey, `a PublicKey that is not a DER SubjectPublicKeyInfo (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw refuse(ErrorType.InvalidWrappingPublicKey, `a ${key.asymmetricKeyType} PublicKey, not RSA`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) throw refuse(ErrorType.InvalidWrappingPublicKey, `a ${bits}-bit PublicKey; at least 2048 bits are required`);
  if (bits !== SPEC_BITS[input.wrappingKeySpec]) {
    throw refuse(ErrorType.InvalidWrappingPublicKey, `a ${bits}-bit PublicKey, but ${input.wrappingKeySpec} was requested`);
  }
  if (!out.ImportToken?.length) throw refuse(ErrorType.InvalidImportParameters, 'no ImportToken');
  if (!out.ParametersValidTo || Number.isNaN(out.ParametersValidTo.getTime())) {
    throw refuse(ErrorType.InvalidImportParameters, 'no ParametersValidTo');
  }
  if (out.ParametersValidTo.getTime() <= Date.now()) {
    throw refuse(ErrorType.InvalidImportParameters, `parameters that expired already (ParametersValidTo ${out.ParametersValidTo.toISOString()})`);
  }
  return {
    publicKey: Buffer.from(out.PublicKey).toString('base64'),
    importToken: Buffer.from(out.ImportToken).toString('base64'),
    parametersValidTo: out.ParametersValidTo.toISOString(),
  };
}

function keyRef(key: DescribedKey, created: boolean): KmsKeyRef {
  return { keyId: key.KeyId, keyArn: key.Arn, created, keyState: String(key.KeyState) };
}

export interface KmsActivityOptions {
  /**
   * The attempt number a call made outside a Temporal activity (a script, a test) counts as.
   * Only a retry (attempt > 1) looks for a key an earlier attempt created; the default, 2, looks.
   */
  attemptOutsideActivity?: number;
}

export function createKmsActivities(client: KMSClient, options: KmsActivityOptions = {}) {
  // Every call carries the attempt's cancellation signal: once Temporal cancels the attempt, or
  // times it out (the worker learns at the next heartbeat), it sends no further KMS requests.
  function send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(command: Parameters<typeof client.send<I, O>>[0]): Promise<O> {
    return client.send(command, { abortSignal: activityContext()?.cancellationSignal });
  }

  async function failure(err: unknown, ctx: KmsCallContext): Promise<Error> {
    // A cancelled attempt reports its cancellation, not the AbortError that stopped its request.
    const signal = activityContext()?.cancellationSignal;
    if (signal?.aborted) return signal.reason as Error;
    const target = ctx.keyId ?? ctx.alias;
    if (errorName(err) === 'KMSInvalidStateException' && target && !ctx.keyState) {
      // The exception does not say which state; the key does.
      const state = await send(new DescribeKeyCommand({ KeyId: target })).then(
        (out) => out.KeyMetadata?.KeyState,
        () => undefined,
      );
      return classifyKmsError(err, { ...ctx, keyState: state });
    }
    return classifyKmsError(err, ctx);
  }

  async function call<T>(ctx: KmsCallContext, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      throw await failure(err, ctx);
    }
  }

  /**
   * ImportKeyMaterial, recognising a retry of a NEW_KEY_MATERIAL import where the KMS cannot list
   * materials by description: LocalStack refuses a second pending material, naming the ids of both;
   * when they are the same material, an earlier attempt imported it.
   */
  async function importCall<T extends { KeyMaterialId?: string }>(keyId: string, request: () => Promise<T>): Promise<{ KeyMaterialId?: string }> {
    try {
      return await request();
    } catch (err) {
      const pending = /New key material \(id: (\w+)\) cannot be imported .* another key material \(id: (\w+)\) is pending rotation/.exec(
        (err as Error)?.message ?? '',
      );
      if (errorName(err) === 'KMSInvalidStateException' && pending && pending[1] === pending[2]) return { KeyMaterialId: pending[1] };
      throw await failure(err, { operation: 'ImportKeyMaterial', keyId });
    }
  }

  async function describe(keyId: string): Promise<DescribedKey> {
    const out = await call({ operation: 'DescribeKey', keyId }, () => send(new DescribeKeyCommand({ KeyId: keyId })));
    return described(out.KeyMetadata, 'DescribeKey');
  }

  /** The key behind the alias, or undefined if there is no such alias. */
  async function describeAlias(alias: string): Promise<DescribedKey | undefined> {
    try {
      const out = await send(new DescribeKeyCommand({ KeyId: alias }));
      return described(out.KeyMetadata, 'DescribeKey');
    } catch (err) {
      if (errorName(err) === 'NotFoundException') return undefined;
      throw await failure(err, { operation: 'DescribeKey', alias });
    }
  }

  /** The key's tags; undefined when the key is gone (deleted since it was listed). */
  async function tagsOf(keyId: string): Promise<Map<string, string> | undefined> {
    const tags = new Map<string, string>();
    let marker: string | undefined;
    do {
      let page;
      try {
        page = await send(new ListResourceTagsCommand({ KeyId: keyId, Marker: marker }));
      } catch (err) {
        if (errorName(err) === 'NotFoundException') return undefined;
        throw await failure(err, { operation: 'ListResourceTags', keyId });
      }
      for (const t of page.Tags ?? []) if (t.TagKey) tags.set(t.TagKey, t.TagValue ?? '');
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return tags;
  }

  /**
   * A key an earlier attempt of this request created, found by its tag (the alias may be missing).
   * ListKeys gives ids only, so each key costs a ListResourceTags call: minutes on an account with
   * thousands of keys. A heartbeat per key lets Temporal time out a stuck attempt, and cancel a
   * timed-out one before it creates a key next to the one its retry creates.
   */
  async function findRequestKey(requestId: string): Promise<DescribedKey | undefined> {
    const activity = activityContext();
    let keysScanned = 0;
    let deleted: DescribedKey | undefined;
    let marker: string | undefined;
    do {
      const page = await call({ operation: 'ListKeys' }, () => send(new ListKeysCommand({ Limit: 1000, Marker: marker })));
      for (const { KeyId } of page.Keys ?? []) {
        keysScanned += 1;
        activity?.heartbeat({ keysScanned });
        if (!KeyId || (await tagsOf(KeyId))?.get(REQUEST_ID_TAG) !== requestId) continue;
        const key = await describe(KeyId);
        // A tagged key pending deletion may be a lost race's leftover (below): a live one wins over it.
        if (!isPendingDeletion(key)) return key;
        deleted ??= key;
      }
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return deleted;
  }

  /**
   * The key an earlier attempt of this activity created for the request, if any. Only a retry can
   * follow an attempt that created one, so a first attempt skips the scan, which costs a
   * ListResourceTags per key of the account. An earlier *execution* of the same workflow id that
   * ended between CreateKey and naming the key is not looked for (docs/benchmarks.md).
   */
  async function earlierAttemptKey(requestId: string): Promise<DescribedKey | undefined> {
    const attempt = activityContext()?.info.attempt ?? options.attemptOutsideActivity ?? 2;
    return attempt > 1 ? findRequestKey(requestId) : undefined;
  }

  async function createRequestKey(input: { description: string; requestId: string; alias?: string }): Promise<DescribedKey> {
    const command = new CreateKeyCommand({
      Origin: 'EXTERNAL',
      KeySpec: 'SYMMETRIC_DEFAULT',
      KeyUsage: 'ENCRYPT_DECRYPT',
      Description: input.description,
      Tags: [{ TagKey: REQUEST_ID_TAG, TagValue: input.requestId }],
    });
    // One attempt only: after a lost response (connection reset, timeout) the SDK would send
    // CreateKey again and make a second key. Temporal's retry looks for the tagged key first.
    let firstFailure: unknown;
    command.middlewareStack.add(
      (next) => async (args) => {
        if (firstFailure !== undefined) {
          const why = firstFailure instanceof Error ? `${firstFailure.name}: ${firstFailure.message}` : String(firstFailure);
          throw Object.assign(new Error(`CreateKey failed and is not retried in place, since a retry could create a second key (${why})`), {
            name: 'CreateKeyNotRetried',
          });
        }
        try {
          return await next(args);
        } catch (err) {
          firstFailure = err;
          throw err;
        }
      },
      { step: 'finalizeRequest', priority: 'low', name: 'byokCreateKeyOnce' },
    );
    const out = await call({ operation: 'CreateKey', alias: input.alias }, () => send(command));
    return described(out.KeyMetadata, 'CreateKey');
  }

  /**
   * A key we created for an alias that then went to another key would stay in PendingImport under
   * no alias: schedule it for deletion. Best effort, never failing the call (the worker's role may
   * lack kms:ScheduleKeyDeletion); what happened is logged and returned for a failure message.
   */
  async function retireLostKey(keyId: string, alias: string): Promise<string> {
    const lost = `key ${keyId}, created for ${alias} but not used since the alias went to another key,`;
    const log = activityContext()?.log;
    try {
      const out = await send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
      const note = `${lost} is scheduled for deletion on ${out.DeletionDate?.toISOString() ?? 'unknown date'}`;
      log?.info(note);
      return note;
    } catch (err) {
      const failed = classifyKmsError(err, { operation: 'ScheduleKeyDeletion', keyId });
      const note =
        failed.type === ErrorType.KmsAccessDenied
          ? `${lost} is left in PendingImport: the worker may not schedule key deletion; schedule it by hand`
          : `${lost} is left in PendingImport: ${failed.message}`;
      log?.warn(note);
      return note;
    }
  }

  /** Every key material of the key (ListKeyRotations); undefined where the KMS lacks the call. */
  async function listMaterials(keyId: string): Promise<KeyMaterial[] | undefined> {
    const materials: KeyMaterial[] = [];
    let marker: string | undefined;
    do {
      let page;
      try {
        page = await send(new ListKeyRotationsCommand({ KeyId: keyId, IncludeKeyMaterial: 'ALL_KEY_MATERIAL', Marker: marker }));
      } catch (err) {
        if (unsupportedOperation(err)) return undefined;
        throw await failure(err, { operation: 'ListKeyRotations', keyId });
      }
      for (const r of page.Rotations ?? []) {
        if (!r.KeyMaterialId) continue;
        materials.push({
          keyMaterialId: r.KeyMaterialId,
          description: r.KeyMaterialDescription,
          state: r.KeyMaterialState,
          importState: r.ImportState,
          rotationDate: r.RotationDate?.toISOString(),
        });
      }
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return materials;
  }

  /**
   * What native rotation needs to know: the current material (DescribeKey) and, where the KMS has
   * ListKeyRotations, all of them. A KMS with neither (local-kms) cannot rotate imported material.
   */
  async function keyMaterials(keyId: string): Promise<KeyMaterials> {
    const key = await describe(keyId);
    const materials = await listMaterials(keyId);
    if (!key.CurrentKeyMaterialId && !materials) {
      throw ApplicationFailure.nonRetryable(
        `key ${keyId}: this KMS reports no key material ids (no CurrentKeyMaterialId, no ListKeyRotations), so it cannot rotate imported material natively; use the alias-swap strategy`,
        ErrorType.NativeRotationUnsupported,
      );
    }
    return { currentKeyMaterialId: key.CurrentKeyMaterialId, materials };
  }

  function checkAlias(alias: string): void {
    if (!/^alias\/.+/.test(alias)) throw invalidInput('alias', `expected a name starting with "alias/", got ${JSON.stringify(alias)}`);
    if (alias.startsWith('alias/aws/')) throw invalidInput('alias', '"alias/aws/" is reserved for AWS managed keys');
  }

  return {
    /**
     * Read-only: refuses, before anything is created on either side, what ensureKmsKey would
     * refuse: an alias of a key that is not EXTERNAL, pending deletion or unusable, or a missing
     * alias that may not be created.
     */
    async checkImportTarget(input: CheckImportTargetInput): Promise<void> {
      checkAlias(input.alias);
      const existing = await describeAlias(input.alias);
      if (existing) checkImportTarget(existing, input.alias);
      else if (!input.createIfMissing) {
        throw ApplicationFailure.nonRetryable(
          `alias ${input.alias} does not exist and createIfMissing is false; create the alias first or allow creating it`,
          ErrorType.UnknownAlias,
        );
      }
    },

    /**
     * Finds the EXTERNAL key behind the alias, or creates it (once per request) and the alias.
     * Expects its own activity options, startToCloseTimeout '10m' and heartbeatTimeout '1m' (above
     * the client's 30 s request timeout): a retry's search for an earlier attempt's key can take
     * minutes, and heartbeats as it goes.
     */
    async ensureKmsKey(input: EnsureKmsKeyInput): Promise<KmsKeyRef> {
      const { alias, requestId } = input;
      checkAlias(alias);
      if (requestId.length === 0 || requestId.length > 256) {
        throw invalidInput('requestId', `expected 1 to 256 characters (a KMS tag value), got ${requestId.length}`);
      }

      const existing = await describeAlias(alias);
      if (existing) return keyRef(checkImportTarget(existing, alias), false);
      if (!input.createIfMissing) {
        throw ApplicationFailure.nonRetryable(
          `alias ${alias} does not exist and createIfMissing is false; create the alias first or allow creating it`,
          ErrorType.UnknownAlias,
        );
      }

      // CreateKey is not idempotent: a retried attempt must find the key its predecessor made.
      const earlier = await earlierAttemptKey(requestId);
      const key = earlier ? checkImportTarget(earlier, `${REQUEST_ID_TAG}=${requestId}`) : await createRequestKey(input);

      try {
        await send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.KeyId }));
      } catch (err) {
        if (errorName(err) !== 'AlreadyExistsException') throw await failure(err, { operation: 'CreateAlias', alias, keyId: key.KeyId });
        // Someone created the alias since we looked: take whatever it points to, if it fits.
        const winner = await describeAlias(alias);
        if (!winner) throw ApplicationFailure.retryable(`alias ${alias} appeared and vanished while creating it`, 'AliasRace');
        if (winner.KeyId === key.KeyId) return keyRef(checkImportTarget(winner, alias), !earlier);
        const note = earlier ? undefined : await retireLostKey(key.KeyId, alias);
        return keyRef(checkImportTarget(winner, alias, note), false);
      }
      return keyRef(key, !earlier);
    },

    async getImportParameters(input: GetImportParametersInput): Promise<ImportParameters> {
      const out = await call({ operation: 'GetParametersForImport', keyId: input.keyId }, () =>
        send(
          new GetParametersForImportCommand({
            KeyId: input.keyId,
            WrappingAlgorithm: input.wrappingAlgorithm,
            WrappingKeySpec: input.wrappingKeySpec,
          }),
        ),
      );
      return checkedImportParameters(input, out);
    },

    async importKeyMaterial(input: ImportKeyMaterialInput): Promise<ImportedMaterial> {
      const validTo = validToInput(input.expirationModel, input.validTo);
      const importToken = base64Input(input.importToken, 'importToken');
      const encryptedKeyMaterial = base64Input(input.encryptedKeyMaterial, 'encryptedKeyMaterial');
      if (input.importType !== undefined) {
        if (input.importType !== 'NEW_KEY_MATERIAL') throw invalidInput('importType', `expected NEW_KEY_MATERIAL, got ${JSON.stringify(input.importType)}`);
        const description = input.keyMaterialDescription;
        if (!description || description.length > 256) {
          throw invalidInput('keyMaterialDescription', 'expected 1 to 256 characters with importType NEW_KEY_MATERIAL');
        }
        // A retry after a successful attempt would add the material a second time: find it instead.
        const earlier = (await listMaterials(input.keyId))?.find((m) => m.description === description);
        if (earlier) return { keyMaterialId: earlier.keyMaterialId };
      }
      const out = await importCall(input.keyId, () =>
        send(
          new ImportKeyMaterialCommand({
            KeyId: input.keyId,
            ImportToken: importToken,
            EncryptedKeyMaterial: encryptedKeyMaterial,
            // Always sent: local-kms dereferences it unconditionally.
            ExpirationModel: input.expirationModel,
            ValidTo: validTo === undefined ? undefined : new Date(validTo),
            ImportType: input.importType,
            KeyMaterialDescription: input.keyMaterialDescription,
          }),
        ),
      );
      return { keyMaterialId: out.KeyMaterialId };
    },

    /**
     * Checks the key is usable with the expected expiry, then proves it with an Encrypt/Decrypt round
     * trip. Runs after a successful import, so a key not usable yet is retried (notYetUsable).
     */
    async verifyKey(input: VerifyKeyInput): Promise<KeyVerification> {
      const expectedValidTo = validToInput(input.expirationModel, input.validTo);
      const key = await describe(input.keyId);
      if (key.KeyState === 'PendingImport') throw notYetUsable(input.keyId, 'DescribeKey shows PendingImport');
      const actualValidTo = key.ValidTo && wholeSecondsIso(key.ValidTo.getTime());
      const differences = [
        key.KeyState !== 'Enabled' && `state is ${key.KeyState}, expected Enabled`,
        key.Origin !== 'EXTERNAL' && `origin is ${key.Origin}, expected EXTERNAL`,
        key.ExpirationModel !== input.expirationModel && `expiration model is ${key.ExpirationModel ?? 'unset'}, expected ${input.expirationModel}`,
        actualValidTo !== expectedValidTo && `ValidTo is ${actualValidTo ?? 'unset'}, expected ${expectedValidTo ?? 'unset'}`,
      ].filter((d): d is string => typeof d === 'string');
      if (differences.length > 0) {
        throw ApplicationFailure.nonRetryable(`key ${input.keyId}: ${differences.join('; ')}`, ErrorType.VerificationFailed);
      }

      const probeCall = async <T>(operation: string, request: () => Promise<T>): Promise<T> => {
        try {
          return await request();
        } catch (err) {
          if (errorName(err) === 'KMSInvalidStateException') {
            throw notYetUsable(input.keyId, `${operation} refused it (KMSInvalidStateException) though DescribeKey shows Enabled`, err);
          }
          throw await failure(err, { operation, keyId: input.keyId });
        }
      };
      // A random probe, never returned or logged: it only proves the imported material works.
      const probe = randomBytes(32);
      const encrypted = await probeCall('Encrypt', () => send(new EncryptCommand({ KeyId: input.keyId, Plaintext: probe })));
      const decrypted = await probeCall('Decrypt', () =>
        send(new DecryptCommand({ KeyId: input.keyId, CiphertextBlob: encrypted.CiphertextBlob })),
      );
      const plaintext = decrypted.Plaintext;
      if (!plaintext || plaintext.length !== probe.length || !timingSafeEqual(plaintext, probe)) {
        throw ApplicationFailure.nonRetryable(
          `key ${input.keyId}: decrypting an encrypted probe did not give the probe back`,
          ErrorType.VerificationFailed,
        );
      }
      return {
        keyState: String(key.KeyState),
        origin: String(key.Origin),
        expirationModel: input.expirationModel,
        validTo: actualValidTo,
        roundTrip: true,
      };
    },

    /**
     * A new EXTERNAL key with no alias, for an alias swap: created once per request (a retry
     * finds the key its predecessor created, as ensureKmsKey's does).
     */
    async ensureRequestKey(input: EnsureRequestKeyInput): Promise<KmsKeyRef> {
      const { requestId } = input;
      if (requestId.length === 0 || requestId.length > 256) {
        throw invalidInput('requestId', `expected 1 to 256 characters (a KMS tag value), got ${requestId.length}`);
      }
      const earlier = await earlierAttemptKey(requestId);
      if (earlier) return keyRef(checkImportTarget(earlier, `${REQUEST_ID_TAG}=${requestId}`), false);
      return keyRef(await createRequestKey(input), true);
    },

    /** Points the alias at the key. Repeating it is harmless: KMS accepts the same target again. */
    async updateAlias(input: UpdateAliasInput): Promise<void> {
      if (!/^alias\/.+/.test(input.alias)) throw invalidInput('alias', `expected a name starting with "alias/", got ${JSON.stringify(input.alias)}`);
      await call({ operation: 'UpdateAlias', alias: input.alias, keyId: input.keyId }, () =>
        send(new UpdateAliasCommand({ AliasName: input.alias, TargetKeyId: input.keyId })),
      );
    },

    /** Disables the key (it keeps its material and can be enabled again); a disabled key stays disabled. */
    async disableKey(input: KeyIdInput): Promise<{ keyState: string }> {
      await call({ operation: 'DisableKey', keyId: input.keyId }, () => send(new DisableKeyCommand({ KeyId: input.keyId })));
      return { keyState: String((await describe(input.keyId)).KeyState) };
    },

    /** State, origin, expiry and the recorded HSM key of a key (by id, ARN or alias). Read-only. */
    async describeKey(input: KeyIdInput): Promise<KeyDescription> {
      const ctx = input.keyId.startsWith('alias/') ? { operation: 'DescribeKey', alias: input.keyId } : { operation: 'DescribeKey', keyId: input.keyId };
      const out = await call(ctx, () => send(new DescribeKeyCommand({ KeyId: input.keyId })));
      const key = described(out.KeyMetadata, 'DescribeKey');
      const tags = (await tagsOf(key.KeyId)) ?? new Map<string, string>();
      const hsmKey: RecordedHsmKey = { label: tags.get(HSM_KEY_TAGS.label), keyId: tags.get(HSM_KEY_TAGS.keyId), kcv: tags.get(HSM_KEY_TAGS.kcv) };
      // local-kms keeps the last ExpirationModel and ValidTo after the material is deleted; AWS clears them.
      const holdsMaterial = key.KeyState !== 'PendingImport';
      const expirationModel = holdsMaterial ? (key.ExpirationModel as ExpirationModel | undefined) : undefined;
      return {
        keyId: key.KeyId,
        keyArn: key.Arn,
        keyState: String(key.KeyState),
        origin: String(key.Origin),
        expirationModel,
        validTo: expirationModel === 'KEY_MATERIAL_EXPIRES' && key.ValidTo ? wholeSecondsIso(key.ValidTo.getTime()) : undefined,
        hsmKey: hsmKey.label || hsmKey.keyId || hsmKey.kcv ? hsmKey : undefined,
      };
    },

    /** Tags the key with the HSM key its material came from (HSM_KEY_TAGS); a label KMS cannot hold as a tag is left out. */
    async recordHsmKey(input: RecordHsmKeyInput): Promise<void> {
      const { label, keyId, kcv } = input.hsmKey;
      const tags = [
        { TagKey: HSM_KEY_TAGS.keyId, TagValue: keyId },
        { TagKey: HSM_KEY_TAGS.kcv, TagValue: kcv },
        ...(TAG_VALUE.test(label) ? [{ TagKey: HSM_KEY_TAGS.label, TagValue: label }] : []),
      ];
      await call({ operation: 'TagResource', keyId: input.keyId }, () => send(new TagResourceCommand({ KeyId: input.keyId, Tags: tags })));
    },

    /**
     * Deletes the imported material: the key goes to PendingImport and is unusable until the same
     * material is imported again. Idempotent: a key already in PendingImport is success.
     */
    async deleteImportedKeyMaterial(input: KeyIdInput): Promise<{ keyState: string }> {
      const key = await describe(input.keyId);
      if (key.Origin !== 'EXTERNAL') {
        throw ApplicationFailure.nonRetryable(`key ${key.KeyId} has origin ${key.Origin}; only EXTERNAL keys have imported material`, ErrorType.KeyNotExternal);
      }
      if (key.KeyState === 'PendingImport') return { keyState: 'PendingImport' };
      try {
        await send(new DeleteImportedKeyMaterialCommand({ KeyId: key.KeyId }));
      } catch (err) {
        // A retry of a deletion whose answer was lost: the key is where we wanted it.
        if (errorName(err) === 'KMSInvalidStateException' && (await describe(key.KeyId)).KeyState === 'PendingImport') {
          return { keyState: 'PendingImport' };
        }
        throw await failure(err, { operation: 'DeleteImportedKeyMaterial', keyId: key.KeyId });
      }
      return { keyState: String((await describe(key.KeyId)).KeyState) };
    },

    /** Schedules deletion; a key already pending deletion (an earlier attempt) reports its date. */
    async scheduleKeyDeletion(input: ScheduleKeyDeletionInput): Promise<{ deletionDate: string }> {
      const days = input.pendingWindowInDays;
      if (!Number.isInteger(days) || days < 7 || days > 30) {
        throw invalidInput('pendingWindowInDays', `expected a whole number from 7 to 30, got ${JSON.stringify(days)}`);
      }
      const key = await describe(input.keyId);
      if (isPendingDeletion(key) && key.DeletionDate) return { deletionDate: key.DeletionDate.toISOString() };
      const out = await call({ operation: 'ScheduleKeyDeletion', keyId: input.keyId }, () =>
        send(new ScheduleKeyDeletionCommand({ KeyId: input.keyId, PendingWindowInDays: days })),
      );
      return { deletionDate: out.DeletionDate?.toISOString() ?? '' };
    },

    /** The key's materials; NativeRotationUnsupported where the KMS reports none (local-kms). */
    async keyMaterials(input: KeyIdInput): Promise<KeyMaterials> {
      return keyMaterials(input.keyId);
    },

    /**
     * Makes the pending material current (RotateKeyOnDemand) and waits until DescribeKey says so.
     * A retry finds the material already current, or the rotation still running.
     */
    async rotateKeyOnDemand(input: RotateKeyOnDemandInput): Promise<KeyMaterials> {
      const isCurrent = (m: KeyMaterials) => m.currentKeyMaterialId === input.keyMaterialId;
      let seen = await keyMaterials(input.keyId);
      if (isCurrent(seen)) return seen;
      try {
        await send(new RotateKeyOnDemandCommand({ KeyId: input.keyId }));
      } catch (err) {
        if (unsupportedOperation(err)) {
          throw ApplicationFailure.nonRetryable(`RotateKeyOnDemand on key ${input.keyId}: this KMS does not implement it`, ErrorType.NativeRotationUnsupported);
        }
        // An earlier attempt's rotation may be under way (ConflictException) or done: look before failing.
        seen = await keyMaterials(input.keyId);
        if (isCurrent(seen)) return seen;
        if (errorName(err) !== 'ConflictException') throw await failure(err, { operation: 'RotateKeyOnDemand', keyId: input.keyId });
      }
      seen = await keyMaterials(input.keyId);
      if (isCurrent(seen)) return seen;
      throw ApplicationFailure.retryable(
        `key ${input.keyId}: rotation to material ${input.keyMaterialId} requested, current is still ${seen.currentKeyMaterialId}; will look again`,
        'RotationInProgress',
      );
    },

    /**
     * Aliases whose key is due for rotation: an Enabled EXTERNAL key whose current material became
     * current more than `olderThanMs` ago. That moment is the last RotationDate in ListKeyRotations
     * where the KMS has it, else the key's CreationDate (an alias swap makes a new key per
     * rotation; a key imported long after it was created looks older than its material is).
     */
    async dueAliases(input: DueAliasesInput): Promise<DueAlias[]> {
      if (!Number.isFinite(input.olderThanMs) || input.olderThanMs < 0) {
        throw invalidInput('olderThanMs', `expected a duration of 0 or more, got ${JSON.stringify(input.olderThanMs)}`);
      }
      const activity = activityContext();
      const now = Date.now();
      const due: DueAlias[] = [];
      let marker: string | undefined;
      do {
        const page = await call({ operation: 'ListAliases' }, () => send(new ListAliasesCommand({ Limit: 100, Marker: marker })));
        for (const a of page.Aliases ?? []) {
          const name = a.AliasName?.replace(/^alias\//, '');
          if (!name || !a.TargetKeyId || name.startsWith('aws/') || !name.startsWith(input.prefix ?? '')) continue;
          activity?.heartbeat({ alias: a.AliasName });
          const key = await describe(a.TargetKeyId);
          if (key.Origin !== 'EXTERNAL' || key.KeyState !== 'Enabled') continue;
          const rotations = (await listMaterials(key.KeyId)) ?? [];
          const rotated = rotations.map((r) => r.rotationDate).filter((d): d is string => Boolean(d)).sort().pop();
          const since = rotated ?? key.CreationDate?.toISOString();
          if (since && now - Date.parse(since) > input.olderThanMs) due.push({ alias: `alias/${name}`, keyId: key.KeyId, materialSince: since });
        }
        marker = page.Truncated ? page.NextMarker : undefined;
      } while (marker);
      return due;
    },
  };
}
export type KmsActivities = ReturnType<typeof createKmsActivities>;
