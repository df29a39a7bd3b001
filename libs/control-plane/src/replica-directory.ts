// Prometheus discovery across control-plane replicas. Each replica publishes
// one store entry, `/sd/replicas/<id>` = { metrics, agents, updatedAt }: where
// its own /metrics is and the agents connected to it that said where theirs
// is. It writes the entry at start, when that set of agents changes (at most
// once per `debounceMs`) and every `refreshMs`, and deletes it at a clean
// stop; it watches the prefix to keep a view of every replica. `targets()`
// is the union: this replica's live agents, the agents of every fresh
// replica (one agent per node, the newest entry winning), every fresh
// replica itself and the CA. An entry not seen to change for `staleMs` is a
// dead replica: it and its agents are left out (they reconnect elsewhere),
// and past `10 × staleMs` any replica deletes it (compare-and-swap, so a
// revived replica's refresh is never lost).
//
// Freshness is judged on this replica's clock, from when it saw the entry
// change, so replicas need not agree on the time; only entries already in
// the store at start are aged by their `updatedAt`.
import { randomBytes } from 'node:crypto';
import { MAX_VALUE_BYTES, type Store, type StoreEntry, type WatchEvent } from '@amime/store';
import { array, dns1123Name, formatIssues, object, refine, safeValidate, string } from '@amime/protocol';
import { prometheusTargets, type TargetGroup } from './metrics-server.js';

export const REPLICAS_PREFIX = '/sd/replicas/';
export const REPLICA_DEFAULTS = { debounceMs: 1000, refreshMs: 15_000, staleMs: 60_000, maxAgents: 20_000 } as const;

/** A new replica id: 8 random hex digits, one per process start. */
export const randomReplicaId = (): string => randomBytes(4).toString('hex');

/** A replica id: what `/sd/replicas/<id>` may end with. */
const REPLICA_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Room left in a store value for everything but the agent list. */
const ENVELOPE_BYTES = 4096;

