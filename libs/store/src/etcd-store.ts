// The etcd backend. A store revision is etcd's revision (an entry's revision
// its mod_revision); compare-and-swap is a transaction comparing the key's
// mod revision (create revision 0 for "must not exist"); watches are etcd
// watchers started at fromRevision + 1. All keys live under `namespace`.
import { Etcd3, type IOptions, type IKeyValue, type Namespace } from 'etcd3';
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
  type WatchListener,
  type WriteOptions,
} from './store.js';

export interface EtcdStoreOptions {
  /** etcd client URLs, e.g. 'http://127.0.0.1:2379'. Ignored if `client` is given. */
  hosts?: string | string[];
  /** An existing client; the store then does not close it. */
  client?: Etcd3;
  /** Prefix for every key in etcd, e.g. 'amime/'; '' for none. */
  namespace?: string;
  /** Further etcd3 client options (TLS, auth, timeouts). */
  clientOptions?: Omit<IOptions, 'hosts'>;
}

export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #ownsClient: boolean;
  readonly #kv: Namespace;
  readonly #cancels = new Set<() => Promise<void>>();
  #closed = false;

  constructor(options: EtcdStoreOptions) {
    if (!options.client && !options.hosts) throw new TypeError('EtcdStore needs `hosts` (etcd client URLs) or a `client`');
    const ns = options.namespace ?? '';
    if (typeof ns !== 'string') throw new TypeError('namespace must be a string');
    this.#ownsClient = !options.client;
    this.#client = options.client ?? new Etcd3({ ...options.clientOptions, hosts: options.hosts! });
    this.#kv = ns === '' ? this.#client : this.#client.namespace(ns);
  }

  async get<T extends object = StoreValue>(key: string): Promise<StoreEntry<T> | undefined> {
    this.#checkOpen();
    validateKey(key);
    const res = await io(this.#kv.get(key).exec());
    const kv = res.kvs[0];
    return kv && { key, value: decode(kv) as T, revision: Number(kv.mod_revision) };
  }

  async list<T extends object = StoreValue>(prefix: string): Promise<StoreEntry<T>[]> {
    this.#checkOpen();
    validatePrefix(prefix);
    const range = this.#kv.getAll();
    if (prefix !== '') range.prefix(prefix);
    const res = await io(range.sort('Key', 'Ascend').exec());
    return res.kvs.map((kv) => {
      const key = kv.key.toString();
      return { key, value: decode(kv) as T, revision: Number(kv.mod_revision) };
    });
  }

  async put(key: string, value: object, options?: WriteOptions): Promise<number> {
    this.#checkOpen();
    validateKey(key);
    const json = encodeValue(value);
    const expect = checkExpectRevision(options);
    if (expect === undefined) {
      const res = await io(this.#kv.put(key).value(json).exec());
      return Number(res.header.revision);
    }
    const res = await io(this.#ifAt(key, expect).then(this.#kv.put(key).value(json)).else(this.#kv.get(key)).commit());
    if (!res.succeeded) throw conflict(key, expect, revisionIn(res.responses[0]?.response_range?.kvs));
    return Number(res.header.revision);
  }

  async delete(key: string, options?: WriteOptions): Promise<boolean> {
    this.#checkOpen();
    validateKey(key);
    const expect = checkExpectRevision(options);
    if (expect === undefined) {
      const res = await io(this.#kv.delete().key(key).exec());
      return Number(res.deleted) > 0;
    }
    const res = await io(this.#ifAt(key, expect).then(this.#kv.delete().key(key)).else(this.#kv.get(key)).commit());
    if (!res.succeeded) throw conflict(key, expect, revisionIn(res.responses[0]?.response_range?.kvs));
    return Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
  }

  async watch(prefix: string, fromRevision: number | undefined, listener: WatchListener): Promise<() => void> {
    this.#checkOpen();
    validatePrefix(prefix);
    if (fromRevision !== undefined && !(Number.isSafeInteger(fromRevision) && fromRevision >= 0)) {
      throw new StoreError('AMIME_ERR_STORE_BAD_VALUE', `fromRevision must be a non-negative integer, got ${fromRevision}`, 'bad_from_revision');
    }
    const builder = this.#kv.watch();
    builder.prefix(prefix);
    if (fromRevision !== undefined) builder.startRevision(String(fromRevision + 1));
    let watcher;
    try {
      watcher = await builder.create();
    } catch (err) {
      if (/compact/i.test((err as Error).message)) {
        throw new StoreError('AMIME_ERR_STORE_COMPACTED', `changes after revision ${fromRevision} are compacted in etcd; list and watch from the list's revision`, 'history_compacted', { cause: err });
      }
      throw ioError(err);
    }
    watcher.on('put', (kv: IKeyValue) => safeDeliver(listener, { type: 'put', key: kv.key.toString(), value: decode(kv), revision: Number(kv.mod_revision) }));
    watcher.on('delete', (kv: IKeyValue) => safeDeliver(listener, { type: 'delete', key: kv.key.toString(), revision: Number(kv.mod_revision) }));
    // An unhandled 'error' would throw; the client reconnects by itself.
    watcher.on('error', (err: Error) => process.emitWarning(`amime store: etcd watch on ${prefix}: ${err.message}`));
    const cancel = async (): Promise<void> => {
      this.#cancels.delete(cancel);
      await watcher.cancel().catch(() => undefined);
    };
    this.#cancels.add(cancel);
    return () => void cancel();
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    // Any read carries the store's current revision in its header.
    const res = await io(this.#kv.get('/').exec());
    return Number(res.header.revision);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#cancels].map((c) => c()));
    if (this.#ownsClient) this.#client.close();
  }

  /** Compare: the key is at `expect` (0: it does not exist). */
  #ifAt(key: string, expect: number) {
    return expect === 0 ? this.#kv.if(key, 'Create', '==', 0) : this.#kv.if(key, 'Mod', '==', expect);
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreError('AMIME_ERR_STORE_CLOSED', 'the store is closed', 'closed');
  }
}

function decode(kv: IKeyValue): StoreValue {
  try {
    return JSON.parse(kv.value.toString()) as StoreValue;
  } catch (err) {
    throw new StoreError('AMIME_ERR_STORE_CORRUPT', `etcd key ${kv.key.toString()} does not hold JSON`, 'value_not_json', { cause: err });
  }
}

function revisionIn(kvs: IKeyValue[] | undefined): number {
  return kvs && kvs[0] ? Number(kvs[0].mod_revision) : 0;
}

function safeDeliver(listener: WatchListener, ev: Parameters<WatchListener>[0]): void {
  try {
    listener(ev);
  } catch (err) {
    process.emitWarning(`amime store: watch listener threw: ${(err as Error)?.message ?? err}`);
  }
}

function ioError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError('AMIME_ERR_STORE_IO', `etcd: ${(err as Error)?.message ?? err}`, 'etcd', { cause: err });
}

async function io<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw ioError(err);
  }
}
