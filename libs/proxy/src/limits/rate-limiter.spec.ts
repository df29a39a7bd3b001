import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LimitsConfigError } from './errors.js';
import { RateLimiter } from './rate-limiter.js';

describe('RateLimiter', () => {
  // [ms since start, key, expected] on a fake clock
  const cases: { name: string; rate: number; burst: number; maxKeys?: number; steps: [number, string, boolean][] }[] = [
    {
      name: 'burst at once, then one per 1/rate',
      rate: 10,
      burst: 3,
      steps: [[0, 'a', true], [0, 'a', true], [0, 'a', true], [0, 'a', false], [99, 'a', false], [100, 'a', true], [100, 'a', false], [300, 'a', true], [300, 'a', true], [300, 'a', false]],
    },
    {
      name: 'refill caps at burst',
      rate: 1000,
      burst: 2,
      steps: [[0, 'a', true], [0, 'a', true], [10_000, 'a', true], [10_000, 'a', true], [10_000, 'a', false]],
    },
    {
      name: 'keys are independent',
      rate: 1,
      burst: 1,
      steps: [[0, 'a', true], [0, 'a', false], [0, 'b', true], [0, 'b', false], [999, 'a', false], [1000, 'a', true]],
    },
    {
      name: 'least recently used key is evicted beyond maxKeys (and starts full again)',
      rate: 1,
      burst: 1,
      maxKeys: 2,
      steps: [[0, 'a', true], [0, 'b', true], [0, 'a', false], [0, 'c', true], [0, 'a', false], [0, 'b', true]],
    },
    {
      name: 'a clock going backwards adds nothing',
      rate: 1,
      burst: 1,
      steps: [[1000, 'a', true], [0, 'a', false], [1000, 'a', false], [2000, 'a', true]],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      let now = 0;
      const rl = new RateLimiter({ ratePerSecond: c.rate, burst: c.burst, maxKeys: c.maxKeys, now: () => now });
      c.steps.forEach(([t, key, want], i) => {
        now = t;
        assert.equal(rl.take(key), want, `step ${i}: t=${t} ${key}`);
      });
      assert.ok(rl.size <= (c.maxKeys ?? 10_000));
    });
  }

  test('counters and size', () => {
    let now = 0;
    const rl = new RateLimiter({ ratePerSecond: 1, burst: 1, maxKeys: 2, now: () => now });
    rl.take('a');
    rl.take('a');
    rl.take('b');
    rl.take('c');
    now = 500;
    assert.equal(rl.peek('c'), 0.5);
    assert.deepEqual([rl.allowed, rl.limited, rl.evicted, rl.size], [3, 1, 1, 2]);
    assert.equal(rl.forget('c'), true);
    assert.equal(rl.size, 1);
  });

  const bad: [string, object][] = [
    ['rate 0', { ratePerSecond: 0, burst: 1 }],
    ['rate Infinity', { ratePerSecond: Number.POSITIVE_INFINITY, burst: 1 }],
    ['burst 0.5', { ratePerSecond: 1, burst: 0.5 }],
    ['maxKeys 0', { ratePerSecond: 1, burst: 1, maxKeys: 0 }],
  ];
  for (const [name, opts] of bad) {
    test(`refuses ${name}`, () => {
      assert.throws(() => new RateLimiter(opts as ConstructorParameters<typeof RateLimiter>[0]), LimitsConfigError);
    });
  }
});
