// A secret read from a file that only its owner may read (mode 600), named after the variable
// that points at it so errors say which setting to fix.
import { readFileSync, statSync } from 'node:fs';

export class SecretFileError extends Error {}

export function readSecretFile(variable: string, file: string): string {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SecretFileError(`${variable} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  if (mode & 0o077) throw new SecretFileError(`${variable} ${file} is readable by group or others; chmod 600 it`);
  return text;
}
