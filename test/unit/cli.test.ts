// The CLI's answers that need no server: help, usage errors, input validation, an unreachable Temporal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../../scripts/net';
import { runByok as byok } from '../byok-cli';

describe('byok CLI without a server', () => {
  for (const command of ['import', 'approve', 'reject', 'status', 'result', 'keygen', 'evidence', 'stack', 'codec-server', 'rotate', 'rotation', 'schedule', 'list', 'pending', 'watch', 'restore', 'reimport', 'revoke', 'revoke-result', 'guard']) {
    it(`prints help for ${command}`, async () => {
      const run = await byok([command, '--help']);
      assert.equal(run.code, 0);
      assert.match(run.stdout, new RegExp(`^usage: byok ${command}`));
    });
  }

  const usage: Array<[string, string[], RegExp]> = [
    ['no command', [], /usage: byok <command>/],
    ['an unknown command', ['export'], /unknown command "export"/],
    ['an unknown option', ['status', 'x', '--colour'], /Unknown option '--colour'/],
    ['import without an alias', ['import', '--approvers', 'a'], /--alias is required/],
    ['import without approvers', ['import', '--alias', 'a'], /--approvers is required/],
    ['a reserved alias', ['import', '--alias', 'alias/aws/s3', '--approvers', 'a', '--requester', 'r'], /invalid alias: "alias\/aws\/" is reserved/],
    ['more approvals than approvers', ['import', '--alias', 'a', '--approvers', 'a,b', '--required', '3', '--requester', 'r'], /invalid requiredApprovals/],
    ['an unknown algorithm', ['import', '--alias', 'a', '--approvers', 'b', '--requester', 'r', '--wrapping-algorithm', 'RSA_PKCS1'], /invalid wrappingAlgorithm/],
    ['a ValidTo in the past', ['import', '--alias', 'a', '--approvers', 'b', '--requester', 'r', '--valid-to', '2020-01-01T00:00:00Z'], /invalid validTo: .* is in the past/],
    ['approve without --as', ['approve', 'import-x'], /--as NAME is required/],
    ['status without an id', ['status'], /expected one workflow id/],
    ['an unknown stack action', ['stack', 'sideways'], /unknown action "sideways"/],
    ['rotate with two targets', ['rotate', '--alias', 'a', '--all-due', '--approvers', 'b'], /exactly one of --alias, --aliases, --all-due/],
    ['rotate --all-due without an age', ['rotate', '--all-due', '--approvers', 'b'], /--all-due needs --older-than/],
    ['an unknown strategy', ['rotate', '--alias', 'a', '--approvers', 'b', '--requester', 'r', '--strategy', 'sideways', '--unsigned-approvals'], /invalid strategy/],
    ['a short deletion window', ['rotate', '--aliases', 'a,b', '--approvers', 'c', '--requester', 'r', '--delete-after-days', '2', '--unsigned-approvals'], /invalid deletePreviousKeyAfterDays/],
    ['a rotation whose approver has no public key', ['rotate', '--alias', 'a', '--approvers', 'nokey', '--requester', 'r'], /rotate: no public key for approver "nokey"/],
    ['an approver id that is a path', ['schedule', 'create', '--alias', 'a', '--every', '90d', '--approvers', '../x', '--requester', 'r'], /invalid approvers: "\.\.\/x"/],
    ['a schedule with --every and --cron', ['schedule', 'create', '--alias', 'a', '--every', '90d', '--cron', '0 3 * * *', '--approvers', 'b'], /exactly one of --every and --cron/],
    ['a schedule every few seconds', ['schedule', 'create', '--alias', 'a', '--every', '5s', '--approvers', 'b', '--requester', 'r'], /--every must be at least 1m/],
    ['an unknown schedule subcommand', ['schedule', 'sideways'], /unknown subcommand "sideways"/],
    ['schedule trigger without an alias', ['schedule', 'trigger'], /--alias is required/],
    ['restore without an alias', ['restore', '--approvers', 'b'], /restore: --alias is required/],
    ['restore with a reserved alias', ['restore', '--alias', 'aws/s3', '--approvers', 'b'], /restore: invalid alias: "alias\/aws\/" is reserved/],
    ['reimport without a new ValidTo', ['reimport', '--alias', 'a', '--approvers', 'b', '--requester', 'r', '--unsigned-approvals'], /reimport: --valid-to is required/],
    ['reimport with a ValidTo too far ahead', ['reimport', '--alias', 'a', '--valid-to', '2099-01-01T00:00:00Z', '--approvers', 'b', '--requester', 'r', '--unsigned-approvals'], /reimport: invalid validTo: AWS KMS accepts at most 365 days ahead/],
    ['revoke without approvers', ['revoke', '--alias', 'a'], /revoke: --approvers is required/],
    ['revoke whose requester approves', ['revoke', '--alias', 'a', '--approvers', 'r,b', '--requester', 'r', '--unsigned-approvals'], /revoke: invalid approvers: the requester "r" cannot be one of the approvers/],
    ['a revocation whose approver has no public key', ['revoke', '--alias', 'a', '--approvers', 'nokey', '--requester', 'r'], /revoke: no public key for approver "nokey"/],
    ['an unknown guard action', ['guard', 'sideways', '--alias', 'a'], /guard: expected start, status or stop/],
    ['a guard lead time longer than the validity', ['guard', 'start', '--alias', 'a', '--lead', '120d', '--validity', '100d', '--approvers', 'b', '--requester', 'r', '--unsigned-approvals'], /guard start: invalid validity: must be longer than leadTime/],
  ];
  for (const [name, args, message] of usage) {
    it(`exits 2 on ${name}`, async () => {
      const run = await byok(args);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
    });
  }

  it('exits 1 with one line when Temporal cannot be reached', async () => {
    const run = await byok(['status', 'import-x'], { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^byok: cannot reach Temporal at 127\.0\.0\.1:\d+/);
    assert.equal(run.stderr.trim().split('\n').length, 1);
  });
});
