// Discovery: agents register the workload instances they front; each becomes
// an Endpoint resource, pushed like any other.
//
// Rules: an instance's identity must be assigned to the agent's node at the
// CA (the rule the CA applies before it signs), and must match the Service of
// that name when one exists. A registration is the agent's whole set and is
// taken or refused as a whole, so a refused one changes nothing.
//
// Health: the agent's own active check, overridden by `heartbeat_lapsed` when
// the agent was silent for the TTL; Endpoints go when the agent has been
// disconnected for the grace period (as Istio's auto-registration grace).

import { performance } from 'node:perf_hooks';
import {
  endpointName,
  resourceKey,
  API_VERSION,
  type EndpointResource,
  type Instance,
  type Resource,
  type ServiceResource,
} from '@amime/protocol';

export interface RegistryDeps {
  /** Is `spiffeId` assigned to `node` at the CA? */
  isAssigned(node: string, spiffeId: string): Promise<boolean>;
  /** The Service of that name, if any. */
  service(namespace: string, name: string): ServiceResource | undefined;
  /** Every stored Endpoint (at start). */
  endpoints(): readonly Resource[];
  putEndpoint(endpoint: EndpointResource): Promise<unknown>;
  deleteEndpoint(namespace: string, name: string): Promise<unknown>;
  log?(event: Record<string, unknown>): void;
}

export interface RegistryOptions {
  /** No heartbeat for this long marks a node's endpoints unhealthy. Default 15 s. */
  heartbeatTtlMs?: number;
  /** Disconnected this long, a node's endpoints are removed. Default 60 s. */
  graceMs?: number;
  /** How often TTL and grace are checked. Default 1 s. */
  tickMs?: number;
}

interface NodeState {
  /** Endpoint key → the instance behind it (undefined for ones loaded from the store at start). */
  instances: Map<string, { instance: Instance | undefined; endpoint: EndpointResource }>;
  connected: boolean;
  lastHeartbeat: number;
  disconnectedAt: number;
  lapsed: boolean;
  /** Writes for one node run one after another. */
  chain: Promise<unknown>;
}

export class Registry {
  readonly #deps: RegistryDeps;
  readonly #ttl: number;
  readonly #grace: number;
  readonly #nodes = new Map<string, NodeState>();
  readonly #timer: NodeJS.Timeout;

  constructor(deps: RegistryDeps, opts: RegistryOptions = {}) {
    this.#deps = deps;
    this.#ttl = opts.heartbeatTtlMs ?? 15_000;
    this.#grace = opts.graceMs ?? 60_000;
    const now = performance.now();
    // Endpoints from before a restart: their agents get the TTL and grace from now.
    for (const r of deps.endpoints()) {
      if (r.kind !== 'Endpoint') continue;
      const node = this.#node(r.spec.node, now);
      node.instances.set(resourceKey(r), { instance: undefined, endpoint: stripVersion(r) });
    }
    this.#timer = setInterval(() => this.#tick(), opts.tickMs ?? 1000);
    this.#timer.unref();
  }

  connected(node: string): void {
    const n = this.#node(node, performance.now());
    n.connected = true;
    n.lastHeartbeat = performance.now();
  }

  disconnected(node: string): void {
    const n = this.#nodes.get(node);
    if (!n) return;
    n.connected = false;
    n.disconnectedAt = performance.now();
  }

  heartbeat(node: string): void {
    const n = this.#nodes.get(node);
    if (!n) return;
    n.lastHeartbeat = performance.now();
    if (n.lapsed) {
      n.lapsed = false;
      this.#enqueue(node, n, () => this.#rewrite(n));
    }
  }

