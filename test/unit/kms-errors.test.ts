// classifyKmsError on SDK exceptions built the way the SDK builds them, and on network errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DependencyTimeoutException,
  DisabledException,
  ExpiredImportTokenException,
  IncorrectKeyMaterialException,
  InvalidCiphertextException,
  InvalidImportTokenException,
  KMSInternalException,
  KMSInvalidStateException,
  KMSServiceException,
  LimitExceededException,
  NotFoundException,
  UnsupportedOperationException,
} from '@aws-sdk/client-kms';
import { classifyKmsError, type KmsCallContext } from '../../activities/kms';
import { ErrorType } from '../../workflows/errors';

const KEY = '1234abcd-12ab-34cd-56ef-1234567890ab';
const onKey: KmsCallContext = { operation: 'ImportKeyMaterial', keyId: KEY };
const clientFault = { $metadata: { httpStatusCode: 400, requestId: 'req-1' }, message: 'from AWS' };

/** An exception the SDK has no class for, as its deserializer builds it. */
function unmodeled(name: string, httpStatusCode: number, $fault: 'client' | 'server' = httpStatusCode >= 500 ? 'server' : 'client') {
  return new KMSServiceException({ name, $fault, $metadata: { httpStatusCode }, message: `${name} from AWS` });
}

function networkError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:4599`), { code });
}

/** What the SDK's default credential provider chain throws when no provider has credentials. */
function noCredentials(): Error {
  return Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError', tryNextLink: false });
}

const nonRetryable: [string, unknown, KmsCallContext, ErrorType][] = [
  ['NotFound on an alias', new NotFoundException(clientFault), { operation: 'DescribeKey', alias: 'alias/x' }, ErrorType.UnknownAlias],
  ['NotFound on a key', new NotFoundException(clientFault), { operation: 'DescribeKey', keyId: KEY }, ErrorType.KmsRequestRejected],
  ['ExpiredImportToken', new ExpiredImportTokenException(clientFault), onKey, ErrorType.ImportTokenExpired],
  ['InvalidImportToken', new InvalidImportTokenException(clientFault), onKey, ErrorType.ImportTokenInvalid],
  ['IncorrectKeyMaterial', new IncorrectKeyMaterialException(clientFault), onKey, ErrorType.KeyHasDifferentMaterial],
  ['InvalidCiphertext', new InvalidCiphertextException(clientFault), onKey, ErrorType.InvalidCiphertext],
  ['KMSInvalidState, pending deletion', new KMSInvalidStateException(clientFault), { ...onKey, keyState: 'PendingDeletion' }, ErrorType.KeyPendingDeletion],
  [
    'KMSInvalidState, pending replica deletion',
    new KMSInvalidStateException(clientFault),
    { ...onKey, keyState: 'PendingReplicaDeletion' },
    ErrorType.KeyPendingDeletion,
  ],
  ['KMSInvalidState, disabled', new KMSInvalidStateException(clientFault), { ...onKey, keyState: 'Disabled' }, ErrorType.KeyUnusableState],
  ['KMSInvalidState, state unknown', new KMSInvalidStateException(clientFault), onKey, ErrorType.KeyUnusableState],
  ['Disabled', new DisabledException(clientFault), onKey, ErrorType.KeyUnusableState],
  ['AccessDenied', unmodeled('AccessDeniedException', 400), onKey, ErrorType.KmsAccessDenied],
  ['UnrecognizedClient', unmodeled('UnrecognizedClientException', 400), onKey, ErrorType.KmsAccessDenied],
  ['InvalidSignature', unmodeled('InvalidSignatureException', 403), onKey, ErrorType.KmsAccessDenied],
  ['Validation', unmodeled('ValidationException', 400), onKey, ErrorType.KmsRequestRejected],
  ['UnsupportedOperation', new UnsupportedOperationException(clientFault), onKey, ErrorType.KmsRequestRejected],
  ['LimitExceeded', new LimitExceededException(clientFault), onKey, ErrorType.KmsRequestRejected],
  ['another 4xx', unmodeled('SomethingNewException', 409), onKey, ErrorType.KmsRequestRejected],
  ['no AWS credentials', noCredentials(), onKey, ErrorType.KmsAccessDenied],
];

for (const [name, err, ctx, type] of nonRetryable) {
  test(`classifyKmsError: ${name} -> non-retryable ${type}`, () => {
    const failure = classifyKmsError(err, ctx);
    assert.equal(failure.type, type);
    assert.equal(failure.nonRetryable, true);
    assert.ok(failure.message.includes(ctx.alias ?? ctx.keyId ?? ''), failure.message);
    assert.equal(failure.cause, err);
  });
}

const retryable: [string, unknown][] = [
  ['ThrottlingException', unmodeled('ThrottlingException', 400)],
  ['KMSInternalException', new KMSInternalException({ $metadata: { httpStatusCode: 500 }, message: 'oops' })],
  ['DependencyTimeoutException', new DependencyTimeoutException({ $metadata: { httpStatusCode: 503 }, message: 'slow' })],
  ['an unknown 503', unmodeled('ServiceUnavailable', 503)],
  ['HTTP 429', unmodeled('SlowDown', 429)],
  ['a $retryable 4xx', Object.assign(unmodeled('SomethingTransient', 400), { $retryable: { throttling: true } })],
  ['ECONNREFUSED', networkError('ECONNREFUSED')],
  ['ECONNRESET', networkError('ECONNRESET')],
  ['ETIMEDOUT', networkError('ETIMEDOUT')],
  ['the SDK request timeout', Object.assign(new Error('Connection timed out after 5000 ms'), { name: 'TimeoutError' })],
  ['expired temporary credentials', unmodeled('ExpiredTokenException', 400)],
  ['something thrown without a response', 'boom'],
];

for (const [name, err] of retryable) {
  test(`classifyKmsError: ${name} -> retryable`, () => {
    const failure = classifyKmsError(err, onKey);
    assert.equal(failure.nonRetryable, false, failure.message);
    assert.match(failure.message, new RegExp(`ImportKeyMaterial on key ${KEY}`));
  });
}

test('classifyKmsError keeps the AWS error name, message and request id in the failure message', () => {
  const failure = classifyKmsError(new InvalidImportTokenException(clientFault), onKey);
  assert.match(failure.message, /InvalidImportTokenException: from AWS, request id req-1/);
});

test('classifyKmsError names alias and key for a call about both', () => {
  const failure = classifyKmsError(new NotFoundException(clientFault), { operation: 'CreateAlias', alias: 'alias/x', keyId: KEY });
  assert.equal(failure.type, ErrorType.KmsRequestRejected);
  assert.match(failure.message, new RegExp(`CreateAlias on alias/x \\(key ${KEY}\\)`));
});

test('classifyKmsError on missing AWS credentials tells the operator how to configure them', () => {
  const failure = classifyKmsError(noCredentials(), onKey);
  assert.match(failure.message, /the worker has no AWS credentials; configure them for the default provider chain/);
  assert.match(failure.message, /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, a profile .*, or an instance or container role/);
  assert.match(failure.message, /CredentialsProviderError: Could not load credentials from any providers/);
});
