// The live per-edge traffic view: agents' edge reports (deltas per report
// interval, per callee node) are kept as one slot per node and interval, in
// arrival order; a snapshot sums the slots inside its window per edge
// (verified source identity → destination service).
//
// Rates: each node's slots in the window cover the time from the start of its
// oldest one (arrival − interval) to now, capped at the window; an edge's rps
// is the sum over the nodes that reported it of requests / covered seconds.
// Steady state that is requests / window; a node that went quiet decays; one
// that just joined is not diluted by time it never reported for.
//
// Bounded: slots older than the retention go; beyond maxEntries (slot, edge)
// pairs the oldest slots go first; beyond maxEdges distinct edges new ones are
// counted as dropped, not kept. Pure logic: the clock is injected.
import { EDGE_LATENCY_BOUNDS_MS, EDGE_LATENCY_BUCKETS, type EdgeCounts } from '@amime/protocol';

export const DEFAULT_TRAFFIC_WINDOW_SECONDS = 60;
export const MIN_TRAFFIC_WINDOW_SECONDS = 10;
export const MAX_TRAFFIC_WINDOW_SECONDS = 3600;

/** What a report frame gives the view (ReportMessage has it). */
export interface TrafficReport {
  seq: number;
  intervalMs: number;
  edges: readonly EdgeCounts[];
}

export interface TrafficSource {
  identity: string;
  /** From the registered instances with this identity; absent when none is known. */
  namespace?: string;
  service?: string;
}

export interface TrafficEdge {
  source: TrafficSource;
  destination: { namespace: string; service: string };
  requests: number;
  rps: number;
  errors: number;
  /** errors / requests, 0..1 (0 without requests). */
  errorRate: number;
  denials: number;
  denialRate: number;
  /** From the merged latency histograms, interpolated within the bucket; null without HTTP samples. */
  p50Ms: number | null;
  p99Ms: number | null;
  bytesIn: number;
  bytesOut: number;
  /** Inbound edges are mutually authenticated: the agent's inbound port takes verified mTLS peers only. */
  mtls: true;
  /** Callee nodes that reported the edge in the window, sorted. */
  nodes: string[];
  /** ISO time of the newest report that carried the edge. */
  lastSeen: string;
}

export interface TrafficSnapshot {
  windowSeconds: number;
  /** ISO time. */
  generatedAt: string;
  /** By rps, highest first. */
  edges: TrafficEdge[];
}

export interface TrafficViewOptions {
  /** Epoch ms; default Date.now. */
  now?: () => number;
  /** Default window of snapshot(); default 60. */
  windowSeconds?: number;
  /** How long slots are kept (the longest window answered); default 3600. */
  retentionSeconds?: number;
  /** Distinct edges held; default 10 000. */
  maxEdges?: number;
  /** (slot, edge) pairs held across all slots; default 100 000. */
  maxEntries?: number;
  /** The source identity's namespace and service, when a registered instance has that identity. */
  resolveSource?(identity: string): { namespace: string; service: string } | undefined;
}

interface Agg {
  source: string;
  namespace: string;
  service: string;
  requests: number;
  errors: number;
  denials: number;
  bytesIn: number;
  bytesOut: number;
  latency: number[] | undefined;
}

interface Slot {
  node: string;
  seq: number;
  at: number;
  intervalMs: number;
  edges: Map<string, Agg>;
}

export interface TrafficViewStats {
  edges: number;
  slots: number;
  entries: number;
  /** Edges not kept because maxEdges were held. */
  droppedEdges: number;
}

const edgeKey = (source: string, namespace: string, service: string): string => `${source}\0${namespace}\0${service}`;
const round = (v: number, places: number): number => {
  const f = 10 ** places;
  return Math.round(v * f) / f;
};

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`TrafficView: ${name} must be a positive whole number, got ${v}`);
  return v;
}

/**
 * The q-quantile (0 < q ≤ 1) of a histogram over EDGE_LATENCY_BOUNDS_MS,
 * interpolated linearly within its bucket (the first bucket spans 0..1 ms);
 * one that falls in the overflow bucket is the last bound (a floor: "at
 * least"). Null for an empty histogram.
 */
export function latencyQuantile(counts: readonly number[], q: number): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (total === 0) return null;
  const rank = q * total;
  const bounds = EDGE_LATENCY_BOUNDS_MS;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0 && cum + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1]!;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + ((bounds[i]! - lower) * (rank - cum)) / c;
    }
    cum += c;
  }
  return bounds[bounds.length - 1]!;
}

