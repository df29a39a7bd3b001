import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_EDGES_PER_REPORT, clientMessage, safeValidate, type ReportMessage } from '@amime/protocol';
import { EdgeReporter } from './edge-reporter.js';

const WEB = 'spiffe://amime.test/ns/shop/sa/web';
type Frame = Omit<ReportMessage, 'type'>;

function reporter(opts: { connected?: () => boolean; maxEdges?: number } = {}) {
  const frames: Frame[] = [];
  let tick: (() => void) | undefined;
  let period = 0;
  const r = new EdgeReporter({
    send: (f) => {
      if (opts.connected && !opts.connected()) return false;
      frames.push(structuredClone(f));
      return true;
    },
    intervalMs: 5000,
    ...(opts.maxEdges !== undefined && { maxEdges: opts.maxEdges }),
    schedule: (fn, ms) => {
      tick = fn;
      period = ms;
      return { cancel: () => (tick = undefined) };
    },
  });
  return { r, frames, tick: () => tick?.(), period: () => period };
}

describe('EdgeReporter', () => {
  test('counts requests, errors, denials and bytes per edge and sends the deltas each interval', () => {
    const { r, frames, tick, period } = reporter();
    r.start();
    assert.equal(period(), 5000);
    r.record(WEB, 'api', 'shop', '10.0.0.1');
    r.record(WEB, 'api', 'shop', '10.0.0.1', { error: true, bytesIn: 10, bytesOut: 20 });
    r.record(WEB, 'api', 'shop', '10.0.0.1', { denied: true });
    r.record(WEB, 'api', 'shop', '10.0.0.2');
    r.recordEnd(WEB, 'api', 'shop', '10.0.0.2', { bytesIn: 5, bytesOut: 7 });
    tick();
    assert.deepEqual(frames, [
      {
        seq: 0,
        intervalMs: 5000,
        edges: [
          { source: WEB, service: 'api', namespace: 'shop', peerAddress: '10.0.0.1', requests: 3, errors: 1, denials: 1, bytesIn: 10, bytesOut: 20 },
          { source: WEB, service: 'api', namespace: 'shop', peerAddress: '10.0.0.2', requests: 1, errors: 0, denials: 0, bytesIn: 5, bytesOut: 7 },
        ],
      },
    ]);
    // every frame passes the wire schema
    assert.equal(safeValidate(clientMessage, { type: 'report', ...frames[0] }).ok, true);
    // a quiet interval still reports (an empty frame), so silence reads as 0
    tick();
    assert.deepEqual(frames[1], { seq: 1, intervalMs: 5000, edges: [] });
    // a connection opened in one interval and closed in the next: its end counts where it ends
    r.recordEnd(WEB, 'api', 'shop', '10.0.0.2', { bytesIn: 1, bytesOut: 2, error: true });
    tick();
    assert.deepEqual(frames[2]!.edges, [{ source: WEB, service: 'api', namespace: 'shop', peerAddress: '10.0.0.2', requests: 0, errors: 1, denials: 0, bytesIn: 1, bytesOut: 2 }]);
    r.stop();
  });

  test('many edges: full frames, then a short last one (an empty one after an exact multiple)', () => {
    const { r, frames } = reporter();
    for (let i = 0; i < MAX_EDGES_PER_REPORT * 2 + 3; i++) r.record(`spiffe://amime.test/ns/shop/sa/s${i}`, 'api', 'shop', '10.0.0.1');
    assert.equal(r.flush(), 3);
    assert.deepEqual(frames.map((f) => [f.seq, f.edges.length]), [
      [0, MAX_EDGES_PER_REPORT],
      [0, MAX_EDGES_PER_REPORT],
      [0, 3],
    ]);
    for (let i = 0; i < MAX_EDGES_PER_REPORT; i++) r.record(`spiffe://amime.test/ns/shop/sa/s${i}`, 'api', 'shop', '10.0.0.1');
    r.flush();
    assert.deepEqual(frames.slice(3).map((f) => [f.seq, f.edges.length]), [
      [1, MAX_EDGES_PER_REPORT],
      [1, 0],
    ]);
  });

  test('frames stay under the byte bound: what does not fit goes with the next interval', () => {
    const { r, frames } = reporter();
    const long = (i: number) => `spiffe://amime.test/ns/shop/sa/${'x'.repeat(1000)}-${i}`;
    for (let i = 0; i < MAX_EDGES_PER_REPORT; i++) r.record(long(i), 'api', 'shop', '10.0.0.1');
    r.flush();
    assert.equal(frames.length, 1);
    const first = frames[0]!.edges.length;
    assert.ok(first > 0 && first < MAX_EDGES_PER_REPORT);
    assert.ok(Buffer.byteLength(JSON.stringify({ type: 'report', ...frames[0] })) <= 64 * 1024);
    for (let i = 0; i < 5; i++) r.flush();
    const carried = frames.slice(1).reduce((n, f) => n + f.edges.length, 0);
    assert.equal(first + carried, MAX_EDGES_PER_REPORT, 'nothing lost');
  });

  test('bounded: beyond maxEdges new edges are dropped and counted; known ones still count', () => {
    const { r, frames } = reporter({ maxEdges: 2 });
    r.record(WEB, 'a', 'shop', '10.0.0.1');
    r.record(WEB, 'b', 'shop', '10.0.0.1');
    r.record(WEB, 'c', 'shop', '10.0.0.1');
    r.record(WEB, 'a', 'shop', '10.0.0.1');
    assert.equal(r.size, 2);
    assert.equal(r.dropped, 1);
    r.flush();
    assert.deepEqual(frames[0]!.edges.map((e) => [e.service, e.requests]), [
      ['a', 2],
      ['b', 1],
    ]);
  });

  test('not connected: the interval is dropped, not carried into the next one', () => {
    let up = false;
    const { r, frames } = reporter({ connected: () => up });
    r.record(WEB, 'api', 'shop', '10.0.0.1');
    assert.equal(r.flush(), 0);
    up = true;
    r.record(WEB, 'api', 'shop', '10.0.0.1');
    r.flush();
    assert.deepEqual(frames.map((f) => [f.seq, f.edges[0]?.requests]), [[1, 1]]);
  });

  test('the interval follows MeshConfig and is checked', () => {
    const { r, period } = reporter();
    r.start();
    r.setInterval(20_000);
    assert.equal(period(), 20_000);
    assert.equal(r.intervalMs, 20_000);
    assert.throws(() => r.setInterval(500), /intervalMs must be 1000 to 600000/);
    assert.throws(() => new EdgeReporter({ send: () => true, maxEdges: 0 }), /maxEdges must be a positive integer/);
  });
});
