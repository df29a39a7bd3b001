// W3C Trace Context (https://www.w3.org/TR/trace-context/) and request ids for
// each hop an agent makes.
//
// `traceparent: 00-<trace-id 32 hex>-<parent-id 16 hex>-<flags 2 hex>`. An
// agent continues a valid incoming trace with a span of its own (the header it
// forwards carries that span as the parent) and starts a new trace when the
// header is absent or malformed (all-zero ids, wrong lengths, upper case,
// version ff, a duplicated header joined with a comma — the spec says restart
// rather than guess). `tracestate` passes through untouched.
//
// `x-request-id` (Envoy's): kept when it is a plausible id (1–128 visible
// ASCII characters, no spaces), replaced otherwise, so a log line can always
// quote it safely.

import { randomFillSync } from 'node:crypto';

export const TRACEPARENT_HEADER = 'traceparent';
export const REQUEST_ID_HEADER = 'x-request-id';

export interface TraceContext {
  /** 32 lower-case hex. */
  readonly traceId: string;
  /** This hop's span, 16 lower-case hex: the parent-id of what it sends on. */
  readonly spanId: string;
  /** The caller's span when the trace was continued; undefined for a new trace. */
  readonly parentSpanId: string | undefined;
  /** Sampled flag as received (new traces: sampled). */
  readonly sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** The parts of a valid traceparent value, or undefined. */
export function parseTraceparent(value: string | string[] | undefined): { traceId: string; parentId: string; flags: number } | undefined {
  if (typeof value !== 'string' || value.length < 55 || value.length > 512) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  const version = m[1]!;
  // version 00 has exactly 55 characters; a future version may append fields after a dash
  if (version === 'ff' || (version === '00' && m[5] !== undefined)) return undefined;
  if (m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  return { traceId: m[2]!, parentId: m[3]!, flags: parseInt(m[4]!, 16) };
}

/** Random ids from a pooled buffer: one getrandom per 256 ids rather than per request. */
const pool = Buffer.allocUnsafe(4096);
let poolPos = pool.length;
function randomHex(bytes: number): string {
  if (poolPos + bytes > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const s = pool.toString('hex', poolPos, poolPos + bytes);
  poolPos += bytes;
  return s;
}

function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

/** This hop's context: the incoming trace continued, or a new one. */
export function traceFor(incoming: string | string[] | undefined): TraceContext {
  const p = parseTraceparent(incoming);
  if (p) return { traceId: p.traceId, spanId: newSpanId(), parentSpanId: p.parentId, sampled: (p.flags & 1) === 1 };
  let traceId = randomHex(16);
  while (traceId === ZERO_TRACE) traceId = randomHex(16);
  return { traceId, spanId: newSpanId(), parentSpanId: undefined, sampled: true };
}

/** The traceparent to send on: this hop's span as the parent. */
export function formatTraceparent(t: TraceContext): string {
  return `00-${t.traceId}-${t.spanId}-${t.sampled ? '01' : '00'}`;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** The incoming x-request-id when it is usable, else a new one (a v4-style UUID). */
export function requestIdFor(incoming: string | string[] | undefined): { id: string; fresh: boolean } {
  if (typeof incoming === 'string' && REQUEST_ID.test(incoming)) return { id: incoming, fresh: false };
  const h = randomHex(16);
  const v = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return { id: `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${v}${h.slice(17, 20)}-${h.slice(20, 32)}`, fresh: true };
}
