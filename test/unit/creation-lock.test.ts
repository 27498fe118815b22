// The HSM pool's CreationLock: calls that create token objects run alone, others share, and
// waiters are served in arrival order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreationLock } from '../../activities/hsm-sessions';

/** A call that records when it starts and ends, and ends only when told to. */
function call(name: string, log: string[]) {
  let end!: () => void;
  let started!: () => void;
  const ended = new Promise<void>((resolve) => (end = resolve));
  const start = new Promise<void>((resolve) => (started = resolve));
  let running = false;
  return {
    end,
    start,
    get running() {
      return running;
    },
    work: async () => {
      running = true;
      log.push(`${name} start`);
      started();
      await ended;
      log.push(`${name} end`);
      return name;
    },
  };
}

test('shared calls overlap; a creation waits for them and runs alone; a later shared call waits for the creation', async () => {
  const lock = new CreationLock();
  const log: string[] = [];
  const [wrapA, wrapB, create, wrapC] = ['wrap A', 'wrap B', 'create', 'wrap C'].map((name) => call(name, log));
  const results = [
    lock.run(false, wrapA.work),
    lock.run(false, wrapB.work),
    lock.run(true, create.work),
    lock.run(false, wrapC.work),
  ];
  await Promise.all([wrapA.start, wrapB.start]);
  assert.deepEqual(log, ['wrap A start', 'wrap B start'], 'both shared calls run at once');
  assert.equal(create.running, false);

  wrapA.end();
  await results[0];
  assert.equal(create.running, false, 'the creation waits for every shared call');
  wrapB.end();
  await create.start;
  assert.equal(wrapC.running, false, 'a shared call that came after the creation waits for it');
  create.end();
  await wrapC.start;
  wrapC.end();
  assert.deepEqual(await Promise.all(results), ['wrap A', 'wrap B', 'create', 'wrap C']);
  assert.deepEqual(log, [
    'wrap A start',
    'wrap B start',
    'wrap A end',
    'wrap B end',
    'create start',
    'create end',
    'wrap C start',
    'wrap C end',
  ]);
});

test('creations run one at a time, and a failed one releases the lock', async () => {
  const lock = new CreationLock();
  const log: string[] = [];
  const first = call('first', log);
  const second = call('second', log);
  const failed = lock.run(true, async () => {
    await first.work();
    throw new Error('CKR_GENERAL_ERROR');
  });
  const ok = lock.run(true, second.work);
  await first.start;
  assert.equal(second.running, false, 'the second creation waits for the first');
  first.end();
  await assert.rejects(failed, /CKR_GENERAL_ERROR/);
  await second.start;
  second.end();
  assert.equal(await ok, 'second');
  assert.deepEqual(log, ['first start', 'first end', 'second start', 'second end']);
});
