import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Algorithm, type EndpointInput } from './index.js';
import { FakeClock, ep, handles, seededRandom } from './testing/fake-env.js';

// Two endpoints in zone a (local), three in zone b.
const POOL: EndpointInput[] = [
  ep('ep-1', { zone: 'a' }),
  ep('ep-2', { zone: 'a' }),
  ep('ep-3', { zone: 'b' }),
  ep('ep-4', { zone: 'b' }),
  ep('ep-5', { zone: 'b' }),
];
const ALGORITHMS: Algorithm[] = ['p2c-ewma', 'round-robin', 'least-request', 'ring-hash'];

function zonesPicked(b: Balancer, n = 300): Map<string, number> {
  const zones = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const z = b.pick(`key-${i}`)!.zone ?? '-';
    zones.set(z, (zones.get(z) ?? 0) + 1);
  }
  return zones;
}

function balancer(algorithm: Algorithm, over: { zoneFailover?: boolean; localZone?: string } = {}) {
  const clock = new FakeClock();
  const b = new Balancer({
    algorithm,
    localZone: 'a',
    ...over,
    now: clock.now,
    random: seededRandom(11),
    outlier: { consecutiveFailures: 1, baseEjectionMs: 1_000, maxEjectionPercent: 100 },
  });
  b.update(POOL);
  return { b, clock };
}

describe('zone preference', () => {
  for (const algorithm of ALGORITHMS) {
    test(`${algorithm}: only the local zone while any endpoint there is available`, () => {
      const { b } = balancer(algorithm);
      assert.deepEqual(Object.fromEntries(zonesPicked(b)), { a: 300 });
      assert.equal(b.counters.zoneFailovers, 0);
    });

    test(`${algorithm}: fails over to all zones when the local zone is all unhealthy or ejected`, () => {
      const { b, clock } = balancer(algorithm);
      b.update(POOL.map((e) => (e.key === 'ep-1' ? { ...e, healthy: false } : e)));
      assert.deepEqual(Object.fromEntries(zonesPicked(b)), { a: 300 }, 'one left in zone a is enough');
      const h = handles(b, 1);
      const last = h.get('ep-2')!;
      b.start(last);
      b.finish(last, false, 1); // ejected for 1 s
      assert.deepEqual(Object.fromEntries(zonesPicked(b)), { b: 300 });
      assert.equal(b.counters.zoneFailovers, 300);
      clock.advance(1_000);
      assert.deepEqual(Object.fromEntries(zonesPicked(b)), { a: 300 }, 'back once the ejection ends');
    });
  }

  test('zoneFailover=false spreads over all zones', () => {
    const { b } = balancer('round-robin', { zoneFailover: false });
    assert.deepEqual(Object.fromEntries(zonesPicked(b, 500)), { a: 200, b: 300 });
  });

  test('no localZone: zones are ignored', () => {
    const b = new Balancer({ algorithm: 'round-robin' });
    b.update(POOL);
    assert.deepEqual(Object.fromEntries(zonesPicked(b, 500)), { a: 200, b: 300 });
  });

  test('a retry that failed on the only local endpoint leaves the zone rather than retrying it', () => {
    const { b } = balancer('round-robin');
    b.update(POOL.filter((e) => e.key !== 'ep-2'));
    const first = b.pick()!;
    assert.equal(first.key, 'ep-1');
    assert.equal(b.pick(undefined, first)!.zone, 'b');
  });

  test('panic mode ignores zones: all unhealthy → every zone is used', () => {
    const { b } = balancer('round-robin');
    b.update(POOL.map((e) => ({ ...e, healthy: false })));
    assert.deepEqual(Object.fromEntries(zonesPicked(b, 500)), { a: 200, b: 300 });
    assert.equal(b.counters.panicPicks, 500);
  });
});
