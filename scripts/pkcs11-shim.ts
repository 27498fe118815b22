// Builds the PKCS#11 shim (scripts/pkcs11-shim.c) that sits between a worker and SoftHSM2: the
// fault suite uses it to end sessions under the worker, the benchmark to add an HSM round trip.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot, tools } from './paths';

/** Compiles the shim into `dir` with the machine's cc; returns the library's path. */
export async function buildPkcs11Shim(dir: string): Promise<string> {
  const library = path.join(dir, 'libp11shim.so');
  await promisify(execFile)('cc', [
    '-shared',
    '-fPIC',
    '-O2',
    '-I',
    path.join(projectRoot, 'node_modules', 'pkcs11js', 'includes'),
    '-o',
    library,
    path.join(projectRoot, 'scripts', 'pkcs11-shim.c'),
    '-ldl',
    '-lpthread',
  ]);
  return library;
}

/** Worker environment that loads the shim in front of SoftHSM2. */
export function shimEnv(library: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PKCS11_MODULE: library, BYOK_P11_SHIM_TARGET: tools.softhsmModule, ...extra };
}
