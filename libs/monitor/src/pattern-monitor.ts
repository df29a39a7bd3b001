// The communication-pattern monitor: learns, per edge (source identity →
// service), how much traffic flows and how much of it fails or is denied,
// and per identity which nodes it calls from; then flags what departs.
//
//   report frames ──▶ per reporting node, per seq: accumulate ──(last frame)──▶ judge every
//   slice of that node (absent = 0 requests) ──▶ findings ──▶ onFinding
//
// State per edge is split by destination node ("slice"): each agent reports
// only its own share, so a slice is judged once per report interval, when
// that agent's report for the interval is complete (a frame with fewer than
// MAX_EDGES_PER_REPORT edges ends it). Pure logic: the clock is injected,
// memory is bounded (edges and identities are LRU-evicted beyond a cap).
import { MAX_EDGES_PER_REPORT, type EdgeCounts } from '@amime/protocol';
import { newEwma, ewmaUpdate, type Ewma } from './ewma.js';
import { edgeId, edgeName, type EdgeKey, type Finding, type FindingEdge, type FindingKind } from './finding.js';
import { DEFAULT_MONITOR_SETTINGS, FLOORS, checkSettings, ewmaAlpha, thresholds, type MonitorSettings, type Thresholds } from './settings.js';

export const DEFAULT_MAX_EDGES = 50_000;
export const DEFAULT_MAX_IDENTITIES = 50_000;
/** Destination nodes remembered per edge (a service on more nodes keeps the most recent ones). */
export const DEFAULT_MAX_NODES_PER_EDGE = 32;
/** Source nodes remembered per identity. */
export const DEFAULT_MAX_NODES_PER_IDENTITY = 64;

/** One edge's counts in one report, with its source node already resolved. */
export interface EdgeObservation {
  source: string;
  service: string;
  namespace: string;
  sourceNode: string;
  requests: number;
  errors: number;
  denials: number;
  bytesIn?: number;
  bytesOut?: number;
}

/** What a report frame carries (the protocol's ReportMessage). */
export interface ReportFrame {
  seq: number;
  intervalMs: number;
  edges: readonly EdgeCounts[];
}

/** The node whose agent owns `peerAddress`; `unknown:<ip>` when none does. */
export type ResolveSourceNode = (peerAddress: string, source: string) => string;

export interface PatternMonitorOptions {
  /** Epoch milliseconds; default Date.now. */
  now?: () => number;
  settings?: Partial<MonitorSettings>;
  /** Whether `identity` is assigned to `node` at the CA; undefined when unknown. */
  assigned?: (node: string, identity: string) => boolean | undefined;
  /** Edges accepted as normal (persisted by the caller). */
  accepted?: Iterable<EdgeKey>;
  onFinding?: (finding: Finding) => void;
  maxEdges?: number;
  maxIdentities?: number;
  maxNodesPerEdge?: number;
  maxNodesPerIdentity?: number;
}

interface Counts {
  requests: number;
  errors: number;
  denials: number;
  sourceNode: string;
}

type Judged = 'volume_deviation' | 'error_spike' | 'denial_spike';

interface Slice {
  readonly edge: EdgeState;
  readonly node: string;
  /** Requests per second. */
  readonly volume: Ewma;
  /** Errors per forwarded request. */
  readonly errors: Ewma;
  /** Denials per request. */
  readonly denials: Ewma;
  /** Kinds flagged and not back to normal yet. */
  readonly active: Set<Judged>;
  pending: Counts | undefined;
}

interface EdgeState {
  readonly key: EdgeKey;
  readonly id: string;
  /** By destination node, least recently seen first. */
  readonly slices: Map<string, Slice>;
  /** First seen after the learning window and not accepted yet. */
  novel: boolean;
}

interface NodeState {
  /** Seq being accumulated. */
  open: number | undefined;
  /** Last seq judged (a repeat of it is dropped). */
  done: number | undefined;
  /** Slices this node reported, for the zero fill. */
  readonly slices: Set<Slice>;
}

export interface MonitorStats {
  edges: number;
  identities: number;
  learning: boolean;
  learningEndsAt: string;
  findings: number;
  /** Frames dropped as repeats of a judged seq. */
  repeatedFrames: number;
}

export class PatternMonitor {
  readonly #now: () => number;
  readonly #assigned: (node: string, identity: string) => boolean | undefined;
  readonly #onFinding: ((f: Finding) => void) | undefined;
  readonly #maxEdges: number;
  readonly #maxIdentities: number;
  readonly #maxNodesPerEdge: number;
  readonly #maxNodesPerIdentity: number;
  readonly #startedAt: number;
  readonly #edges = new Map<string, EdgeState>();
  /** Identity → source nodes seen, least recently used first. */
  readonly #identities = new Map<string, Set<string>>();
  readonly #nodes = new Map<string, NodeState>();
  readonly #accepted = new Set<string>();
  #settings: MonitorSettings;
  #t: Thresholds;
  #alpha: number;
  #findings = 0;
  #repeated = 0;

