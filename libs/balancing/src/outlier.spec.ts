import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Endpoint, type OutlierOptions } from './index.js';
import { FakeClock, endpoints, handles, seededRandom } from './testing/fake-env.js';

const BASE = 1_000;

function setup(count: number, outlier: Partial<OutlierOptions> = {}) {
  const clock = new FakeClock();
  const b = new Balancer({
    algorithm: 'round-robin',
    now: clock.now,
    random: seededRandom(1),
    outlier: { consecutiveFailures: 5, baseEjectionMs: BASE, maxEjectionPercent: 50, maxEjectionMs: 3_500, ...outlier },
  });
  b.update(endpoints(count));
  return { b, clock, h: handles(b, count) };
}

function fail(b: Balancer, e: Endpoint, times: number): void {
  for (let i = 0; i < times; i++) {
    b.start(e);
    b.finish(e, false, 2);
  }
}

const stats = (b: Balancer, key: string) => b.snapshot().find((s) => s.key === key)!;

describe('outlier detection', () => {
  test('5 consecutive failures eject; 4 do not', () => {
    const { b, h } = setup(4);
    const e = h.get('ep-1')!;
    fail(b, e, 4);
    assert.equal(b.available, 4);
    assert.equal(stats(b, 'ep-1').consecutiveFailures, 4);
    fail(b, e, 1);
    assert.equal(b.available, 3);
    assert.equal(stats(b, 'ep-1').ejected, true);
    for (let i = 0; i < 20; i++) assert.notEqual(b.pick()!.key, 'ep-1');
    assert.equal(b.counters.ejections, 1);
  });

  test('a success resets the count', () => {
    const { b, h } = setup(4);
    const e = h.get('ep-1')!;
    fail(b, e, 4);
    b.start(e);
    b.finish(e, true, 2);
    fail(b, e, 4);
    assert.equal(b.available, 4);
    fail(b, e, 1);
    assert.equal(b.available, 3);
  });

  // Ejection n lasts n × base, capped at maxEjectionMs (3.5 s here).
  test('ejections grow base, 2×base, 3×base, then stay capped; they end by time, checked lazily', () => {
    const { b, clock, h } = setup(4);
    const e = h.get('ep-1')!;
    const lengths: number[] = [];
    for (let round = 0; round < 5; round++) {
      fail(b, e, 5);
      const until = stats(b, 'ep-1').ejectedUntil!;
      lengths.push(until - clock.t);
      clock.t = until - 1;
      assert.equal(b.available, 3, 'still ejected just before the end');
      clock.t = until;
      assert.equal(b.available, 4, 'back at the end');
    }
    assert.deepEqual(lengths, [1_000, 2_000, 3_000, 3_500, 3_500]);
  });

  test('the multiplier decays by one per quiet period (default: baseEjectionMs) after an ejection ends', () => {
    const { b, clock, h } = setup(4);
    const e = h.get('ep-1')!;
    fail(b, e, 5); // 1st: 1 s
    clock.advance(1_000);
    fail(b, e, 5); // 2nd: 2 s
    clock.advance(2_000);
    assert.equal(stats(b, 'ep-1').ejections, 2);
    clock.advance(1_000); // one quiet period
    assert.equal(stats(b, 'ep-1').ejections, 1);
    fail(b, e, 5); // so this one is the 2nd again: 2 s
    assert.equal(stats(b, 'ep-1').ejectedUntil! - clock.t, 2_000);
    clock.advance(2_000 + 10 * BASE); // long quiet: back to zero
    assert.equal(stats(b, 'ep-1').ejections, 0);
    fail(b, e, 5);
    assert.equal(stats(b, 'ep-1').ejectedUntil! - clock.t, 1_000);
  });

  const caps = [
    { endpoints: 4, percent: 50, ejected: 2 },
    { endpoints: 4, percent: 100, ejected: 4 },
    { endpoints: 10, percent: 10, ejected: 1 },
    { endpoints: 3, percent: 10, ejected: 0 },
    { endpoints: 5, percent: 0, ejected: 0 },
  ];
  for (const c of caps) {
    test(`max ejection percent: ${c.endpoints} endpoints at ${c.percent}% → at most ${c.ejected} ejected`, () => {
      const { b, h } = setup(c.endpoints, { maxEjectionPercent: c.percent });
      for (const e of h.values()) fail(b, e, 5);
      assert.equal(b.snapshot().filter((s) => s.ejected).length, c.ejected);
      assert.equal(b.counters.ejectionsSkipped, c.endpoints - c.ejected);
    });
  }

  test('at the cap the failure count is kept, so the endpoint is ejected once room frees', () => {
    const { b, clock, h } = setup(4);
    fail(b, h.get('ep-0')!, 5);
    fail(b, h.get('ep-1')!, 5);
    fail(b, h.get('ep-2')!, 5);
    assert.equal(stats(b, 'ep-2').ejected, false);
    clock.advance(BASE);
    fail(b, h.get('ep-2')!, 1);
    assert.equal(stats(b, 'ep-2').ejected, true);
  });

  test('a retry avoids the endpoint it just failed on (every algorithm)', () => {
    for (const algorithm of ['p2c-ewma', 'round-robin', 'least-request', 'ring-hash'] as const) {
      const b = new Balancer({ algorithm, random: seededRandom(3) });
      b.update(endpoints(3));
      for (let i = 0; i < 200; i++) {
        const first = b.pick(`k-${i}`)!;
        const retry = b.pick(`k-${i}`, first)!;
        assert.notEqual(retry.key, first.key, `${algorithm} retry ${i}`);
      }
      // With a single endpoint, the retry goes back to it rather than failing.
      b.update(endpoints(1));
      const only = b.pick('k')!;
      assert.equal(b.pick('k', only)!.key, only.key);
    }
  });

  test('panic mode: all unhealthy → picks among unhealthy-but-not-ejected, then among all', () => {
    const clock = new FakeClock();
    const b = new Balancer({
      algorithm: 'round-robin',
      now: clock.now,
      outlier: { consecutiveFailures: 1, baseEjectionMs: BASE, maxEjectionPercent: 100 },
    });
    b.update(endpoints(3, { healthy: false }));
    const h = handles(b, 3);
    assert.equal(b.available, 0);
    fail(b, h.get('ep-0')!, 1);
    fail(b, h.get('ep-1')!, 1);
    const picked = new Set(Array.from({ length: 10 }, () => b.pick()!.key));
    assert.deepEqual([...picked], ['ep-2'], 'unhealthy but not ejected first');
    fail(b, h.get('ep-2')!, 1);
    const all = new Set(Array.from({ length: 10 }, () => b.pick()!.key));
    assert.equal(all.size, 3, 'then everything rather than nothing');
    assert.ok(b.counters.panicPicks >= 20);
  });
});

