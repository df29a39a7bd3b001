// What the data plane reads per connection or request, compiled from a
// MeshState when config arrives (Envoy's rule: heavy work at config time):
// the authorizer, route tables per service, and balancers per service/subset.
// Balancers outlive config changes, so endpoint load and outlier state survive
// a push; they are rebuilt only when their algorithm or options change.
import { Authorizer } from '@amime/policy';
import { Balancer, selectSubset, type Algorithm, type EndpointInput } from '@amime/balancing';
import { compileRoutes, type RouteTable } from '@amime/proxy';
import { durationMs as durationOf, type EndpointResource, type ServiceResource } from '@amime/protocol';
import { serviceKey, type MeshState, type ServiceKey } from './mesh-state.js';

interface BalancerEntry {
  balancer: Balancer;
  /** The options it was built with, to tell when it must be rebuilt. */
  signature: string;
  /** The endpoint list it was last updated with (identity compare: MeshState builds new lists per change). */
  endpoints: readonly EndpointResource[] | undefined;
  subsetLabels: Readonly<Record<string, string>> | undefined;
}

export interface MeshRuntimeOptions {
  trustDomain: string;
  localZone?: string;
  now?: () => number;
  random?: () => number;
  /** Outlier detection ejected an endpoint of `service` (for metrics); also settable later with onEjection(). */
  onEject?: EjectionListener;
}

/**
 * Told the service (`namespace/name`) whose endpoint outlier detection ejected
 * (count 1), and once with count 0 when the service's balancer is built, so a
 * counter series exists from the start (a counter first seen at 1 shows no increase).
 */
export type EjectionListener = (service: ServiceKey, count: number) => void;

export class MeshRuntime {
  readonly #opts: MeshRuntimeOptions;
  readonly #balancers = new Map<string, BalancerEntry>();
  #state!: MeshState;
  #authorizer!: Authorizer;
  #routes = new Map<ServiceKey, RouteTable>();
  #onEject: EjectionListener | undefined;

  constructor(state: MeshState, opts: MeshRuntimeOptions) {
    this.#opts = opts;
    this.#onEject = opts.onEject;
    this.update(state);
  }

  /**
   * Report every ejection by outlier detection to `listener` from now on, for
   * balancers built before this call too (the runtime is built before the
   * agent's metrics exist).
   */
  onEjection(listener: EjectionListener | undefined): void {
    this.#onEject = listener;
  }

  get state(): MeshState {
    return this.#state;
  }

  get authorizer(): Authorizer {
    return this.#authorizer;
  }

  /**
   * Compiles everything a new state needs before anything is swapped in, so a
   * failure (thrown) leaves the previous runtime intact and the push is NACKed.
   */
  static check(state: MeshState, trustDomain: string): string[] {
    const authorizer = Authorizer.compile(state.policies, { trustDomain });
    for (const [k, routes] of state.routes) {
      const [namespace, name] = k.split('/') as [string, string];
      compileRoutes({ namespace, name }, routes);
    }
    return authorizer.issues.map((i) => `${i.policy}: ${i.message}`);
  }

