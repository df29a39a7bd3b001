import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer } from './index.js';
import { FakeClock, endpoints, ep, handles, seededRandom } from './testing/fake-env.js';

function count(b: Balancer, n: number, hashKey?: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const k = b.pick(hashKey)!.key;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

describe('round-robin', () => {
  test('weights 1:2:3 give exactly 100/200/300 of 600 picks, interleaved smoothly', () => {
    const b = new Balancer({ algorithm: 'round-robin' });
    b.update([ep('ep-1', { weight: 1 }), ep('ep-2', { weight: 2 }), ep('ep-3', { weight: 3 })]);
    const seq = Array.from({ length: 600 }, () => b.pick()!.key);
    const counts = new Map<string, number>();
    for (const k of seq) counts.set(k, (counts.get(k) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries(counts), { 'ep-3': 300, 'ep-2': 200, 'ep-1': 100 });
    // Smooth (nginx) order: the heaviest never gets more than two turns in a row.
    assert.deepEqual(seq.slice(0, 6), ['ep-3', 'ep-2', 'ep-1', 'ep-3', 'ep-2', 'ep-3']);
  });

  test('is deterministic and ignores the random source', () => {
    const runs = [1, 2].map((seed) => {
      const b = new Balancer({ algorithm: 'round-robin', random: seededRandom(seed) });
      b.update(endpoints(4));
      return Array.from({ length: 12 }, () => b.pick()!.key).join(',');
    });
    assert.equal(runs[0], runs[1]);
    assert.equal(runs[0], 'ep-0,ep-1,ep-2,ep-3,ep-0,ep-1,ep-2,ep-3,ep-0,ep-1,ep-2,ep-3');
  });

  test('skips unhealthy endpoints', () => {
    const b = new Balancer({ algorithm: 'round-robin' });
    b.update(endpoints(3).map((e) => (e.key === 'ep-1' ? { ...e, healthy: false } : e)));
    assert.deepEqual(Object.fromEntries(count(b, 10)), { 'ep-0': 5, 'ep-2': 5 });
  });
});

describe('least-request', () => {
  test('prefers idle endpoints: the busiest of three is never picked', () => {
    const b = new Balancer({ algorithm: 'least-request', random: seededRandom(5) });
    b.update(endpoints(3));
    const byKey = handles(b, 3);
    for (let i = 0; i < 10; i++) b.start(byKey.get('ep-0')!);
    b.start(byKey.get('ep-1')!);
    const counts = count(b, 3000);
    // P2C: ep-2 (idle) wins every pair it is in, ep-1 (1 in flight) wins against ep-0 (10).
    assert.equal(counts.get('ep-0') ?? 0, 0);
    const idle = (counts.get('ep-2') ?? 0) / 3000;
    assert.ok(idle > 0.6 && idle < 0.75, `idle share ${idle}`);
  });

  test('with nothing in flight, picks follow the weights (1:3)', () => {
    const b = new Balancer({ algorithm: 'least-request', random: seededRandom(9) });
    b.update([ep('ep-1', { weight: 100 }), ep('ep-2', { weight: 300 })]);
    const counts = count(b, 4000);
    const heavy = (counts.get('ep-2') ?? 0) / 4000;
    assert.ok(Math.abs(heavy - 0.75) < 0.03, `heavy share ${heavy}`);
  });

  test('in flight is compared per unit of weight', () => {
    const b = new Balancer({ algorithm: 'least-request', random: seededRandom(2) });
    b.update([ep('ep-1', { weight: 100 }), ep('ep-2', { weight: 400 })]);
    const h = handles(b, 2);
    const light = h.get('ep-1')!;
    const heavy = h.get('ep-2')!;
    b.start(light); // 1 per 100
    for (let i = 0; i < 3; i++) b.start(heavy); // 3 per 400: still less loaded
    for (let i = 0; i < 20; i++) assert.equal(b.pick()!.key, 'ep-2');
  });
});

describe('weighted P2C sampling', () => {
  test('p2c-ewma with equal cost follows the weights (1:3)', () => {
    const clock = new FakeClock();
    const b = new Balancer({ algorithm: 'p2c-ewma', now: clock.now, random: seededRandom(4) });
    b.update([ep('ep-1', { weight: 100 }), ep('ep-2', { weight: 300 }), ep('ep-3', { weight: 100 })]);
    const counts = count(b, 5000);
    const heavy = (counts.get('ep-2') ?? 0) / 5000;
    assert.ok(Math.abs(heavy - 0.6) < 0.03, `heavy share ${heavy}`);
  });
});
