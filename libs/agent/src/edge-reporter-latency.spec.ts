// Latency in edge reports: each HTTP request's duration lands in the edge's
// fixed histogram over EDGE_LATENCY_BOUNDS_MS; TCP streams add no sample;
// frames stay under the byte bound (latency is dropped before counts are
// deferred).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EDGE_LATENCY_BUCKETS, MAX_CLIENT_FRAME_BYTES, MAX_EDGES_PER_REPORT, clientMessage, safeValidate, type ReportMessage } from '@amime/protocol';
import { EdgeReporter, latencyBucket } from './edge-reporter.js';

const WEB = 'spiffe://amime.test/ns/shop/sa/web';
type Frame = Omit<ReportMessage, 'type'>;

function reporter() {
  const frames: Frame[] = [];
  const logs: Record<string, unknown>[] = [];
  const r = new EdgeReporter({ send: (f) => void frames.push(structuredClone(f)), intervalMs: 10_000, log: (e) => logs.push(e), schedule: () => ({ cancel: () => undefined }) });
  return { r, frames, logs };
}

/** A histogram with `counts` at the given bucket indexes. */
function hist(counts: Record<number, number>): number[] {
  const h = new Array<number>(EDGE_LATENCY_BUCKETS).fill(0);
  for (const [i, n] of Object.entries(counts)) h[Number(i)] = n;
  return h;
}

describe('EdgeReporter latency', () => {
  const cases: [number, number][] = [
    [0, 0],
    [0.4, 0],
    [1, 0], // bounds are inclusive upper bounds
    [1.0001, 1],
    [2, 1],
    [3, 2],
    [7.5, 3],
    [10, 3],
    [99.9, 6],
    [100, 6],
    [101, 7],
    [9999, 12],
    [10_000, 12],
    [10_000.5, 13], // the overflow bucket
    [3.6e6, 13],
    [Infinity, 13],
  ];
  for (const [ms, bucket] of cases) test(`${ms} ms → bucket ${bucket}`, () => assert.equal(latencyBucket(ms), bucket));

  test('HTTP requests fill the edge histogram; TCP streams count as requests but add no sample', () => {
    const { r, frames } = reporter();
    for (const ms of [0.3, 0.9, 1.5, 4, 4, 30, 12_000]) r.record(WEB, 'api', 'shop', '10.0.0.1', { durationMs: ms });
    r.record(WEB, 'api', 'shop', '10.0.0.1', { denied: true, durationMs: 0.2 });
    // a TCP stream on the same edge and one on an edge of its own
    r.record(WEB, 'api', 'shop', '10.0.0.1');
    r.record(WEB, 'db', 'shop', '10.0.0.1');
    r.recordEnd(WEB, 'db', 'shop', '10.0.0.1', { bytesIn: 3, bytesOut: 4 });
    // not latencies: a clock step backwards, NaN
    r.record(WEB, 'api', 'shop', '10.0.0.1', { durationMs: -5 });
    r.record(WEB, 'api', 'shop', '10.0.0.1', { durationMs: NaN });
    r.flush();
    const [api, db] = frames[0]!.edges;
    assert.equal(api!.requests, 11);
    assert.equal(api!.denials, 1);
    // 0.2, 0.3, 0.9 → ≤1; 1.5 → ≤2; 4, 4 → ≤5; 30 → ≤50; 12 000 → overflow
    assert.deepEqual(api!.latency, hist({ 0: 3, 1: 1, 2: 2, 5: 1, 13: 1 }));
    assert.deepEqual(db, { source: WEB, service: 'db', namespace: 'shop', peerAddress: '10.0.0.1', requests: 1, errors: 0, denials: 0, bytesIn: 3, bytesOut: 4 });
    assert.equal('latency' in db!, false);
    assert.equal(safeValidate(clientMessage, { type: 'report', ...frames[0] }).ok, true);
    // the next interval starts from an empty histogram
    r.record(WEB, 'api', 'shop', '10.0.0.1', { durationMs: 60 });
    r.flush();
    assert.deepEqual(frames[1]!.edges[0]!.latency, hist({ 6: 1 }));
  });

  test('a full frame of ordinary edges carries its histograms in one frame', () => {
    const { r, frames } = reporter();
    for (let i = 0; i < MAX_EDGES_PER_REPORT; i++) {
      // four-digit counts in one bucket, small ones in the rest
      for (let k = 0; k < 14; k++) for (let n = 0; n < (k === 3 ? 1500 : k + 1); n++) r.record(`spiffe://prod.example.com/ns/payments/sa/svc-${i}`, 'checkout-api', 'payments', '10.20.30.40', { durationMs: k === 13 ? 20_000 : [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000][k]! });
    }
    r.flush();
    assert.deepEqual(frames.map((f) => f.edges.length), [MAX_EDGES_PER_REPORT, 0]);
    assert.ok(frames[0]!.edges.every((e) => e.latency?.[13] === 14 && e.latency[3] === 1500 && e.latency[0] === 1));
    assert.ok(Buffer.byteLength(JSON.stringify({ type: 'report', ...frames[0] })) <= MAX_CLIENT_FRAME_BYTES);
  });

  test('a frame that fits only without latency drops the histograms, not edges', () => {
    const { r, frames, logs } = reporter();
    // sized so that an edge is ~300 bytes as JSON without latency (200 fit) and ~340 with it (200 do not)
    const probe = (pad: number) => JSON.stringify({ source: `spiffe://amime.test/ns/shop/sa/${'x'.repeat(pad)}-000`, service: 'api', namespace: 'shop', peerAddress: '10.0.0.1', requests: 1, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0 }).length;
    const pad = 300 - probe(0);
    assert.equal(probe(pad), 300);
    for (let i = 0; i < MAX_EDGES_PER_REPORT; i++) r.record(`spiffe://amime.test/ns/shop/sa/${'x'.repeat(pad)}-${String(i).padStart(3, '0')}`, 'api', 'shop', '10.0.0.1', { durationMs: 3 });
    r.flush();
    assert.deepEqual(frames.map((f) => [f.seq, f.edges.length]), [
      [0, MAX_EDGES_PER_REPORT],
      [0, 0],
    ]);
    assert.ok(frames[0]!.edges.every((e) => e.requests === 1 && !('latency' in e)));
    assert.ok(Buffer.byteLength(JSON.stringify({ type: 'report', ...frames[0] })) <= MAX_CLIENT_FRAME_BYTES);
    assert.deepEqual(logs.map((l) => l['event']), ['edge_report_latency_dropped']);
    // nothing was deferred
    r.flush();
    assert.deepEqual(frames.slice(2).map((f) => [f.seq, f.edges.length]), [[1, 0]]);
  });
});
