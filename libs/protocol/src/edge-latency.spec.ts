// The optional `latency` histogram on edge reports: agents that send it and
// agents that predate it both validate; anything else is refused with the
// field's path.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EDGE_LATENCY_BOUNDS_MS, EDGE_LATENCY_BUCKETS, decodeClientMessage, encodeMessage, type ReportMessage } from './index.js';

const edge = { source: 'spiffe://example.org/ns/shop/sa/web', service: 'catalog', namespace: 'shop', peerAddress: '10.0.0.2', requests: 5, errors: 0, denials: 0, bytesIn: 1, bytesOut: 2 };
const frame = (extra: Record<string, unknown>) => JSON.stringify({ type: 'report', seq: 1, intervalMs: 10_000, edges: [{ ...edge, ...extra }] });
const zeros = () => new Array<number>(EDGE_LATENCY_BUCKETS).fill(0);

describe('edge report latency', () => {
  test('the shared bounds are increasing, and there is one more bucket than bounds (the overflow)', () => {
    assert.equal(EDGE_LATENCY_BUCKETS, 14);
    assert.deepEqual([...EDGE_LATENCY_BOUNDS_MS], [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);
    assert.ok(Object.isFrozen(EDGE_LATENCY_BOUNDS_MS));
  });

  test('a report with latency round-trips; one without it (an older agent) still validates and stays without', () => {
    const latency = zeros();
    latency[0] = 3;
    latency[13] = Number.MAX_SAFE_INTEGER;
    const m: ReportMessage = { type: 'report', seq: 1, intervalMs: 10_000, edges: [{ ...edge, latency }] };
    const r = decodeClientMessage(encodeMessage(m));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.message, m);
    const old = decodeClientMessage(frame({}));
    assert.ok(old.ok);
    assert.equal('latency' in (old.message as ReportMessage).edges[0]!, false);
  });

  const hostile: { name: string; latency: unknown; message: RegExp }[] = [
    { name: 'one bucket short', latency: new Array(13).fill(0), message: /edges\[0\].latency must have at least 14 items/ },
    { name: 'one bucket too many', latency: new Array(15).fill(0), message: /edges\[0\].latency must have at most 14 items, got 15/ },
    { name: 'a huge array', latency: new Array(100_000).fill(0), message: /edges\[0\].latency must have at most 14 items/ },
    { name: 'a negative count', latency: [...zeros().slice(1), -1], message: /edges\[0\].latency\[13\]/ },
    { name: 'a fraction', latency: [0.5, ...zeros().slice(1)], message: /edges\[0\].latency\[0\]/ },
    { name: 'beyond a safe integer', latency: [2 ** 53, ...zeros().slice(1)], message: /edges\[0\].latency\[0\]/ },
    { name: 'a string count', latency: ['1', ...zeros().slice(1)], message: /edges\[0\].latency\[0\]/ },
    { name: 'null', latency: null, message: /edges\[0\].latency/ },
    { name: 'an object', latency: { 0: 1 }, message: /edges\[0\].latency/ },
  ];
  for (const h of hostile) {
    test(`refused: ${h.name}`, () => {
      const r = decodeClientMessage(frame({ latency: h.latency }));
      assert.equal(r.ok, false);
      assert.ok(!r.ok);
      assert.equal(r.code, 'invalid_message');
      assert.match(r.message, h.message);
    });
  }
});
