// Reconnect delays: exponential backoff with full jitter (AWS architecture
// blog, "Exponential Backoff And Jitter"): the n-th delay is uniform in
// [0, min(maxMs, initialMs * factor^n)). Full jitter spreads a fleet of agents
// that lost the control plane at the same moment, so they do not all come
// back in the same millisecond.
//
// The ladder resets once a connection has stayed up for `resetAfterMs`: a
// flapping server keeps the agents backing off, a single blip does not make
// the next outage start at 30 s. Pure arithmetic over an injected clock and
// random source; the caller owns the timers.

export interface BackoffOptions {
  /** First delay's upper bound. Default 250 ms. */
  initialMs?: number;
  /** Largest upper bound. Default 30 s. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** A connection up this long counts as healthy: the next failure starts over. Default 10 s. */
  resetAfterMs?: number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
  /** Milliseconds, monotonic. Default performance.now. */
  now?: () => number;
}

export const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 30_000, factor: 2, resetAfterMs: 10_000 } as const;

/** The exponent stops growing here; 2^40 × 1 ms is far beyond any sane maxMs. */
const MAX_EXPONENT = 40;

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly resetAfterMs: number;
  readonly #random: () => number;
  readonly #now: () => number;
  #attempt = 0;
  #upSince: number | undefined;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? DEFAULT_BACKOFF.initialMs;
    this.maxMs = opts.maxMs ?? DEFAULT_BACKOFF.maxMs;
    this.factor = opts.factor ?? DEFAULT_BACKOFF.factor;
    this.resetAfterMs = opts.resetAfterMs ?? DEFAULT_BACKOFF.resetAfterMs;
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? (() => performance.now());
    if (!(Number.isFinite(this.initialMs) && this.initialMs > 0)) throw new RangeError(`backoff initialMs must be a positive number of milliseconds, got ${this.initialMs}`);
    if (!(Number.isFinite(this.maxMs) && this.maxMs >= this.initialMs)) throw new RangeError(`backoff maxMs must be at least initialMs (${this.initialMs}), got ${this.maxMs}`);
    if (!(Number.isFinite(this.factor) && this.factor >= 1)) throw new RangeError(`backoff factor must be 1 or more, got ${this.factor}`);
    if (!(Number.isFinite(this.resetAfterMs) && this.resetAfterMs >= 0)) throw new RangeError(`backoff resetAfterMs must be 0 or more, got ${this.resetAfterMs}`);
  }

  /** Failed attempts since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The upper bound of the next delay. */
  ceiling(): number {
    return Math.min(this.maxMs, this.initialMs * this.factor ** Math.min(this.#attempt, MAX_EXPONENT));
  }

  /**
   * The delay before the next attempt, after a failure or a lost connection.
   * Starts over first if the connection that just ended was up long enough.
   */
  next(): number {
    if (this.#upSince !== undefined && this.#now() - this.#upSince >= this.resetAfterMs) this.#attempt = 0;
    this.#upSince = undefined;
    const ceiling = this.ceiling();
    this.#attempt++;
    // Clamp: a random source returning 1 (or garbage) must not exceed the ceiling.
    const r = this.#random();
    const u = r >= 0 && r < 1 ? r : 0.999_999;
    return Math.floor(u * ceiling);
  }

  /** A connection is up; if it stays up for resetAfterMs, the next failure starts over. */
  connected(): void {
    this.#upSince = this.#now();
  }

  /** Starts over now. */
  reset(): void {
    this.#attempt = 0;
    this.#upSince = undefined;
  }
}
