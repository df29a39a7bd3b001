// Envoy-style circuit breaker thresholds for one upstream (cluster): open
// connections, queued (pending) requests and in-flight requests. Counters
// only: O(1), no allocation, nothing per request but an increment.

import { LimitsConfigError } from './errors.js';

export interface CircuitBreakerOptions {
  /** Default 1024 (Envoy's default). */
  maxConnections?: number;
  /** Requests waiting for a connection; default 1024. */
  maxPendingRequests?: number;
  /** Requests in flight; default 1024. */
  maxRequests?: number;
}

export type CircuitBreakerKind = 'connections' | 'pending' | 'requests';

function limit(name: string, v: number | undefined): number {
  if (v === undefined) return 1024;
  if (v !== Number.POSITIVE_INFINITY && (!Number.isInteger(v) || v < 0)) {
    throw new LimitsConfigError(`${name} must be a non-negative integer or Infinity, got ${String(v)}`);
  }
  return v;
}

export class CircuitBreaker {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  /** Gauges. */
  connections = 0;
  pending = 0;
  requests = 0;
  /** Refusals by kind (counters). */
  refusedConnections = 0;
  refusedPending = 0;
  refusedRequests = 0;
  /** Releases without a matching acquire (a bug in the caller; the gauge stays at 0). */
  unmatchedReleases = 0;

  constructor(opts: CircuitBreakerOptions = {}) {
    this.maxConnections = limit('maxConnections', opts.maxConnections);
    this.maxPendingRequests = limit('maxPendingRequests', opts.maxPendingRequests);
    this.maxRequests = limit('maxRequests', opts.maxRequests);
  }

  tryConnection(): boolean {
    if (this.connections >= this.maxConnections) {
      this.refusedConnections++;
      return false;
    }
    this.connections++;
    return true;
  }

  releaseConnection(): void {
    if (this.connections > 0) this.connections--;
    else this.unmatchedReleases++;
  }

  tryPending(): boolean {
    if (this.pending >= this.maxPendingRequests) {
      this.refusedPending++;
      return false;
    }
    this.pending++;
    return true;
  }

  releasePending(): void {
    if (this.pending > 0) this.pending--;
    else this.unmatchedReleases++;
  }

  tryRequest(): boolean {
    if (this.requests >= this.maxRequests) {
      this.refusedRequests++;
      return false;
    }
    this.requests++;
    return true;
  }

  releaseRequest(): void {
    if (this.requests > 0) this.requests--;
    else this.unmatchedReleases++;
  }

  /** Whether a kind is at its threshold now (Envoy's "open" gauge), without counting a refusal. */
  isOpen(kind: CircuitBreakerKind): boolean {
    switch (kind) {
      case 'connections':
        return this.connections >= this.maxConnections;
      case 'pending':
        return this.pending >= this.maxPendingRequests;
      case 'requests':
        return this.requests >= this.maxRequests;
    }
  }
}
