// What the page shows, kept current: a periodic refresh of the listings
// (services, endpoints, certificates, policies, routes, agents), the traffic
// stream (graph updates as they happen; polled instead while the control
// plane has no stream) and the anomaly stream (findings as they arrive).
// Every change goes to `onChange`, which the server fans out to browsers.
import type { Finding } from '@amime/monitor';
import { buildGraph, type Graph } from './graph.js';
import { isNotAvailable, type MeshSource } from './mesh-source.js';
import type { EndpointInstance, ResourceLike, TrafficSnapshot } from './mesh-types.js';
import { certRows, policyRows, routeRows, type CertRow, type PolicyRow, type RouteRow } from './views.js';

/** One part of the page: its data, or why there is none. */
export interface Section<T> {
  /** False while the control plane has no such route (an older one) or before the first answer. */
  available: boolean;
  /** Why it is not available or stale: "not available on this control plane", the last error. */
  note?: string;
  /** ISO time of the data. */
  updatedAt?: string;
  data: T;
}

export interface ConnectionState {
  controlPlane: 'waiting' | 'connected' | 'unreachable';
  message: string;
  /** The control plane's admin URL once known. */
  url?: string;
  since: string;
}

export interface Sections {
  connection: Section<ConnectionState>;
  graph: Section<Graph>;
  certs: Section<CertRow[]>;
  anomalies: Section<Finding[]>;
  policies: Section<PolicyRow[]>;
  routes: Section<RouteRow[]>;
  agents: Section<unknown[]>;
}
export type SectionName = keyof Sections;

export type ViewEvent = { type: 'section'; name: SectionName; section: Sections[SectionName] } | { type: 'anomaly'; finding: Finding };

export interface MeshViewOptions {
  /** Listings are read this often; default 5 s. */
  refreshMs?: number;
  /** Findings kept (newest first); default 200. */
  maxAnomalies?: number;
  log?(event: Record<string, unknown>): void;
  now?(): Date;
}

const NOT_AVAILABLE = 'not available on this control plane';
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15_000;
const STREAM_ABSENT_RETRY_MS = 30_000;

export class MeshView {
  readonly #listeners = new Set<(e: ViewEvent) => void>();
  readonly #refreshMs: number;
  readonly #maxAnomalies: number;
  readonly #log: (event: Record<string, unknown>) => void;
  readonly #now: () => Date;
  readonly #sections: Sections;
  readonly #json = new Map<SectionName, string>();
  #source: MeshSource | undefined;
  #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #trafficLive = false;
  #services: ResourceLike[] = [];
  #endpoints: EndpointInstance[] | undefined;
  #traffic: TrafficSnapshot | undefined;

