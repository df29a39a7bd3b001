// Live taps (`meshctl tap`): the control plane asks for the requests to or
// from one service; the agent copies matching access records into tapEvents
// frames on the push channel.
//
// The data plane pays for this only while a tap is open: inbound and outbound
// test `taps.active` (one field read) before building a record, so with no
// tap nothing is allocated. Per tap: a token bucket (maxEventsPerSecond, one
// second of burst) with the drops counted and reported; events batched (every
// FLUSH_MS or MAX_TAP_EVENTS_PER_FRAME events or a frame's byte budget); the
// tap ends by itself after durationMs, so a lost untap never leaks one; at
// most maxTaps at once (more are refused with an error frame). Events are
// built to the wire schema; the push client checks each frame, and a frame it
// refuses is re-sent with only the events that pass, so one odd record costs
// only itself (and the common case is checked once).
import { MAX_CLIENT_FRAME_BYTES, MAX_TAP_AUTHORITY_LENGTH, MAX_TAP_EVENTS_PER_FRAME, MAX_TAP_PATH_LENGTH, ValidationError, safeValidate, tapEventSchema, type TapEvent, type TapEventsMessage, type TapMessage } from '@amime/protocol';
import type { AccessRecord } from './access-log.js';

export const DEFAULT_MAX_TAPS = 8;
export const TAP_FLUSH_MS = 100;
/** Room under the frame bound for the envelope (type, id, dropped). */
const FRAME_BUDGET_BYTES = MAX_CLIENT_FRAME_BYTES - 1024;

export interface TapTimer {
  cancel(): void;
}

export interface TapHubOptions {
  /** This agent's node name, stamped on every event. */
  node: string;
  /** Sends one frame; false when not connected (the events are then lost: a tap is live or nothing). */
  send(frame: Omit<TapEventsMessage, 'type'>): boolean;
  /** Wall clock, ms (event times and the token buckets). Default Date.now. */
  now?: () => number;
  /** One-shot timer; default setTimeout (unref'd). */
  schedule?: (fn: () => void, ms: number) => TapTimer;
  /** Default 8. */
  maxTaps?: number;
  log?(event: Record<string, unknown>): void;
}

interface Tap {
  readonly id: string;
  /** "namespace/service", as AccessRecord.service. */
  key: string;
  service: string;
  namespace: string;
  rate: number;
  tokens: number;
  refilledAt: number;
  expiry: TapTimer;
  flush: TapTimer | undefined;
  batch: TapEvent[];
  bytes: number;
  dropped: number;
}

const defaultSchedule = (fn: () => void, ms: number): TapTimer => {
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
};

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f]/g;
const METHOD = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$/;
const CAUSE_BAD = /[^A-Za-z0-9_.:-]/g;
const TRACE_ID = /^[0-9a-f]{32}$/;

/** The path without query string or fragment (tokens live there), without control characters, at most 256 characters. */
export function tapPath(raw: string): string {
  let end = raw.length;
  const q = raw.indexOf('?');
  if (q >= 0) end = q;
  const h = raw.indexOf('#');
  if (h >= 0 && h < end) end = h;
  let p = end === raw.length ? raw : raw.slice(0, end);
  if (CONTROL.test(p)) p = p.replace(CONTROL_ALL, '');
  return p.length > MAX_TAP_PATH_LENGTH ? p.slice(0, MAX_TAP_PATH_LENGTH) : p;
}

function printable(s: string, max: number): string {
  const p = CONTROL.test(s) ? s.replace(CONTROL_ALL, '') : s;
  return p.length > max ? p.slice(0, max) : p;
}

/**
 * An upper bound on the event's JSON size in bytes (no encoding per event):
 * free text counts 6 bytes a character (a \uXXXX escape at worst);
 * identities, causes and trace ids are ASCII.
 */
function sizeBound(e: TapEvent): number {
  const text = (e.path?.length ?? 0) + (e.authority?.length ?? 0) + (e.route?.length ?? 0) + (e.upstream?.length ?? 0);
  const ascii = (e.source?.length ?? 0) + (e.destination?.length ?? 0) + (e.error?.length ?? 0);
  return 640 + 6 * text + ascii;
}

export class TapHub {
  /** True while any tap is open: the data plane's one check before it builds a record. */
  active = false;
  readonly #opts: TapHubOptions;
  readonly #now: () => number;
  readonly #schedule: (fn: () => void, ms: number) => TapTimer;
  readonly #maxTaps: number;
  readonly #taps = new Map<string, Tap>();
  #invalid = 0;

