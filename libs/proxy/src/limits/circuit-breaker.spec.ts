import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LimitsConfigError } from './errors.js';
import { CircuitBreaker } from './circuit-breaker.js';

type Op = 'tryConnection' | 'releaseConnection' | 'tryPending' | 'releasePending' | 'tryRequest' | 'releaseRequest';

describe('CircuitBreaker', () => {
  const cases: { name: string; opts: ConstructorParameters<typeof CircuitBreaker>[0]; ops: [Op, boolean | undefined][]; want: Partial<CircuitBreaker> }[] = [
    {
      name: 'connections up to the limit, then refused until one is released',
      opts: { maxConnections: 2 },
      ops: [['tryConnection', true], ['tryConnection', true], ['tryConnection', false], ['releaseConnection', undefined], ['tryConnection', true], ['tryConnection', false]],
      want: { connections: 2, refusedConnections: 2 },
    },
    {
      name: 'pending queue accounting is separate from requests',
      opts: { maxPendingRequests: 1, maxRequests: 1 },
      ops: [['tryPending', true], ['tryPending', false], ['tryRequest', true], ['releasePending', undefined], ['tryRequest', false], ['tryPending', true]],
      want: { pending: 1, requests: 1, refusedPending: 1, refusedRequests: 1 },
    },
    {
      name: 'a zero limit refuses everything',
      opts: { maxConnections: 0, maxPendingRequests: 0, maxRequests: 0 },
      ops: [['tryConnection', false], ['tryPending', false], ['tryRequest', false]],
      want: { connections: 0, refusedConnections: 1, refusedPending: 1, refusedRequests: 1 },
    },
    {
      name: 'a release without an acquire never goes below zero',
      opts: {},
      ops: [['releaseRequest', undefined], ['releaseConnection', undefined], ['tryRequest', true]],
      want: { requests: 1, connections: 0, unmatchedReleases: 2 },
    },
    {
      name: 'Infinity is unlimited',
      opts: { maxRequests: Number.POSITIVE_INFINITY },
      ops: Array.from({ length: 5000 }, () => ['tryRequest', true] as [Op, boolean]),
      want: { requests: 5000, refusedRequests: 0 },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const cb = new CircuitBreaker(c.opts);
      c.ops.forEach(([op, want], i) => {
        const got = cb[op]();
        if (want !== undefined) assert.equal(got, want, `step ${i}: ${op}`);
      });
      for (const [k, v] of Object.entries(c.want)) assert.equal(cb[k as keyof CircuitBreaker], v, k);
    });
  }

  test('defaults to 1024 each; isOpen reports saturation without counting', () => {
    const cb = new CircuitBreaker();
    assert.deepEqual([cb.maxConnections, cb.maxPendingRequests, cb.maxRequests], [1024, 1024, 1024]);
    const small = new CircuitBreaker({ maxRequests: 1 });
    assert.equal(small.isOpen('requests'), false);
    small.tryRequest();
    assert.equal(small.isOpen('requests'), true);
    assert.equal(small.refusedRequests, 0);
  });

  for (const bad of [-1, 1.5, Number.NaN]) {
    test(`refuses limit ${bad}`, () => {
      assert.throws(() => new CircuitBreaker({ maxConnections: bad }), LimitsConfigError);
    });
  }
});
