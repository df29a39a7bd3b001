// TapHub on a fake clock: matching, the token bucket and its drop count,
// batching, expiry, the concurrency cap, and what an event may carry (the
// path without its query, nothing the wire schema refuses).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CLIENT_FRAME_BYTES, MAX_TAP_EVENTS_PER_FRAME, ValidationError, decodeClientMessage, type TapEventsMessage, type TapMessage } from '@amime/protocol';
import type { AccessRecord } from './access-log.js';
import { TAP_FLUSH_MS, TapHub, tapPath } from './tap.js';

const WEB = 'spiffe://example.org/ns/shop/sa/web';
const CATALOG = 'spiffe://example.org/ns/shop/sa/catalog';

class FakeTime {
  now = Date.parse('2026-11-29T12:00:00Z');
  #timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  schedule = (fn: () => void, ms: number) => {
    const t = { at: this.now + ms, fn, cancelled: false };
    this.#timers.push(t);
    return { cancel: () => void (t.cancelled = true) };
  };
  advance(ms: number): void {
    const end = this.now + ms;
    for (let i = 0; i < 10_000; i++) {
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      this.now = due.at;
      due.fn();
    }
    this.now = end;
  }
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}

function hub(opts: { maxTaps?: number; connected?: boolean } = {}) {
  const time = new FakeTime();
  const frames: Omit<TapEventsMessage, 'type'>[] = [];
  const h = new TapHub({
    node: 'vm2',
    now: () => time.now,
    schedule: time.schedule,
    send: (f) => {
      // what the agent sends must pass the control plane's decoder as it is
      const raw = JSON.stringify({ type: 'tapEvents', ...f });
      assert.ok(Buffer.byteLength(raw) <= MAX_CLIENT_FRAME_BYTES, `frame of ${Buffer.byteLength(raw)} bytes`);
      const d = decodeClientMessage(raw, { maxBytes: MAX_CLIENT_FRAME_BYTES });
      // as the push client does: a frame the schema refuses is thrown back
      if (!d.ok) throw new ValidationError(d.issues ?? [{ path: '', message: d.message }], 'tapEvents');
      frames.push(f);
      return opts.connected ?? true;
    },
    ...(opts.maxTaps !== undefined && { maxTaps: opts.maxTaps }),
  });
  return { h, time, frames, events: () => frames.flatMap((f) => f.events) };
}

const tap = (over: Partial<TapMessage> = {}): TapMessage => ({ type: 'tap', id: 't1', service: 'catalog', namespace: 'shop', maxEventsPerSecond: 100, durationMs: 10_000, ...over });

const inbound = (over: Partial<AccessRecord> = {}): AccessRecord => ({
  protocol: 'http',
  direction: 'inbound',
  service: 'shop/catalog',
  source: WEB,
  destination: CATALOG,
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  upstream: '127.0.0.1:9000',
  method: 'GET',
  authority: 'catalog.shop',
  path: '/items',
  status: 200,
  durationMs: 2.5,
  bytesReceived: 0,
  bytesSent: 120,
  ...over,
});

