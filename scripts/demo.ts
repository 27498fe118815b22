// `npm run demo`: start the local stack, import one key with two approvals sent through the CLI,
// print the result and where to look in the Temporal Web UI. Safe to run again: the second run
// re-imports the same HSM key into the same KMS key.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from './paths';
import { stackOptionsFromEnv, stackUp } from './stack';

const run = promisify(execFile);
const byok = path.join(projectRoot, 'bin', 'byok');

async function main(): Promise<void> {
  const options = stackOptionsFromEnv();
  const info = await stackUp(options);
  // The approvers' signing keys; on a real deployment each approver makes theirs on their own machine.
  const keysDir = path.join(options.dir, 'approver-keys');
  const env = { ...process.env, ...info.env, BYOK_KEYS_DIR: keysDir };
  const cli = async (...args: string[]) => {
    console.log(`\n$ byok ${args.join(' ')}`);
    const { stdout } = await run(process.execPath, [byok, ...args], { env });
    process.stdout.write(stdout);
  };

  for (const name of ['alice', 'bob', 'carol']) {
    if (!existsSync(path.join(keysDir, `${name}.key`))) await cli('keygen', '--as', name);
  }

  const workflowId = 'import-demo';
  // SoftHSM2 2.6.1 can only do OAEP with SHA-1; a real HSM would use the RSAES_OAEP_SHA_256 default.
  await cli('import', '--alias', 'demo', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita',
    '--approvers', 'alice,bob,carol', '--required', '2', '--workflow-id', workflowId);
  await cli('approve', workflowId, '--as', 'alice', '--comment', 'ticket SEC-1234 checked');
  await cli('approve', workflowId, '--as', 'bob');
  await cli('result', workflowId);

  console.log(`\nTemporal Web UI: ${info.uiUrl} (this import: ${info.uiUrl}/namespaces/${info.namespace}/workflows/${workflowId})`);
  console.log(`Payloads are encrypted in the history; the Web UI shows them decrypted through the codec server at ${info.codecServerUrl}.`);
  console.log(`For the byok CLI in this shell: export ${Object.entries(info.env).filter(([k]) => k === 'BYOK_CODEC_KEY_FILE' || k.startsWith('TEMPORAL_')).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  console.log('The stack keeps running; stop it with "npx byok stack down".');
}

main().catch((err) => {
  console.error(`demo failed: ${err?.stderr || err?.message || err}`);
  process.exit(1);
});
