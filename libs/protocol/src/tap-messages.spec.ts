// The tap messages on the wire: what passes, and what a hostile or broken
// peer's frame is refused for (with the field named).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CLIENT_FRAME_BYTES, decodeClientMessage, decodeServerMessage, encodeMessage } from './messages.js';
import { MAX_TAP_EVENTS_PER_FRAME, type TapEvent } from './tap-messages.js';

const WEB = 'spiffe://example.org/ns/shop/sa/web';
const CATALOG = 'spiffe://example.org/ns/shop/sa/catalog';

const event: TapEvent = {
  time: '2026-11-29T14:30:00.123Z',
  direction: 'inbound',
  protocol: 'http',
  node: 'vm2',
  source: WEB,
  service: 'catalog',
  namespace: 'shop',
  destination: CATALOG,
  method: 'GET',
  authority: 'catalog.shop:8080',
  path: '/items/42',
  status: 200,
  durationMs: 1.25,
  route: 'catalog-split',
  upstream: '127.0.0.1:9000',
  retries: 0,
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  bytesIn: 0,
  bytesOut: 512,
};

const frame = (events: unknown[], extra: Record<string, unknown> = {}) => JSON.stringify({ type: 'tapEvents', id: 't1', events, ...extra });

function refused(raw: string, path: RegExp): string {
  const r = decodeClientMessage(raw);
  assert.equal(r.ok, false, `refused: ${raw.slice(0, 200)}`);
  if (r.ok) throw new Error('unreachable');
  assert.match(r.message, path);
  return r.message;
}