describe('TapHub', () => {
  test('with no tap open it is inactive and sends nothing', () => {
    const { h, time, frames } = hub();
    assert.equal(h.active, false);
    h.offer(inbound());
    time.advance(1000);
    assert.equal(frames.length, 0);
    assert.equal(time.pending, 0, 'no timer either');
  });

  test('matching records become events, batched for 100 ms; other services are not tapped', () => {
    const { h, time, frames, events } = hub();
    h.open(tap());
    assert.equal(h.active, true);
    h.offer(inbound());
    h.offer(inbound({ direction: 'outbound', source: WEB, route: 'catalog-split', upstream: 'catalog-vm2', retries: 1 }));
    h.offer(inbound({ service: 'shop/reviews' }));
    h.offer(inbound({ service: 'other/catalog' }));
    assert.equal(frames.length, 0, 'held until the flush');
    time.advance(TAP_FLUSH_MS);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.id, 't1');
    const [e1, e2] = events();
    assert.equal(events().length, 2);
    assert.deepEqual(e1, {
      time: new Date(time.now - TAP_FLUSH_MS - 2.5).toISOString(),
      direction: 'inbound',
      protocol: 'http',
      node: 'vm2',
      source: WEB,
      service: 'catalog',
      namespace: 'shop',
      destination: CATALOG,
      method: 'GET',
      authority: 'catalog.shop',
      path: '/items',
      status: 200,
      durationMs: 2.5,
      upstream: '127.0.0.1:9000',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      bytesIn: 0,
      bytesOut: 120,
    });
    assert.equal(e2!.direction, 'outbound');
    assert.equal(e2!.route, 'catalog-split');
    assert.equal(e2!.retries, 1);
  });

  test('the query string never leaves the agent; paths are clipped to 256 characters', () => {
    const { h, time, events } = hub();
    h.open(tap());
    h.offer(inbound({ path: '/login?token=s3cret&user=x' }));
    h.offer(inbound({ path: '/a#frag?x=1' }));
    h.offer(inbound({ path: `/${'x'.repeat(1000)}?k=v` }));
    h.offer(inbound({ path: '/esc\u001b[2Jape\r\n\u009b' }));
    time.advance(TAP_FLUSH_MS);
    const paths = events().map((e) => e.path);
    assert.deepEqual(paths.slice(0, 2), ['/login', '/a']);
    assert.equal(paths[2]!.length, 256);
    assert.equal(paths[3], '/esc[2Jape');
    assert.doesNotMatch(JSON.stringify(events()), /s3cret|\?/);
    assert.equal(tapPath('?only'), '');
  });

  test('token bucket: at most maxEventsPerSecond, with the drops counted in the next frame', () => {
    const { h, time, frames, events } = hub();
    h.open(tap({ maxEventsPerSecond: 5 }));
    for (let i = 0; i < 20; i++) h.offer(inbound({ path: `/n${i}` }));
    time.advance(TAP_FLUSH_MS);
    assert.equal(events().length, 5);
    assert.equal(frames[0]!.dropped, 15);
    // 100 ms of refill at 5/s is half a token: still nothing
    h.offer(inbound());
    time.advance(TAP_FLUSH_MS);
    assert.equal(events().length, 5);
    assert.equal(frames.at(-1)!.dropped, 1, 'a frame carrying only drops still reports them');
    time.advance(1000);
    for (let i = 0; i < 20; i++) h.offer(inbound());
    time.advance(TAP_FLUSH_MS);
    assert.equal(events().length, 10, 'a second later the bucket is full again, not more');
  });

  test('a full batch goes at once; long identities split frames by bytes, each under the frame bound', () => {
    const { h, frames } = hub();
    h.open(tap({ maxEventsPerSecond: 1000 }));
    for (let i = 0; i < MAX_TAP_EVENTS_PER_FRAME; i++) h.offer(inbound());
    assert.equal(frames.length, 1, 'sent without waiting for the timer');
    assert.equal(frames[0]!.events.length, MAX_TAP_EVENTS_PER_FRAME);
    const long = `spiffe://example.org/ns/shop/sa/${'s'.repeat(1900)}`;
    for (let i = 0; i < MAX_TAP_EVENTS_PER_FRAME; i++) h.offer(inbound({ source: long, destination: long }));
    assert.ok(frames.length >= 3, `${frames.length} frames`);
    assert.ok(frames.slice(1).every((f) => f.events.length < MAX_TAP_EVENTS_PER_FRAME));
  });

  test('a tap ends by itself after durationMs, flushing what it holds; untap of an unknown id is ignored', () => {
    const { h, time, frames, events } = hub();
    h.open(tap({ durationMs: 2000 }));
    time.advance(1990);
    h.offer(inbound());
    time.advance(10);
    assert.equal(h.active, false);
    assert.equal(h.size, 0);
    assert.equal(events().length, 1, 'flushed at expiry');
    h.offer(inbound());
    time.advance(1000);
    assert.equal(events().length, 1);
    h.close('never-opened');
    assert.equal(frames.length, 1);
    assert.equal(time.pending, 0, 'no timer left behind');
  });

  test('untap sends what is held and stops; clear() (disconnect) drops everything', () => {
    const { h, time, events } = hub();
    h.open(tap());
    h.offer(inbound());
    h.close('t1');
    assert.equal(events().length, 1);
    assert.equal(h.active, false);
    h.open(tap({ id: 't2' }));
    h.offer(inbound());
    h.clear();
    time.advance(60_000);
    assert.equal(events().length, 1);
    assert.equal(time.pending, 0);
  });

  test('at most 8 taps: a ninth is refused with an error frame; renewing an open one is not a new tap', () => {
    const { h, time, frames } = hub();
    for (let i = 0; i < 8; i++) h.open(tap({ id: `t${i}` }));
    h.open(tap({ id: 't3', durationMs: 60_000 }));
    assert.equal(frames.length, 0);
    h.open(tap({ id: 't8' }));
    assert.equal(h.size, 8);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.id, 't8');
    assert.equal(frames[0]!.error?.code, 'too_many_taps');
    assert.match(frames[0]!.error!.message, /vm2 already serves 8 taps/);
    time.advance(10_000);
    assert.equal(h.size, 1, 'the renewed tap lives on its new duration');
    time.advance(50_000);
    assert.equal(h.size, 0);
  });

  test('TCP streams carry bytes and duration; odd values are cleaned, never sent raw', () => {
    const { h, time, events } = hub();
    h.open(tap());
    h.offer({ protocol: 'tcp', direction: 'inbound', service: 'shop/catalog', source: WEB, destination: CATALOG, upstream: '127.0.0.1:5432', durationMs: 1500, bytesReceived: 10, bytesSent: 20, error: 'ECONNRESET' });
    h.offer(inbound({ method: 'GET /evil', error: 'bad cause; x', traceId: 'not-hex', authority: 'h\r\nx', source: '' }));
    time.advance(TAP_FLUSH_MS);
    const [tcp, odd] = events();
    assert.equal(tcp!.protocol, 'tcp');
    assert.equal(tcp!.bytesIn, 10);
    assert.equal(tcp!.bytesOut, 20);
    assert.equal(tcp!.durationMs, 1500);
    assert.equal(tcp!.error, 'ECONNRESET');
    assert.equal(odd!.method, undefined);
    assert.equal(odd!.error, 'bad_cause__x');
    assert.equal(odd!.traceId, undefined);
    assert.equal(odd!.authority, 'hx');
    assert.equal(odd!.source, undefined);
    assert.equal(h.invalid, 0);
  });

  test('an event the wire schema refuses costs only itself: the rest of its frame is sent', () => {
    const { h, time, frames, events } = hub();
    h.open(tap());
    h.offer(inbound({ path: '/a' }));
    h.offer(inbound({ path: '/b', source: 'not-a-spiffe-id' }));
    h.offer(inbound({ path: '/c' }));
    time.advance(TAP_FLUSH_MS);
    assert.equal(frames.length, 1);
    assert.deepEqual(events().map((e) => e.path), ['/a', '/c']);
    assert.equal(h.invalid, 1);
  });
});
