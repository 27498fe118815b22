// The Temporal Web UI as the ops console, in a real headless Chromium (Debian's, driven by
// playwright-core): the visibility query for imports awaiting approval finds the one this test
// started, and its page shows the summary and the pending-approval state. Leaves a screenshot in
// test-artifacts/.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import '../quiet-runtime';
import { runByok, useApproverKeys } from '../byok-cli';
import { testStackOptions, removeTestStack } from '../stack-fixture';
import { projectRoot, tools } from '../../scripts/paths';
import { stackUp, type StackInfo, type StackOptions } from '../../scripts/stack';

const UI_TIMEOUT_MS = 60_000;
const SCREENSHOT = path.join(projectRoot, 'test-artifacts', 'ui-awaiting-approval.png');
// Headless without the sandbox (CI runs as root) and without anything that calls home.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let opts: StackOptions;
let info: StackInfo;
let browser: Browser | undefined;

async function ok(...args: string[]): Promise<string> {
  const run = await runByok(args, info.env);
  assert.equal(run.code, 0, `byok ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

/** The page's text or one of its frames' (the UI renders summary, details and current details as markdown in iframes). */
async function frameText(page: Page, needle: string): Promise<string> {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  for (;;) {
    for (const frame of page.frames()) {
      const text = await frame.locator('body').innerText({ timeout: 1_000 }).catch(() => '');
      if (text.includes(needle)) return text;
    }
    if (Date.now() > deadline) assert.fail(`no frame of ${page.url()} shows ${JSON.stringify(needle)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('the Temporal Web UI in a real browser', () => {
  before(async () => {
    opts = await testStackOptions('ui');
    info = await stackUp(opts);
    await useApproverKeys(path.join(opts.dir, 'approver-keys'));
    browser = await chromium.launch({ executablePath: tools.chromium, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    await removeTestStack(opts);
  });

  it('finds the import awaiting approval by its search attributes and shows its summary and state', async () => {
    const { workflowId } = JSON.parse(
      await ok('import', '--alias', 'ui-payments', '--wrapping-algorithm', 'RSAES_OAEP_SHA_1', '--requester', 'rita',
        '--approvers', 'alice,bob,carol', '--required', '2', '--json'),
    );
    // Once the index has it, the UI's query finds it too.
    for (const deadline = Date.now() + UI_TIMEOUT_MS; !(await ok('pending', '--as', 'alice')).includes(workflowId); ) {
      assert.ok(Date.now() < deadline, 'the import never became pending for alice');
      await new Promise((r) => setTimeout(r, 250));
    }

    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    const query = "ByokState = 'AWAITING_APPROVAL' AND ByokPendingApprovers = 'alice'";
    await page.goto(`${info.uiUrl}/namespaces/${info.namespace}/workflows?query=${encodeURIComponent(query)}`);
    const link = page.getByRole('link', { name: workflowId, exact: true });
    await link.first().waitFor();
    await link.first().click();
    await page.waitForURL(new RegExp(`/workflows/${workflowId}/`));

    await page.getByText('User Metadata', { exact: true }).first().click();
    const summary = await frameText(page, 'Import alias/ui-payments from HSM key byok/ui-payments');
    assert.ok(summary.length > 0);
    const current = await frameText(page, 'AWAITING_APPROVAL');
    assert.match(current, /2 more approval\(s\) needed; may still decide: alice, bob, carol/);
    assert.match(current, /import token valid to \d{4}-/);
    // Each activity call is named in the timeline.
    await page.getByText('Wrap HSM key byok/ui-payments').first().waitFor();
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });

    await page.getByText('Search Attributes', { exact: true }).first().click();
    const attributes = await frameText(page, '"ByokState": "AWAITING_APPROVAL"');
    assert.match(attributes, /"ByokPendingApprovers": \[\s*"alice",\s*"bob",\s*"carol"\s*\]/);
    await page.close();

    // End it: a workflow left running would only wait for its deadline.
    await ok('reject', workflowId, '--as', 'carol', '--comment', 'browser test done');
  });
});