describe('tap messages', () => {
  test('tap, untap and tapEvents round-trip', () => {
    const tap = { type: 'tap', id: 'tap-1', service: 'catalog', namespace: 'shop', maxEventsPerSecond: 100, durationMs: 60_000 } as const;
    const t = decodeServerMessage(encodeMessage(tap));
    assert.deepEqual(t, { ok: true, message: tap });
    assert.deepEqual(decodeServerMessage('{"type":"untap","id":"tap-1"}'), { ok: true, message: { type: 'untap', id: 'tap-1' } });
    const e = decodeClientMessage(frame([event, { ...event, direction: 'outbound', protocol: 'tcp', method: undefined, path: undefined, status: undefined }], { dropped: 3 }));
    assert.equal(e.ok, true, JSON.stringify(e));
    if (!e.ok || e.message.type !== 'tapEvents') throw new Error('unreachable');
    assert.equal(e.message.events.length, 2);
    assert.equal(e.message.dropped, 3);
    assert.deepEqual(e.message.events[0], event);
    const err = decodeClientMessage(frame([], { error: { code: 'too_many_taps', message: 'this agent serves 8 taps already' } }));
    assert.equal(err.ok, true, JSON.stringify(err));
  });

  test('the namespace defaults to "default"', () => {
    const t = decodeServerMessage('{"type":"tap","id":"a","service":"web","maxEventsPerSecond":1,"durationMs":1000}');
    assert.ok(t.ok && t.message.type === 'tap' && t.message.namespace === 'default');
  });

  test('tap bounds: rate, duration, id and service are checked', () => {
    const tap = (over: Record<string, unknown>) => decodeServerMessage(JSON.stringify({ type: 'tap', id: 'a', service: 'web', namespace: 'shop', maxEventsPerSecond: 10, durationMs: 5000, ...over }));
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ maxEventsPerSecond: 0 }, /maxEventsPerSecond must be an integer from 1 to 1000/],
      [{ maxEventsPerSecond: 1001 }, /maxEventsPerSecond/],
      [{ durationMs: 999 }, /durationMs must be an integer from 1000 to 600000/],
      [{ durationMs: 3_600_000 }, /durationMs/],
      [{ id: 'has space' }, /id must be a tap id/],
      [{ id: 'x'.repeat(65) }, /id must be at most 64/],
      [{ service: 'Catalog' }, /service must be a DNS-1123 label/],
      [{ headers: true }, /headers is not a known field/],
    ];
    for (const [over, msg] of cases) {
      const r = tap(over);
      assert.equal(r.ok, false, JSON.stringify(over));
      if (!r.ok) assert.match(r.message, msg);
    }
  });

  test('a path with a query string is refused: tokens never cross the wire', () => {
    refused(frame([{ ...event, path: '/login?token=secret' }]), /events\[0\]\.path must be a path without query string.*strip everything from "\?" on/);
  });

  test('hostile events are refused with the field named', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ path: `/${'a'.repeat(256)}` }, /events\[0\]\.path must be at most 256 characters/],
      [{ path: '/x\u001b[2J' }, /events\[0\]\.path/],
      [{ path: '/x\u009b2J' }, /events\[0\]\.path/],
      [{ route: 'r\u0085' }, /events\[0\]\.route must be printable text/],
      [{ authority: 'a'.repeat(257) }, /events\[0\]\.authority must be at most 256/],
      [{ authority: 'host\r\nx: y' }, /events\[0\]\.authority must be printable text/],
      [{ direction: 'sideways' }, /events\[0\]\.direction must be one of inbound, outbound/],
      [{ node: '../vm1' }, /events\[0\]\.node must be a DNS-1123 label/],
      [{ source: 'https://evil' }, /events\[0\]\.source/],
      [{ method: 'GET /x' }, /events\[0\]\.method must be an HTTP method token/],
      [{ status: 1000 }, /events\[0\]\.status must be an integer from 0 to 999/],
      [{ durationMs: -1 }, /events\[0\]\.durationMs must be a number from 0/],
      [{ durationMs: 'fast' }, /events\[0\]\.durationMs/],
      [{ time: '2026-11-29 14:30:00.000+01:00' }, /events\[0\]\.time must be an ISO 8601 UTC time/],
      [{ traceId: 'XYZ' }, /events\[0\]\.traceId/],
      [{ error: 'denied; rm -rf' }, /events\[0\]\.error must be a cause/],
      [{ requestHeaders: { authorization: 'Bearer x' } }, /events\[0\]\.requestHeaders is not a known field/],
      [{ body: 'secret' }, /events\[0\]\.body is not a known field/],
    ];
    for (const [over, msg] of cases) refused(frame([{ ...event, ...over }]), msg);
  });

  test('too many events in one frame, a bad id, a bad error code or a bad dropped count are refused', () => {
    refused(frame(Array.from({ length: MAX_TAP_EVENTS_PER_FRAME + 1 }, () => event)), new RegExp(`events must have at most ${MAX_TAP_EVENTS_PER_FRAME} items`));
    refused(JSON.stringify({ type: 'tapEvents', id: '../../x', events: [] }), /id must be a tap id/);
    refused(frame([], { error: { code: 'pwned', message: 'x' } }), /error\.code must be one of too_many_taps, tap_failed/);
    refused(frame([], { dropped: -5 }), /dropped must be an integer/);
    refused(JSON.stringify({ type: 'tapEvents', events: [] }), /id is required/);
  });

  test('an oversized frame is refused before it is parsed', () => {
    const raw = frame([{ ...event, route: 'r'.repeat(MAX_CLIENT_FRAME_BYTES) }]);
    const r = decodeClientMessage(raw, { maxBytes: MAX_CLIENT_FRAME_BYTES });
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.code, 'too_large');
  });

  test('a frame of typical events fits the agent frame bound (long identities make the agent split by bytes)', () => {
    const big: TapEvent = { ...event, path: `/${'p'.repeat(255)}`, authority: 'a'.repeat(256) };
    const raw = frame(Array.from({ length: MAX_TAP_EVENTS_PER_FRAME }, () => big), { dropped: Number.MAX_SAFE_INTEGER });
    assert.ok(Buffer.byteLength(raw) < MAX_CLIENT_FRAME_BYTES, `${Buffer.byteLength(raw)} bytes`);
    assert.equal(decodeClientMessage(raw, { maxBytes: MAX_CLIENT_FRAME_BYTES }).ok, true);
  });
});
