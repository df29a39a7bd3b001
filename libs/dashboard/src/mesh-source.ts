// Where the dashboard reads the mesh from: the control plane's admin API with
// the admin credential (ControlPlaneClient and AnomalyClient, which verify
// the control plane's SVID before a request is written). An interface so
// that tests (and the browser test's escaping case) can feed the server
// without a control plane.
import { AnomalyClient, ControlPlaneClient, ControlPlaneClientError, type AdminCredentialFiles } from '@amime/control-plane';
import type { Finding } from '@amime/monitor';
import type { CertsAnswer, EndpointInstance, ResourceLike, TrafficSnapshot } from './mesh-types.js';

export interface MeshSource {
  services(): Promise<ResourceLike[]>;
  routes(): Promise<ResourceLike[]>;
  policies(): Promise<ResourceLike[]>;
  endpoints(): Promise<EndpointInstance[]>;
  traffic(): Promise<TrafficSnapshot>;
  certs(): Promise<CertsAnswer>;
  agents(): Promise<unknown[]>;
  /** Recent findings, newest first. */
  anomalies(): Promise<Finding[]>;
  /** Follow /v1/traffic/stream until `signal` aborts (resolves) or it ends (rejects). */
  watchTraffic(onSnapshot: (s: TrafficSnapshot) => void, signal: AbortSignal): Promise<void>;
  /** Follow /v1/anomalies/stream likewise. */
  watchAnomalies(onFinding: (f: Finding) => void, signal: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * True when the control plane answered 404: for these listing GETs and
 * streams that means a route this control plane lacks (reason no_route) or a
 * feature it runs without. The page shows "not available".
 */
export function isNotAvailable(err: unknown): boolean {
  return err instanceof ControlPlaneClientError && err.status === 404;
}

const TIMEOUT_MS = 10_000;

export class AdminApiSource implements MeshSource {
  readonly #client: ControlPlaneClient;
  readonly #anomalies: AnomalyClient;

  constructor(url: string, cred: AdminCredentialFiles) {
    const credential = { certPem: cred.certPem, keyPem: cred.keyPem };
    this.#client = new ControlPlaneClient({ url, bundlePem: cred.bundlePem, credential, trustDomain: cred.trustDomain, timeoutMs: TIMEOUT_MS });
    this.#anomalies = new AnomalyClient({ url, bundlePem: cred.bundlePem, credential, trustDomain: cred.trustDomain, timeoutMs: TIMEOUT_MS });
  }

  services(): Promise<ResourceLike[]> {
    return this.#client.get('Service') as Promise<ResourceLike[]>;
  }

  routes(): Promise<ResourceLike[]> {
    return this.#client.get('Route') as Promise<ResourceLike[]>;
  }

  policies(): Promise<ResourceLike[]> {
    return this.#client.get('AuthorizationPolicy') as Promise<ResourceLike[]>;
  }

  endpoints(): Promise<EndpointInstance[]> {
    return this.#client.endpoints();
  }

  traffic(): Promise<TrafficSnapshot> {
    return this.#client.traffic();
  }

  certs(): Promise<CertsAnswer> {
    return this.#client.certs();
  }

  agents(): Promise<unknown[]> {
    return this.#client.agents();
  }

  async anomalies(): Promise<Finding[]> {
    return (await this.#anomalies.list({ limit: 200 })).items;
  }

  watchTraffic(onSnapshot: (s: TrafficSnapshot) => void, signal: AbortSignal): Promise<void> {
    return this.#client.watchTraffic(onSnapshot, { signal });
  }

  watchAnomalies(onFinding: (f: Finding) => void, signal: AbortSignal): Promise<void> {
    return this.#anomalies.watch(onFinding, signal);
  }

  close(): void {
    this.#client.close();
    this.#anomalies.close();
  }
}
