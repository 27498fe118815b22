// Runs the real `byok` launcher (bin/byok, on the built dist/) as a user would.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../scripts/paths';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function runByok(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(projectRoot, 'bin', 'byok'), ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Approver key pairs made with `byok keygen` into `dir`; every later CLI run of this process uses them. */
export async function useApproverKeys(dir: string, names: string[] = ['alice', 'bob', 'carol']): Promise<void> {
  process.env.BYOK_KEYS_DIR = dir;
  for (const name of names) {
    const run = await runByok(['keygen', '--as', name]);
    if (run.code !== 0) throw new Error(`byok keygen --as ${name} exited ${run.code}: ${run.stderr}`);
  }
}