  constructor(opts: TapHubOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#schedule = opts.schedule ?? defaultSchedule;
    this.#maxTaps = opts.maxTaps ?? DEFAULT_MAX_TAPS;
    if (!Number.isSafeInteger(this.#maxTaps) || this.#maxTaps < 1) throw new RangeError(`tap hub: maxTaps must be a positive integer, got ${this.#maxTaps}`);
  }

  get size(): number {
    return this.#taps.size;
  }

  /** Events dropped because the wire schema refused them (should stay 0). */
  get invalid(): number {
    return this.#invalid;
  }

  /** Opens a tap; the same id again renews it (new rate and duration), as the control plane does after a reconnect. */
  open(msg: TapMessage): void {
    const existing = this.#taps.get(msg.id);
    if (existing) {
      existing.expiry.cancel();
      existing.rate = msg.maxEventsPerSecond;
      existing.tokens = Math.min(existing.tokens, msg.maxEventsPerSecond);
      existing.expiry = this.#schedule(() => this.close(msg.id), msg.durationMs);
      return;
    }
    if (this.#taps.size >= this.#maxTaps) {
      this.#opts.log?.({ level: 'warn', event: 'tap_refused', id: msg.id, service: `${msg.namespace}/${msg.service}`, open: this.#taps.size });
      this.#send({ id: msg.id, events: [], error: { code: 'too_many_taps', message: `agent ${this.#opts.node} already serves ${this.#maxTaps} taps, its limit; end one or wait for one to expire` } });
      return;
    }
    const now = this.#now();
    this.#taps.set(msg.id, {
      id: msg.id,
      key: `${msg.namespace}/${msg.service}`,
      service: msg.service,
      namespace: msg.namespace,
      rate: msg.maxEventsPerSecond,
      tokens: msg.maxEventsPerSecond,
      refilledAt: now,
      expiry: this.#schedule(() => this.close(msg.id), msg.durationMs),
      flush: undefined,
      batch: [],
      bytes: 0,
      dropped: 0,
    });
    this.active = true;
    this.#opts.log?.({ level: 'info', event: 'tap_opened', id: msg.id, service: `${msg.namespace}/${msg.service}`, durationMs: msg.durationMs, maxEventsPerSecond: msg.maxEventsPerSecond });
  }

  /** Ends a tap, sending what it holds; an unknown id is ignored (it may have expired already). */
  close(id: string): void {
    const t = this.#taps.get(id);
    if (!t) return;
    this.#flush(t);
    t.expiry.cancel();
    this.#taps.delete(id);
    this.active = this.#taps.size > 0;
  }

  /** Drops every tap without sending (the connection is gone; the control plane re-sends live taps on reconnect). */
  clear(): void {
    for (const t of this.#taps.values()) {
      t.expiry.cancel();
      t.flush?.cancel();
    }
    this.#taps.clear();
    this.active = false;
  }

  /** A finished request or stream; call only when `active` (it checks again). */
  offer(r: AccessRecord): void {
    if (!this.active) return;
    for (const t of this.#taps.values()) if (t.key === r.service) this.#add(t, r);
  }

  #add(t: Tap, r: AccessRecord): void {
    const now = this.#now();
    t.tokens = Math.min(t.rate, t.tokens + ((now - t.refilledAt) / 1000) * t.rate);
    t.refilledAt = now;
    if (t.tokens < 1) {
      t.dropped++;
      t.flush ??= this.#schedule(() => this.#flush(t), TAP_FLUSH_MS);
      return;
    }
    t.tokens -= 1;
    const e = this.#event(t, r, now);
    const size = sizeBound(e);
    if (t.batch.length > 0 && t.bytes + size > FRAME_BUDGET_BYTES) this.#flush(t);
    t.batch.push(e);
    t.bytes += size;
    if (t.batch.length >= MAX_TAP_EVENTS_PER_FRAME) this.#flush(t);
    else t.flush ??= this.#schedule(() => this.#flush(t), TAP_FLUSH_MS);
  }

  #event(t: Tap, r: AccessRecord, now: number): TapEvent {
    const raw: TapEvent = {
      time: new Date(now - Math.max(0, r.durationMs)).toISOString(),
      direction: r.direction,
      protocol: r.protocol,
      node: this.#opts.node,
      service: t.service,
      namespace: t.namespace,
      durationMs: Math.round(Math.max(0, r.durationMs) * 1000) / 1000,
    };
    if (r.source) raw.source = r.source;
    if (r.destination) raw.destination = r.destination;
    if (r.method !== undefined && METHOD.test(r.method)) raw.method = r.method;
    if (r.authority) raw.authority = printable(r.authority, MAX_TAP_AUTHORITY_LENGTH);
    if (r.path !== undefined) raw.path = tapPath(r.path);
    if (r.status !== undefined) raw.status = r.status;
    if (r.route) raw.route = printable(r.route, 256);
    if (r.upstream) raw.upstream = printable(r.upstream, 262);
    if (r.retries !== undefined) raw.retries = Math.min(r.retries, 1000);
    if (r.error) raw.error = r.error.replace(CAUSE_BAD, '_').slice(0, 128);
    if (r.traceId !== undefined && TRACE_ID.test(r.traceId)) raw.traceId = r.traceId;
    if (r.protocol === 'tcp' || r.bytesReceived > 0 || r.bytesSent > 0) {
      raw.bytesIn = r.bytesReceived;
      raw.bytesOut = r.bytesSent;
    }
    return raw;
  }

  #flush(t: Tap): void {
    t.flush?.cancel();
    t.flush = undefined;
    if (t.batch.length === 0 && t.dropped === 0) return;
    const events = t.batch;
    const dropped = t.dropped;
    t.batch = [];
    t.bytes = 0;
    t.dropped = 0;
    const frame = { id: t.id, events, ...(dropped > 0 && { dropped }) };
    if (this.#send(frame) !== 'invalid') return;
    // Refused by the wire schema: keep the events that pass on their own.
    const valid = events.filter((e) => safeValidate(tapEventSchema, e).ok);
    this.#invalid += events.length - valid.length;
    this.#opts.log?.({ level: 'warn', event: 'tap_events_invalid', id: t.id, dropped: events.length - valid.length });
    this.#send({ ...frame, events: valid });
  }

  #send(frame: Omit<TapEventsMessage, 'type'>): 'ok' | 'invalid' | 'failed' {
    try {
      this.#opts.send(frame);
      return 'ok';
    } catch (err) {
      if (err instanceof ValidationError) return 'invalid';
      this.#opts.log?.({ level: 'warn', event: 'tap_send_failed', id: frame.id, error: (err as Error).message });
      return 'failed';
    }
  }
}