export class TrafficView {
  readonly #now: () => number;
  readonly #window: number;
  readonly #retentionMs: number;
  readonly #maxEdges: number;
  readonly #maxEntries: number;
  readonly #resolve: TrafficViewOptions['resolveSource'];
  /** Arrival order; slots before #head are gone (compacted now and then instead of shifting). */
  #slots: Slot[] = [];
  #head = 0;
  /** The slot a node's current seq goes into. */
  readonly #open = new Map<string, Slot>();
  /** Distinct edges: in how many held slots each appears. */
  readonly #edges = new Map<string, number>();
  #entries = 0;
  #dropped = 0;
  #version = 0;

  constructor(opts: TrafficViewOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#window = checkWindow(opts.windowSeconds ?? DEFAULT_TRAFFIC_WINDOW_SECONDS);
    this.#retentionMs = positive('retentionSeconds', opts.retentionSeconds ?? MAX_TRAFFIC_WINDOW_SECONDS) * 1000;
    this.#maxEdges = positive('maxEdges', opts.maxEdges ?? 10_000);
    this.#maxEntries = positive('maxEntries', opts.maxEntries ?? 100_000);
    this.#resolve = opts.resolveSource;
  }

  /** Changes whenever what a snapshot could show changes (a report came, old slots went). */
  get version(): number {
    return this.#version;
  }

  get windowSeconds(): number {
    return this.#window;
  }

