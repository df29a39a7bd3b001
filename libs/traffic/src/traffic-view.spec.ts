// TrafficView on a fake clock. Every expected number is worked out by hand
// in the comment above its assertion.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EDGE_LATENCY_BUCKETS, type EdgeCounts } from '@amime/protocol';
import { TrafficView, checkWindow, latencyQuantile, sourceIndex, type TrafficViewOptions } from './index.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const WEB = 'spiffe://amime.test/ns/shop/sa/web';
const ADMIN = 'spiffe://amime.test/ns/ops/sa/admin';

function hist(counts: Record<number, number>): number[] {
  const h = new Array<number>(EDGE_LATENCY_BUCKETS).fill(0);
  for (const [i, n] of Object.entries(counts)) h[Number(i)] = n;
  return h;
}

function edge(source: string, service: string, counts: Partial<EdgeCounts> = {}): EdgeCounts {
  return { source, service, namespace: 'shop', peerAddress: '10.0.0.1', requests: 0, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0, ...counts };
}

function view(opts: TrafficViewOptions = {}) {
  let now = T0;
  const v = new TrafficView({ now: () => now, ...opts });
  return { v, at: (seconds: number) => (now = T0 + seconds * 1000) };
}

describe('latencyQuantile', () => {
  test('interpolates within the bucket; the overflow bucket answers the last bound; empty is null', () => {
    assert.equal(latencyQuantile(hist({}), 0.5), null);
    // one sample in 0..1 ms: rank 0.5 → 0 + 1 × 0.5/1
    assert.equal(latencyQuantile(hist({ 0: 1 }), 0.5), 0.5);
    // 4 samples in 10..25 ms: p50 rank 2 → 10 + 15 × 2/4 = 17.5; p99 rank 3.96 → 10 + 15 × 3.96/4 = 24.85
    assert.equal(latencyQuantile(hist({ 4: 4 }), 0.5), 17.5);
    assert.ok(Math.abs(latencyQuantile(hist({ 4: 4 }), 0.99)! - 24.85) < 1e-9);
    // 3 ≤1, 1 in 1..2, 2 in 2..5, 1 in 25..50, 1 overflow (8): p50 rank 4 → bucket 1: 1 + 1 × (4-3)/1 = 2
    assert.equal(latencyQuantile(hist({ 0: 3, 1: 1, 2: 2, 5: 1, 13: 1 }), 0.5), 2);
    // p99 rank 7.92 → past 7 in the first buckets, in the overflow: the last bound
    assert.equal(latencyQuantile(hist({ 0: 3, 1: 1, 2: 2, 5: 1, 13: 1 }), 0.99), 10_000);
    // empty buckets between are skipped: 1 in 0..1, 1 in 500..1000; p50 rank 1 → 0 + 1 × 1/1 = 1
    assert.equal(latencyQuantile(hist({ 0: 1, 9: 1 }), 0.5), 1);
    // p99 rank 1.98 → 500 + 500 × 0.98/1 = 990
    assert.equal(latencyQuantile(hist({ 0: 1, 9: 1 }), 0.99), 990);
  });
});

