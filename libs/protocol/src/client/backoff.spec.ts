import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, DEFAULT_BACKOFF } from './backoff.js';

/** A random source replaying `values` in a loop. */
function replay(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('Backoff', () => {
  test('defaults: 250 ms doubling up to 30 s', () => {
    const b = new Backoff({ random: () => 0.999_999 });
    assert.equal(b.initialMs, DEFAULT_BACKOFF.initialMs);
    const ceilings: number[] = [];
    for (let i = 0; i < 10; i++) {
      ceilings.push(b.ceiling());
      b.next();
    }
    assert.deepEqual(ceilings, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  test('grows with the attempt and stays under the ceiling (full jitter)', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999_999 });
    const delays = Array.from({ length: 6 }, () => b.next());
    assert.deepEqual(delays, [99, 199, 399, 799, 999, 999]);
    assert.equal(b.attempt, 6);
  });

  test('is jittered: the delay is random × ceiling', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 1000, random: replay(0, 0.25, 0.5, 0.75) });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [0, 250, 500, 750]);
    const real = new Backoff({ initialMs: 1000, maxMs: 1000 });
    const seen = new Set(Array.from({ length: 50 }, () => real.next()));
    assert.ok(seen.size > 10, `expected spread delays, got ${[...seen].join(', ')}`);
    for (const d of seen) assert.ok(d >= 0 && d < 1000);
  });

  test('a random source out of range is clamped under the ceiling', () => {
    for (const r of [1, 7, -1, Number.NaN]) {
      const d = new Backoff({ initialMs: 100, maxMs: 100, random: () => r }).next();
      assert.ok(d >= 0 && d < 100, `random ${r} gave ${d}`);
    }
  });

  test('many attempts never overflow', () => {
    const b = new Backoff({ initialMs: 1, maxMs: 5000, factor: 10, random: () => 0.5 });
    for (let i = 0; i < 2000; i++) b.next();
    assert.equal(b.ceiling(), 5000);
    assert.equal(b.next(), 2500);
  });

  test('reset() starts over', () => {
    const b = new Backoff({ initialMs: 10, random: () => 0.5 });
    b.next();
    b.next();
    b.reset();
    assert.equal(b.attempt, 0);
    assert.equal(b.next(), 5);
  });

  test('a connection that stayed up resetAfterMs starts the ladder over; a short one does not', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, resetAfterMs: 1000, random: () => 0.5, now: () => now });
    b.next();
    b.next();
    b.next(); // ceiling now 800
    b.connected();
    now += 999; // flapping: not healthy long enough
    assert.equal(b.next(), 400);
    b.connected();
    now += 1000;
    assert.equal(b.next(), 50);
    assert.equal(b.attempt, 1);
    // without connected() in between, nothing resets however long it waits
    now += 100_000;
    assert.equal(b.next(), 100);
  });

  test('refuses bad options with the fix', () => {
    assert.throws(() => new Backoff({ initialMs: 0 }), /initialMs must be a positive/);
    assert.throws(() => new Backoff({ initialMs: 100, maxMs: 50 }), /maxMs must be at least initialMs/);
    assert.throws(() => new Backoff({ factor: 0.5 }), /factor must be 1 or more/);
    assert.throws(() => new Backoff({ resetAfterMs: -1 }), /resetAfterMs/);
  });
});
