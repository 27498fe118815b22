// A SoftHSM2 token in a folder of its own, for the local stack and the tests.
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tools } from './paths';

const run = promisify(execFile);

export interface SoftHsmTokenOptions {
  /** Folder for softhsm2.conf and the token files. */
  dir: string;
  label: string;
  soPin: string;
  pin: string;
}

/**
 * Writes `<dir>/softhsm2.conf` and initialises a token labelled `label` in `<dir>/tokens`,
 * unless that conf already has one (safe to call on every start).
 *
 * The returned SOFTHSM2_CONF must be in `process.env` before the PKCS#11 module is initialised:
 * SoftHSM reads it once, in C_Initialize.
 */
export async function initSoftHsmToken(
  opts: SoftHsmTokenOptions,
): Promise<{ confPath: string; env: { SOFTHSM2_CONF: string } }> {
  // PKCS#11 token labels are 32 bytes, blank padded; a longer one would be stored truncated,
  // never match on the next call, and a second token would be created.
  if (Buffer.byteLength(opts.label) > 32) throw new Error(`token label longer than 32 bytes: ${opts.label}`);
  const tokenDir = path.join(opts.dir, 'tokens');
  const confPath = path.join(opts.dir, 'softhsm2.conf');
  await mkdir(tokenDir, { recursive: true });
  await writeFile(
    confPath,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  const env = { SOFTHSM2_CONF: confPath };
  if (await tokenExists(confPath, opts.label)) return { confPath, env };
  // The PINs travel as command-line arguments, visible to other local users in the process
  // list: acceptable only for this throwaway demo/test token, never for a real HSM.
  await run(tools.softhsmUtil, ['--init-token', '--free', '--label', opts.label, '--so-pin', opts.soPin, '--pin', opts.pin], {
    env: { ...process.env, ...env },
  });
  return { confPath, env };
}

/** Whether the SoftHSM configured by `confPath` has a token labelled `label`. */
export async function tokenExists(confPath: string, label: string): Promise<boolean> {
  const { stdout } = await run(tools.softhsmUtil, ['--show-slots'], { env: { ...process.env, SOFTHSM2_CONF: confPath } });
  // Labels of the listed tokens (blank for free slots).
  return [...stdout.matchAll(/^\s*Label:[ \t]*(.*?)[ \t]*$/gm)].some((m) => m[1] === label);
}