  constructor(opts: PatternMonitorOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#assigned = opts.assigned ?? (() => undefined);
    this.#onFinding = opts.onFinding;
    this.#maxEdges = positive(opts.maxEdges ?? DEFAULT_MAX_EDGES, 'maxEdges');
    this.#maxIdentities = positive(opts.maxIdentities ?? DEFAULT_MAX_IDENTITIES, 'maxIdentities');
    this.#maxNodesPerEdge = positive(opts.maxNodesPerEdge ?? DEFAULT_MAX_NODES_PER_EDGE, 'maxNodesPerEdge');
    this.#maxNodesPerIdentity = positive(opts.maxNodesPerIdentity ?? DEFAULT_MAX_NODES_PER_IDENTITY, 'maxNodesPerIdentity');
    this.#settings = checkSettings({ ...DEFAULT_MONITOR_SETTINGS, ...opts.settings });
    this.#t = thresholds(this.#settings.sensitivity);
    this.#alpha = ewmaAlpha(this.#settings);
    this.#startedAt = this.#now();
    for (const e of opts.accepted ?? []) this.#accepted.add(edgeId(e));
  }

  get settings(): Readonly<MonitorSettings> {
    return this.#settings;
  }

  /** New settings apply from the next report; the learning window still counts from the start. */
  configure(settings: Partial<MonitorSettings>): void {
    this.#settings = checkSettings({ ...this.#settings, ...settings });
    this.#t = thresholds(this.#settings.sensitivity);
    this.#alpha = ewmaAlpha(this.#settings);
  }

  get learning(): boolean {
    return this.#now() < this.#startedAt + this.#settings.learningWindowMs;
  }

  /** Edges held. */
  get size(): number {
    return this.#edges.size;
  }

  stats(): MonitorStats {
    return {
      edges: this.#edges.size,
      identities: this.#identities.size,
      learning: this.learning,
      learningEndsAt: new Date(this.#startedAt + this.#settings.learningWindowMs).toISOString(),
      findings: this.#findings,
      repeatedFrames: this.#repeated,
    };
  }

  /**
   * One report frame from `node`'s agent (the destination of every edge in
   * it). A frame with fewer than MAX_EDGES_PER_REPORT edges completes its
   * seq: then every edge slice of the node is judged, absent ones as idle.
   */
  ingest(node: string, report: ReportFrame, resolveSourceNode: ResolveSourceNode): Finding[] {
    const observations = report.edges.map(
      (e): EdgeObservation => ({
        source: e.source,
        service: e.service,
        namespace: e.namespace,
        sourceNode: resolveSourceNode(e.peerAddress, e.source),
        requests: e.requests,
        errors: e.errors,
        denials: e.denials,
      }),
    );
    return this.observe(node, report.seq, report.intervalMs, observations, report.edges.length < MAX_EDGES_PER_REPORT);
  }

  /** Like ingest, with source nodes already resolved; `last` completes the seq. */
  observe(node: string, seq: number, intervalMs: number, observations: readonly EdgeObservation[], last = true): Finding[] {
    const out: Finding[] = [];
    let n = this.#nodes.get(node);
    if (!n) this.#nodes.set(node, (n = { open: undefined, done: undefined, slices: new Set() }));
    if (n.done === seq && n.open === undefined) {
      this.#repeated++;
      return out;
    }
    // A new seq while one is open: the agent restarted or lost a frame; judge what came.
    if (n.open !== undefined && n.open !== seq) this.#complete(node, n, intervalMs, out);
    n.open = seq;
    const learning = this.learning;
    for (const o of observations) {
      const edge = this.#edge(o, node, intervalMs, learning, out);
      this.#sourceNode(o, edge, node, learning, out);
      let slice = edge.slices.get(node);
      if (slice) {
        edge.slices.delete(node);
      } else {
        slice = { edge, node, volume: newEwma(), errors: newEwma(), denials: newEwma(), active: new Set(), pending: undefined };
        if (edge.slices.size >= this.#maxNodesPerEdge) this.#dropSlice(edge.slices.values().next().value!);
        n.slices.add(slice);
      }
      edge.slices.set(node, slice);
      const p = (slice.pending ??= { requests: 0, errors: 0, denials: 0, sourceNode: o.sourceNode });
      p.requests += o.requests;
      p.errors += o.errors;
      p.denials += o.denials;
    }
    if (last) {
      this.#complete(node, n, intervalMs, out);
      n.done = seq;
    }
    return out;
  }

  /**
   * Accepts an edge as normal: it is never flagged as new again (even after
   * eviction), and the traffic seen on it so far becomes its baseline, judged
   * from the next report on. Returns whether anything changed.
   */
  accept(e: EdgeKey): boolean {
    const id = edgeId(e);
    const had = this.#accepted.has(id);
    this.#accepted.add(id);
    const edge = this.#edges.get(id);
    if (!edge) return !had;
    const wasNovel = edge.novel;
    edge.novel = false;
    for (const s of edge.slices.values()) {
      s.active.clear();
      for (const ew of [s.volume, s.errors, s.denials]) ew.n = Math.max(ew.n, FLOORS.minSamples);
    }
    return !had || wasNovel;
  }

  isAccepted(e: EdgeKey): boolean {
    return this.#accepted.has(edgeId(e));
  }

  /** The node's agent went away: what it sent for an unfinished seq is judged now. */
  forgetNode(node: string): void {
    const n = this.#nodes.get(node);
    if (!n) return;
    if (n.open !== undefined) {
      // an unfinished interval is dropped, not judged: its counts are partial
      for (const s of n.slices) s.pending = undefined;
      n.open = undefined;
    }
    n.done = undefined;
  }

  // ---------------------------------------------------------------- state

  #edge(o: EdgeObservation, node: string, intervalMs: number, learning: boolean, out: Finding[]): EdgeState {
    const key = { source: o.source, service: o.service, namespace: o.namespace };
    const id = edgeId(key);
    let edge = this.#edges.get(id);
    if (edge) {
      this.#edges.delete(id);
      this.#edges.set(id, edge);
      return edge;
    }
    const novel = !learning && !this.#accepted.has(id);
    edge = { key, id, slices: new Map(), novel };
    if (this.#edges.size >= this.#maxEdges) this.#dropEdge(this.#edges.values().next().value!);
    this.#edges.set(id, edge);
    if (novel) {
      const rps = perSecond(o.requests, intervalMs);
      this.#emit(out, 'new_edge', { ...key, sourceNode: o.sourceNode }, node, 0, rps, 0, 'requests/s', `new edge ${edgeName(key)} from node ${o.sourceNode}`, {
        requests: o.requests,
        errors: o.errors,
        denials: o.denials,
      });
    }
    return edge;
  }

