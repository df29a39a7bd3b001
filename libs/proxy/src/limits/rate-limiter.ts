// Token buckets per key (the caller's SPIFFE ID): `burst` tokens, refilled at
// `ratePerSecond`. The key map is bounded: beyond maxKeys the least recently
// used bucket is evicted and its object reused for the new key, so a steady
// state allocates nothing. An evicted key starts again with a full bucket.

import { LimitsConfigError } from './errors.js';

export interface RateLimiterOptions {
  ratePerSecond: number;
  /** Bucket size: requests allowed at once after idleness; >= 1. */
  burst: number;
  /** Bound on tracked keys; default 10 000. */
  maxKeys?: number;
  /** Clock in ms (monotonic preferred); default performance.now. */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly maxKeys: number;
  /** Counters. */
  allowed = 0;
  limited = 0;
  evicted = 0;
  readonly #perMs: number;
  readonly #now: () => number;
  /** Insertion order = recency. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: RateLimiterOptions) {
    if (!(typeof opts?.ratePerSecond === 'number' && Number.isFinite(opts.ratePerSecond) && opts.ratePerSecond > 0)) {
      throw new LimitsConfigError(`ratePerSecond must be a finite number > 0, got ${String(opts?.ratePerSecond)}`);
    }
    if (!(typeof opts.burst === 'number' && Number.isFinite(opts.burst) && opts.burst >= 1)) {
      throw new LimitsConfigError(`burst must be a finite number >= 1, got ${String(opts.burst)}`);
    }
    const maxKeys = opts.maxKeys ?? 10_000;
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new LimitsConfigError(`maxKeys must be an integer >= 1, got ${String(opts.maxKeys)}`);
    this.ratePerSecond = opts.ratePerSecond;
    this.burst = opts.burst;
    this.maxKeys = maxKeys;
    this.#perMs = opts.ratePerSecond / 1000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes `cost` tokens (default 1) from key's bucket; false (nothing taken) if there are not enough. */
  take(key: string, cost = 1): boolean {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= this.maxKeys) {
        const oldest = this.#buckets.keys().next().value as string;
        b = this.#buckets.get(oldest)!;
        this.#buckets.delete(oldest);
        this.evicted++;
      } else {
        b = { tokens: 0, last: 0 };
      }
      b.tokens = this.burst;
      b.last = now;
    } else {
      this.#buckets.delete(key);
      const elapsed = now - b.last;
      if (elapsed > 0) {
        b.tokens = Math.min(this.burst, b.tokens + elapsed * this.#perMs);
        b.last = now;
      }
    }
    this.#buckets.set(key, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      this.allowed++;
      return true;
    }
    this.limited++;
    return false;
  }

  /** Tokens key has now (burst for an unknown key); does not touch recency. */
  peek(key: string): number {
    const b = this.#buckets.get(key);
    if (b === undefined) return this.burst;
    return Math.min(this.burst, b.tokens + Math.max(0, this.#now() - b.last) * this.#perMs);
  }

  forget(key: string): boolean {
    return this.#buckets.delete(key);
  }
}