  /** Takes the node's whole instance set, or refuses it with a message naming the instance and the fix. */
  async register(node: string, instances: Instance[]): Promise<string | undefined> {
    const problems: string[] = [];
    const seen = new Map<string, number>();
    for (const [i, inst] of instances.entries()) {
      const where = `instances[${i}] (${inst.namespace}/${inst.service} at ${inst.address}:${inst.port})`;
      // Workloads of one node share the agent's inbound port (SNI picks the service): unique per service, address and port.
      const key = `${inst.namespace}/${inst.service}\0${inst.address}\0${inst.port}`;
      const dup = seen.get(key);
      if (dup !== undefined) problems.push(`${where}: repeats the service, address and port of instances[${dup}]; one instance per service, address and port`);
      seen.set(key, i);
      if (!(await this.#deps.isAssigned(node, inst.identity))) {
        problems.push(`${where}: ${inst.identity} is not assigned to node ${node}; an operator can run 'meshctl assign ${node} ${inst.identity}'`);
        continue;
      }
      const svc = this.#deps.service(inst.namespace, inst.service);
      if (svc && svc.spec.identity !== inst.identity) {
        problems.push(`${where}: Service ${inst.namespace}/${inst.service} runs as ${svc.spec.identity}, not ${inst.identity}`);
      }
    }
    if (problems.length > 0) {
      this.#deps.log?.({ event: 'registration_refused', node, problems: problems.slice(0, 5) });
      return `registration refused, nothing changed: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`;
    }
    const n = this.#node(node, performance.now());
    await this.#enqueue(node, n, async () => {
      const next = new Map<string, { instance: Instance; endpoint: EndpointResource }>();
      for (const inst of instances) {
        const endpoint = this.#endpoint(node, inst, n.lapsed);
        next.set(resourceKey(endpoint), { instance: inst, endpoint });
      }
      const writes: Promise<unknown>[] = [];
      for (const [key, cur] of n.instances) {
        if (!next.has(key)) writes.push(this.#deps.deleteEndpoint(cur.endpoint.metadata.namespace, cur.endpoint.metadata.name));
      }
      for (const [key, want] of next) {
        const cur = n.instances.get(key);
        if (!cur || JSON.stringify(cur.endpoint) !== JSON.stringify(want.endpoint)) writes.push(this.#deps.putEndpoint(want.endpoint));
      }
      await Promise.all(writes);
      n.instances = next;
    });
    return undefined;
  }

  /** Registered instances, by node (for status pages). */
  counts(): Map<string, number> {
    return new Map([...this.#nodes].map(([node, n]) => [node, n.instances.size]));
  }

  /** Resolves when every queued write has run (tests, shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.#nodes.values()].map((n) => n.chain));
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #node(node: string, now: number): NodeState {
    let n = this.#nodes.get(node);
    if (!n) {
      n = { instances: new Map(), connected: false, lastHeartbeat: now, disconnectedAt: now, lapsed: false, chain: Promise.resolve() };
      this.#nodes.set(node, n);
    }
    return n;
  }

  #endpoint(node: string, inst: Instance, lapsed: boolean): EndpointResource {
    const healthy = !lapsed && inst.health === 'healthy';
    return {
      apiVersion: API_VERSION,
      kind: 'Endpoint',
      metadata: {
        name: endpointName(inst.service, node, inst.address, inst.port),
        namespace: inst.namespace,
        ...(inst.labels && { labels: inst.labels }),
      },
      spec: {
        service: inst.service,
        node,
        address: inst.address,
        port: inst.port,
        identity: inst.identity,
        ...(inst.zone !== undefined && { zone: inst.zone }),
        weight: 100,
        health: healthy ? 'healthy' : 'unhealthy',
        ...(!healthy && { reason: lapsed ? ('heartbeat_lapsed' as const) : ('check_failed' as const) }),
      },
    } as EndpointResource;
  }

  /** Rewrites every endpoint of the node for its current lapsed state. */
  async #rewrite(n: NodeState): Promise<void> {
    const writes: Promise<unknown>[] = [];
    for (const [key, cur] of n.instances) {
      const endpoint = cur.instance ? this.#endpoint(cur.endpoint.spec.node, cur.instance, n.lapsed) : lapse(cur.endpoint, n.lapsed);
      if (JSON.stringify(endpoint) === JSON.stringify(cur.endpoint)) continue;
      n.instances.set(key, { instance: cur.instance, endpoint });
      writes.push(this.#deps.putEndpoint(endpoint));
    }
    await Promise.all(writes);
  }

  #tick(): void {
    const now = performance.now();
    for (const [node, n] of this.#nodes) {
      if (!n.connected && now - n.disconnectedAt > this.#grace) {
        this.#nodes.delete(node);
        this.#deps.log?.({ event: 'node_expired', node, endpoints: n.instances.size });
        const gone = [...n.instances.values()];
        n.instances = new Map();
        void this.#enqueue(node, n, () => Promise.all(gone.map((g) => this.#deps.deleteEndpoint(g.endpoint.metadata.namespace, g.endpoint.metadata.name))));
        continue;
      }
      if (!n.lapsed && now - n.lastHeartbeat > this.#ttl && n.instances.size > 0) {
        n.lapsed = true;
        this.#deps.log?.({ event: 'heartbeat_lapsed', node });
        void this.#enqueue(node, n, () => this.#rewrite(n));
      }
    }
  }

  #enqueue(node: string, n: NodeState, work: () => Promise<unknown>): Promise<unknown> {
    const run = n.chain.then(work).catch((err: unknown) => {
      this.#deps.log?.({ event: 'registry_write_failed', node, error: (err as Error).message });
      throw err;
    });
    // The chain goes on after a failure; the caller still sees it.
    n.chain = run.catch(() => undefined);
    return run;
  }
}

function stripVersion(r: EndpointResource): EndpointResource {
  const { version: _v, ...metadata } = r.metadata;
  return { ...r, metadata } as EndpointResource;
}

/** An endpoint loaded from the store (no instance known): only its lapsed health changes. */
function lapse(e: EndpointResource, lapsed: boolean): EndpointResource {
  if (lapsed) return { ...e, spec: { ...e.spec, health: 'unhealthy', reason: 'heartbeat_lapsed' } };
  if (e.spec.reason !== 'heartbeat_lapsed') return e;
  const { reason: _r, ...spec } = e.spec;
  return { ...e, spec: { ...spec, health: 'healthy' } };
}
