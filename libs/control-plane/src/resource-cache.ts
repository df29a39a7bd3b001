// Every pushed resource, held in memory and kept current by a store watch:
// what the push server sends from.
//
// A type's version is `<epoch>-<revision>`: the latest store revision that
// changed the type, under the store's epoch (a random id written once, so a
// store restored from elsewhere never looks like the one an agent synced
// with). Deltas come from per-entry revisions plus tombstones of live
// deletes. Deletes from before this process started are known only through
// `/meta/last-delete/<Kind>` (see ResourceService): an agent at a version
// older than that gets a snapshot, never a delta that misses a removal.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Store, StoreEntry, WatchEvent } from '@amime/store';
import { RESOURCE_TYPES, RESOURCE_SCHEMAS, RESOURCE_KEY, INVALID, type Resource, type ResourceType, type Issue } from '@amime/protocol';
import type { ResourceView } from '@amime/protocol/server';

export const RESOURCE_PREFIX = '/resources/';
export const EPOCH_KEY = '/meta/epoch';
export const LAST_DELETE_PREFIX = '/meta/last-delete/';
/** Tombstones kept per type; past this the oldest half goes and older agents get snapshots. */
export const MAX_TOMBSTONES = 10_000;

/** `/meta/last-delete/<Kind>`: `pending` while a delete is under way, then the store revision after it. */
export interface LastDeleteRecord {
  revision: number;
  pending?: boolean;
}

interface Entry {
  resource: Resource;
  revision: number;
}

class TypeCache {
  readonly entries = new Map<string, Entry>();
  readonly tombstones = new Map<string, number>();
  revision = 0;
  /** Deletes at or before this revision are not tombstoned. */
  horizon = 0;
  snapshot: readonly Resource[] | undefined;
}

export type ChangeListener = (types: ReadonlySet<ResourceType>, at: number) => void;

export interface ResourceCacheOptions {
  log?(event: Record<string, unknown>): void;
}

export class ResourceCache implements ResourceView {
  readonly epoch: string;
  readonly #types = new Map<ResourceType, TypeCache>();
  readonly #listeners = new Set<ChangeListener>();
  readonly #log: (event: Record<string, unknown>) => void;
  #unwatch: (() => void) | undefined;

  private constructor(epoch: string, opts: ResourceCacheOptions) {
    this.epoch = epoch;
    this.#log = opts.log ?? (() => undefined);
    for (const t of RESOURCE_TYPES) this.#types.set(t, new TypeCache());
  }

  static async open(store: Store, opts: ResourceCacheOptions = {}): Promise<ResourceCache> {
    const cache = new ResourceCache(await epochOf(store), opts);
    const start = await store.revision();
    const [entries, deletes] = await Promise.all([store.list(RESOURCE_PREFIX), store.list<LastDeleteRecord>(LAST_DELETE_PREFIX)]);
    for (const d of deletes) {
      const type = d.key.slice(LAST_DELETE_PREFIX.length) as ResourceType;
      const tc = cache.#types.get(type);
      if (!tc) continue;
      // A delete that may not have finished: nothing older than now can be resumed.
      const horizon = d.value.pending === true || !Number.isSafeInteger(d.value.revision) ? start : d.value.revision;
      tc.horizon = Math.max(tc.horizon, horizon);
      tc.revision = Math.max(tc.revision, horizon);
    }
    for (const e of entries) cache.#load(e);
    // Watch from the revision read before the list: changes in between
    // replay, and ones the list already holds are skipped by revision.
    cache.#unwatch = await store.watch(RESOURCE_PREFIX, start, (ev) => cache.#apply(ev));
    return cache;
  }

  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  version(type: ResourceType): string {
    return `${this.epoch}-${this.#types.get(type)!.revision}`;
  }

  /** The type's current store revision (for metrics). */
  revision(type: ResourceType): number {
    return this.#types.get(type)!.revision;
  }

  count(type: ResourceType): number {
    return this.#types.get(type)!.entries.size;
  }

  get(key: string): Resource | undefined {
    const m = RESOURCE_KEY.exec(key);
    return m ? this.#types.get(m[1] as ResourceType)?.entries.get(key)?.resource : undefined;
  }

  list(type: ResourceType): readonly Resource[] {
    return this.snapshot(type).resources;
  }

  snapshot(type: ResourceType): { version: string; resources: readonly Resource[] } {
    const tc = this.#types.get(type)!;
    tc.snapshot ??= [...tc.entries.values()].map((e) => e.resource);
    return { version: this.version(type), resources: tc.snapshot };
  }

