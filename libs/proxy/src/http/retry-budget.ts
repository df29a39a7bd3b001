// Linkerd-style retry budget: over a sliding window (10 one-second buckets by default)
// retries may add at most `percent` % of the requests plus a floor of
// minRetriesPerSecond × window seconds. O(1) per call; the clock is injected.

export interface RetryBudgetOptions {
  /** Retries allowed as a share of requests, 0..100 (MeshConfig retryBudget.percent). */
  readonly percent: number;
  /** Retries always allowed per second, whatever the traffic (MeshConfig retryBudget.minRetriesPerSecond). */
  readonly minRetriesPerSecond: number;
  /** Default 10 000. */
  readonly windowMs?: number;
  /** Default 10. */
  readonly buckets?: number;
  /** Milliseconds, monotonic; default performance.now. */
  readonly now?: () => number;
}

/** Thrown for options out of range; `code` is stable. */
export class RetryBudgetError extends RangeError {
  readonly code = 'AMIME_ERR_HTTP_RETRY_BUDGET';
  override readonly name = 'RetryBudgetError';
}

/** What the outbound handler needs from a budget. */
export interface RetryBudgetLike {
  /** Counts one original request (not a retry). */
  recordRequest(): void;
  /** Counts one retry and returns true when the budget allows it; false (and counts nothing) otherwise. */
  tryRetry(): boolean;
}

export class RetryBudget implements RetryBudgetLike {
  private percent: number;
  private minPerSecond: number;
  private readonly bucketMs: number;
  private readonly windowSeconds: number;
  private readonly requests: Float64Array;
  private readonly retries: Float64Array;
  private requestSum = 0;
  private retrySum = 0;
  /** Index (time / bucketMs) of the newest bucket. */
  private head: number;
  private readonly now: () => number;

  constructor(opts: RetryBudgetOptions) {
    const windowMs = opts.windowMs ?? 10_000;
    const n = opts.buckets ?? 10;
    if (!(windowMs > 0) || !Number.isInteger(n) || n < 1) throw new RetryBudgetError('RetryBudget needs windowMs > 0 and an integer buckets >= 1');
    this.percent = 0;
    this.minPerSecond = 0;
    this.update(opts.percent, opts.minRetriesPerSecond);
    this.bucketMs = windowMs / n;
    this.windowSeconds = windowMs / 1000;
    this.requests = new Float64Array(n);
    this.retries = new Float64Array(n);
    this.now = opts.now ?? (() => performance.now());
    this.head = Math.floor(this.now() / this.bucketMs);
  }

  /** Applies a new MeshConfig retryBudget; the counts so far are kept. */
  update(percent: number, minRetriesPerSecond: number): void {
    if (!(percent >= 0 && percent <= 100) || !(minRetriesPerSecond >= 0)) {
      throw new RetryBudgetError(`RetryBudget needs percent in 0..100 and minRetriesPerSecond >= 0, got ${percent} and ${minRetriesPerSecond}`);
    }
    this.percent = percent;
    this.minPerSecond = minRetriesPerSecond;
  }

  recordRequest(): void {
    const i = this.advance();
    this.requests[i]!++;
    this.requestSum++;
  }

  tryRetry(): boolean {
    const i = this.advance();
    if (this.retrySum + 1 > this.allowance()) return false;
    this.retries[i]!++;
    this.retrySum++;
    return true;
  }

  /** Retries the window allows now (for metrics and tests). */
  allowance(): number {
    this.advance();
    return (this.percent / 100) * this.requestSum + this.minPerSecond * this.windowSeconds;
  }

  /** Retries counted in the window. */
  retriesInWindow(): number {
    this.advance();
    return this.retrySum;
  }

  /** Zeroes buckets that fell out of the window; returns the slot of the current bucket. */
  private advance(): number {
    const n = this.requests.length;
    const t = Math.floor(this.now() / this.bucketMs);
    let steps = t - this.head;
    if (steps > 0) {
      if (steps > n) steps = n;
      for (let k = 1; k <= steps; k++) {
        const slot = (((this.head + k) % n) + n) % n;
        this.requestSum -= this.requests[slot]!;
        this.retrySum -= this.retries[slot]!;
        this.requests[slot] = 0;
        this.retries[slot] = 0;
      }
      this.head = t;
    }
    return ((this.head % n) + n) % n;
  }
}
