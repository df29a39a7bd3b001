import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, BalancingError, selectSubset, type EndpointInput } from './index.js';
import { FakeClock, endpoints, ep, handles, seededRandom } from './testing/fake-env.js';

function setup() {
  const clock = new FakeClock();
  const b = new Balancer({
    algorithm: 'p2c-ewma',
    now: clock.now,
    random: seededRandom(1),
    outlier: { consecutiveFailures: 2, baseEjectionMs: 5_000, maxEjectionPercent: 50 },
  });
  b.update(endpoints(4));
  return { b, clock, h: handles(b, 4) };
}

const stats = (b: Balancer, key: string) => b.snapshot().find((s) => s.key === key);

describe('update', () => {
  test('keeps EWMA, in-flight and ejection of unchanged keys, takes new weight, zone and health', () => {
    const { b, clock, h } = setup();
    const slow = h.get('ep-0')!;
    b.start(slow);
    b.finish(slow, true, 250);
    b.start(slow); // one still in flight
    const bad = h.get('ep-1')!;
    b.finish(bad, false, 1);
    b.finish(bad, false, 1);
    assert.equal(stats(b, 'ep-1')!.ejected, true);
    clock.advance(100);
    const before = b.snapshot();

    b.update(endpoints(4).map((e) => (e.key === 'ep-0' ? { ...e, weight: 7, zone: 'z', healthy: false } : e)));
    const after = b.snapshot();
    assert.deepEqual(
      after.map((s) => ({ ...s, weight: 0, zone: undefined, healthy: true })),
      before.map((s) => ({ ...s, weight: 0, zone: undefined, healthy: true })),
    );
    assert.deepEqual(
      { weight: stats(b, 'ep-0')!.weight, zone: stats(b, 'ep-0')!.zone, healthy: stats(b, 'ep-0')!.healthy },
      { weight: 7, zone: 'z', healthy: false },
    );
    assert.equal(stats(b, 'ep-0')!.inFlight, 1);
    assert.ok(stats(b, 'ep-0')!.ewmaMs > 240);
    assert.equal(b.available, 2, 'ep-0 unhealthy, ep-1 still ejected');
    // The caller's handles stay valid: finish() on the kept endpoint still counts.
    b.finish(slow, true, 1);
    assert.equal(stats(b, 'ep-0')!.inFlight, 0);
  });

  test('drops removed keys; a late finish() on a removed endpoint is harmless', () => {
    const { b, h } = setup();
    const gone = h.get('ep-3')!;
    b.start(gone);
    b.update(endpoints(3));
    assert.equal(b.size, 3);
    assert.equal(stats(b, 'ep-3'), undefined);
    b.finish(gone, false, 1);
    b.finish(gone, false, 1);
    assert.equal(b.counters.ejections, 0);
    for (let i = 0; i < 50; i++) assert.notEqual(b.pick(), gone);
    // Re-adding the key starts fresh.
    b.update(endpoints(4));
    assert.equal(stats(b, 'ep-3')!.inFlight, 0);
    assert.equal(stats(b, 'ep-3')!.ewmaMs, 30);
  });

  test('a key whose address changed is a new endpoint', () => {
    const { b, h } = setup();
    const old = h.get('ep-2')!;
    b.finish(old, true, 500);
    b.update(endpoints(4).map((e) => (e.key === 'ep-2' ? { ...e, address: '10.9.9.9' } : e)));
    assert.equal(stats(b, 'ep-2')!.address, '10.9.9.9');
    assert.equal(stats(b, 'ep-2')!.ewmaMs, 30);
    assert.notEqual(handles(b, 4).get('ep-2'), old);
  });

  test('an empty set picks nothing; endpoints of another balancer are ignored', () => {
    const { b, h } = setup();
    const other = new Balancer({ algorithm: 'round-robin' });
    assert.equal(other.pick(), undefined);
    other.update([]);
    assert.equal(other.pick(), undefined);
    other.start(h.get('ep-0')!);
    other.finish(h.get('ep-0')!, false, 1);
    assert.equal(stats(b, 'ep-0')!.inFlight, 0);
  });

  const invalid: { name: string; set: EndpointInput[] }[] = [
    { name: 'duplicate key', set: [ep('ep-1'), ep('ep-1')] },
    { name: 'weight 0', set: [ep('ep-1', { weight: 0 })] },
    { name: 'weight 1001', set: [ep('ep-1', { weight: 1001 })] },
    { name: 'fractional weight', set: [ep('ep-1', { weight: 1.5 })] },
    { name: 'port 0', set: [ep('ep-1', { port: 0 })] },
    { name: 'empty key', set: [ep('ep-1', { key: '' })] },
  ];
  for (const c of invalid) {
    test(`rejects a set with a ${c.name} and keeps the previous one`, () => {
      const { b } = setup();
      assert.throws(() => b.update(c.set), (err: unknown) => err instanceof BalancingError && err.code === 'AMIME_ERR_BALANCING_ENDPOINT');
      assert.equal(b.size, 4);
    });
  }

  const badOptions = [
    { algorithm: 'random' },
    { algorithm: 'p2c-ewma', defaultRttMs: 0 },
    { algorithm: 'p2c-ewma', ewmaDecayMs: -1 },
    { algorithm: 'p2c-ewma', outlier: { consecutiveFailures: 0, baseEjectionMs: 1, maxEjectionPercent: 10 } },
    { algorithm: 'p2c-ewma', outlier: { consecutiveFailures: 5, baseEjectionMs: 1, maxEjectionPercent: 101 } },
    { algorithm: 'p2c-ewma', outlier: { consecutiveFailures: 5, baseEjectionMs: 0, maxEjectionPercent: 10 } },
    { algorithm: 'p2c-ewma', outlier: { consecutiveFailures: 5, baseEjectionMs: 10, maxEjectionPercent: 10, maxEjectionMs: 5 } },
  ];
  for (const opts of badOptions) {
    test(`rejects options ${JSON.stringify(opts)}`, () => {
      assert.throws(
        () => new Balancer(opts as never),
        (err: unknown) => err instanceof BalancingError && err.code === 'AMIME_ERR_BALANCING_OPTIONS',
      );
    });
  }
});

describe('selectSubset', () => {
  const pool = [
    ep('ep-1', { labels: { version: 'v1', track: 'stable' } }),
    ep('ep-2', { labels: { version: 'v2', track: 'canary' } }),
    ep('ep-3', { labels: { version: 'v1' } }),
    ep('ep-4'),
  ];
  const cases: { labels: Record<string, string>; keys: string[] }[] = [
    { labels: { version: 'v1' }, keys: ['ep-1', 'ep-3'] },
    { labels: { version: 'v1', track: 'stable' }, keys: ['ep-1'] },
    { labels: { version: 'v3' }, keys: [] },
    { labels: { toString: 'x' }, keys: [] },
    { labels: {}, keys: ['ep-1', 'ep-2', 'ep-3', 'ep-4'] },
  ];
  for (const c of cases) {
    test(`${JSON.stringify(c.labels)} → ${c.keys.join(',') || 'none'}`, () => {
      assert.deepEqual(
        selectSubset(pool, c.labels).map((e) => e.key),
        c.keys,
      );
    });
  }
});
