// Edge traffic for the control plane's communication-pattern monitor: the
// inbound side records every request or connection it handled (allowed or
// denied) by verified source identity, destination service and the caller's
// address; every reportInterval the deltas go out as `report` frames.
//
// One interval may span several frames (same seq): every frame but the last
// carries exactly MAX_EDGES_PER_REPORT edges, and the last fewer (an empty
// one if need be), which is how the control plane knows the interval is
// complete. Every interval sends at least that one frame, so an edge that
// went silent reads as 0. Memory is bounded: beyond maxEdges distinct edges
// in one interval, new ones are counted as dropped, not kept.
//
// HTTP requests also carry their duration: a fixed histogram per edge over
// EDGE_LATENCY_BOUNDS_MS (made on the edge's first sample of the interval),
// found by a short scan; nothing is allocated per request.
import { EDGE_LATENCY_BOUNDS_MS, EDGE_LATENCY_BUCKETS, MAX_CLIENT_FRAME_BYTES, MAX_EDGES_PER_REPORT, type EdgeCounts, type ReportMessage } from '@amime/protocol';

export const DEFAULT_REPORT_INTERVAL_MS = 10_000;
/** 50 frames of 200: the control plane's per-interval frame bound. */
export const DEFAULT_MAX_REPORTED_EDGES = 10_000;
/** Room under the frame bound for the envelope. */
const FRAME_BUDGET_BYTES = MAX_CLIENT_FRAME_BYTES - 512;

export interface EdgeOutcome {
  /** An HTTP 5xx answer, or a stream or connection that failed. */
  error?: boolean;
  /** Refused by authorization (it still counts as a request). */
  denied?: boolean;
  bytesIn?: number;
  bytesOut?: number;
  /** An HTTP request's duration (ms): counted in the edge's latency histogram. TCP streams give none. */
  durationMs?: number;
}

/** A packed copy: the scan reads doubles, not a frozen array's elements. */
const BOUNDS = Float64Array.from(EDGE_LATENCY_BOUNDS_MS);

/** The latency bucket of a duration: the first bound it does not exceed, else the overflow. */
export function latencyBucket(ms: number): number {
  const b = BOUNDS;
  let i = 0;
  // ~13 bounds, most requests fall in the first few: a linear scan beats a binary search here
  while (i < b.length && ms > b[i]!) i++;
  return i;
}

export interface EdgeReporterOptions {
  /** Sends one frame; returns false when it could not (not connected): the interval is then lost, not carried over. */
  send(report: Omit<ReportMessage, 'type'>): boolean | void;
  /** Default 10 s (MeshConfig spec.monitor.reportInterval). */
  intervalMs?: number;
  /** Default 10 000. */
  maxEdges?: number;
  /** Timer injection for tests; default setInterval (unref'd). */
  schedule?: (fn: () => void, ms: number) => { cancel(): void };
  log?(event: Record<string, unknown>): void;
}

interface Counts {
  source: string;
  service: string;
  namespace: string;
  peerAddress: string;
  requests: number;
  errors: number;
  denials: number;
  bytesIn: number;
  bytesOut: number;
  /** Set on the interval's first HTTP sample (the key is absent until then: TCP-only edges send none). */
  latency?: number[];
}

const defaultSchedule = (fn: () => void, ms: number) => {
  const t = setInterval(fn, ms);
  t.unref();
  return { cancel: () => clearInterval(t) };
};

export class EdgeReporter {
  readonly #opts: EdgeReporterOptions;
  readonly #maxEdges: number;
  #intervalMs: number;
  #edges = new Map<string, Counts>();
  /** Edges a too-large frame could not carry: sent with the next interval. */
  #carry: Counts[] = [];
  #seq = 0;
  #dropped = 0;
  #timer: { cancel(): void } | undefined;

