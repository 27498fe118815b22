// The pure parts of operations: the visibility queries behind `byok list` and `byok pending`,
// the worker's telemetry settings and JSON log lines, the UI's current details.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listQuery, pendingQuery } from '../../client/ops-commands';
import { jsonLogLine, telemetrySettings } from '../../worker/telemetry';
import { currentDetails } from '../../workflows/progress';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

const ALL = "ByokOperation IN ('import', 'rotate', 'restore', 'reimport', 'revoke', 'guard')";

describe('visibility queries', () => {
  it('list: every BYOK operation, narrowed by state, alias (normalised) and operation', () => {
    assert.equal(listQuery({}), ALL);
    assert.equal(
      listQuery({ state: 'AWAITING_APPROVAL', alias: 'payments', operation: 'rotate' }),
      `${ALL} AND ByokOperation = 'rotate' AND ByokState = 'AWAITING_APPROVAL' AND ByokAlias = 'alias/payments'`,
    );
    assert.equal(listQuery({ alias: 'alias/payments' }), `${ALL} AND ByokAlias = 'alias/payments'`);
  });

  it('pending: awaiting approval and the name among those who may still decide', () => {
    assert.equal(pendingQuery('alice'), "ByokState = 'AWAITING_APPROVAL' AND ByokPendingApprovers = 'alice'");
  });

  it('refuses values that would change the query, naming the option', () => {
    assert.throws(() => pendingQuery("a' OR 'x' = 'x"), /--as: expected a non-empty value without quotes or backslashes/);
    assert.throws(() => listQuery({ alias: 'pay\\ments' }), /--alias: expected/);
    assert.throws(() => listQuery({ state: 'done' }), /--state: expected one of PREPARING, AWAITING_APPROVAL, IMPORTING, GRACE_PERIOD, GUARDING, ALERT, DONE, REJECTED, APPROVAL_EXPIRED, FAILED, got "done"/);
    assert.throws(() => listQuery({ operation: 'delete' }), /--operation: expected one of import, rotate, restore, reimport, revoke, guard/);
  });

  it('search attribute names are unique and prefixed, so they cannot clash with Temporal or other apps', () => {
    const names = SEARCH_ATTRIBUTES.map((k) => k.name);
    assert.equal(new Set(names).size, names.length);
    for (const n of names) assert.match(n, /^Byok[A-Z]\w+$/);
  });
});

describe('worker telemetry settings', () => {
  it('defaults to human logs and no metrics endpoint', () => {
    assert.deepEqual(telemetrySettings({}, {}), { logFormat: 'human', metricsAddress: undefined });
  });

  it('takes flags over the environment', () => {
    assert.deepEqual(telemetrySettings({ BYOK_LOG_FORMAT: 'human', BYOK_METRICS_ADDRESS: '127.0.0.1:1' }, { 'log-format': 'json', 'metrics-address': '0.0.0.0:9464' }), {
      logFormat: 'json',
      metricsAddress: '0.0.0.0:9464',
    });
    assert.equal(telemetrySettings({ BYOK_METRICS_ADDRESS: '[::1]:9464' }, {}).metricsAddress, '[::1]:9464');
  });

  it('refuses a bad log format or metrics address with the expected form', () => {
    assert.throws(() => telemetrySettings({}, { 'log-format': 'xml' }), /log format: expected "human" or "json", got "xml"/);
    for (const bad of ['9464', 'localhost:9464', '127.0.0.1:70000', '127.0.0.1:']) {
      assert.throws(() => telemetrySettings({ BYOK_METRICS_ADDRESS: bad }, {}), /metrics address: expected IP:PORT such as 127\.0\.0\.1:9464/, bad);
    }
  });

  it('writes a log entry as one JSON line with its metadata, errors by message', () => {
    const line = jsonLogLine({
      level: 'WARN',
      message: 'decision refused',
      timestampNanos: 1_764_763_200_123_000_000n,
      meta: { workflowId: 'import-x', error: new Error('boom'), attempt: 2n },
    });
    assert.ok(!line.includes('\n'));
    const parsed = JSON.parse(line);
    assert.equal(parsed.time, '2025-12-03T12:00:00.123Z');
    assert.equal(parsed.level, 'WARN');
    assert.equal(parsed.message, 'decision refused');
    assert.equal(parsed.workflowId, 'import-x');
    assert.equal(parsed.error.message, 'boom');
    assert.equal(parsed.attempt, '2');
  });
});

describe('current details', () => {
  it('say what waits for whom and until when while awaiting approval', () => {
    const text = currentDetails({
      state: 'AWAITING_APPROVAL',
      alias: 'alias/payments',
      requester: 'rita',
      kmsKeyId: 'key-1',
      approvalsNeeded: 1,
      pendingApprovers: ['bob', 'carol'],
      approvalDeadline: new Date('2026-12-06T12:00:00Z'),
      tokenValidTo: new Date('2026-12-04T12:00:00Z'),
      tokenRefreshes: 1,
      activity: 'waiting for approvals',
    });
    assert.equal(
      text,
      [
        '**AWAITING_APPROVAL**: waiting for approvals',
        '',
        '- 1 more approval(s) needed; may still decide: bob, carol',
        '- approval deadline 2026-12-06T12:00:00.000Z',
        '- import token valid to 2026-12-04T12:00:00.000Z (refreshed 1x)',
      ].join('\n'),
    );
  });
});