  update(state: MeshState): void {
    const authorizer = Authorizer.compile(state.policies, { trustDomain: this.#opts.trustDomain });
    this.#state = state;
    this.#authorizer = authorizer;
    this.#routes = new Map();
    // Refresh live balancers now: endpoint health and membership must apply at once.
    for (const [key, entry] of this.#balancers) {
      const [svcKey, subset] = splitBalancerKey(key);
      const next = this.#balancerFor(svcKey, subset, entry);
      if (next === undefined) this.#balancers.delete(key);
    }
  }

  routes(namespace: string, name: string): RouteTable {
    const k = serviceKey(namespace, name);
    let t = this.#routes.get(k);
    if (!t) this.#routes.set(k, (t = compileRoutes({ namespace, name }, this.#state.routes.get(k) ?? [])));
    return t;
  }

  /** The balancer for a service (and subset), created on first use; undefined for an unknown subset. */
  balancer(namespace: string, name: string, subset?: string): Balancer | undefined {
    const key = `${serviceKey(namespace, name)}#${subset ?? ''}`;
    const entry = this.#balancers.get(key);
    if (entry && entry.endpoints === this.#state.endpoints.get(serviceKey(namespace, name))) return entry.balancer;
    return this.#balancerFor(serviceKey(namespace, name), subset, entry);
  }

  /** Every balancer's endpoints and state, for the admin config dump. */
  balancerStats(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, e] of this.#balancers) out[k] = { algorithm: e.signature.split('|')[0], endpoints: e.balancer.snapshot(), counters: e.balancer.counters };
    return out;
  }

  #balancerFor(svcKey: ServiceKey, subset: string | undefined, entry: BalancerEntry | undefined): Balancer | undefined {
    const key = `${svcKey}#${subset ?? ''}`;
    const svc = this.#state.services.get(svcKey);
    let labels: Readonly<Record<string, string>> | undefined;
    if (subset !== undefined) {
      labels = svc?.spec.trafficPolicy?.subsets?.find((s) => s.name === subset)?.labels;
      if (!labels) return undefined;
    }
    const opts = this.#balancerOptions(svc);
    const signature = JSON.stringify(opts);
    const endpoints = this.#state.endpoints.get(svcKey);
    if (!entry || entry.signature !== signature) {
      const { algorithm, zoneFailover, outlier } = opts;
      entry = {
        balancer: new Balancer({
          algorithm,
          zoneFailover,
          outlier,
          ...(this.#opts.localZone !== undefined && { localZone: this.#opts.localZone }),
          ...(this.#opts.now && { now: this.#opts.now }),
          ...(this.#opts.random && { random: this.#opts.random }),
          onEject: () => this.#onEject?.(svcKey, 1),
        }),
        signature,
        endpoints: undefined,
        subsetLabels: labels,
      };
      this.#balancers.set(key, entry);
      this.#onEject?.(svcKey, 0);
    }
    if (entry.endpoints !== endpoints || entry.subsetLabels !== labels) {
      const inputs = (endpoints ?? []).map(toInput);
      entry.balancer.update(labels ? selectSubset(inputs, labels) : inputs);
      entry.endpoints = endpoints;
      entry.subsetLabels = labels;
    }
    return entry.balancer;
  }

  #balancerOptions(svc: ServiceResource | undefined): { algorithm: Algorithm; zoneFailover: boolean; outlier: { consecutiveFailures: number; baseEjectionMs: number; maxEjectionPercent: number } } {
    const tp = svc?.spec.trafficPolicy;
    const mesh = this.#state.outlier();
    const o = tp?.outlier;
    return {
      algorithm: tp?.loadBalancing?.algorithm ?? this.#state.mesh.loadBalancing,
      zoneFailover: tp?.zoneFailover ?? true,
      outlier: o ? { consecutiveFailures: o.consecutiveFailures, baseEjectionMs: durationOf(o.baseEjectionTime), maxEjectionPercent: o.maxEjectionPercent } : mesh,
    };
  }
}

function splitBalancerKey(key: string): [ServiceKey, string | undefined] {
  const i = key.lastIndexOf('#');
  const subset = key.slice(i + 1);
  return [key.slice(0, i) as ServiceKey, subset === '' ? undefined : subset];
}

function toInput(e: EndpointResource): EndpointInput {
  return {
    key: e.metadata.name,
    address: e.spec.address,
    port: e.spec.port,
    identity: e.spec.identity,
    node: e.spec.node,
    ...(e.spec.zone !== undefined && { zone: e.spec.zone }),
    weight: e.spec.weight,
    ...(e.metadata.labels && { labels: e.metadata.labels }),
    healthy: e.spec.health === 'healthy',
  };
}

