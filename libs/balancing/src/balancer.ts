// Endpoint picking for one upstream (a service, or one subset of it) in the
// node agent's outbound proxy. Pure logic: no I/O, no timers; time comes from
// an injected clock and randomness from an injected source.
//
// Candidate tiers, rebuilt on update() and when an ejection starts or ends
// (never per pick), are tried in order:
//   local      healthy, not ejected, in localZone (only with localZone set and zoneFailover on)
//   available  healthy, not ejected, any zone
//   notEjected unhealthy but not ejected            ┐ panic mode (as Envoy): when nothing is
//   all        every endpoint, ejected or not       ┘ available, pick anyway rather than fail
// The first non-empty tier is used; panic picks and zone failovers are counted
// in `counters`. pick() returns undefined only when there are no endpoints.
import { BalancingError } from './errors.js';
import {
  EndpointState,
  TIER_ALL,
  TIER_AVAILABLE,
  TIER_LOCAL,
  TIER_NOT_EJECTED,
  type Endpoint,
  type EndpointInput,
} from './endpoint.js';
import { Prng } from './prng.js';
import { HashRing } from './ring.js';
import { Tier } from './tier.js';

export const ALGORITHMS = ['p2c-ewma', 'round-robin', 'least-request', 'ring-hash'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export interface OutlierOptions {
  /** Failures in a row (a success resets the count) that eject an endpoint. */
  consecutiveFailures: number;
  /** The first ejection lasts this long; the n-th lasts n times as long. */
  baseEjectionMs: number;
  /** Never eject more than this percent of the endpoints (0..100); at the cap, nothing more is ejected. */
  maxEjectionPercent: number;
  /** Upper bound on one ejection. Default 300 000 (5 min). */
  maxEjectionMs?: number;
  /** After an ejection ends, the multiplier drops by one per this much time without a new ejection. Default baseEjectionMs. */
  ejectionDecayMs?: number;
}

export interface BalancerOptions {
  algorithm: Algorithm;
  /** The caller's zone; with zoneFailover, endpoints here are preferred while any is available. */
  localZone?: string;
  /** Default true. False: zones are ignored. */
  zoneFailover?: boolean;
  /** Outlier detection on consecutive failures; off when absent. */
  outlier?: OutlierOptions;
  /** p2c-ewma: the latency a new endpoint starts with. Default 30 ms (Linkerd's). */
  defaultRttMs?: number;
  /** p2c-ewma: the EWMA's time constant τ. Default 10 000 ms. */
  ewmaDecayMs?: number;
  /** p2c-ewma: a failure counts as a latency sample of at least this much. Default 1 000 ms. */
  failurePenaltyMs?: number;
  /** Monotonic clock in ms. Default performance.now. */
  now?: () => number;
  /** Uniform in [0, 1); seeds the balancer's own generator (drawn from 4 times, at construction). Default Math.random. */
  random?: () => number;
  /**
   * Called once per ejection by outlier detection, after the endpoint is out
   * (for metrics). An ejection skipped at maxEjectionPercent is not reported.
   * Runs inside finish(); what it throws is swallowed.
   */
  onEject?: (endpoint: Endpoint) => void;
}

/** One endpoint's state, for the admin config dump and metrics. */
export interface EndpointStats {
  key: string;
  address: string;
  port: number;
  node: string;
  zone: string | undefined;
  weight: number;
  healthy: boolean;
  ejected: boolean;
  inFlight: number;
  /** Peak-EWMA latency now (decayed since the last sample). */
  ewmaMs: number;
  consecutiveFailures: number;
  /** Clock time (ms, the injected clock) the ejection ends; undefined when not ejected. */
  ejectedUntil: number | undefined;
  /** The ejection multiplier now (the next ejection lasts (ejections + 1) × base, capped). */
  ejections: number;
  ejectionsTotal: number;
}

/** Monotonic counters for metrics; read them at scrape time. */
export interface BalancerCounters {
  /** Picks made in panic mode (no healthy, non-ejected endpoint). */
  panicPicks: number;
  /** Picks that left the local zone because none there was available (or only the one a retry avoids). */
  zoneFailovers: number;
  /** Endpoints ejected by outlier detection. */
  ejections: number;
  /** Ejections skipped because maxEjectionPercent was reached. */
  ejectionsSkipped: number;
}

const DEFAULT_RTT_MS = 30;
const DEFAULT_EWMA_DECAY_MS = 10_000;
const DEFAULT_FAILURE_PENALTY_MS = 1_000;
const DEFAULT_MAX_EJECTION_MS = 300_000;
const MAX_WEIGHT = 1000;

interface Outlier {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
  maxEjectionMs: number;
  ejectionDecayMs: number;
  /** The multiplier stops growing once base × multiplier reaches the cap. */
  maxMultiplier: number;
}

export class Balancer {
  readonly algorithm: Algorithm;
  readonly counters: BalancerCounters = { panicPicks: 0, zoneFailovers: 0, ejections: 0, ejectionsSkipped: 0 };

  private readonly now: () => number;
  private readonly prng: Prng;
  private readonly localZone: string | undefined;
  private readonly zoneAware: boolean;
  private readonly outlier: Outlier | undefined;
  private readonly defaultRttMs: number;
  private readonly tauMs: number;
  private readonly penaltyMs: number;
  private readonly onEject: ((endpoint: Endpoint) => void) | undefined;

  private eps: EndpointState[] = [];
  private byKey = new Map<string, EndpointState>();
  private readonly local = new Tier(TIER_LOCAL);
  private readonly avail = new Tier(TIER_AVAILABLE);
  private readonly notEjected = new Tier(TIER_NOT_EJECTED);
  private readonly all = new Tier(TIER_ALL);
  private readonly ring: HashRing | undefined;
  private ejectedCount = 0;
  /** Earliest end of a current ejection; Infinity when none. */
  private nextExpiry = Infinity;

  constructor(opts: BalancerOptions) {
    const bad = (message: string): never => {
      throw new BalancingError('AMIME_ERR_BALANCING_OPTIONS', message);
    };
    if (!(ALGORITHMS as readonly string[]).includes(opts.algorithm)) {
      bad(`algorithm ${JSON.stringify(opts.algorithm)} is unknown; use one of ${ALGORITHMS.join(', ')}`);
    }
    const positive = (name: string, v: number | undefined, dflt: number): number => {
      if (v === undefined) return dflt;
      if (!Number.isFinite(v) || v <= 0) bad(`${name} must be a finite number above 0, got ${v}`);
      return v;
    };
    this.algorithm = opts.algorithm;
    this.now = opts.now ?? (() => performance.now());
    this.prng = new Prng(opts.random ?? Math.random);
    this.localZone = opts.localZone;
    this.zoneAware = opts.localZone !== undefined && opts.zoneFailover !== false;
    this.defaultRttMs = positive('defaultRttMs', opts.defaultRttMs, DEFAULT_RTT_MS);
    this.tauMs = positive('ewmaDecayMs', opts.ewmaDecayMs, DEFAULT_EWMA_DECAY_MS);
    this.penaltyMs = positive('failurePenaltyMs', opts.failurePenaltyMs, DEFAULT_FAILURE_PENALTY_MS);
    if (opts.onEject !== undefined && typeof opts.onEject !== 'function') bad('onEject must be a function');
    this.onEject = opts.onEject;
    if (opts.outlier) {
      const o = opts.outlier;
      if (!Number.isInteger(o.consecutiveFailures) || o.consecutiveFailures < 1) {
        bad(`outlier.consecutiveFailures must be an integer of 1 or more, got ${o.consecutiveFailures}`);
      }
      if (!Number.isFinite(o.maxEjectionPercent) || o.maxEjectionPercent < 0 || o.maxEjectionPercent > 100) {
        bad(`outlier.maxEjectionPercent must be within 0..100, got ${o.maxEjectionPercent}`);
      }
      const baseEjectionMs = positive('outlier.baseEjectionMs', o.baseEjectionMs ?? NaN, NaN);
      const maxEjectionMs = positive('outlier.maxEjectionMs', o.maxEjectionMs, Math.max(DEFAULT_MAX_EJECTION_MS, baseEjectionMs));
      if (maxEjectionMs < baseEjectionMs) bad(`outlier.maxEjectionMs (${maxEjectionMs}) must not be below baseEjectionMs (${baseEjectionMs})`);
      this.outlier = {
        consecutiveFailures: o.consecutiveFailures,
        baseEjectionMs,
        maxEjectionPercent: o.maxEjectionPercent,
        maxEjectionMs,
        ejectionDecayMs: positive('outlier.ejectionDecayMs', o.ejectionDecayMs, baseEjectionMs),
        maxMultiplier: Math.ceil(maxEjectionMs / baseEjectionMs),
      };
    }
    this.ring = opts.algorithm === 'ring-hash' ? new HashRing() : undefined;
  }

  /** Endpoints known. */
  get size(): number {
    return this.eps.length;
  }

  /** Endpoints healthy and not ejected now. */
  get available(): number {
    this.expireEjections();
    return this.avail.size;
  }

  /** Virtual nodes on the hash ring (ring-hash only; 0 otherwise). */
  get ringSize(): number {
    return this.ring?.size ?? 0;
  }

  /**
   * Replaces the endpoint set. An endpoint whose key, address, port,
   * identity and node are unchanged keeps its state (latency estimate,
   * in-flight count, failures, ejection); zone, weight and health
   * are taken from the input. Others start fresh; removed ones are dropped
   * (finish() on them later only releases in-flight). Validates the whole set
   * first and throws BalancingError without changing anything when it is bad.
   */
  update(endpoints: readonly EndpointInput[]): void {
    const seen = new Set<string>();
    for (const e of endpoints) {
      const bad = (why: string): never => {
        throw new BalancingError('AMIME_ERR_BALANCING_ENDPOINT', `endpoint ${JSON.stringify(e.key)} ${why}`);
      };
      if (typeof e.key !== 'string' || e.key === '') bad('needs a non-empty key');
      if (seen.has(e.key)) bad('is listed twice; keys must be unique');
      seen.add(e.key);
      if (!Number.isInteger(e.weight) || e.weight < 1 || e.weight > MAX_WEIGHT) bad(`has weight ${e.weight}; use an integer in 1..${MAX_WEIGHT}`);
      if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65_535) bad(`has port ${e.port}; use an integer in 1..65535`);
    }

    const now = this.now();
    const next: EndpointState[] = [];
    const byKey = new Map<string, EndpointState>();
    let ringDirty = endpoints.length !== this.eps.length;
    for (const e of endpoints) {
      let ep = this.byKey.get(e.key);
      if (ep && ep.sameAs(e)) {
        if (ep.weight !== e.weight) ringDirty = true;
        ep.zone = e.zone;
        ep.weight = e.weight;
        ep.healthy = e.healthy;
      } else {
        ep = new EndpointState(this, e, this.defaultRttMs, now);
        ringDirty = true;
      }
      next.push(ep);
      byKey.set(e.key, ep);
    }
    for (const old of this.eps) {
      if (byKey.get(old.key) !== old) {
        old.removed = true;
        ringDirty = true;
      }
    }
    this.eps = next;
    this.byKey = byKey;
    if (this.ring && ringDirty) this.ring.build(next);
    this.recountEjections(now);
    this.rebuildTiers();
  }

  /**
   * Picks an endpoint; undefined only when there are none. `hashKey` is for
   * ring-hash (ignored by the others; without it ring-hash picks at random).
   * `avoid` is the endpoint a retry just failed on: it is skipped when another
   * candidate exists, and lets the pick leave the local zone when it was the
   * only one available there; it never pushes the pick into panic mode.
   * Allocates nothing.
   */
  pick(hashKey?: string, avoid?: Endpoint): Endpoint | undefined {
    if (this.eps.length === 0) return undefined;
    if (this.ejectedCount > 0) this.expireEjections();
    const av = avoid instanceof EndpointState && avoid.owner === this && !avoid.removed ? avoid : undefined;

    let tier: Tier;
    if (this.avail.size > 0) {
      tier = this.avail;
      if (this.zoneAware) {
        const local = this.local;
        if (local.size > 1 || (local.size === 1 && local.eps[0] !== av)) tier = local;
        else this.counters.zoneFailovers++;
      }
    } else {
      tier = this.notEjected.size > 0 ? this.notEjected : this.all;
      this.counters.panicPicks++;
    }
    const n = tier.size;
    const skip = av !== undefined && n > 1 ? tier.indexOf(av) : -1;
    if (n === 1) return tier.eps[0];
    if (n === 2 && skip >= 0) return tier.eps[1 - skip];

    switch (this.algorithm) {
      case 'p2c-ewma': {
        const a = tier.eps[tier.sample(this.prng, skip, -1)]!;
        const b = tier.eps[tier.sample(this.prng, skip, a.tierIndex[tier.id]!)]!;
        // cost = peak-EWMA latency decayed to now × (in flight + 1). The decay
        // is inlined (see EndpointState.currentRtt) so no double crosses a call.
        const now = this.now();
        const ma = a.ewma;
        const mb = b.ewma;
        if (now > ma[1]!) {
          ma[0] = ma[0]! * Math.exp((ma[1]! - now) / this.tauMs);
          ma[1] = now;
        }
        if (now > mb[1]!) {
          mb[0] = mb[0]! * Math.exp((mb[1]! - now) / this.tauMs);
          mb[1] = now;
        }
        return mb[0]! * (b.inFlight + 1) < ma[0]! * (a.inFlight + 1) ? b : a;
      }
      case 'least-request': {
        const a = tier.eps[tier.sample(this.prng, skip, -1)]!;
        const b = tier.eps[tier.sample(this.prng, skip, a.tierIndex[tier.id]!)]!;
        // Fewer in flight per unit of weight wins; on a tie the first (drawn by weight) wins.
        return b.inFlight * a.weight < a.inFlight * b.weight ? b : a;
      }
      case 'round-robin':
        return this.roundRobin(tier, skip);
      case 'ring-hash':
        if (hashKey === undefined) return tier.eps[tier.sample(this.prng, skip, -1)];
        return this.ring!.lookup(hashKey, tier.id, av);
    }
  }

  /** A request (or connection) to `ep` begins. */
  start(ep: Endpoint): void {
    if (ep instanceof EndpointState && ep.owner === this) ep.inFlight++;
  }

  /**
   * A request to `ep` ended: releases in-flight, feeds the latency (a failure
   * counts at least failurePenaltyMs) into the EWMA, and the outcome into
   * outlier detection. Never throws; ignores endpoints of another balancer.
   */
  finish(ep: Endpoint, ok: boolean, latencyMs: number): void {
    if (!(ep instanceof EndpointState) || ep.owner !== this) return;
    if (ep.inFlight > 0) ep.inFlight--;
    if (ep.removed) return;
    const now = this.now();
    const latency = latencyMs > 0 ? latencyMs : 0;
    ep.observe(ok ? latency : Math.max(latency, this.penaltyMs), now, this.tauMs);
    const o = this.outlier;
    if (!o) return;
    // An ejection whose time is up ends before this outcome is counted.
    if (ep.ejected && now >= this.nextExpiry) this.expireEjections();
    if (ok) {
      ep.consecutiveFailures = 0;
    } else if (!ep.ejected && ++ep.consecutiveFailures >= o.consecutiveFailures) {
      this.eject(ep, o, now);
    }
  }

  /** Every endpoint's state, in update() order. Not for the hot path. */
  snapshot(): EndpointStats[] {
    this.expireEjections();
    const now = this.now();
    const decayMs = this.outlier?.ejectionDecayMs ?? 1;
    return this.eps.map((ep) => ({
      key: ep.key,
      address: ep.address,
      port: ep.port,
      node: ep.node,
      zone: ep.zone,
      weight: ep.weight,
      healthy: ep.healthy,
      ejected: ep.ejected,
      inFlight: ep.inFlight,
      ewmaMs: ep.currentRtt(now, this.tauMs),
      consecutiveFailures: ep.consecutiveFailures,
      ejectedUntil: ep.ejected ? ep.ejectedUntil : undefined,
      ejections: ep.decayedEjections(now, decayMs),
      ejectionsTotal: ep.ejectionsTotal,
    }));
  }

  /** Smooth weighted round robin (nginx): deterministic, spreads heavy endpoints' turns evenly. */
  private roundRobin(tier: Tier, skip: number): EndpointState {
    const eps = tier.eps;
    let total = 0;
    let best = -1;
    let bestCurrent = -Infinity;
    for (let i = 0; i < eps.length; i++) {
      if (i === skip) continue;
      const ep = eps[i]!;
      ep.rrCurrent += ep.weight;
      total += ep.weight;
      if (ep.rrCurrent > bestCurrent) {
        bestCurrent = ep.rrCurrent;
        best = i;
      }
    }
    const chosen = eps[best]!;
    chosen.rrCurrent -= total;
    return chosen;
  }

  /**
   * Ejects `ep` unless that would put more than maxEjectionPercent of the
   * endpoints out (then the failure count is kept, and the next failure tries
   * again). The n-th ejection in a row lasts n × base, capped.
   */
  private eject(ep: EndpointState, o: Outlier, now: number): void {
    if (now >= this.nextExpiry) this.expireEjections();
    if ((this.ejectedCount + 1) * 100 > o.maxEjectionPercent * this.eps.length) {
      this.counters.ejectionsSkipped++;
      return;
    }
    ep.ejections = Math.min(ep.decayedEjections(now, o.ejectionDecayMs) + 1, o.maxMultiplier);
    ep.ejected = true;
    ep.ejectedUntil = now + Math.min(o.baseEjectionMs * ep.ejections, o.maxEjectionMs);
    ep.consecutiveFailures = 0;
    ep.ejectionsTotal++;
    this.counters.ejections++;
    this.ejectedCount++;
    if (ep.ejectedUntil < this.nextExpiry) this.nextExpiry = ep.ejectedUntil;
    this.rebuildTiers();
    if (this.onEject) {
      try {
        this.onEject(ep);
      } catch {
        // a listener's failure must not escape finish() (it never throws)
      }
    }
  }

  /** Ends ejections whose time is up (lazily: on pick, available, snapshot; no timers). */
  private expireEjections(): void {
    if (this.ejectedCount === 0) return;
    const now = this.now();
    if (now < this.nextExpiry) return;
    for (const ep of this.eps) {
      if (ep.ejected && ep.ejectedUntil <= now) ep.ejected = false;
    }
    this.recountEjections(now);
    this.rebuildTiers();
  }

  private recountEjections(now: number): void {
    let count = 0;
    let next = Infinity;
    for (const ep of this.eps) {
      if (ep.ejected && ep.ejectedUntil <= now) ep.ejected = false;
      if (!ep.ejected) continue;
      count++;
      if (ep.ejectedUntil < next) next = ep.ejectedUntil;
    }
    this.ejectedCount = count;
    this.nextExpiry = next;
  }

  private rebuildTiers(): void {
    this.local.clear();
    this.avail.clear();
    this.notEjected.clear();
    this.all.clear();
    for (const ep of this.eps) {
      ep.tierIndex.fill(-1);
      ep.rrCurrent = 0;
      this.all.add(ep);
      if (ep.ejected) continue;
      this.notEjected.add(ep);
      if (!ep.healthy) continue;
      this.avail.add(ep);
      if (this.zoneAware && ep.zone === this.localZone) this.local.add(ep);
    }
  }
}
