// The embedded backend: state in memory (a map plus sorted keys for prefix
// lists), made durable by an append-only write-ahead log in `dir`.
//
// Writes are checked (CAS) and given their revision when they arrive, then
// queued; one flush writes every queued record and fsyncs once (group
// commit), and only then are they applied, visible to readers and watchers,
// and acknowledged. Past `compactAfterRecords` log records the state is
// written as an atomic snapshot and the log truncated. At open the snapshot
// is loaded and the log replayed; a torn last record (a crash mid-write, so
// never acknowledged) is cut off so the next append starts on a clean line.
import { mkdir, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from './durable-file.js';
import { SortedKeys } from './sorted-keys.js';
import {
  checkExpectRevision,
  conflict,
  encodeValue,
  StoreError,
  validateKey,
  validatePrefix,
  type Store,
  type StoreEntry,
  type StoreValue,
  type WatchEvent,
  type WatchListener,
  type WriteOptions,
} from './store.js';

export interface EmbeddedStoreOptions {
  /** Snapshot and truncate the log once it holds this many records. */
  compactAfterRecords?: number;
  /** How many recent changes are kept for `watch(prefix, fromRevision)`. */
  watchHistory?: number;
}

const SNAPSHOT = 'snapshot.json';
const WAL = 'wal.log';

interface Entry {
  value: StoreValue;
  revision: number;
}

interface Pending {
  line: string;
  key: string;
  /** null for a delete */
  entry: Entry | null;
  revision: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One log line: revision, key, and the value unless it is a delete. */
interface WalRecord {
  r: number;
  k: string;
  v?: StoreValue;
}

interface Snapshot {
  revision: number;
  entries: { k: string; r: number; v: StoreValue }[];
}

export class EmbeddedStore implements Store {
  readonly #dir: string;
  readonly #wal: FileHandle;
  readonly #compactAfter: number;
  readonly #historyLimit: number;

  readonly #data = new Map<string, Entry>();
  readonly #keys = new SortedKeys();
  /** Latest not-yet-durable state per key (null = deleted), for CAS checks. */
  readonly #pendingView = new Map<string, Entry | null>();
  #revision = 0;
  #assigned = 0;
  #walRecords = 0;

  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #failed: StoreError | undefined;
  #closed = false;

  /** Recent committed changes; every change after #historyFloor is held. */
  #history: WatchEvent[] = [];
  #historyFloor = 0;
  readonly #watchers = new Set<{ prefix: string; listener: WatchListener }>();

  private constructor(dir: string, wal: FileHandle, options: EmbeddedStoreOptions) {
    this.#dir = dir;
    this.#wal = wal;
    this.#compactAfter = options.compactAfterRecords ?? 10_000;
    this.#historyLimit = options.watchHistory ?? 10_000;
  }

  static async open(dir: string, options: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    for (const [name, v] of [
      ['compactAfterRecords', options.compactAfterRecords],
      ['watchHistory', options.watchHistory],
    ] as const) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Temp files of a snapshot write cut short by a crash.
    for (const name of await readdir(dir)) if (name.startsWith(`.${SNAPSHOT}.`) && name.endsWith('.tmp')) await rm(join(dir, name), { force: true });

    const snapshot = await readSnapshot(join(dir, SNAPSHOT));
    const walPath = join(dir, WAL);
    const walBytes = await readFile(walPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return Buffer.alloc(0);
      throw err;
    });
    const { records, validBytes } = parseWal(walBytes, walPath);

    const wal = await open(walPath, 'a', 0o600);
    const store = new EmbeddedStore(dir, wal, options);
    try {
      if (validBytes < walBytes.length) {
        await wal.truncate(validBytes);
        await wal.sync();
      }
      await fsyncDir(dir);
      store.#load(snapshot, records, walPath);
    } catch (err) {
      await wal.close();
      throw err;
    }
    return store;
  }

  #load(snapshot: Snapshot | undefined, records: WalRecord[], walPath: string): void {
    if (snapshot) {
      for (const { k, r, v } of snapshot.entries) this.#apply(k, { value: deepFreeze(v), revision: r });
      this.#revision = snapshot.revision;
    }
    this.#historyFloor = this.#revision;
    for (const rec of records) {
      // Already in the snapshot: a crash came between its rename and the log truncation.
      if (rec.r <= this.#revision) continue;
      if (rec.r !== this.#revision + 1) {
        throw new StoreError('AMIME_ERR_STORE_CORRUPT', `${walPath}: record at revision ${rec.r} follows revision ${this.#revision}`, 'wal_gap');
      }
      this.#applyCommitted(rec.k, rec.v === undefined ? null : { value: deepFreeze(rec.v), revision: rec.r }, rec.r);
      this.#walRecords++;
    }
    this.#assigned = this.#revision;
  }

  async get<T extends object = StoreValue>(key: string): Promise<StoreEntry<T> | undefined> {
    this.#checkUsable();
    validateKey(key);
    const e = this.#data.get(key);
    return e && { key, value: e.value as T, revision: e.revision };
  }

  async list<T extends object = StoreValue>(prefix: string): Promise<StoreEntry<T>[]> {
    this.#checkUsable();
    validatePrefix(prefix);
    const out: StoreEntry<T>[] = [];
    for (const key of this.#keys.withPrefix(prefix)) {
      const e = this.#data.get(key)!;
      out.push({ key, value: e.value as T, revision: e.revision });
    }
    return out;
  }

  async put(key: string, value: object, options?: WriteOptions): Promise<number> {
    this.#checkUsable();
    validateKey(key);
    const json = encodeValue(value);
    const expect = checkExpectRevision(options);
    const current = this.#latest(key)?.revision ?? 0;
    if (expect !== undefined && expect !== current) throw conflict(key, expect, current);
    const revision = ++this.#assigned;
    const entry: Entry = { value: deepFreeze(JSON.parse(json) as StoreValue), revision };
    this.#pendingView.set(key, entry);
    await this.#enqueue(`{"r":${revision},"k":${JSON.stringify(key)},"v":${json}}\n`, key, entry, revision);
    return revision;
  }

  async delete(key: string, options?: WriteOptions): Promise<boolean> {
    this.#checkUsable();
    validateKey(key);
    const expect = checkExpectRevision(options);
    const current = this.#latest(key)?.revision ?? 0;
    if (expect !== undefined && expect !== current) throw conflict(key, expect, current);
    if (current === 0) return false;
    const revision = ++this.#assigned;
    this.#pendingView.set(key, null);
    await this.#enqueue(`{"r":${revision},"k":${JSON.stringify(key)}}\n`, key, null, revision);
    return true;
  }

  async watch(prefix: string, fromRevision: number | undefined, listener: WatchListener): Promise<() => void> {
    this.#checkUsable();
    validatePrefix(prefix);
    if (fromRevision !== undefined) {
      if (!(Number.isSafeInteger(fromRevision) && fromRevision >= 0)) {
        throw new StoreError('AMIME_ERR_STORE_BAD_VALUE', `fromRevision must be a non-negative integer, got ${fromRevision}`, 'bad_from_revision');
      }
      if (fromRevision < this.#historyFloor) {
        throw new StoreError(
          'AMIME_ERR_STORE_COMPACTED',
          `changes after revision ${fromRevision} are no longer held (oldest held follows ${this.#historyFloor}); list and watch from the list's revision`,
          'history_compacted',
        );
      }
      // Replay and registration happen in one synchronous step: no gap, no repeat.
      for (const ev of this.#history) if (ev.revision > fromRevision && ev.key.startsWith(prefix)) deliver(listener, ev);
    }
    const w = { prefix, listener };
    this.#watchers.add(w);
    return () => {
      this.#watchers.delete(w);
    };
  }

  async revision(): Promise<number> {
    this.#checkUsable();
    return this.#revision;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
    this.#watchers.clear();
    await this.#wal.close();
  }

  #checkUsable(): void {
    if (this.#closed) throw new StoreError('AMIME_ERR_STORE_CLOSED', 'the store is closed', 'closed');
    if (this.#failed) throw this.#failed;
  }

  #latest(key: string): Entry | undefined {
    const p = this.#pendingView.get(key);
    if (p !== undefined) return p ?? undefined;
    return this.#data.get(key);
  }

  #enqueue(line: string, key: string, entry: Entry | null, revision: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ line, key, entry, revision, resolve, reject });
      this.#flushing ??= this.#flushLoop();
    });
  }

  async #flushLoop(): Promise<void> {
    // Let the writes issued in this tick join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        await this.#commit(batch);
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    try {
      await this.#wal.appendFile(batch.map((p) => p.line).join(''));
      await this.#wal.sync();
    } catch (err) {
      // What reached the disk is unknown; refuse everything from here on.
      this.#failed = new StoreError('AMIME_ERR_STORE_IO', `write-ahead log write failed: ${(err as Error).message}; reopen the store`, 'wal_write', { cause: err });
      for (const p of [...batch, ...this.#queue]) p.reject(this.#failed);
      this.#queue = [];
      return;
    }
    for (const p of batch) {
      this.#applyCommitted(p.key, p.entry, p.revision);
      if (this.#pendingView.get(p.key) === p.entry) this.#pendingView.delete(p.key);
    }
    this.#walRecords += batch.length;
    for (const p of batch) p.resolve();
    if (this.#walRecords >= this.#compactAfter) {
      try {
        await this.#compact();
      } catch (err) {
        // The log still holds everything; try again after the next batch.
        process.emitWarning(`amime store: snapshot compaction failed: ${(err as Error).message}`);
      }
    }
  }

  #applyCommitted(key: string, entry: Entry | null, revision: number): void {
    this.#apply(key, entry);
    this.#revision = revision;
    const ev: WatchEvent = entry ? { type: 'put', key, value: entry.value, revision } : { type: 'delete', key, revision };
    this.#history.push(ev);
    if (this.#history.length >= 2 * this.#historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - this.#historyLimit);
      this.#historyFloor = dropped[dropped.length - 1]!.revision;
    }
    for (const w of this.#watchers) if (key.startsWith(w.prefix)) deliver(w.listener, ev);
  }

  #apply(key: string, entry: Entry | null): void {
    if (entry) {
      if (!this.#data.has(key)) this.#keys.add(key);
      this.#data.set(key, entry);
    } else if (this.#data.delete(key)) {
      this.#keys.remove(key);
    }
  }

  /** Runs inside the flush loop, so no log append happens meanwhile. */
  async #compact(): Promise<void> {
    const entries: Snapshot['entries'] = [];
    for (const k of this.#keys.withPrefix('')) {
      const e = this.#data.get(k)!;
      entries.push({ k, r: e.revision, v: e.value });
    }
    const snapshot: Snapshot = { revision: this.#revision, entries };
    await writeFileAtomic(join(this.#dir, SNAPSHOT), JSON.stringify(snapshot));
    await this.#wal.truncate(0);
    await this.#wal.sync();
    this.#walRecords = 0;
  }
}

function deliver(listener: WatchListener, ev: WatchEvent): void {
  try {
    listener(ev);
  } catch (err) {
    // A listener's bug must not stop the commit or the other listeners.
    process.emitWarning(`amime store: watch listener threw: ${(err as Error)?.message ?? err}`);
  }
}

async function readSnapshot(path: string): Promise<Snapshot | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const s = JSON.parse(text) as Snapshot;
    if (!Number.isSafeInteger(s.revision) || !Array.isArray(s.entries)) throw new Error('missing revision or entries');
    return s;
  } catch (err) {
    // Written by rename, so never torn: this is damage, not a crash.
    throw new StoreError('AMIME_ERR_STORE_CORRUPT', `${path} is unreadable: ${(err as Error).message}`, 'snapshot_corrupt', { cause: err });
  }
}

function parseRecord(line: string): WalRecord | undefined {
  try {
    const rec = JSON.parse(line) as WalRecord;
    if (typeof rec !== 'object' || rec === null || !Number.isSafeInteger(rec.r) || typeof rec.k !== 'string') return undefined;
    if (rec.v !== undefined && (typeof rec.v !== 'object' || rec.v === null)) return undefined;
    return rec;
  } catch {
    return undefined;
  }
}

/**
 * Complete, well-formed lines, and the byte length they span. An unreadable
 * line is a torn tail only if nothing readable follows it; otherwise the log
 * is damaged and opening refuses rather than silently dropping records.
 */
function parseWal(buf: Buffer, path: string): { records: WalRecord[]; validBytes: number } {
  const records: WalRecord[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const nl = buf.indexOf(0x0a, offset);
    if (nl === -1) break;
    const rec = parseRecord(buf.toString('utf8', offset, nl));
    if (!rec) {
      for (const rest of buf.toString('utf8', nl + 1).split('\n')) {
        if (parseRecord(rest)) throw new StoreError('AMIME_ERR_STORE_CORRUPT', `${path}: unreadable record at byte ${offset} is followed by readable ones`, 'wal_corrupt');
      }
      break;
    }
    records.push(rec);
    offset = nl + 1;
  }
  return { records, validBytes: offset };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}
