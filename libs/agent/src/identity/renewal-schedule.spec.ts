// The renewal policy as data: when an SVID renews and how long a failed
// renewal waits, including the approach to expiry.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RENEWAL_POLICY as P, checkRenewalPolicy, renewalTime, retryAfterFailure, type RenewalPolicy } from './renewal-schedule.js';

const HOUR = 3600_000;

describe('renewalTime', () => {
  const cases: [string, number, number, number, RenewalPolicy, number][] = [
    // name, start, notAfter, random, policy, expected
    ['half life without jitter draw', 0, HOUR, 0.5, P, HOUR / 2],
    ['earliest point of ±10%', 0, HOUR, 0, P, 0.4 * HOUR],
    ['latest point of ±10%', 0, HOUR, 0.999999, P, Math.round(0.6 * HOUR - 0.2 * HOUR * 0.000001)],
    ['measured from start, not from zero', 1000, 1000 + HOUR, 0.5, P, 1000 + HOUR / 2],
    ['renewAt 0.8, no jitter', 0, HOUR, 0.3, { ...P, renewAt: 0.8, jitter: 0 }, 0.8 * HOUR],
    ['an SVID with no life left renews at once', 5000, 5000, 0.5, P, 5000],
  ];
  for (const [name, start, notAfter, random, policy, expected] of cases) {
    test(name, () => assert.equal(renewalTime(start, notAfter, policy, random), expected));
  }

  test('always before expiry', () => {
    assert.ok(renewalTime(0, 10, { ...P, renewAt: 0.95, jitter: 0.04 }, 0.999) < 10);
  });
});

describe('retryAfterFailure', () => {
  const far = 10 * HOUR;
  const cases: [string, number, number, number, number, { delayMs: number; expiring: boolean; expired: boolean }][] = [
    // name, now, notAfter, failures, random, expected
    ['first failure waits the initial delay', 0, far, 1, 0.5, { delayMs: 1000, expiring: false, expired: false }],
    ['doubles per failure', 0, far, 3, 0.5, { delayMs: 4000, expiring: false, expired: false }],
    ['-20% jitter', 0, far, 1, 0, { delayMs: 800, expiring: false, expired: false }],
    ['+20% jitter', 0, far, 2, 1, { delayMs: 2400, expiring: false, expired: false }],
    ['capped at retryMaxMs', 0, far, 30, 0.5, { delayMs: 60_000, expiring: false, expired: false }],
    ['capped after jitter too', 0, far, 30, 1, { delayMs: 60_000, expiring: false, expired: false }],
    ['huge failure counts do not overflow', 0, far, 10_000, 0.5, { delayMs: 60_000, expiring: false, expired: false }],
    ['never obtained (no expiry)', 0, Number.POSITIVE_INFINITY, 2, 0.5, { delayMs: 2000, expiring: false, expired: false }],
    ['brought forward to half the time left before expiry', 0, 40_000, 30, 0.5, { delayMs: 20_000, expiring: true, expired: false }],
    ['never below the initial delay near expiry', 0, 1500, 30, 0.5, { delayMs: 1000, expiring: true, expired: false }],
    ['or the time left when less', 0, 600, 30, 0.5, { delayMs: 600, expiring: true, expired: false }],
    ['expired: normal backoff, flagged', 5000, 5000, 4, 0.5, { delayMs: 8000, expiring: false, expired: true }],
  ];
  for (const [name, now, notAfter, failures, random, expected] of cases) {
    test(name, () => assert.deepEqual(retryAfterFailure(now, notAfter, failures, P, random), expected));
  }
});

describe('checkRenewalPolicy', () => {
  const cases: [string, Partial<RenewalPolicy>, RegExp | undefined][] = [
    ['the default', {}, undefined],
    ['renewAt 0', { renewAt: 0 }, /^renewAt: /],
    ['renewAt 1', { renewAt: 1 }, /^renewAt: /],
    ['renewAt NaN', { renewAt: Number.NaN }, /^renewAt: /],
    ['negative jitter', { jitter: -0.1 }, /^jitter: /],
    ['jitter reaching 0', { renewAt: 0.2, jitter: 0.2 }, /^jitter: /],
    ['jitter reaching 1', { renewAt: 0.9, jitter: 0.1 }, /^jitter: /],
    ['no retry delay', { retryInitialMs: 0 }, /^retry\.initialMs: /],
    ['a cap below the first delay', { retryInitialMs: 5000, retryMaxMs: 1000 }, /^retry\.maxMs: /],
  ];
  for (const [name, o, problem] of cases) {
    test(name, () => {
      const got = checkRenewalPolicy({ ...P, ...o });
      if (problem === undefined) assert.equal(got, undefined);
      else assert.match(got ?? '', problem);
    });
  }
});