  constructor(opts: MeshViewOptions = {}) {
    this.#refreshMs = opts.refreshMs ?? 5000;
    this.#maxAnomalies = opts.maxAnomalies ?? 200;
    this.#log = opts.log ?? (() => undefined);
    this.#now = opts.now ?? (() => new Date());
    const empty = <T>(data: T): Section<T> => ({ available: false, note: 'waiting for the control plane', data });
    this.#sections = {
      connection: { available: true, data: { controlPlane: 'waiting', message: 'waiting for the admin credential and the control plane', since: this.#iso() } },
      graph: empty(buildGraph({ services: [] })),
      certs: empty([]),
      anomalies: empty([]),
      policies: empty([]),
      routes: empty([]),
      agents: empty([]),
    };
  }

  /** Everything, for a page that just connected. */
  snapshot(): Sections {
    return this.#sections;
  }

  section<K extends SectionName>(name: K): Sections[K] {
    return this.#sections[name];
  }

  onChange(listener: (e: ViewEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sets the connection line (while main waits for the credential and the control plane). */
  waiting(message: string): void {
    this.#setConnection('waiting', message);
  }

  /** Starts reading from `source`: a refresh now, then every refreshMs, and both streams. */
  async attach(source: MeshSource, url?: string): Promise<void> {
    this.#source = source;
    this.#setConnection('connected', 'connected to the control plane', url);
    void this.#follow('traffic', (signal) => source.watchTraffic((s) => this.#onTraffic(s), signal));
    void this.#follow('anomalies', (signal) => source.watchAnomalies((f) => this.#onFinding(f), signal));
    await this.refresh();
    const tick = () => {
      this.#timer = setTimeout(() => void this.refresh().finally(() => !this.#abort.signal.aborted && tick()), this.#refreshMs);
      this.#timer.unref();
    };
    tick();
  }

  /** One round of the listings; concurrent callers share it. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refreshOnce().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  close(): void {
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#source?.close();
  }

  async #refreshOnce(): Promise<void> {
    const src = this.#source;
    if (!src) return;
    const results = await Promise.allSettled([
      src.services(),
      src.endpoints(),
      this.#trafficLive ? Promise.resolve(this.#traffic) : src.traffic(),
      src.certs(),
      src.policies(),
      src.routes(),
      src.agents(),
      this.#sections.anomalies.available ? Promise.resolve(undefined) : src.anomalies(),
    ]);
    const [services, endpoints, traffic, certs, policies, routes, agents, anomalies] = results;
    // Reachability is judged on the one listing every control plane has.
    if (services.status === 'rejected' && !isNotAvailable(services.reason)) {
      this.#setConnection('unreachable', `the control plane did not answer: ${(services.reason as Error).message}`);
    } else if (this.#sections.connection.data.controlPlane !== 'connected') {
      this.#setConnection('connected', 'connected to the control plane');
    }
    if (services.status === 'fulfilled') this.#services = services.value;
    if (endpoints.status === 'fulfilled') this.#endpoints = endpoints.value;
    else if (isNotAvailable(endpoints.reason)) this.#endpoints = undefined;
    if (traffic.status === 'fulfilled' && traffic.value) this.#traffic = traffic.value;
    else if (traffic.status === 'rejected' && isNotAvailable(traffic.reason)) this.#traffic = undefined;
    const graphNote = traffic.status === 'rejected' ? (isNotAvailable(traffic.reason) ? `traffic ${NOT_AVAILABLE}` : (traffic.reason as Error).message) : undefined;
    if (services.status === 'fulfilled') this.#setGraph(graphNote);
    this.#apply('certs', certs, certRows);
    this.#apply('policies', policies, policyRows);
    this.#apply('routes', routes, routeRows);
    this.#apply('agents', agents, (a) => a);
    if (anomalies.status === 'fulfilled' && anomalies.value) {
      this.#put('anomalies', { available: true, updatedAt: this.#iso(), data: this.#mergeFindings(anomalies.value) });
    } else if (anomalies.status === 'rejected') {
      this.#put('anomalies', { available: false, note: this.#note(anomalies.reason), data: this.#sections.anomalies.data });
    }
  }

  #apply<K extends 'certs' | 'policies' | 'routes' | 'agents', T>(name: K, r: PromiseSettledResult<T>, view: (v: T) => Sections[K]['data']): void {
    if (r.status === 'fulfilled') {
      let data: Sections[K]['data'];
      try {
        data = view(r.value);
      } catch (err) {
        this.#put(name, { available: false, note: `unreadable answer: ${(err as Error).message}`, data: this.#sections[name].data } as Sections[K]);
        return;
      }
      this.#put(name, { available: true, updatedAt: this.#iso(), data } as Sections[K]);
    } else {
      // Keep the last good rows beside the reason they may be stale.
      this.#put(name, { available: !isNotAvailable(r.reason) && this.#sections[name].available, note: this.#note(r.reason), data: isNotAvailable(r.reason) ? [] : this.#sections[name].data } as Sections[K]);
    }
  }

  #note(err: unknown): string {
    return isNotAvailable(err) ? NOT_AVAILABLE : `stale: ${(err as Error).message}`;
  }

  #setGraph(note?: string): void {
    const graph = buildGraph({ services: this.#services, ...(this.#endpoints && { endpoints: this.#endpoints }), ...(this.#traffic && { traffic: this.#traffic }) });
    this.#put('graph', { available: true, ...(note && { note }), updatedAt: this.#iso(), data: graph });
  }

  #onTraffic(s: TrafficSnapshot): void {
    this.#trafficLive = true;
    this.#traffic = s;
    this.#setGraph();
  }

  #onFinding(f: Finding): void {
    if (!f || typeof f !== 'object' || typeof f.id !== 'string') return;
    const before = this.#sections.anomalies.data;
    if (before.some((x) => x.id === f.id)) return;
    this.#sections.anomalies = { available: true, updatedAt: this.#iso(), data: [f, ...before].slice(0, this.#maxAnomalies) };
    this.#json.delete('anomalies');
    this.#emit({ type: 'anomaly', finding: f });
  }

  #mergeFindings(list: Finding[]): Finding[] {
    const seen = new Set<string>();
    return [...list, ...this.#sections.anomalies.data]
      .filter((f) => f && typeof f.id === 'string' && !seen.has(f.id) && seen.add(f.id))
      .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))
      .slice(0, this.#maxAnomalies);
  }

  /**
   * Follows a stream with backoff between attempts; a control plane without
   * the stream is asked again every 30 s (it may be upgraded), and traffic is
   * polled with the listings meanwhile.
   */
  async #follow(name: 'traffic' | 'anomalies', run: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const signal = this.#abort.signal;
    let delay = RETRY_MIN_MS;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        await run(signal);
      } catch (err) {
        if (name === 'traffic') this.#trafficLive = false;
        const absent = isNotAvailable(err);
        this.#log({ event: absent ? 'stream_not_available' : 'stream_lost', stream: name, error: (err as Error).message });
        if (Date.now() - started > 10_000) delay = RETRY_MIN_MS; // it ran for a while: a fresh failure
        await sleep(absent ? STREAM_ABSENT_RETRY_MS : delay, signal);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        if (name === 'anomalies' && !signal.aborted) {
          // list what was missed while the stream was down
          this.#sections.anomalies.available = false;
          void this.refresh();
        }
      }
    }
  }

  #setConnection(state: ConnectionState['controlPlane'], message: string, url?: string): void {
    const prev = this.#sections.connection.data;
    const since = prev.controlPlane === state ? prev.since : this.#iso();
    const u = url ?? prev.url;
    this.#put('connection', { available: true, data: { controlPlane: state, message, ...(u && { url: u }), since } });
  }

  /** Stores a section and tells listeners, unless nothing but its time changed. */
  #put<K extends SectionName>(name: K, section: Sections[K]): void {
    const key = JSON.stringify({ ...section, updatedAt: undefined });
    this.#sections[name] = section;
    if (this.#json.get(name) === key) return;
    this.#json.set(name, key);
    this.#emit({ type: 'section', name, section });
  }

  #emit(e: ViewEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log({ event: 'listener_failed', error: (err as Error).message });
      }
    }
  }

  #iso(): string {
    return this.#now().toISOString();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    t.unref();
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
