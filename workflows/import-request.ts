// The import request: what a requester may ask for, the defaults, and the one validation used by
// both the CLI (before starting anything) and the workflow (step 1). Pure: no I/O, no clock; the
// caller passes `now`.
import { ApplicationFailure, type Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { ErrorType } from './errors';
import { approverKeysProblem } from './signed-approval';
import {
  EXPIRATION_MODELS,
  WRAPPING_ALGORITHMS,
  WRAPPING_KEY_SPECS,
  type ExpirationModel,
  type WrappingAlgorithm,
  type WrappingKeySpec,
} from './model';

/**
 * import: make the KMS key and the HSM key if missing and import. restore: put the same HSM
 * material back into a key that lost it (PendingImport). reimport: import the same material into
 * an Enabled key again with a new ValidTo. Neither of the last two creates a key.
 */
export const IMPORT_OPERATIONS = ['import', 'restore', 'reimport'] as const;
export type ImportOperation = (typeof IMPORT_OPERATIONS)[number];

/** Who asks and who decides, as every request with approvers (import, revoke, ...) takes them. */
export interface ApprovalRequest {
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  /** Each approver's Ed25519 public key (raw, hex): their decisions must be signed with it. */
  approverKeys?: Record<string, string>;
  /** true turns signed decisions off (then approverKeys must be absent); logged and shown in the status. */
  unsignedApprovals?: boolean;
  /** How long approvers have, counted from the start of the workflow; default 72h. */
  approvalTimeout?: Duration;
}

export interface ApprovalPlan {
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  /** null: signatures are off (unsignedApprovals). */
  approverKeys: Record<string, string> | null;
  approvalTimeoutMs: number;
}

/** Workflow input. Identifiers only: secrets (PINs, credentials) live on the workers. */
export interface ImportKeyInput extends ApprovalRequest {
  /** Default "import". */
  operation?: ImportOperation;
  /** KMS alias, with or without the "alias/" prefix. */
  alias: string;
  description?: string;
  /** false: the alias must already name an EXTERNAL key (default true: create it when missing). */
  createKmsKey?: boolean;
  wrappingAlgorithm?: WrappingAlgorithm;
  wrappingKeySpec?: WrappingKeySpec;
  expirationModel?: ExpirationModel;
  /** ISO-8601; required with KEY_MATERIAL_EXPIRES, at most 365 days ahead. */
  validTo?: string;
  /**
   * Label of the AES-256 key in the HSM; default "byok/<alias name>", or for restore and reimport
   * the label recorded on the KMS key at its last import.
   */
  hsmKeyLabel?: string;
  /** false: the HSM key must already exist (default true: generate it when missing). */
  generateHsmKey?: boolean;
  /** Refresh the import token when less than this is left of its validity; default 1h. */
  tokenSafetyMargin?: Duration;
  /** How many times an expired or invalid import token may be replaced; default 3. */
  maxTokenRefreshes?: number;
}

/** The request with defaults applied and every field checked. */
export interface ImportPlan {
  operation: ImportOperation;
  alias: string;
  aliasName: string;
  description: string;
  createKmsKey: boolean;
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: WrappingKeySpec;
  expirationModel: ExpirationModel;
  validTo?: string;
  hsmKeyLabel: string;
  /** Restore and reimport without a label given: take the one recorded on the KMS key, if any. */
  hsmKeyLabelFromKey: boolean;
  generateHsmKey: boolean;
  requester: string;
  approvers: string[];
  requiredApprovals: number;
  /** null: signatures are off (unsignedApprovals). */
  approverKeys: Record<string, string> | null;
  approvalTimeoutMs: number;
  tokenSafetyMarginMs: number;
  maxTokenRefreshes: number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** AWS accepts ValidTo at most 365 days ahead. */
const MAX_VALID_TO_MS = 365 * DAY;
/** An import token lives 24 h; a margin that large would refresh forever. */
const MAX_TOKEN_MARGIN_MS = 12 * HOUR;
const MAX_DESCRIPTION = 8192;
const ALIAS_NAME = /^[A-Za-z0-9/_-]{1,250}$/;
/** Requesters and approvers: also file names (approver keys), so no path characters. */
export const PRINCIPAL = /^[A-Za-z0-9._@-]{1,64}$/;
const HSM_LABEL = /^[\x21-\x7e][\x20-\x7e]{0,126}$/;

export function invalidInput(field: string, problem: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`invalid ${field}: ${problem}`, ErrorType.InvalidInput, { field });
}

/**
 * The instant cut to whole seconds, as ISO-8601: KMS keeps ValidTo in seconds, and local-kms
 * discards a request whose ValidTo has a fraction of a second.
 */
export function wholeSecondsIso(epochMs: number): string {
  return new Date(Math.floor(epochMs / 1000) * 1000).toISOString();
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw invalidInput(field, `expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
}

export function duration(field: string, value: Duration | undefined, fallbackMs: number, minMs: number, maxMs: number): number {
  let ms = fallbackMs;
  if (value !== undefined) {
    try {
      ms = msToNumber(value);
    } catch {
      throw invalidInput(field, `expected a duration such as "90m" or "72h", got ${JSON.stringify(value)}`);
    }
  }
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
    throw invalidInput(field, `must be between ${minMs / 60_000} minutes and ${maxMs / HOUR} hours, got ${ms} ms`);
  }
  return ms;
}

function principal(field: string, value: unknown): string {
  if (typeof value !== 'string' || !PRINCIPAL.test(value)) {
    throw invalidInput(field, `expected 1-64 characters of A-Z a-z 0-9 . _ @ -, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function aliasName(alias: string): string {
  return alias.startsWith('alias/') ? alias.slice('alias/'.length) : alias;
}

/** The alias name without "alias/", checked. */
export function checkedAliasName(alias: unknown): string {
  if (typeof alias !== 'string') throw invalidInput('alias', 'required');
  const name = aliasName(alias);
  if (!ALIAS_NAME.test(name)) {
    throw invalidInput('alias', `expected 1-250 characters of A-Z a-z 0-9 / _ -, got ${JSON.stringify(alias)}`);
  }
  if (name.startsWith('aws/')) throw invalidInput('alias', '"alias/aws/" is reserved for AWS managed keys');
  return name;
}

/** Requester, approvers, quorum, signatures and deadline, checked as every request with approvers takes them. */
export function planApprovals(input: ApprovalRequest): ApprovalPlan {
  const requester = principal('requester', input.requester);
  if (!Array.isArray(input.approvers) || input.approvers.length === 0) {
    throw invalidInput('approvers', 'expected at least one approver');
  }
  const approvers = input.approvers.map((a, i) => principal(`approvers[${i}]`, a));
  const duplicate = approvers.find((a, i) => approvers.indexOf(a) !== i);
  if (duplicate) throw invalidInput('approvers', `"${duplicate}" is listed twice`);
  if (approvers.includes(requester)) {
    throw invalidInput('approvers', `the requester "${requester}" cannot be one of the approvers`);
  }
  const required = input.requiredApprovals;
  if (!Number.isInteger(required) || required < 1 || required > approvers.length) {
    throw invalidInput('requiredApprovals', `expected a whole number from 1 to ${approvers.length}, got ${JSON.stringify(required)}`);
  }
  const approvalTimeoutMs = duration('approvalTimeout', input.approvalTimeout, 72 * HOUR, 60_000, 30 * DAY);

  if (input.unsignedApprovals !== undefined && typeof input.unsignedApprovals !== 'boolean') {
    throw invalidInput('unsignedApprovals', 'expected true or false');
  }
  let approverKeys: Record<string, string> | null = null;
  if (input.unsignedApprovals) {
    if (input.approverKeys !== undefined) throw invalidInput('approverKeys', 'not used with unsignedApprovals: true; give one or the other');
  } else {
    const keyProblem = approverKeysProblem(input.approverKeys, approvers);
    if (keyProblem) throw invalidInput(keyProblem.field, keyProblem.problem);
    approverKeys = Object.fromEntries(approvers.map((a) => [a, input.approverKeys![a]]));
  }
  return { requester, approvers, requiredApprovals: required, approverKeys, approvalTimeoutMs };
}

/** Applies defaults and checks every field; throws an InvalidInput ApplicationFailure naming the field. */
export function planImport(input: ImportKeyInput, now: Date): ImportPlan {
  if (typeof input !== 'object' || input === null) throw invalidInput('input', 'expected an object');

  const name = checkedAliasName(input.alias);

  const description = input.description ?? `BYOK key alias/${name}, material from the HSM`;
  if (typeof description !== 'string' || description.length > MAX_DESCRIPTION) {
    throw invalidInput('description', `expected a string of at most ${MAX_DESCRIPTION} characters`);
  }

  const operation = oneOf('operation', input.operation, IMPORT_OPERATIONS, 'import');
  if (operation !== 'import') {
    // Both put material back into the key that held it: never a new KMS key or HSM key.
    for (const flag of ['createKmsKey', 'generateHsmKey'] as const) {
      if (input[flag] === true) throw invalidInput(flag, `must be false for ${operation}: it uses the existing keys`);
    }
    if (operation === 'reimport' && input.expirationModel !== 'KEY_MATERIAL_EXPIRES') {
      throw invalidInput('expirationModel', 'reimport sets a new ValidTo: expected KEY_MATERIAL_EXPIRES with validTo');
    }
  }

  const wrappingAlgorithm = oneOf('wrappingAlgorithm', input.wrappingAlgorithm, WRAPPING_ALGORITHMS, 'RSAES_OAEP_SHA_256');
  const wrappingKeySpec = oneOf('wrappingKeySpec', input.wrappingKeySpec, WRAPPING_KEY_SPECS, 'RSA_2048');
  const expirationModel = oneOf('expirationModel', input.expirationModel, EXPIRATION_MODELS, 'KEY_MATERIAL_DOES_NOT_EXPIRE');

  let validTo: string | undefined;
  if (expirationModel === 'KEY_MATERIAL_EXPIRES') {
    if (input.validTo === undefined) throw invalidInput('validTo', 'required with KEY_MATERIAL_EXPIRES');
    const at = Date.parse(input.validTo);
    if (Number.isNaN(at)) throw invalidInput('validTo', `expected an ISO-8601 time, got ${JSON.stringify(input.validTo)}`);
    if (at <= now.getTime()) throw invalidInput('validTo', `${input.validTo} is in the past`);
    if (at > now.getTime() + MAX_VALID_TO_MS) throw invalidInput('validTo', 'AWS KMS accepts at most 365 days ahead');
    validTo = wholeSecondsIso(at);
  } else if (input.validTo !== undefined) {
    throw invalidInput('validTo', 'only allowed with expirationModel KEY_MATERIAL_EXPIRES');
  }

  const hsmKeyLabel = input.hsmKeyLabel ?? `byok/${name}`;
  if (typeof hsmKeyLabel !== 'string' || !HSM_LABEL.test(hsmKeyLabel)) {
    throw invalidInput('hsmKeyLabel', 'expected 1-127 printable ASCII characters, not starting with a space');
  }

  const maxTokenRefreshes = input.maxTokenRefreshes ?? 3;
  if (!Number.isInteger(maxTokenRefreshes) || maxTokenRefreshes < 0 || maxTokenRefreshes > 10) {
    throw invalidInput('maxTokenRefreshes', `expected a whole number from 0 to 10, got ${JSON.stringify(maxTokenRefreshes)}`);
  }
  for (const flag of ['createKmsKey', 'generateHsmKey'] as const) {
    if (input[flag] !== undefined && typeof input[flag] !== 'boolean') throw invalidInput(flag, 'expected true or false');
  }

  const { requester, approvers, requiredApprovals, approverKeys, approvalTimeoutMs } = planApprovals(input);
  const tokenSafetyMarginMs = duration('tokenSafetyMargin', input.tokenSafetyMargin, HOUR, 0, MAX_TOKEN_MARGIN_MS);

  return {
    operation,
    alias: `alias/${name}`,
    aliasName: name,
    description,
    createKmsKey: input.createKmsKey ?? operation === 'import',
    wrappingAlgorithm,
    wrappingKeySpec,
    expirationModel,
    validTo,
    hsmKeyLabel,
    hsmKeyLabelFromKey: operation !== 'import' && input.hsmKeyLabel === undefined,
    generateHsmKey: input.generateHsmKey ?? operation === 'import',
    requester,
    approvers,
    requiredApprovals,
    approverKeys,
    approvalTimeoutMs,
    tokenSafetyMarginMs,
    maxTokenRefreshes,
  };
}
