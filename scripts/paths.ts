import { existsSync } from 'node:fs';
import path from 'node:path';

/** The project root: the nearest folder above this file with a package.json (works from src and dist). */
export const projectRoot = ((): string => {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
  return dir;
})();

const toolsDir = path.join(projectRoot, '.tools');

/** Binaries installed by scripts/install-tools.sh; each can be overridden by an environment variable. */
export const tools = {
  temporal: process.env.TEMPORAL_CLI_PATH ?? path.join(toolsDir, 'bin', 'temporal'),
  temporalTestServer: process.env.TEMPORAL_TEST_SERVER_PATH ?? path.join(toolsDir, 'bin', 'temporal-test-server'),
  localKms: process.env.LOCAL_KMS_PATH ?? path.join(toolsDir, 'bin', 'local-kms'),
  softhsmModule: process.env.PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so',
  softhsmUtil: process.env.SOFTHSM2_UTIL_PATH ?? 'softhsm2-util',
  chromium: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
};
