// The control plane's side of the communication-pattern monitor: agents'
// edge reports (rate-limited per node) go into a PatternMonitor; each
// finding is counted, kept in a ring for GET /v1/anomalies and handed to
// stream subscribers. Edges an operator accepts are stored under
// ACCEPTED_EDGES_PREFIX, so they survive restarts and reach every replica
// (each watches the prefix).
import { createHash } from 'node:crypto';
import type { Store } from '@amime/store';
import { durationMs, MONITOR_DEFAULTS, type MeshConfigResource, type MonitorSettingsSpec, type ReportMessage, type Resource } from '@amime/protocol';
import { FindingLog, PatternMonitor, edgeId, type EdgeKey, type Finding, type MonitorSettings, type MonitorStats, type ResolveSourceNode } from '@amime/monitor';
import { ReportGate } from './report-gate.js';

export const ACCEPTED_EDGES_PREFIX = '/monitor/accepted-edges/';

/** What an accepted edge is stored as. */
export interface AcceptedEdge extends EdgeKey {
  acceptedBy: string;
  /** ISO time. */
  acceptedAt: string;
}

/** The two metrics the monitor feeds (ControlPlaneMetrics has them). */
export interface AnomalyMetrics {
  anomalies: { inc(labels: { kind: string }): void };
  monitorEdges: { set(value: number): void };
  refused?: { inc(labels: { reason: string }): void };
}

export interface AnomalyServiceOptions {
  store: Store;
  resolveSourceNode: ResolveSourceNode;
  assigned?(node: string, identity: string): boolean | undefined;
  metrics?: AnomalyMetrics;
  /** Epoch ms; default Date.now. */
  now?: () => number;
  /** Initial settings (MeshConfig's are applied with configure()). */
  settings?: Partial<MonitorSettings>;
  /** Findings kept for GET /v1/anomalies. Default 1000. */
  logSize?: number;
  maxEdges?: number;
  /** Every report frame the rate limit let through (the traffic view takes them); must not throw. */
  onReport?(node: string, report: ReportMessage): void;
  log?(event: Record<string, unknown>): void;
}

/** MeshConfig spec.monitor (absent: the defaults) as monitor settings. */
export function monitorSettingsOf(spec: MonitorSettingsSpec | undefined): MonitorSettings {
  const s = { ...MONITOR_DEFAULTS, ...spec };
  return { learningWindowMs: durationMs(s.learningWindow), sensitivity: s.sensitivity, reportIntervalMs: durationMs(s.reportInterval) };
}

/** The MeshConfig in force: one is meant to exist; with several, the first by namespace/name (as agents pick it). */
export function meshMonitorSpec(meshConfigs: readonly Resource[]): MonitorSettingsSpec | undefined {
  const sorted = [...(meshConfigs as readonly MeshConfigResource[])].sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1,
  );
  return sorted[0]?.spec.monitor;
}

const storeKey = (e: EdgeKey): string => `${ACCEPTED_EDGES_PREFIX}${createHash('sha256').update(edgeId(e)).digest('hex').slice(0, 40)}`;

export class AnomalyService {
  readonly monitor: PatternMonitor;
  readonly #opts: AnomalyServiceOptions;
  readonly #log: FindingLog;
  readonly #gate: ReportGate;
  readonly #subscribers = new Set<(f: Finding) => void>();
  #unwatch: (() => void) | undefined;

  private constructor(opts: AnomalyServiceOptions, accepted: EdgeKey[]) {
    this.#opts = opts;
    this.#log = new FindingLog(opts.logSize);
    this.monitor = new PatternMonitor({
      now: opts.now,
      settings: opts.settings,
      assigned: opts.assigned,
      accepted,
      maxEdges: opts.maxEdges,
      onFinding: (f) => this.#finding(f),
    });
    this.#gate = new ReportGate(this.monitor.settings.reportIntervalMs, { now: opts.now });
  }