  #sourceNode(o: EdgeObservation, edge: EdgeState, node: string, learning: boolean, out: Finding[]): void {
    let nodes = this.#identities.get(o.source);
    if (nodes) {
      this.#identities.delete(o.source);
    } else {
      nodes = new Set();
      if (this.#identities.size >= this.#maxIdentities) this.#identities.delete(this.#identities.keys().next().value!);
    }
    this.#identities.set(o.source, nodes);
    if (nodes.has(o.sourceNode)) return;
    if (!learning) {
      const assigned = this.#assigned(o.sourceNode, o.source);
      // A first node the identity is assigned to is how a new workload starts: new_edge covers it.
      if (assigned === false || nodes.size > 0) {
        const known = [...nodes].sort();
        const why = assigned === false ? `is not assigned to node ${o.sourceNode}` : `had only called from ${known.join(', ')}`;
        this.#emit(out, 'new_node', { ...edge.key, sourceNode: o.sourceNode }, node, known, o.sourceNode, 0, 'node', `${o.source} calls ${edge.key.namespace}/${edge.key.service} from node ${o.sourceNode}; it ${why}`, {
          ...(assigned !== undefined && { assigned }),
          requests: o.requests,
        });
      }
    }
    if (nodes.size >= this.#maxNodesPerIdentity) nodes.delete(nodes.values().next().value!);
    nodes.add(o.sourceNode);
  }

  #dropEdge(edge: EdgeState): void {
    this.#edges.delete(edge.id);
    for (const s of edge.slices.values()) this.#nodes.get(s.node)?.slices.delete(s);
  }

  #dropSlice(s: Slice): void {
    s.edge.slices.delete(s.node);
    this.#nodes.get(s.node)?.slices.delete(s);
  }

  // ---------------------------------------------------------------- judging

  #complete(node: string, n: NodeState, intervalMs: number, out: Finding[]): void {
    n.open = undefined;
    const judge = !this.learning;
    for (const s of n.slices) {
      const c = s.pending ?? { requests: 0, errors: 0, denials: 0, sourceNode: '' };
      s.pending = undefined;
      this.#volume(s, c, intervalMs, judge, node, out);
      const forwarded = Math.max(0, c.requests - c.denials);
      this.#rate(s, 'error_spike', s.errors, c.errors, forwarded, c, judge, node, out);
      this.#rate(s, 'denial_spike', s.denials, c.denials, Math.max(c.requests, c.denials), c, judge, node, out);
    }
  }

  /** Requests/s against mean ± max(k·σ, relative share, minimum count), σ at least Poisson's. */
  #volume(s: Slice, c: Counts, intervalMs: number, judge: boolean, node: string, out: Finding[]): void {
    const seconds = intervalMs / 1000;
    const x = c.requests / seconds;
    const e = s.volume;
    let sample = x;
    if (judge && e.n >= FLOORS.minSamples) {
      const sigma = Math.max(Math.sqrt(e.variance), Math.sqrt(e.mean / seconds));
      const bound = Math.max(this.#t.k * sigma, this.#t.minRelativeVolumeChange * e.mean, FLOORS.minVolumeDeltaRequests / seconds);
      const dev = x - e.mean;
      if (Math.abs(dev) > bound) {
        const limit = dev > 0 ? e.mean + bound : Math.max(0, e.mean - bound);
        if (!s.active.has('volume_deviation')) {
          s.active.add('volume_deviation');
          const src = c.sourceNode || lastSourceNode(this.#identities.get(s.edge.key.source));
          this.#emit(
            out,
            'volume_deviation',
            { ...s.edge.key, sourceNode: src },
            node,
            round(e.mean),
            round(x),
            round(limit),
            'requests/s',
            `${edgeName(s.edge.key)}: ${round(x)} requests/s, ${dev > 0 ? 'above' : 'below'} ${round(limit)} (baseline ${round(e.mean)} ± ${round(bound)})`,
            { requests: c.requests, sigma: round(sigma), direction: dev > 0 ? 'above' : 'below' },
          );
        }
        // An outlier moves the baseline only as far as the boundary, so a
        // lasting change is learned slowly and one burst does not blow up σ.
        sample = limit;
      } else {
        s.active.delete('volume_deviation');
      }
    }
    ewmaUpdate(e, sample, this.#alpha);
  }

  /** events/total against p + max(k·σ_binomial, (factor − 1)·p, minimum excess), with minimum counts. */
  #rate(s: Slice, kind: 'error_spike' | 'denial_spike', e: Ewma, events: number, total: number, c: Counts, judge: boolean, node: string, out: Finding[]): void {
    if (total === 0) return;
    const r = Math.min(1, events / total);
    let sample = r;
    if (judge && e.n >= FLOORS.minSamples && total >= FLOORS.minRequests) {
      const p = Math.min(1, Math.max(0, e.mean));
      const sigma = Math.sqrt((Math.max(p, FLOORS.rateSigmaFloor) * (1 - Math.min(p, 0.99))) / total);
      const limit = Math.max(p + this.#t.k * sigma, p * this.#t.minRateFactor, p + FLOORS.minRateExcess);
      if (r > limit && events >= FLOORS.minEvents) {
        if (!s.active.has(kind)) {
          s.active.add(kind);
          const what = kind === 'error_spike' ? 'errors' : 'denials';
          this.#emit(
            out,
            kind,
            { ...s.edge.key, sourceNode: c.sourceNode },
            node,
            round(p),
            round(r),
            round(limit),
            'ratio',
            `${edgeName(s.edge.key)}: ${what} ${pct(r)} of ${total} requests, above ${pct(limit)} (baseline ${pct(p)})`,
            { requests: c.requests, [what]: events, sigma: round(sigma) },
          );
        }
        sample = limit;
      } else if (r <= limit) {
        s.active.delete(kind);
      }
    }
    // Intervals with few requests count for less.
    ewmaUpdate(e, sample, this.#alpha, Math.min(1, total / FLOORS.minRequests));
  }

  #emit(
    out: Finding[],
    kind: FindingKind,
    edge: FindingEdge,
    node: string,
    baseline: number | string[],
    observed: number | string,
    threshold: number,
    unit: Finding['unit'],
    message: string,
    detail: Record<string, number | string | boolean>,
  ): void {
    const at = this.#now();
    const f: Finding = { id: `${at.toString(36)}-${(++this.#findings).toString(36)}`, kind, at: new Date(at).toISOString(), edge, node, baseline, observed, threshold, unit, message, detail };
    out.push(f);
    try {
      this.#onFinding?.(f);
    } catch {
      // a listener must not break judging
    }
  }
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`monitor: ${name} must be a positive integer, got ${n}`);
  return n;
}

const perSecond = (count: number, intervalMs: number): number => round(count / (intervalMs / 1000));
const round = (x: number): number => Math.round(x * 1000) / 1000;
const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;
const lastSourceNode = (nodes: Set<string> | undefined): string => {
  let last = '';
  for (const n of nodes ?? []) last = n;
  return last || 'unknown';
};
