import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type EndpointInput } from './index.js';
import { MAX_RING_SIZE } from './ring.js';
import { FakeClock, endpoints, ep, seededRandom } from './testing/fake-env.js';

const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

function ring(eps: EndpointInput[], opts: { seed?: number } = {}) {
  const clock = new FakeClock();
  const b = new Balancer({
    algorithm: 'ring-hash',
    now: clock.now,
    random: seededRandom(opts.seed ?? 1),
    outlier: { consecutiveFailures: 1, baseEjectionMs: 1000, maxEjectionPercent: 50 },
  });
  b.update(eps);
  return { b, clock };
}

function assign(b: Balancer): Map<string, string> {
  return new Map(KEYS.map((k) => [k, b.pick(k)!.key]));
}

function moved(before: Map<string, string>, after: Map<string, string>): string[] {
  return KEYS.filter((k) => before.get(k) !== after.get(k));
}

describe('ring-hash', () => {
  test('the same key always lands on the same endpoint, also across balancers built from the same set', () => {
    const a = ring(endpoints(10)).b;
    const b = ring([...endpoints(10)].reverse(), { seed: 99 }).b;
    for (const k of KEYS.slice(0, 500)) {
      const first = a.pick(k)!.key;
      assert.equal(a.pick(k)!.key, first);
      assert.equal(b.pick(k)!.key, first);
    }
  });

  test('adding an 11th endpoint to 10 moves about 1/11 of the keys, all of them to the newcomer', (t) => {
    const { b } = ring(endpoints(10));
    const before = assign(b);
    b.update(endpoints(11));
    const after = assign(b);
    const m = moved(before, after);
    t.diagnostic(`remapped ${m.length}/10000 = ${(m.length / 100).toFixed(2)}% (1/11 = 9.09%), ring ${b.ringSize} vnodes`);
    assert.ok(m.length / KEYS.length >= 0.5 / 11 && m.length / KEYS.length <= 1.6 / 11, `moved ${m.length}`);
    for (const k of m) assert.equal(after.get(k), 'ep-10');
  });

  test('removing one endpoint moves only its keys', (t) => {
    const { b } = ring(endpoints(10));
    const before = assign(b);
    b.update(endpoints(10).filter((e) => e.key !== 'ep-4'));
    const after = assign(b);
    const m = moved(before, after);
    const owned = KEYS.filter((k) => before.get(k) === 'ep-4');
    t.diagnostic(`ep-4 owned ${owned.length} keys; ${m.length} moved`);
    assert.deepEqual(m, owned);
  });

  test('an unavailable endpoint spills its keys clockwise and gets them back when it returns', () => {
    const { b, clock } = ring(endpoints(10));
    const before = assign(b);
    const victim = b.pick('user-1')!;
    b.start(victim);
    b.finish(victim, false, 1); // consecutiveFailures 1 → ejected for 1 s
    assert.equal(b.available, 9);
    const during = assign(b);
    const m = moved(before, during);
    assert.deepEqual(m, KEYS.filter((k) => before.get(k) === victim.key));
    assert.ok(m.every((k) => during.get(k) !== victim.key));
    // Marking it unhealthy works the same; the ring is not rebuilt either way.
    clock.advance(1000);
    assert.deepEqual(assign(b), before);
    b.update(endpoints(10).map((e) => (e.key === victim.key ? { ...e, healthy: false } : e)));
    assert.deepEqual(moved(before, assign(b)), m);
  });

  test('weights are respected roughly (vnodes in proportion to weight)', (t) => {
    const { b } = ring([ep('ep-1', { weight: 100 }), ep('ep-2', { weight: 200 }), ep('ep-3', { weight: 300 })]);
    const counts = new Map<string, number>();
    for (const k of KEYS) counts.set(b.pick(k)!.key, (counts.get(b.pick(k)!.key) ?? 0) + 1);
    const shares = [1, 2, 3].map((i) => (counts.get(`ep-${i}`) ?? 0) / KEYS.length);
    t.diagnostic(`shares for weights 1:2:3 ${shares.map((s) => (s * 100).toFixed(1) + '%').join(' ')} (ideal 16.7% 33.3% 50.0%), ring ${b.ringSize}`);
    [1 / 6, 2 / 6, 3 / 6].forEach((ideal, i) => assert.ok(Math.abs(shares[i]! - ideal) < ideal * 0.25, `share ${shares[i]} vs ${ideal}`));
  });

  test('the ring stays bounded: 1000 endpoints of weight 1000 and one of weight 1', () => {
    const eps = endpoints(1000, { weight: 1000 });
    eps.push(ep('light-1', { weight: 1 }));
    const { b } = ring(eps);
    assert.ok(b.ringSize <= MAX_RING_SIZE + eps.length, String(b.ringSize));
    assert.ok(b.ringSize >= MAX_RING_SIZE / 2, String(b.ringSize));
  });

  test('without a hash key it picks at random among the candidates; avoid walks past the failed endpoint', () => {
    const { b } = ring(endpoints(3));
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add(b.pick()!.key);
    assert.equal(seen.size, 3);
    const first = b.pick('user-7')!;
    const retry = b.pick('user-7', first)!;
    assert.notEqual(retry.key, first.key);
    assert.equal(b.pick('user-7', retry)!.key, first.key);
  });
});
