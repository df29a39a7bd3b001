// The retry budget on a fake clock: percent of requests plus a floor per second over
// a sliding 10-second window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from './retry-budget.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('percent of requests: 20 % of 100 requests allows 20 retries, then none', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 20, minRetriesPerSecond: 0, now: c.now });
  for (let i = 0; i < 100; i++) b.recordRequest();
  let allowed = 0;
  for (let i = 0; i < 50; i++) if (b.tryRetry()) allowed++;
  assert.equal(allowed, 20);
  assert.equal(b.retriesInWindow(), 20, 'refused retries are not counted');
});

test('the floor allows minRetriesPerSecond × window retries with no traffic', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 0, minRetriesPerSecond: 2, now: c.now });
  let allowed = 0;
  for (let i = 0; i < 100; i++) if (b.tryRetry()) allowed++;
  assert.equal(allowed, 20);
});

test('the window slides: old requests and retries expire bucket by bucket', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 50, minRetriesPerSecond: 0, now: c.now });
  for (let i = 0; i < 10; i++) b.recordRequest();
  for (let i = 0; i < 5; i++) assert.ok(b.tryRetry());
  assert.equal(b.tryRetry(), false);
  c.advance(5000);
  for (let i = 0; i < 10; i++) b.recordRequest();
  assert.equal(b.allowance(), 10);
  for (let i = 0; i < 5; i++) assert.ok(b.tryRetry());
  assert.equal(b.tryRetry(), false);
  c.advance(5500); // the first bucket (10 requests, 5 retries) left the window
  assert.equal(b.allowance(), 5);
  assert.equal(b.retriesInWindow(), 5);
  assert.equal(b.tryRetry(), false);
  c.advance(60_000); // everything expired, even after a long gap
  assert.equal(b.allowance(), 0);
  assert.equal(b.retriesInWindow(), 0);
});

test('update changes the limits and keeps the counts', () => {
  const c = clock();
  const b = new RetryBudget({ percent: 0, minRetriesPerSecond: 0, now: c.now });
  for (let i = 0; i < 10; i++) b.recordRequest();
  assert.equal(b.tryRetry(), false);
  b.update(10, 0);
  assert.equal(b.tryRetry(), true);
  assert.equal(b.tryRetry(), false);
});

test('bad options are refused with a message that says the range', () => {
  assert.throws(() => new RetryBudget({ percent: 101, minRetriesPerSecond: 0 }), { code: 'AMIME_ERR_HTTP_RETRY_BUDGET', message: /percent in 0\.\.100/ });
  assert.throws(() => new RetryBudget({ percent: 10, minRetriesPerSecond: -1 }), /minRetriesPerSecond >= 0/);
  assert.throws(() => new RetryBudget({ percent: 10, minRetriesPerSecond: 1, buckets: 0 }), /buckets >= 1/);
});