describe('onEject', () => {
  function withListener(count: number, onEject: (e: Endpoint) => void, outlier: Partial<OutlierOptions> = {}) {
    const clock = new FakeClock();
    const b = new Balancer({
      algorithm: 'round-robin',
      now: clock.now,
      random: seededRandom(1),
      outlier: { consecutiveFailures: 5, baseEjectionMs: BASE, maxEjectionPercent: 50, ...outlier },
      onEject,
    });
    b.update(endpoints(count));
    return { b, clock, h: handles(b, count) };
  }

  test('fires once per ejection, with the ejected endpoint, after it is out', () => {
    const seen: { key: string; available: number }[] = [];
    const { b, clock, h } = withListener(4, (e) => seen.push({ key: e.key, available: b.available }));
    const keys = (): string[] => seen.map((s) => s.key);
    const e = h.get('ep-1')!;
    fail(b, e, 4);
    assert.deepEqual(keys(), []);
    fail(b, e, 1);
    assert.deepEqual(seen[0], { key: 'ep-1', available: 3 });
    // Failures while ejected do not eject again.
    fail(b, e, 10);
    assert.deepEqual(keys(), ['ep-1']);
    // After the ejection ends, five more failures are a second ejection.
    clock.advance(BASE);
    fail(b, e, 5);
    fail(b, h.get('ep-2')!, 5);
    assert.deepEqual(keys(), ['ep-1', 'ep-1', 'ep-2']);
    assert.equal(b.counters.ejections, 3);
  });

  test('an ejection skipped at maxEjectionPercent is not reported', () => {
    const seen: string[] = [];
    const { b, h } = withListener(4, (e) => seen.push(e.key), { maxEjectionPercent: 25 });
    fail(b, h.get('ep-1')!, 5);
    fail(b, h.get('ep-2')!, 5);
    assert.deepEqual(seen, ['ep-1']);
    assert.equal(b.counters.ejectionsSkipped, 1);
  });

  test('a throwing listener does not break finish() or the ejection', () => {
    const { b, h } = withListener(4, () => {
      throw new Error('listener bug');
    });
    assert.doesNotThrow(() => fail(b, h.get('ep-1')!, 5));
    assert.equal(stats(b, 'ep-1').ejected, true);
    assert.equal(b.available, 3);
  });
});
