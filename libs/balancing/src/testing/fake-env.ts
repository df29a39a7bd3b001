// Test helpers for the balancing specs: a fake clock, a seeded random source,
// endpoint fixtures and a closed-loop traffic simulator on virtual time.
import type { Balancer, Endpoint, EndpointInput } from '../index.js';

export class FakeClock {
  t = 0;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function ep(key: string, over: Partial<EndpointInput> = {}): EndpointInput {
  const n = Number(key.replace(/\D/g, '')) || 0;
  return {
    key,
    address: `10.0.${n >> 8}.${n & 255}`,
    port: 8080,
    identity: `spiffe://mesh.test/ns/default/sa/${key}`,
    node: `node-${n % 3}`,
    weight: 100,
    healthy: true,
    ...over,
  };
}

export function endpoints(count: number, over: Partial<EndpointInput> = {}): EndpointInput[] {
  return Array.from({ length: count }, (_, i) => ep(`ep-${i}`, over));
}

export interface SimOptions {
  requests: number;
  concurrency: number;
  /** Latency (ms) of a request to `ep` that starts at `now`. */
  latency: (ep: Endpoint, now: number) => number;
  /** Outcome of a request to `ep`; default success. */
  ok?: (ep: Endpoint, now: number) => boolean;
  /** Called for every pick, with the pick time. */
  onPick?: (ep: Endpoint, now: number) => void;
}

/**
 * A closed loop of `concurrency` clients on virtual time: each picks, starts,
 * and after the endpoint's latency finishes and sends the next request, until
 * `requests` have been sent and all have finished. Returns picks per key.
 */
export function simulate(balancer: Balancer, clock: FakeClock, opts: SimOptions): Map<string, number> {
  const counts = new Map<string, number>();
  const pending: { at: number; ep: Endpoint; latency: number; ok: boolean }[] = [];
  let sent = 0;
  const send = () => {
    const picked = balancer.pick();
    if (!picked) throw new Error('no endpoint picked');
    balancer.start(picked);
    sent++;
    counts.set(picked.key, (counts.get(picked.key) ?? 0) + 1);
    opts.onPick?.(picked, clock.t);
    const latency = opts.latency(picked, clock.t);
    pending.push({ at: clock.t + latency, ep: picked, latency, ok: opts.ok?.(picked, clock.t) ?? true });
  };
  for (let i = 0; i < opts.concurrency && sent < opts.requests; i++) send();
  while (pending.length > 0) {
    let first = 0;
    for (let i = 1; i < pending.length; i++) if (pending[i]!.at < pending[first]!.at) first = i;
    const done = pending[first]!;
    pending[first] = pending[pending.length - 1]!;
    pending.pop();
    if (done.at > clock.t) clock.t = done.at;
    balancer.finish(done.ep, done.ok, done.latency);
    if (sent < opts.requests) send();
  }
  return counts;
}

/** Share of picks (0..1) that went to `key`. */
export function share(counts: ReadonlyMap<string, number>, key: string): number {
  let total = 0;
  for (const c of counts.values()) total += c;
  return total === 0 ? 0 : (counts.get(key) ?? 0) / total;
}

/** The balancer's endpoint handles by key, gathered by picking (without start/finish) until `count` were seen. */
export function handles(balancer: Balancer, count: number): Map<string, Endpoint> {
  const found = new Map<string, Endpoint>();
  for (let i = 0; i < 10_000 && found.size < count; i++) {
    const e = balancer.pick(`probe-${i}`);
    if (e) found.set(e.key, e);
  }
  if (found.size < count) throw new Error(`found only ${found.size} of ${count} endpoints by picking`);
  return found;
}
