// When an SVID renews and when a failed renewal is tried again. Pure
// functions of the times involved and a random draw, so the policy is
// tested without a CA, and the manager only arms timers with the results.

export interface RenewalPolicy {
  /** Fraction of the lifetime after which an SVID renews, in (0, 1). */
  readonly renewAt: number;
  /** ± this fraction of the lifetime around renewAt, so agents do not renew in step. */
  readonly jitter: number;
  /** First retry delay after a failure; doubles per failure. */
  readonly retryInitialMs: number;
  /** Retry delays never exceed this. */
  readonly retryMaxMs: number;
}

export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = { renewAt: 0.5, jitter: 0.1, retryInitialMs: 1000, retryMaxMs: 60_000 };

/** The problem with a policy, phrased as the fix, or undefined when it is usable. */
export function checkRenewalPolicy(p: RenewalPolicy): string | undefined {
  if (!(p.renewAt > 0 && p.renewAt < 1)) return `renewAt: must be a fraction of the lifetime between 0 and 1 (exclusive), got ${p.renewAt}`;
  if (!(p.jitter >= 0 && p.renewAt - p.jitter > 0 && p.renewAt + p.jitter < 1)) {
    return `jitter: must be >= 0 and keep renewAt ± jitter inside (0, 1); got renewAt ${p.renewAt}, jitter ${p.jitter}`;
  }
  if (!(Number.isFinite(p.retryInitialMs) && p.retryInitialMs >= 1)) return `retry.initialMs: must be at least 1 ms, got ${p.retryInitialMs}`;
  if (!(Number.isFinite(p.retryMaxMs) && p.retryMaxMs >= p.retryInitialMs)) return `retry.maxMs: must be at least retry.initialMs, got ${p.retryMaxMs}`;
  return undefined;
}

/**
 * When to renew an SVID whose life started at `start` (ms) and ends at
 * `notAfter`: start + lifetime × (renewAt ± jitter), `random` in [0, 1)
 * choosing the point in the jitter window. Always before notAfter.
 */
export function renewalTime(start: number, notAfter: number, p: RenewalPolicy, random: number): number {
  const life = notAfter - start;
  if (life <= 0) return start;
  const at = start + life * (p.renewAt + (2 * random - 1) * p.jitter);
  return Math.min(Math.round(at), notAfter - 1);
}

export interface Retry {
  /** Wait this long before the next attempt. */
  readonly delayMs: number;
  /**
   * The backoff would have waited past the SVID's expiry, so the delay was
   * shortened to land before it (half the time left, at least
   * retryInitialMs): log this loudly.
   */
  readonly expiring: boolean;
  /** The SVID has already expired. */
  readonly expired: boolean;
}

/**
 * The delay before attempt `failures + 1`, after `failures` (>= 1) failed in a
 * row: retryInitialMs doubling per failure, ±20% jitter, capped at
 * retryMaxMs; brought forward when it would pass `notAfter`.
 */
export function retryAfterFailure(now: number, notAfter: number, failures: number, p: RenewalPolicy, random: number): Retry {
  const base = Math.min(p.retryMaxMs, p.retryInitialMs * 2 ** Math.min(Math.max(failures, 1) - 1, 40));
  const delay = Math.min(p.retryMaxMs, Math.round(base * (0.8 + 0.4 * random)));
  if (now >= notAfter) return { delayMs: delay, expiring: false, expired: true };
  if (now + delay < notAfter) return { delayMs: delay, expiring: false, expired: false };
  // Halve the time left, but never below the first retry delay: no tight loop at the end.
  const left = notAfter - now;
  return { delayMs: Math.max(Math.floor(left / 2), Math.min(p.retryInitialMs, left)), expiring: true, expired: false };
}