const hostPort = refine(string({ minLength: 3, maxLength: 262, pattern: /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, patternName: 'host:port' }), (v, path, issues) => {
  const port = Number(v.slice(v.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) issues.push({ path, message: `port ${port} is out of range 1-65535` });
});

function entrySchema(maxAgents: number) {
  return object({
    metrics: hostPort,
    agents: array(object({ node: dns1123Name, metrics: hostPort }), { maxItems: maxAgents }),
    updatedAt: string({ maxLength: 40, refine: (s) => (Number.isFinite(Date.parse(s)) ? undefined : { message: `must be an ISO time, got ${JSON.stringify(s)}` }) }),
  });
}

export interface ReplicaEntry {
  metrics: string;
  agents: { node: string; metrics: string }[];
  updatedAt: string;
}

export interface ReplicaDirectoryOptions {
  store: Store;
  /** "host:port" of this replica's /metrics, as others reach it. */
  metrics: string;
  /** This replica's connected agents and the "host:port" of their /metrics, when they said it. */
  agents(): Iterable<{ node: string; metrics: string | undefined }>;
  /** "host:port" of the CA's /metrics, when known. */
  ca?: string;
  /** Defaults to 8 random hex digits, new per process. */
  id?: string;
  /** Milliseconds since the epoch. */
  now?: () => number;
  debounceMs?: number;
  refreshMs?: number;
  staleMs?: number;
  /** Most agents one entry carries, written or read. */
  maxAgents?: number;
  log?(event: Record<string, unknown>): void;
}

interface Seen {
  entry: ReplicaEntry;
  revision: number;
  /** Local time the entry was last seen to change. */
  seenAt: number;
}

export class ReplicaDirectory {
  readonly id: string;
  readonly #opts: ReplicaDirectoryOptions;
  readonly #now: () => number;
  readonly #debounceMs: number;
  readonly #refreshMs: number;
  readonly #staleMs: number;
  readonly #maxAgents: number;
  readonly #schema: ReturnType<typeof entrySchema>;
  readonly #log: (event: Record<string, unknown>) => void;
  readonly #replicas = new Map<string, Seen>();
  #ready = false;
  #stopped = false;
  #unwatch: (() => void) | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout | undefined;
  /** Writes run one after another. */
  #writes: Promise<void> = Promise.resolve();
  #lastWriteAt = Number.NEGATIVE_INFINITY;
  /** The agent list last written, to skip writes that change nothing. */
  #written: string | undefined;
  #truncated = false;

  constructor(opts: ReplicaDirectoryOptions) {
    const id = opts.id ?? randomReplicaId();
    if (!REPLICA_ID.test(id)) throw new RangeError(`replica id must be 1-63 lowercase letters, digits or "-", got ${JSON.stringify(id)}`);
    for (const k of ['debounceMs', 'refreshMs', 'staleMs', 'maxAgents'] as const) {
      const v = opts[k];
      if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    }
    this.id = id;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#debounceMs = opts.debounceMs ?? REPLICA_DEFAULTS.debounceMs;
    this.#refreshMs = opts.refreshMs ?? REPLICA_DEFAULTS.refreshMs;
    this.#staleMs = opts.staleMs ?? REPLICA_DEFAULTS.staleMs;
    this.#maxAgents = opts.maxAgents ?? REPLICA_DEFAULTS.maxAgents;
    this.#schema = entrySchema(this.#maxAgents);
    this.#log = opts.log ?? (() => undefined);
  }

  get key(): string {
    return `${REPLICAS_PREFIX}${this.id}`;
  }

  /** True once the view of the other replicas is loaded and watched. */
  get ready(): boolean {
    return this.#ready;
  }

  /**
   * Loads and watches the other replicas, publishes this one and starts the
   * refresh. A store failure is logged and retried every `refreshMs`;
   * meanwhile `targets()` holds this replica's own view only.
   */
  async start(): Promise<void> {
    if (this.#stopped || this.#ready) return;
    try {
      const from = await this.#opts.store.revision();
      const entries = await this.#opts.store.list(REPLICAS_PREFIX);
      const now = this.#now();
      for (const e of entries) this.#load(e, now);
      // Changes after the list's revision replay; ones it holds are skipped by revision.
      const unwatch = await this.#opts.store.watch(REPLICAS_PREFIX, from, (ev) => this.#apply(ev));
      if (this.#stopped) return unwatch();
      this.#unwatch = unwatch;
      this.#ready = true;
    } catch (err) {
      this.#log({ event: 'sd_directory_unavailable', error: (err as Error).message, retryMs: this.#refreshMs });
    }
    if (this.#ready) await this.#enqueue(true);
    this.#tick();
  }

  /** This replica's set of agents may have changed: publish it, debounced. */
  changed(): void {
    if (this.#stopped || this.#debounce) return;
    const wait = Math.max(0, this.#lastWriteAt + this.#debounceMs - this.#now());
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      void this.#enqueue(false);
    }, wait);
    this.#debounce.unref();
  }

  /** Writes any pending change now (tests, and before reading the store). */
  async flush(): Promise<void> {
    if (this.#debounce) {
      clearTimeout(this.#debounce);
      this.#debounce = undefined;
      await this.#enqueue(false);
    }
    await this.#writes;
  }

  /** The http_sd target groups for the whole mesh as this replica sees it. */
  targets(): TargetGroup[] {
    const now = this.#now();
    // Local sessions are the newest word on their nodes; then the highest store revision.
    const agents = new Map<string, { metrics: string; revision: number }>();
    for (const a of this.#opts.agents()) {
      if (typeof a.metrics === 'string' && a.metrics !== '') agents.set(a.node, { metrics: a.metrics, revision: Number.POSITIVE_INFINITY });
    }
    const replicas = [{ id: this.id, metrics: this.#opts.metrics }];
    for (const [id, seen] of this.#replicas) {
      if (now - seen.seenAt > this.#staleMs) continue;
      replicas.push({ id, metrics: seen.entry.metrics });
      for (const a of seen.entry.agents) {
        const held = agents.get(a.node);
        if (!held || held.revision < seen.revision) agents.set(a.node, { metrics: a.metrics, revision: seen.revision });
      }
    }
    return prometheusTargets({
      agents: () => [...agents].map(([node, a]) => ({ node, metrics: a.metrics })),
      replicas,
      ...(this.#opts.ca !== undefined && { ca: this.#opts.ca }),
    });
  }

  /** Stops publishing and watching and deletes this replica's entry. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#debounce);
    clearTimeout(this.#refresh);
    this.#unwatch?.();
    this.#ready = false;
    await this.#writes;
    try {
      await this.#opts.store.delete(this.key);
    } catch (err) {
      this.#log({ event: 'sd_unpublish_failed', key: this.key, error: (err as Error).message });
    }
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#refresh = setTimeout(() => {
      this.#refresh = undefined;
      if (!this.#ready) {
        void this.start();
        return;
      }
      void this.#enqueue(true).then(() => this.#collect());
      this.#tick();
    }, this.#refreshMs);
    this.#refresh.unref();
  }

  #enqueue(force: boolean): Promise<void> {
    this.#writes = this.#writes.then(() => this.#write(force));
    return this.#writes;
  }

  async #write(force: boolean): Promise<void> {
    if (this.#stopped || !this.#ready) return;
    const agents = this.#ownAgents();
    const list = JSON.stringify(agents);
    if (!force && list === this.#written) return;
    this.#lastWriteAt = this.#now();
    const value: ReplicaEntry = { metrics: this.#opts.metrics, agents, updatedAt: new Date(this.#lastWriteAt).toISOString() };
    try {
      await this.#opts.store.put(this.key, value);
      this.#written = list;
    } catch (err) {
      // The next change or refresh writes again.
      this.#written = undefined;
      this.#log({ event: 'sd_publish_failed', key: this.key, error: (err as Error).message });
    }
  }

  /** This replica's agents with a metrics address, by node, bounded in count and bytes. */
  #ownAgents(): { node: string; metrics: string }[] {
    const byNode = new Map<string, string>();
    for (const a of this.#opts.agents()) if (typeof a.metrics === 'string' && a.metrics !== '') byNode.set(a.node, a.metrics);
    const sorted = [...byNode.keys()].sort();
    const out: { node: string; metrics: string }[] = [];
    let bytes = 0;
    for (const node of sorted) {
      const metrics = byNode.get(node)!;
      bytes += node.length + metrics.length + 24;
      if (out.length >= this.#maxAgents || bytes > MAX_VALUE_BYTES - ENVELOPE_BYTES) break;
      out.push({ node, metrics });
    }
    if ((out.length < sorted.length) !== this.#truncated) {
      this.#truncated = out.length < sorted.length;
      this.#log({ event: this.#truncated ? 'sd_agents_truncated' : 'sd_agents_complete', published: out.length, connected: sorted.length });
    }
    return out;
  }

  /** Deletes entries dead for 10 × staleMs; compare-and-swap, so a refresh in between wins. */
  async #collect(): Promise<void> {
    const now = this.#now();
    for (const [id, seen] of [...this.#replicas]) {
      if (now - seen.seenAt <= 10 * this.#staleMs) continue;
      try {
        await this.#opts.store.delete(`${REPLICAS_PREFIX}${id}`, { expectRevision: seen.revision });
      } catch {
        // Refreshed meanwhile or the store is away: looked at again next time.
      }
    }
  }

  #load(e: StoreEntry, now: number): void {
    const entry = this.#parse(e.key, e.value);
    if (!entry) return;
    const updated = Date.parse(entry.value.updatedAt);
    this.#replicas.set(entry.id, { entry: entry.value, revision: e.revision, seenAt: Math.min(now, updated) });
  }

  #apply(ev: WatchEvent): void {
    const id = ev.key.slice(REPLICAS_PREFIX.length);
    const held = this.#replicas.get(id);
    if (held && held.revision >= ev.revision) return;
    if (ev.type === 'delete') {
      this.#replicas.delete(id);
      return;
    }
    const entry = this.#parse(ev.key, ev.value);
    // A malformed update leaves nothing behind: the old value is outdated.
    if (!entry) this.#replicas.delete(id);
    else this.#replicas.set(id, { entry: entry.value, revision: ev.revision, seenAt: this.#now() });
  }

  #parse(key: string, value: unknown): { id: string; value: ReplicaEntry } | undefined {
    const id = key.slice(REPLICAS_PREFIX.length);
    if (!REPLICA_ID.test(id)) {
      this.#log({ event: 'sd_replica_refused', key, error: 'the key does not end with a replica id' });
      return undefined;
    }
    // Our own agents come from our sessions, fresher than our entry.
    if (id === this.id) return undefined;
    const r = safeValidate(this.#schema, value);
    if (!r.ok) {
      this.#log({ event: 'sd_replica_refused', key, error: formatIssues(r.issues, key) });
      return undefined;
    }
    return { id, value: r.value };
  }
}