describe('TrafficView', () => {
  test('steady reports: totals, rps over the window, rates, interpolated p50/p99, mTLS, nodes, lastSeen', () => {
    const { v, at } = view({ resolveSource: sourceIndex([{ identity: WEB, namespace: 'shop', service: 'web' }]) });
    // vm2 reports every 10 s: 100 requests, 2 errors, 1 denial, 1000 B in, 5000 B out; 50 ≤1 ms, 40 in 5..10 ms, 10 in 50..100 ms
    for (let s = 10; s <= 60; s += 10) {
      at(s);
      v.ingest('vm2', { seq: s / 10, intervalMs: 10_000, edges: [edge(WEB, 'catalog', { requests: 100, errors: 2, denials: 1, bytesIn: 1000, bytesOut: 5000, latency: hist({ 0: 50, 3: 40, 6: 10 }) })] });
    }
    at(60);
    const snap = v.snapshot();
    assert.equal(snap.windowSeconds, 60);
    assert.equal(snap.generatedAt, '2026-01-01T00:01:00.000Z');
    // 6 slots (at 10..60 s, all after 0 s); vm2's oldest starts at 10 − 10 = 0 s: covered min(60, 60) = 60 s
    // 600 requests / 60 s = 10 rps; errors 12/600 = 0.02; denials 6/600 = 0.01
    // merged: 300 ≤1, 240 in 5..10, 60 in 50..100 (600). p50 rank 300 → 0 + 1 × 300/300 = 1
    // p99 rank 594 → past 540, in 50..100: 50 + 50 × (594 − 540)/60 = 95
    assert.deepEqual(snap.edges, [
      {
        source: { identity: WEB, namespace: 'shop', service: 'web' },
        destination: { namespace: 'shop', service: 'catalog' },
        requests: 600,
        rps: 10,
        errors: 12,
        errorRate: 0.02,
        denials: 6,
        denialRate: 0.01,
        p50Ms: 1,
        p99Ms: 95,
        bytesIn: 6000,
        bytesOut: 30_000,
        mtls: true,
        nodes: ['vm2'],
        lastSeen: '2026-01-01T00:01:00.000Z',
      },
    ]);
    // 15 s later, no report since: the window starts at 15 s, so the slot at 10 s is out: 500 requests;
    // the oldest slot in it (20 s) starts at 10 s: covered min(60, 75 − 10) = 60 s → 500/60 = 8.333 rps
    at(75);
    const later = v.snapshot().edges[0]!;
    assert.equal(later.requests, 500);
    assert.equal(later.rps, 8.333);
    // a 10 s window at 75 s holds nothing (the newest slot is at 60 s)
    assert.deepEqual(v.snapshot(10).edges, []);
  });

  test('a node that just joined is not diluted by time it never reported for; replicas add up', () => {
    const { v, at } = view();
    at(10);
    v.ingest('vm3', { seq: 0, intervalMs: 10_000, edges: [edge(WEB, 'catalog', { requests: 50 })] });
    at(12);
    // covered: 12 − (10 − 10) = 12 s → 50/12 = 4.1666… → 4.167
    assert.equal(v.snapshot().edges[0]!.rps, 4.167);
    // vm2 (a second catalog replica) joins with 20 requests over a 5 s interval, at 12 s: covered 12 − 7 = 5 s → 4 rps
    v.ingest('vm2', { seq: 41, intervalMs: 5000, edges: [edge(WEB, 'catalog', { requests: 20 })] });
    const e = v.snapshot().edges[0]!;
    // 4.1666… + 4 = 8.1666… → 8.167; 70 requests; both nodes
    assert.equal(e.rps, 8.167);
    assert.equal(e.requests, 70);
    assert.deepEqual(e.nodes, ['vm2', 'vm3']);
    assert.equal(e.lastSeen, '2026-01-01T00:00:12.000Z');
  });

  test('frames of one seq add up; edges sort by rps; unknown sources stay bare; TCP-only edges have null percentiles', () => {
    const { v, at } = view({ resolveSource: sourceIndex([{ identity: WEB, namespace: 'shop', service: 'web' }]) });
    at(10);
    // one interval in two frames (an agent with many edges), from two caller addresses
    v.ingest('vm2', { seq: 7, intervalMs: 10_000, edges: [edge(WEB, 'catalog', { requests: 100, latency: hist({ 2: 100 }) }), edge(ADMIN, 'db', { requests: 30, errors: 3, bytesIn: 7 })] });
    at(11);
    v.ingest('vm2', { seq: 7, intervalMs: 10_000, edges: [edge(WEB, 'catalog', { peerAddress: '10.0.0.9', requests: 20, denials: 20, latency: hist({ 0: 20 }) })] });
    at(20);
    const snap = v.snapshot();
    // one slot (seq 7, last frame at 11 s) starting at 1 s: covered 19 s.
    // catalog: 120/19 = 6.3157… → 6.316; db: 30/19 = 1.5789… → 1.579
    assert.deepEqual(
      snap.edges.map((e) => [e.source, e.destination.service, e.requests, e.rps, e.errorRate, e.denialRate]),
      [
        [{ identity: WEB, namespace: 'shop', service: 'web' }, 'catalog', 120, 6.316, 0, 0.1667],
        [{ identity: ADMIN }, 'db', 30, 1.579, 0.1, 0],
      ],
    );
    // catalog: 20 ≤1 ms, 100 in 2..5 ms (120). p50 rank 60 → 2 + 3 × 40/100 = 3.2; p99 rank 118.8 → 2 + 3 × 98.8/100 = 4.964
    assert.deepEqual([snap.edges[0]!.p50Ms, snap.edges[0]!.p99Ms], [3.2, 4.964]);
    assert.deepEqual([snap.edges[1]!.p50Ms, snap.edges[1]!.p99Ms, snap.edges[1]!.bytesIn], [null, null, 7]);
    assert.equal(snap.edges[0]!.lastSeen, '2026-01-01T00:00:11.000Z');
    assert.equal('namespace' in snap.edges[1]!.source, false);
    assert.equal(v.stats().slots, 1);
  });

  test('bounded: maxEdges drops new edges; maxEntries and the retention drop the oldest slots', () => {
    const { v, at } = view({ maxEdges: 2, maxEntries: 4, retentionSeconds: 30 });
    at(1);
    v.ingest('vm1', { seq: 0, intervalMs: 1000, edges: [edge(WEB, 'a', { requests: 1 }), edge(WEB, 'b', { requests: 1 }), edge(WEB, 'c', { requests: 1 })] });
    assert.deepEqual(v.stats(), { edges: 2, slots: 1, entries: 2, droppedEdges: 1 });
    at(2);
    v.ingest('vm1', { seq: 1, intervalMs: 1000, edges: [edge(WEB, 'a', { requests: 2 }), edge(WEB, 'b', { requests: 2 })] });
    assert.deepEqual(v.stats(), { edges: 2, slots: 2, entries: 4, droppedEdges: 1 });
    at(3);
    // a fifth entry: the oldest slot (seq 0) goes
    v.ingest('vm1', { seq: 2, intervalMs: 1000, edges: [edge(WEB, 'a', { requests: 4 })] });
    assert.deepEqual(v.stats(), { edges: 2, slots: 2, entries: 3, droppedEdges: 1 });
    assert.deepEqual(v.snapshot(10).edges.map((e) => [e.destination.service, e.requests]), [['a', 6], ['b', 2]]);
    // 33 s: the slots at 2 s and 3 s are past the 30 s retention
    const version = v.version;
    at(33);
    assert.deepEqual(v.snapshot(60).edges, []);
    assert.deepEqual(v.stats(), { edges: 0, slots: 0, entries: 0, droppedEdges: 1 });
    assert.ok(v.version > version, 'evicting changes the version');
    // room again: c is kept now
    v.ingest('vm1', { seq: 3, intervalMs: 1000, edges: [edge(WEB, 'c', { requests: 1 })] });
    assert.equal(v.stats().edges, 1);
  });

  test('many slots: memory stays bounded by the retention', () => {
    const { v, at } = view({ retentionSeconds: 60 });
    for (let s = 1; s <= 5000; s++) {
      at(s);
      v.ingest('vm1', { seq: s, intervalMs: 1000, edges: [edge(WEB, 'a', { requests: 1 })] });
    }
    // slots at 4941..5000 s are within 60 s of 5000 s
    assert.deepEqual(v.stats(), { edges: 1, slots: 60, entries: 60, droppedEdges: 0 });
    // 10 s window: slots at 4991..5000 (10 requests), the oldest starts at 4990: covered 10 s → 1 rps
    assert.deepEqual(v.snapshot(10).edges.map((e) => [e.requests, e.rps]), [[10, 1]]);
  });

  test('a node that reconnects starts a new slot even with a seq it used before', () => {
    const { v, at } = view();
    at(10);
    v.ingest('vm1', { seq: 0, intervalMs: 10_000, edges: [edge(WEB, 'a', { requests: 5 })] });
    v.forgetNode('vm1');
    at(20);
    v.ingest('vm1', { seq: 0, intervalMs: 10_000, edges: [edge(WEB, 'a', { requests: 5 })] });
    assert.equal(v.stats().slots, 2);
    // 10 requests; oldest slot starts at 0 s: covered 20 s → 0.5 rps
    assert.deepEqual(v.snapshot().edges.map((e) => [e.requests, e.rps]), [[10, 0.5]]);
  });

  test('windows are whole seconds from 10 to 3600', () => {
    assert.equal(checkWindow(10), 10);
    assert.equal(checkWindow(3600), 3600);
    for (const bad of [9, 3601, 10.5, NaN, -60, Infinity]) assert.throws(() => checkWindow(bad), /window must be a whole number of seconds from 10 to 3600/);
    assert.throws(() => new TrafficView({ windowSeconds: 5 }), /window must be/);
    assert.throws(() => new TrafficView({ maxEdges: 0 }), /maxEdges must be a positive whole number/);
    const { v } = view();
    assert.throws(() => v.snapshot(0), /window must be/);
  });

  test('sourceIndex: an identity several services share resolves to the first by namespace/name', () => {
    const resolve = sourceIndex([
      { identity: WEB, namespace: 'shop', service: 'web' },
      { identity: WEB, namespace: 'shop', service: 'storefront' },
      { identity: ADMIN, namespace: 'ops', service: 'admin' },
    ]);
    assert.deepEqual(resolve(WEB), { namespace: 'shop', service: 'storefront' });
    assert.deepEqual(resolve(ADMIN), { namespace: 'ops', service: 'admin' });
    assert.equal(resolve('spiffe://amime.test/ns/x/sa/y'), undefined);
  });
});
