// Recorded histories must replay with the current workflow code: a change that would break a
// running import fails here (then it needs `patched()`). import-key-approved and -rejected come
// from the demo stack, recorded with
//   .tools/bin/temporal workflow show -w import-demo -o json > test/replay/histories/<name>.json
// import-key-token-refreshed from the time-skipping server with the fakes of test/workflow: an
// approval after 25 h, then ExpiredImportTokenException, two refreshes. rotate-key-alias-swap (7 d
// grace, deletion after 30 d) and rotate-key-native also from the time-skipping server with those
// fakes, two approvals each (historyToJSON of fetchHistory()). import-key-signed from the
// time-skipping server too (test/workflow/evidence.test.ts's import): checks before creating keys,
// two signed approvals 25 h apart, a refused unsigned signal. Signed statements name their
// workflow, so each history replays under the workflow id its file is named after. revoke-key-approved
// (--disable, two approvals), import-key-restore (restore of a key without material, the HSM key
// recorded on the KMS key) and guard-key-reimported (the guardian's first run: asleep until 7 d
// before ValidTo, a re-import approved, continued as new) from the time-skipping server with the
// fakes too, each started under the workflow id its file is named after.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import '../quiet-runtime';
import { projectRoot } from '../../scripts/paths';

const dir = path.join(projectRoot, 'test', 'replay', 'histories');

describe('recorded histories', async () => {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  it('are there to replay', () => assert.ok(files.length > 0, `no histories in ${dir}`));
  for (const file of files) {
    it(`replays ${file}`, async () => {
      const history = historyFromJSON(JSON.parse(await readFile(path.join(dir, file), 'utf8')));
      assert.ok((history.events?.length ?? 0) > 10, 'a whole import, not a stub');
      await Worker.runReplayHistory({ workflowsPath: require.resolve('../../workflows') }, history, path.basename(file, '.json'));
    });
  }
});