  stats(): TrafficViewStats {
    return { edges: this.#edges.size, slots: this.#slots.length - this.#head, entries: this.#entries, droppedEdges: this.#dropped };
  }

  /** One report frame from `node` (already validated and rate-limited). Frames of one seq add up. */
  ingest(node: string, report: TrafficReport): void {
    const now = this.#now();
    let slot = this.#open.get(node);
    if (!slot || slot.seq !== report.seq) {
      slot = { node, seq: report.seq, at: now, intervalMs: report.intervalMs, edges: new Map() };
      this.#slots.push(slot);
      this.#open.set(node, slot);
    } else {
      slot.at = now;
    }
    for (const e of report.edges) {
      const key = edgeKey(e.source, e.namespace, e.service);
      let a = slot.edges.get(key);
      if (!a) {
        const refs = this.#edges.get(key);
        if (refs === undefined && this.#edges.size >= this.#maxEdges) {
          this.#dropped++;
          continue;
        }
        this.#edges.set(key, (refs ?? 0) + 1);
        a = { source: e.source, namespace: e.namespace, service: e.service, requests: 0, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0, latency: undefined };
        slot.edges.set(key, a);
        this.#entries++;
      }
      a.requests += e.requests;
      a.errors += e.errors;
      a.denials += e.denials;
      a.bytesIn += e.bytesIn;
      a.bytesOut += e.bytesOut;
      if (e.latency && e.latency.length === EDGE_LATENCY_BUCKETS) {
        const h = (a.latency ??= new Array<number>(EDGE_LATENCY_BUCKETS).fill(0));
        for (let i = 0; i < EDGE_LATENCY_BUCKETS; i++) h[i]! += e.latency[i]!;
      }
    }
    this.#version++;
    this.#evict(now);
  }

  /** The node's agent went away: its next report starts a new slot. What it reported stays until it ages out. */
  forgetNode(node: string): void {
    this.#open.delete(node);
  }

  /** Every edge seen in the last `windowSeconds` (default: the view's), highest rps first. */
  snapshot(windowSeconds?: number): TrafficSnapshot {
    const w = windowSeconds === undefined ? this.#window : checkWindow(windowSeconds);
    const now = this.#now();
    if (this.#evict(now)) this.#version++;
    const from = now - w * 1000;
    interface Acc {
      a: Omit<Agg, 'latency'> & { latency: number[] | undefined };
      byNode: Map<string, number>;
      lastSeen: number;
    }
    const acc = new Map<string, Acc>();
    /** Per node: the start of its oldest slot in the window. */
    const nodeStart = new Map<string, number>();
    for (let i = this.#slots.length - 1; i >= this.#head; i--) {
      const s = this.#slots[i]!;
      if (s.at <= from) break;
      nodeStart.set(s.node, Math.min(nodeStart.get(s.node) ?? Infinity, s.at - s.intervalMs));
      for (const [key, e] of s.edges) {
        let x = acc.get(key);
        if (!x) {
          x = { a: { ...e, latency: undefined }, byNode: new Map(), lastSeen: s.at };
          x.a.requests = x.a.errors = x.a.denials = x.a.bytesIn = x.a.bytesOut = 0;
          acc.set(key, x);
        }
        x.a.requests += e.requests;
        x.a.errors += e.errors;
        x.a.denials += e.denials;
        x.a.bytesIn += e.bytesIn;
        x.a.bytesOut += e.bytesOut;
        if (e.latency) {
          const h = (x.a.latency ??= new Array<number>(EDGE_LATENCY_BUCKETS).fill(0));
          for (let k = 0; k < EDGE_LATENCY_BUCKETS; k++) h[k]! += e.latency[k]!;
        }
        x.byNode.set(s.node, (x.byNode.get(s.node) ?? 0) + e.requests);
        if (s.at > x.lastSeen) x.lastSeen = s.at;
      }
    }
    const edges: TrafficEdge[] = [];
    for (const { a, byNode, lastSeen } of acc.values()) {
      let rps = 0;
      for (const [node, requests] of byNode) {
        const covered = Math.min(w * 1000, now - nodeStart.get(node)!);
        rps += (requests * 1000) / Math.max(covered, 1);
      }
      const resolved = this.#resolve?.(a.source);
      edges.push({
        source: resolved ? { identity: a.source, namespace: resolved.namespace, service: resolved.service } : { identity: a.source },
        destination: { namespace: a.namespace, service: a.service },
        requests: a.requests,
        rps: round(rps, 3),
        errors: a.errors,
        errorRate: a.requests === 0 ? 0 : round(Math.min(1, a.errors / a.requests), 4),
        denials: a.denials,
        denialRate: a.requests === 0 ? 0 : round(Math.min(1, a.denials / a.requests), 4),
        p50Ms: quantileOf(a.latency, 0.5),
        p99Ms: quantileOf(a.latency, 0.99),
        bytesIn: a.bytesIn,
        bytesOut: a.bytesOut,
        mtls: true,
        nodes: [...byNode.keys()].sort(),
        lastSeen: new Date(lastSeen).toISOString(),
      });
    }
    edges.sort((x, y) => y.rps - x.rps || y.requests - x.requests || cmp(x.source.identity, y.source.identity) || cmp(x.destination.namespace, y.destination.namespace) || cmp(x.destination.service, y.destination.service));
    return { windowSeconds: w, generatedAt: new Date(now).toISOString(), edges };
  }

  /** Drops slots past the retention, then the oldest while over maxEntries; true if any went. */
  #evict(now: number): boolean {
    const before = this.#head;
    const oldest = now - this.#retentionMs;
    while (this.#head < this.#slots.length) {
      const s = this.#slots[this.#head]!;
      if (s.at > oldest && this.#entries <= this.#maxEntries) break;
      // the node's open slot may go too: its later frames then start a new one
      if (this.#open.get(s.node) === s) this.#open.delete(s.node);
      for (const key of s.edges.keys()) {
        const refs = this.#edges.get(key)! - 1;
        if (refs === 0) this.#edges.delete(key);
        else this.#edges.set(key, refs);
      }
      this.#entries -= s.edges.size;
      this.#slots[this.#head++] = undefined as unknown as Slot;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#head = 0;
    }
    return this.#head !== before;
  }
}

function quantileOf(h: number[] | undefined, q: number): number | null {
  if (!h) return null;
  const v = latencyQuantile(h, q);
  return v === null ? null : round(v, 3);
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A window in whole seconds, MIN_TRAFFIC_WINDOW_SECONDS..MAX_TRAFFIC_WINDOW_SECONDS. */
export function checkWindow(seconds: number): number {
  if (!Number.isSafeInteger(seconds) || seconds < MIN_TRAFFIC_WINDOW_SECONDS || seconds > MAX_TRAFFIC_WINDOW_SECONDS) {
    throw new RangeError(`window must be a whole number of seconds from ${MIN_TRAFFIC_WINDOW_SECONDS} to ${MAX_TRAFFIC_WINDOW_SECONDS}, got ${seconds}`);
  }
  return seconds;
}

/**
 * identity → the service its registered instances belong to. An identity
 * several services share resolves to the first by namespace/name, so the
 * answer does not depend on registration order.
 */
export function sourceIndex(instances: Iterable<{ identity: string; namespace: string; service: string }>): (identity: string) => { namespace: string; service: string } | undefined {
  const by = new Map<string, { namespace: string; service: string }>();
  for (const i of instances) {
    const cur = by.get(i.identity);
    if (!cur || cmp(`${i.namespace}/${i.service}`, `${cur.namespace}/${cur.service}`) < 0) by.set(i.identity, { namespace: i.namespace, service: i.service });
  }
  return (identity) => by.get(identity);
}