  constructor(opts: EdgeReporterOptions) {
    this.#opts = opts;
    this.#intervalMs = checkInterval(opts.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS);
    this.#maxEdges = opts.maxEdges ?? DEFAULT_MAX_REPORTED_EDGES;
    if (!Number.isSafeInteger(this.#maxEdges) || this.#maxEdges < 1) throw new RangeError(`edge reporter: maxEdges must be a positive integer, got ${this.#maxEdges}`);
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  /** Edges dropped so far because an interval held maxEdges already. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Edges held for the current interval. */
  get size(): number {
    return this.#edges.size;
  }

  /** One request (HTTP) or connection/stream (TCP) from `source` to the local `namespace/service`. Cheap: one map lookup. */
  record(source: string, service: string, namespace: string, peerAddress: string, outcome?: EdgeOutcome): void {
    const c = this.#counts(source, service, namespace, peerAddress);
    if (!c) return;
    c.requests++;
    if (!outcome) return;
    this.#add(c, outcome);
    const ms = outcome.durationMs;
    // NaN and negatives (a clock step) are not latencies
    if (ms !== undefined && ms >= 0) (c.latency ??= new Array<number>(EDGE_LATENCY_BUCKETS).fill(0))[latencyBucket(ms)]!++;
  }

  /**
   * What a connection recorded earlier left at its end (TCP: bytes, and
   * whether it failed), counted in the interval it ends in; no new request.
   */
  recordEnd(source: string, service: string, namespace: string, peerAddress: string, outcome: Omit<EdgeOutcome, 'denied'>): void {
    const c = this.#counts(source, service, namespace, peerAddress);
    if (c) this.#add(c, outcome);
  }

  #counts(source: string, service: string, namespace: string, peerAddress: string): Counts | undefined {
    const key = `${source}\0${namespace}\0${service}\0${peerAddress}`;
    let c = this.#edges.get(key);
    if (!c) {
      if (this.#edges.size >= this.#maxEdges) {
        this.#dropped++;
        return undefined;
      }
      c = { source, service, namespace, peerAddress, requests: 0, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0 };
      this.#edges.set(key, c);
    }
    return c;
  }

  #add(c: Counts, o: EdgeOutcome): void {
    if (o.error) c.errors++;
    if (o.denied) c.denials++;
    if (o.bytesIn) c.bytesIn += o.bytesIn;
    if (o.bytesOut) c.bytesOut += o.bytesOut;
  }

  /** Starts flushing every interval. */
  start(): void {
    if (this.#timer) return;
    this.#timer = (this.#opts.schedule ?? defaultSchedule)(() => this.flush(), this.#intervalMs);
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** A new interval (MeshConfig changed): applies from the next flush on. */
  setInterval(ms: number): void {
    if (checkInterval(ms) === this.#intervalMs) return;
    this.#intervalMs = ms;
    if (this.#timer) {
      this.stop();
      this.start();
    }
  }

  /** Sends the interval's deltas now and starts a new interval; returns the frames sent. */
  flush(): number {
    const edges = [...this.#carry, ...this.#edges.values()];
    this.#edges = new Map();
    this.#carry = [];
    const seq = this.#seq++;
    const frames: EdgeCounts[][] = [];
    let i = 0;
    for (;;) {
      const frame = edges.slice(i, i + MAX_EDGES_PER_REPORT);
      // A frame over the byte bound (very long identities) is cut short: being
      // short it ends the interval, and what it could not carry goes next time.
      let fit = fitting(frame);
      if (fit < frame.length && frame.some((e) => e.latency)) {
        // Latency is the first thing to give up: without it the interval's counts still all go now.
        for (let k = 0; k < frame.length; k++) if (frame[k]!.latency) frame[k] = withoutLatency(frame[k]!);
        this.#opts.log?.({ level: 'warn', event: 'edge_report_latency_dropped', edges: frame.length });
        fit = fitting(frame);
      }
      if (fit < frame.length) {
        frames.push(frame.slice(0, fit));
        this.#carry = edges.slice(i + frames.at(-1)!.length, i + frames.at(-1)!.length + this.#maxEdges);
        this.#opts.log?.({ level: 'warn', event: 'edge_report_deferred', edges: this.#carry.length });
        break;
      }
      frames.push(frame);
      i += frame.length;
      if (frame.length < MAX_EDGES_PER_REPORT) break;
    }
    let sent = 0;
    for (const f of frames) {
      let ok: boolean | void;
      try {
        ok = this.#opts.send({ seq, intervalMs: this.#intervalMs, edges: f });
      } catch (err) {
        this.#opts.log?.({ level: 'warn', event: 'edge_report_failed', error: (err as Error).message });
        ok = false;
      }
      if (ok === false) break;
      sent++;
    }
    return sent;
  }
}

/** How many edges from the start of `frame` fit in one frame's byte budget. */
function fitting(frame: readonly EdgeCounts[]): number {
  let bytes = 64;
  let fit = 0;
  while (fit < frame.length && (bytes += JSON.stringify(frame[fit]).length + 1) <= FRAME_BUDGET_BYTES) fit++;
  return fit;
}

function withoutLatency(e: EdgeCounts): EdgeCounts {
  const { latency: _latency, ...rest } = e;
  return rest;
}

function checkInterval(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1000 || ms > 600_000) throw new RangeError(`edge reporter: intervalMs must be 1000 to 600000, got ${ms}`);
  return ms;
}
