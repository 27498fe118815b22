// The workflows the worker registers.
export { importKey } from './import-key';
export { rotateKey } from './rotate-key';
export { rotateKeys } from './rotate-keys';
export { revokeKey } from './revoke-key';
export { guardKey } from './guard-key';
