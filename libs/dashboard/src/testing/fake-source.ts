// A MeshSource for tests: answers from fields the test sets, a route can be
// made to "not exist" (404, as an older control plane answers), and streams
// are pushed by hand.
import { ControlPlaneClientError } from '@amime/control-plane';
import type { Finding } from '@amime/monitor';
import type { MeshSource } from '../mesh-source.js';
import type { CertsAnswer, EndpointInstance, ResourceLike, TrafficSnapshot } from '../mesh-types.js';

type Listing = 'services' | 'routes' | 'policies' | 'endpoints' | 'traffic' | 'certs' | 'agents' | 'anomalies';

export class FakeMeshSource implements MeshSource {
  data = {
    services: [] as ResourceLike[],
    routes: [] as ResourceLike[],
    policies: [] as ResourceLike[],
    endpoints: [] as EndpointInstance[],
    traffic: { windowSeconds: 60, generatedAt: new Date(0).toISOString(), edges: [] } as TrafficSnapshot,
    certs: { time: new Date(0).toISOString(), roots: [], intermediates: [], agents: [], workloads: [] } as CertsAnswer,
    agents: [] as unknown[],
    anomalies: [] as Finding[],
  };
  /** Listings that answer 404 (no such route). */
  readonly missing = new Set<Listing | 'trafficStream' | 'anomalyStream'>();
  /** Listings that fail as if the control plane were down. */
  down = false;
  readonly calls: string[] = [];
  #traffic = new Set<(s: TrafficSnapshot) => void>();
  #findings = new Set<(f: Finding) => void>();
  closed = false;

  #answer<T>(what: Listing, value: T): Promise<T> {
    this.calls.push(what);
    if (this.down) return Promise.reject(new ControlPlaneClientError('AMIME_ERR_CP_CLIENT_UNREACHABLE', 'unreachable', 'cannot reach the control plane (ECONNREFUSED)'));
    if (this.missing.has(what)) return Promise.reject(new ControlPlaneClientError('AMIME_ERR_CP_NOT_FOUND', 'no_route', `no route "/v1/${what}"`, 404));
    return Promise.resolve(structuredClone(value));
  }

  services = () => this.#answer('services', this.data.services);
  routes = () => this.#answer('routes', this.data.routes);
  policies = () => this.#answer('policies', this.data.policies);
  endpoints = () => this.#answer('endpoints', this.data.endpoints);
  traffic = () => this.#answer('traffic', this.data.traffic);
  certs = () => this.#answer('certs', this.data.certs);
  agents = () => this.#answer('agents', this.data.agents);
  anomalies = () => this.#answer('anomalies', this.data.anomalies);

  watchTraffic(on: (s: TrafficSnapshot) => void, signal: AbortSignal): Promise<void> {
    return this.#watch(this.#traffic, on, signal, 'trafficStream');
  }

  watchAnomalies(on: (f: Finding) => void, signal: AbortSignal): Promise<void> {
    return this.#watch(this.#findings, on, signal, 'anomalyStream');
  }

  #watch<T>(set: Set<(v: T) => void>, on: (v: T) => void, signal: AbortSignal, name: 'trafficStream' | 'anomalyStream'): Promise<void> {
    if (this.missing.has(name)) return Promise.reject(new ControlPlaneClientError('AMIME_ERR_CP_NOT_FOUND', 'no_route', `no route ${name}`, 404));
    set.add(on);
    return new Promise((resolve) => signal.addEventListener('abort', () => (set.delete(on), resolve()), { once: true }));
  }

  /** Sends a traffic frame to every follower (as the control plane does on a change). */
  pushTraffic(s: TrafficSnapshot): number {
    this.data.traffic = s;
    for (const on of this.#traffic) on(structuredClone(s));
    return this.#traffic.size;
  }

  pushFinding(f: Finding): number {
    this.data.anomalies = [f, ...this.data.anomalies];
    for (const on of this.#findings) on(structuredClone(f));
    return this.#findings.size;
  }

  close(): void {
    this.closed = true;
  }
}
