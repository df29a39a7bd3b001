import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash32 } from './hash.js';

test('hash32 is stable: every agent must build the same ring and map a key the same way', () => {
  const known: [string, number][] = [
    ['', 2872998923],
    ['a', 444641715],
    ['user-1', 2005895916],
    ['日本', 3490853225],
  ];
  for (const [s, h] of known) assert.equal(hash32(s), h, s);
});

test('hash32 spreads sequential keys evenly over 16 buckets (chi-square)', (t) => {
  const buckets = new Array<number>(16).fill(0);
  const n = 16_000;
  for (let i = 0; i < n; i++) buckets[hash32(`ep-${i}#${i % 7}`) >>> 28]!++;
  const expected = n / 16;
  const chi2 = buckets.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  t.diagnostic(`chi-square ${chi2.toFixed(1)} over 15 degrees of freedom`);
  // p = 0.001 critical value for 15 degrees of freedom is 37.7.
  assert.ok(chi2 < 37.7, `chi-square ${chi2}`);
});
