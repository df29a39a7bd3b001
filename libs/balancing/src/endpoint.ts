// Per-endpoint state kept by a Balancer across updates: load (in-flight
// requests and a peak-EWMA of latency) and outlier-detection bookkeeping.

/** One endpoint as the control plane describes it; the input to Balancer.update(). */
export interface EndpointInput {
  /** Stable identity of the endpoint across updates (the Endpoint resource name). */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** SPIFFE ID the endpoint must present. */
  readonly identity: string;
  readonly node: string;
  readonly zone?: string;
  /** Relative share of traffic, an integer in 1..1000. */
  readonly weight: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** False when the endpoint's health check failed or its agent's heartbeat lapsed. */
  readonly healthy: boolean;
}

/** What pick() returns: the caller's read-only view of an endpoint. Hand it back to start() and finish(). */
export interface Endpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly identity: string;
  readonly node: string;
  readonly zone: string | undefined;
  readonly weight: number;
}

/** Indices into EndpointState.tierIndex, one per candidate tier (see balancer.ts). */
export const TIER_LOCAL = 0;
export const TIER_AVAILABLE = 1;
export const TIER_NOT_EJECTED = 2;
export const TIER_ALL = 3;
export const TIER_COUNT = 4;

export class EndpointState implements Endpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly identity: string;
  readonly node: string;
  zone: string | undefined;
  weight: number;
  healthy: boolean;

  /** Requests (or connections) started and not yet finished. */
  inFlight = 0;
  /**
   * [0]: peak-EWMA latency estimate in ms, as of [1]: the clock time (ms) it
   * was last decayed or updated. A Float64Array so that updating them on the
   * hot path stores raw doubles instead of boxing them into object fields.
   */
  readonly ewma = new Float64Array(2);

  /** Failures in a row since the last success or ejection. */
  consecutiveFailures = 0;
  ejected = false;
  /** While ejected: when the ejection ends. After: when the last one ended. */
  ejectedUntil = 0;
  /** Ejection multiplier: ejections so far, less one per quiet period since the last ended. */
  ejections = 0;
  /** Ejections over the endpoint's lifetime, for metrics. */
  ejectionsTotal = 0;

  /** Position in each candidate tier, or -1 when not a member; rebuilt with the tiers. */
  readonly tierIndex = new Int32Array(TIER_COUNT).fill(-1);
  /** Smooth weighted round robin's running weight. */
  rrCurrent = 0;
  /** Set once update() dropped this endpoint; late finish() calls then only release in-flight. */
  removed = false;

  constructor(
    readonly owner: object,
    input: EndpointInput,
    defaultRttMs: number,
    now: number,
  ) {
    this.key = input.key;
    this.address = input.address;
    this.port = input.port;
    this.identity = input.identity;
    this.node = input.node;
    this.zone = input.zone;
    this.weight = input.weight;
    this.healthy = input.healthy;
    this.ewma[0] = defaultRttMs;
    this.ewma[1] = now;
  }

  /** Whether `input` describes the same endpoint (so its state carries over). */
  sameAs(input: EndpointInput): boolean {
    return input.address === this.address && input.port === this.port && input.identity === this.identity && input.node === this.node;
  }

  /**
   * The latency estimate at `now`, decayed toward zero since it was last
   * touched (Linkerd's peak EWMA: an endpoint nobody has heard from lately
   * becomes cheap again, so a slow endpoint that recovered is probed).
   * Commits the decay; exp(-a/τ)·exp(-b/τ) = exp(-(a+b)/τ), so how often it
   * is read does not change the value.
   */
  currentRtt(now: number, tauMs: number): number {
    const m = this.ewma;
    if (now > m[1]!) {
      m[0] = m[0]! * Math.exp((m[1]! - now) / tauMs);
      m[1] = now;
    }
    return m[0]!;
  }

  /**
   * Feeds one latency sample: a sample above the estimate replaces it at
   * once (peak); otherwise the estimate moves toward the sample with a weight
   * of 1 - exp(-elapsed/τ) for the time since it was last touched.
   */
  observe(sampleMs: number, now: number, tauMs: number): void {
    const m = this.ewma;
    if (sampleMs > m[0]!) {
      m[0] = sampleMs;
    } else if (now > m[1]!) {
      const keep = Math.exp((m[1]! - now) / tauMs);
      m[0] = m[0]! * keep + sampleMs * (1 - keep);
    }
    if (now > m[1]!) m[1] = now;
  }

  /** The ejection multiplier at `now`: one less per full quiet period since the last ejection ended. */
  decayedEjections(now: number, decayMs: number): number {
    if (this.ejected || this.ejections === 0) return this.ejections;
    const quiet = now - this.ejectedUntil;
    return quiet <= 0 ? this.ejections : Math.max(0, this.ejections - Math.floor(quiet / decayMs));
  }
}
