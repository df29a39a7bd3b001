// The control plane's state store: string keys like `/resources/Route/ns/name`
// holding JSON objects, one global revision counter (as etcd's), per-key
// compare-and-swap and ordered watches. Backends: embedded (a write-ahead log
// on local disk) and etcd. Keys and values are validated here, once, before
// either backend sees them.

export type StoreErrorCode =
  | 'AMIME_ERR_STORE_CONFLICT'
  | 'AMIME_ERR_STORE_BAD_KEY'
  | 'AMIME_ERR_STORE_BAD_VALUE'
  | 'AMIME_ERR_STORE_TOO_LARGE'
  | 'AMIME_ERR_STORE_COMPACTED'
  | 'AMIME_ERR_STORE_CORRUPT'
  | 'AMIME_ERR_STORE_CLOSED'
  | 'AMIME_ERR_STORE_IO';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    /** A short snake_case cause, e.g. 'key_too_long', for logs and metrics. */
    readonly reason: string = code.slice('AMIME_ERR_STORE_'.length).toLowerCase(),
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}

export const MAX_KEY_BYTES = 512;
export const MAX_VALUE_BYTES = 1024 * 1024;

/** A stored value as read back: a JSON object. Callers validate its shape. */
export type StoreValue = Record<string, unknown>;

export interface StoreEntry<T extends object = StoreValue> {
  key: string;
  value: T;
  /** The global revision of the write that last modified this key. */
  revision: number;
}

export interface WatchEvent<T extends object = StoreValue> {
  type: 'put' | 'delete';
  key: string;
  /** Present on 'put'. */
  value?: T;
  /** The global revision of this change. */
  revision: number;
}

export type WatchListener = (event: WatchEvent) => void;

export interface WriteOptions {
  /**
   * Compare-and-swap: the key's current revision must equal this, 0 meaning
   * "must not exist". A mismatch rejects with AMIME_ERR_STORE_CONFLICT.
   */
  expectRevision?: number;
}

export interface Store {
  get<T extends object = StoreValue>(key: string): Promise<StoreEntry<T> | undefined>;
  /** Every entry whose key starts with `prefix`, sorted by key. */
  list<T extends object = StoreValue>(prefix: string): Promise<StoreEntry<T>[]>;
  /** Resolves with the new revision once the write is durable. */
  put(key: string, value: object, options?: WriteOptions): Promise<number>;
  /** True if the key existed and is now deleted. */
  delete(key: string, options?: WriteOptions): Promise<boolean>;
  /**
   * Calls `listener` for every change under `prefix`, in revision order:
   * first the held changes after `fromRevision` (AMIME_ERR_STORE_COMPACTED if
   * they are no longer held), then live ones. Resolves once the watch is in
   * place, with a function that ends it.
   */
  watch(prefix: string, fromRevision: number | undefined, listener: WatchListener): Promise<() => void>;
  /** The current global revision (0 for an empty, never-written store). */
  revision(): Promise<number>;
  close(): Promise<void>;
}

const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

/** Throws AMIME_ERR_STORE_BAD_KEY unless `key` is a valid store key. */
export function validateKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `key must be a string, got ${typeof key}`, 'key_not_string');
  checkKeyText(key, 'key');
  if (key.length < 2 || key.endsWith('/')) {
    throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `key ${JSON.stringify(key)} must name an entry below '/', not end with '/'`, 'key_not_entry');
  }
}

/** Throws AMIME_ERR_STORE_BAD_KEY unless `prefix` is '' or starts like a key. */
export function validatePrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `prefix must be a string, got ${typeof prefix}`, 'key_not_string');
  if (prefix !== '') checkKeyText(prefix, 'prefix');
}

function checkKeyText(key: string, what: string): void {
  if (!key.startsWith('/')) throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `${what} ${JSON.stringify(key)} must start with '/'`, 'key_not_absolute');
  if (key.length > MAX_KEY_BYTES) {
    throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `${what} is ${key.length} bytes; the limit is ${MAX_KEY_BYTES}`, 'key_too_long');
  }
  if (!PRINTABLE_ASCII.test(key)) {
    throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `${what} ${JSON.stringify(key)} may hold only printable ASCII without spaces`, 'key_not_printable');
  }
  if (key.includes('//')) throw new StoreError('AMIME_ERR_STORE_BAD_KEY', `${what} ${JSON.stringify(key)} must not contain '//'`, 'key_empty_segment');
}

/** Throws AMIME_ERR_STORE_BAD_VALUE / _TOO_LARGE; returns the serialized form. */
export function encodeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new StoreError('AMIME_ERR_STORE_BAD_VALUE', 'value must be a JSON object (not an array, null or a primitive)', 'value_not_object');
  }
  checkJson(value, '$', new Set());
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_VALUE_BYTES) {
    throw new StoreError('AMIME_ERR_STORE_TOO_LARGE', `value is ${bytes} bytes serialized; the limit is ${MAX_VALUE_BYTES}`, 'value_too_large');
  }
  return json;
}

/** Only what survives a JSON round trip unchanged: no undefined, NaN, Dates, Maps, cycles. */
function checkJson(v: unknown, path: string, seen: Set<object>): void {
  const bad = (what: string): never => {
    throw new StoreError('AMIME_ERR_STORE_BAD_VALUE', `value at ${path} is ${what}, which JSON cannot hold`, 'value_not_json');
  };
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) bad(String(v));
      return;
    case 'object': {
      if (v === null) return;
      if (seen.has(v)) bad('a cycle');
      const proto = Object.getPrototypeOf(v);
      if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) bad(`a ${proto?.constructor?.name ?? 'non-plain'} object`);
      seen.add(v);
      if (Array.isArray(v)) v.forEach((item, i) => checkJson(item, `${path}[${i}]`, seen));
      else for (const [k, item] of Object.entries(v)) checkJson(item, `${path}.${k}`, seen);
      seen.delete(v);
      return;
    }
    default:
      bad(typeof v);
  }
}

export function checkExpectRevision(options: WriteOptions | undefined): number | undefined {
  const r = options?.expectRevision;
  if (r !== undefined && !(Number.isSafeInteger(r) && r >= 0)) {
    throw new StoreError('AMIME_ERR_STORE_BAD_VALUE', `expectRevision must be a non-negative integer, got ${r}`, 'bad_expect_revision');
  }
  return r;
}

export function conflict(key: string, expected: number, actual: number): StoreError {
  const want = expected === 0 ? 'to not exist' : `at revision ${expected}`;
  const have = actual === 0 ? 'it does not exist' : `it is at revision ${actual}`;
  return new StoreError('AMIME_ERR_STORE_CONFLICT', `expected ${key} ${want}, but ${have}`, 'revision_mismatch');
}