  /** Loads the accepted edges and follows later accepts (from any replica). */
  static async open(opts: AnomalyServiceOptions): Promise<AnomalyService> {
    const revision = await opts.store.revision();
    const entries = await opts.store.list<AcceptedEdge>(ACCEPTED_EDGES_PREFIX);
    const svc = new AnomalyService(
      opts,
      entries.map((e) => e.value),
    );
    svc.#unwatch = await opts.store.watch(ACCEPTED_EDGES_PREFIX, revision, (ev) => {
      const v = ev.value as Partial<AcceptedEdge> | undefined;
      if (ev.type === 'put' && v && typeof v.source === 'string' && typeof v.service === 'string' && typeof v.namespace === 'string') {
        svc.monitor.accept({ source: v.source, service: v.service, namespace: v.namespace });
      }
    });
    return svc;
  }

  /** New MeshConfig monitor settings (absent block: the defaults). */
  configure(spec: MonitorSettingsSpec | undefined): void {
    const next = monitorSettingsOf(spec);
    const cur = this.monitor.settings;
    if (next.learningWindowMs === cur.learningWindowMs && next.reportIntervalMs === cur.reportIntervalMs && next.sensitivity === cur.sensitivity) return;
    this.monitor.configure(next);
    this.#gate.intervalMs = next.reportIntervalMs;
    this.#opts.log?.({ event: 'monitor_configured', ...next });
  }

  /** One report frame from a connected agent (already validated). Never throws. */
  report(node: string, report: ReportMessage): void {
    try {
      const verdict = this.#gate.check(node, report.seq);
      if (verdict !== 'ok') {
        this.#opts.metrics?.refused?.inc({ reason: `report_${verdict}` });
        if (verdict === 'banned') this.#opts.log?.({ event: 'monitor_report_refused', node, reason: verdict });
        return;
      }
      this.#opts.onReport?.(node, report);
      this.monitor.ingest(node, report, this.#opts.resolveSourceNode);
      this.#opts.metrics?.monitorEdges.set(this.monitor.size);
    } catch (err) {
      this.#opts.log?.({ event: 'monitor_report_failed', node, error: (err as Error).message });
    }
  }

  /** The agent disconnected: an unfinished interval of it is dropped. */
  forgetNode(node: string): void {
    this.monitor.forgetNode(node);
  }

  /** Newest first. */
  list(sinceMs?: number, limit?: number): Finding[] {
    return this.#log.list(sinceMs, limit);
  }

  stats(): MonitorStats & { settings: MonitorSettings } {
    return { ...this.monitor.stats(), settings: { ...this.monitor.settings } };
  }

  /** Accepts an edge as normal, durably; resolves once stored. */
  async accept(edge: EdgeKey, by: string): Promise<{ edge: EdgeKey; changed: boolean }> {
    const key = { source: edge.source, service: edge.service, namespace: edge.namespace };
    const value: AcceptedEdge = { ...key, acceptedBy: by, acceptedAt: new Date((this.#opts.now ?? Date.now)()).toISOString() };
    const had = (await this.#opts.store.get(storeKey(key))) !== undefined;
    if (!had) await this.#opts.store.put(storeKey(key), value);
    const changed = this.monitor.accept(key) || !had;
    this.#opts.log?.({ event: 'monitor_edge_accepted', ...key, by, changed });
    return { edge: key, changed };
  }

  /** Calls `fn` with every finding from now on; returns the unsubscribe. */
  subscribe(fn: (f: Finding) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  close(): void {
    this.#unwatch?.();
    this.#subscribers.clear();
  }

  #finding(f: Finding): void {
    this.#log.add(f);
    this.#opts.metrics?.anomalies.inc({ kind: f.kind });
    this.#opts.log?.({ event: 'anomaly', kind: f.kind, message: f.message, node: f.node, sourceNode: f.edge.sourceNode });
    for (const s of this.#subscribers) {
      try {
        s(f);
      } catch (err) {
        this.#opts.log?.({ event: 'anomaly_subscriber_failed', error: (err as Error).message });
      }
    }
  }
}