  delta(type: ResourceType, from: string): { version: string; upserts: readonly Resource[]; removals: readonly string[] } | undefined {
    const tc = this.#types.get(type)!;
    const dash = from.lastIndexOf('-');
    if (dash < 0 || from.slice(0, dash) !== this.epoch) return undefined;
    const text = from.slice(dash + 1);
    const held = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
    if (!(held >= tc.horizon && held <= tc.revision)) return undefined;
    const upserts: Resource[] = [];
    const removals: string[] = [];
    for (const e of tc.entries.values()) if (e.revision > held) upserts.push(e.resource);
    for (const [key, rev] of tc.tombstones) if (rev > held && !tc.entries.has(key)) removals.push(key);
    return { version: this.version(type), upserts, removals };
  }

  close(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#listeners.clear();
  }

  #load(e: StoreEntry): void {
    const m = RESOURCE_KEY.exec(e.key);
    const type = m?.[1] as ResourceType | undefined;
    const resource = type && this.#validate(type, e.key, e.value);
    if (!type || !resource) return;
    const tc = this.#types.get(type)!;
    tc.entries.set(e.key, { resource: withVersion(resource, e.revision), revision: e.revision });
    tc.revision = Math.max(tc.revision, e.revision);
  }

  #apply(ev: WatchEvent): void {
    const m = RESOURCE_KEY.exec(ev.key);
    if (!m) return;
    const type = m[1] as ResourceType;
    const tc = this.#types.get(type)!;
    const existing = tc.entries.get(ev.key);
    if (existing && existing.revision >= ev.revision) return;
    if (ev.type === 'put') {
      const resource = this.#validate(type, ev.key, ev.value);
      if (!resource) return;
      tc.entries.set(ev.key, { resource: withVersion(resource, ev.revision), revision: ev.revision });
    } else {
      if (!existing && ev.revision <= tc.revision) return;
      tc.entries.delete(ev.key);
      tc.tombstones.set(ev.key, ev.revision);
      if (tc.tombstones.size > MAX_TOMBSTONES) this.#prune(tc);
    }
    tc.revision = Math.max(tc.revision, ev.revision);
    tc.snapshot = undefined;
    const at = performance.now();
    const types = new Set<ResourceType>([type]);
    for (const l of this.#listeners) l(types, at);
  }

  #prune(tc: TypeCache): void {
    const revs = [...tc.tombstones.values()].sort((a, b) => a - b);
    const cut = revs[Math.floor(revs.length / 2)]!;
    for (const [key, rev] of tc.tombstones) if (rev <= cut) tc.tombstones.delete(key);
    tc.horizon = Math.max(tc.horizon, cut);
  }

  /** Stored values are checked again: a value written by another writer (etcd) is still untrusted. */
  #validate(type: ResourceType, key: string, value: unknown): Resource | undefined {
    const issues: Issue[] = [];
    const r = (RESOURCE_SCHEMAS[type] as { check(v: unknown, p: string, i: Issue[]): unknown }).check(value, '', issues);
    if (r === INVALID || issues.length > 0) {
      this.#log({ event: 'resource_invalid_in_store', key, issue: issues[0] ? `${issues[0].path}: ${issues[0].message}` : 'invalid' });
      return undefined;
    }
    const res = r as Resource;
    if (`/resources/${res.kind}/${res.metadata.namespace}/${res.metadata.name}` !== key) {
      this.#log({ event: 'resource_invalid_in_store', key, issue: 'metadata does not match the key' });
      return undefined;
    }
    return res;
  }
}

function withVersion(r: Resource, revision: number): Resource {
  return { ...r, metadata: { ...r.metadata, version: String(revision) } } as Resource;
}

/** The store's epoch, created on first use; concurrent first starts agree through CAS. */
async function epochOf(store: Store): Promise<string> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const got = await store.get<{ id?: unknown }>(EPOCH_KEY);
    if (got && typeof got.value.id === 'string' && /^[a-z0-9]{8,32}$/.test(got.value.id)) return got.value.id;
    const id = randomBytes(6).toString('hex');
    try {
      await store.put(EPOCH_KEY, { id }, { expectRevision: got?.revision ?? 0 });
      return id;
    } catch (err) {
      if ((err as { code?: string }).code !== 'AMIME_ERR_STORE_CONFLICT') throw err;
    }
  }
  throw new Error(`could not read or create ${EPOCH_KEY}`);
}
