import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Algorithm, type Endpoint } from './index.js';
import { FakeClock, endpoints, ep, seededRandom, share, simulate } from './testing/fake-env.js';

const FAST_MS = 5;
const SLOW_MS = 100;

function setup(algorithm: Algorithm, seed = 1) {
  const clock = new FakeClock();
  const b = new Balancer({ algorithm, now: clock.now, random: seededRandom(seed) });
  b.update(endpoints(3));
  return { clock, b };
}

describe('p2c-ewma', () => {
  // The slow endpoint's share over 3000 requests from a closed loop of clients.
  // At low concurrency in-flight counts barely differ, so least-request still
  // feeds the slow endpoint; latency is what tells it apart.
  const cases: { algorithm: Algorithm; concurrency: number; seed: number; min: number; max: number }[] = [
    { algorithm: 'p2c-ewma', concurrency: 10, seed: 1, min: 0, max: 0.1 },
    { algorithm: 'p2c-ewma', concurrency: 10, seed: 2, min: 0, max: 0.1 },
    { algorithm: 'p2c-ewma', concurrency: 10, seed: 3, min: 0, max: 0.1 },
    { algorithm: 'p2c-ewma', concurrency: 3, seed: 1, min: 0, max: 0.01 },
    { algorithm: 'least-request', concurrency: 3, seed: 1, min: 0.05, max: 0.1 },
    { algorithm: 'round-robin', concurrency: 10, seed: 1, min: 0.33, max: 0.34 },
  ];
  for (const c of cases) {
    test(`${c.algorithm} at concurrency ${c.concurrency} (seed ${c.seed}) sends the slow endpoint ${c.min * 100}–${c.max * 100}% of traffic`, (t) => {
      const { clock, b } = setup(c.algorithm, c.seed);
      const counts = simulate(b, clock, {
        requests: 3000,
        concurrency: c.concurrency,
        latency: (e) => (e.key === 'ep-2' ? SLOW_MS : FAST_MS),
      });
      const slow = share(counts, 'ep-2');
      t.diagnostic(`slow endpoint share ${(slow * 100).toFixed(2)}% (${counts.get('ep-2') ?? 0}/3000), ${clock.t.toFixed(0)} ms simulated`);
      assert.ok(slow >= c.min && slow <= c.max, `slow share ${slow}`);
    });
  }

  test('a recovered endpoint gets its traffic back as its EWMA decays', (t) => {
    const { clock, b } = setup('p2c-ewma');
    let recoveredAt = Infinity;
    const windowMs = 5_000;
    const windows: { slow: number; total: number }[] = [];
    simulate(b, clock, {
      requests: 200_000,
      concurrency: 10,
      latency: (e, now) => (e.key === 'ep-2' && now < recoveredAt ? SLOW_MS : FAST_MS),
      onPick: (e, now) => {
        if (recoveredAt === Infinity && now >= 2_000) recoveredAt = now;
        if (now < recoveredAt) return;
        const w = Math.floor((now - recoveredAt) / windowMs);
        windows[w] ??= { slow: 0, total: 0 };
        windows[w].total++;
        if (e.key === 'ep-2') windows[w].slow++;
      },
    });
    const shares = windows.filter((w) => w.total > 1000).map((w) => w.slow / w.total);
    t.diagnostic(`share of the recovered endpoint per ${windowMs / 1000} s window: ${shares.map((s) => `${(s * 100).toFixed(1)}%`).join(' ')}`);
    // Right after recovery it holds about one request slot of ten (its old 100 ms peak still counts)...
    assert.ok(shares[0]! < 0.12, 'still avoided right after recovery');
    // ...the estimate decays with τ = 10 s, so it takes tens of seconds, not one sample, to come back...
    const backAt = shares.findIndex((s) => s > 0.25);
    assert.ok(backAt >= 3, `back above 25% only after ${backAt * windowMs} ms`);
    // ...and then it carries its third again.
    assert.ok(shares.at(-1)! > 0.3, 'back to about a third once the penalty decayed');
  });

  test('a fast-failing endpoint does not attract traffic (failures are penalty samples)', (t) => {
    const { clock, b } = setup('p2c-ewma');
    const counts = simulate(b, clock, {
      requests: 3000,
      concurrency: 10,
      latency: (e) => (e.key === 'ep-2' ? 1 : 20),
      ok: (e) => e.key !== 'ep-2',
    });
    const failing = share(counts, 'ep-2');
    t.diagnostic(`failing endpoint share ${(failing * 100).toFixed(2)}%`);
    assert.ok(failing < 0.05, `failing share ${failing}`);
  });

  test('a new endpoint starts at the default RTT: tried against a slow one, not preferred over a fast idle one', () => {
    const clock = new FakeClock();
    const b = new Balancer({ algorithm: 'p2c-ewma', now: clock.now, random: seededRandom(7), defaultRttMs: 30 });
    b.update([ep('ep-0')]);
    const old = b.pick()!;
    b.start(old);
    clock.advance(1);
    b.finish(old, true, 100);
    b.update([ep('ep-0'), ep('ep-1')]);
    assert.equal(b.snapshot()[1]!.ewmaMs, 30);
    // Two endpoints: P2C compares both every time; 30 × 1 beats 100 × 1.
    assert.equal(b.pick()!.key, 'ep-1');

    const fast = new Balancer({ algorithm: 'p2c-ewma', now: clock.now, random: seededRandom(7), defaultRttMs: 30 });
    fast.update([ep('ep-0')]);
    const e = fast.pick()!;
    fast.start(e);
    clock.advance(1);
    fast.finish(e, true, 5);
    // A 5 ms sample does not replace the 30 ms starting value at once; let it settle, then add a newcomer.
    for (let i = 0; i < 200; i++) {
      clock.advance(100);
      fast.start(e);
      fast.finish(e, true, 5);
    }
    fast.update([ep('ep-0'), ep('ep-1')]);
    const picked = new Set<string>();
    for (let i = 0; i < 20; i++) picked.add(fast.pick()!.key);
    assert.deepEqual([...picked], ['ep-0'], 'the idle 5 ms endpoint wins over the untried 30 ms one');
  });

  test('cost counts in-flight requests: equal latency, the busier endpoint loses', () => {
    const clock = new FakeClock();
    const b = new Balancer({ algorithm: 'p2c-ewma', now: clock.now, random: seededRandom(3) });
    b.update(endpoints(2));
    const busy = b.pick()!;
    for (let i = 0; i < 3; i++) b.start(busy);
    for (let i = 0; i < 10; i++) assert.notEqual(b.pick()!.key, busy.key);
  });

  test('peak EWMA: a higher sample replaces the estimate, a lower one decays toward it with τ = 10 s', () => {
    const clock = new FakeClock();
    const b = new Balancer({ algorithm: 'p2c-ewma', now: clock.now, random: seededRandom(1), defaultRttMs: 30 });
    b.update([ep('ep-0')]);
    const e = b.pick() as Endpoint;
    const ewma = () => b.snapshot()[0]!.ewmaMs;
    b.finish(e, true, 200);
    assert.equal(ewma(), 200);
    clock.advance(10_000);
    // Unobserved for τ: decayed toward zero by 1/e.
    assert.ok(Math.abs(ewma() - 200 / Math.E) < 1e-9);
    // Just read (elapsed 0): a lower sample does not move it.
    b.finish(e, true, 10);
    assert.ok(Math.abs(ewma() - 200 / Math.E) < 1e-9);
    clock.advance(5_000);
    const before = 200 / Math.E;
    b.finish(e, true, 10);
    // The snapshot had committed no decay since the last read at 10 s; the sample pulls it with weight 1 - e^-0.5.
    const keep = Math.exp(-0.5);
    assert.ok(Math.abs(ewma() - (before * keep + 10 * (1 - keep))) < 1e-9, String(ewma()));
  });
});
