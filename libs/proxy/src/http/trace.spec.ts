// W3C traceparent parsing (valid and invalid forms from the spec), continuation
// with a new span, new traces, and request ids safe to log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTraceparent, parseTraceparent, requestIdFor, traceFor } from './trace.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;

test('a valid traceparent parses into its parts', () => {
  assert.deepEqual(parseTraceparent(VALID), { traceId: TRACE, parentId: PARENT, flags: 1 });
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, parentId: PARENT, flags: 0 });
  // a future version may append fields
  assert.deepEqual(parseTraceparent(`01-${TRACE}-${PARENT}-01-extra`), { traceId: TRACE, parentId: PARENT, flags: 1 });
});

test('malformed traceparent values are refused (the hop starts a new trace)', () => {
  const bad = [
    undefined,
    '',
    `00-${TRACE}-${PARENT}`, // no flags
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper case
    `00-${'0'.repeat(32)}-${PARENT}-01`, // zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // zero parent id
    `ff-${TRACE}-${PARENT}-01`, // forbidden version
    `00-${TRACE}-${PARENT}-01-extra`, // version 00 has no more fields
    `00-${TRACE.slice(1)}-${PARENT}-01`, // short trace id
    `0-${TRACE}-${PARENT}-01`,
    `00-${TRACE}-${PARENT}-0x`,
    `${VALID}, ${VALID}`, // a repeated header joined by Node
    ` ${VALID}`,
    `00_${TRACE}_${PARENT}_01`,
    `00-${TRACE}-${PARENT}-01\n{"forged":1}`,
  ];
  for (const v of bad) assert.equal(parseTraceparent(v), undefined, JSON.stringify(v));
  assert.equal(parseTraceparent([VALID, VALID]), undefined, 'an array (never from Node for this header) is refused');
});

test('a valid incoming trace is continued with a new span of this hop; the sampled flag is kept', () => {
  const t = traceFor(VALID);
  assert.equal(t.traceId, TRACE);
  assert.equal(t.parentSpanId, PARENT);
  assert.match(t.spanId, /^[0-9a-f]{16}$/);
  assert.notEqual(t.spanId, PARENT);
  assert.equal(t.sampled, true);
  assert.equal(formatTraceparent(t), `00-${TRACE}-${t.spanId}-01`);
  const unsampled = traceFor(`00-${TRACE}-${PARENT}-00`);
  assert.equal(unsampled.sampled, false);
  assert.match(formatTraceparent(unsampled), /-00$/);
});

test('without a usable traceparent a new sampled trace starts; ids are random and distinct', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const t = traceFor(i % 2 ? undefined : 'garbage');
    assert.match(t.traceId, /^[0-9a-f]{32}$/);
    assert.match(t.spanId, /^[0-9a-f]{16}$/);
    assert.equal(t.parentSpanId, undefined);
    assert.equal(t.sampled, true);
    assert.ok(!seen.has(t.traceId), 'trace ids repeat');
    seen.add(t.traceId);
    assert.deepEqual(parseTraceparent(formatTraceparent(t)), { traceId: t.traceId, parentId: t.spanId, flags: 1 });
  }
});

test('x-request-id: a plausible one is kept; missing, empty, too long or with spaces/control characters is replaced', () => {
  assert.deepEqual(requestIdFor('abc-123'), { id: 'abc-123', fresh: false });
  assert.deepEqual(requestIdFor('x'.repeat(128)), { id: 'x'.repeat(128), fresh: false });
  for (const bad of [undefined, '', 'x'.repeat(129), 'a b', 'a\nb', 'é', ['a', 'b']]) {
    const r = requestIdFor(bad as string | undefined);
    assert.equal(r.fresh, true, JSON.stringify(bad));
    assert.match(r.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  assert.notEqual(requestIdFor(undefined).id, requestIdFor(undefined).id);
});
