// The workflows the worker registers.
export { importKey } from './import-key';
