// A client for the control plane's admin API (docs/api/control-plane.md),
// for meshctl. It speaks the wire format only.
//
// Over the same transport as CaClient (SvidHttpsClient, @amime/identity): the
// server is verified as an X.509-SVID on every new connection before a
// request is written on it, and its SPIFFE ID must be the expected one
// (spiffe://<td>/control-plane/controller by default).
import tls from 'node:tls';
import { bundleFromPem, parseErrorBody, parseSpiffeId, parseTrustDomain, SvidHttpsClient, trustDomainFromPem, type TrustBundle } from '@amime/identity';
import type { Issue, Resource } from '@amime/protocol';
import type { AgentStatus } from './admin-api.js';
import type { AgentConfigDump, CertInventory, EndpointView } from './operator-views.js';
import type { ApplyOutcome, DeleteResult } from './resource-service.js';
import type { TrafficSnapshot } from '@amime/traffic';
import { followTraffic, isTrafficSnapshot, type TrafficStreamConnect } from './traffic-client.js';
import { openTapStream, type TapEndFrame, type TapFrame, type TapStreamRequest } from './tap-client.js';

/** Reasons a request failed before the control plane could answer it. */
export const CONTROL_PLANE_CLIENT_TRANSPORT_REASONS = ['unreachable', 'timeout', 'server_identity', 'tls', 'bad_response', 'bad_options'] as const;
export type ControlPlaneClientTransportReason = (typeof CONTROL_PLANE_CLIENT_TRANSPORT_REASONS)[number];

const TRANSPORT_PREFIX = 'AMIME_ERR_CP_CLIENT_';

/**
 * Either the control plane's refusal (code, reason, message, HTTP status and,
 * for invalid resources, the issues, from its `{error:{...}}` body) or a
 * transport failure (status 0, code AMIME_ERR_CP_CLIENT_<REASON>).
 */
export class ControlPlaneClientError extends Error {
  constructor(
    readonly code: string,
    readonly reason: string,
    message: string,
    /** HTTP status; 0 when the control plane never answered. */
    readonly status = 0,
    readonly issues?: readonly Issue[],
  ) {
    super(message);
    this.name = 'ControlPlaneClientError';
  }

  /** True when the control plane itself refused the request. */
  get refused(): boolean {
    return !this.code.startsWith(TRANSPORT_PREFIX);
  }
}

function transportError(reason: ControlPlaneClientTransportReason, message: string): ControlPlaneClientError {
  return new ControlPlaneClientError(`${TRANSPORT_PREFIX}${reason.toUpperCase()}`, reason, message);
}

export interface ControlPlaneClientOptions {
  /** https://host:port of the admin API. */
  url: string;
  /** Trust roots (PEM) the server's certificate must chain to. */
  bundlePem: string;
  /** Our admin SVID (chain, leaf first) and PKCS#8 key (PEM). */
  credential: { certPem: string; keyPem: string };
  /** Default: from the credential's SPIFFE ID, else the bundle roots'. */
  trustDomain?: string;
  /** Default spiffe://<td>/control-plane/controller. */
  expectedServerId?: string;
  /** Per request, connect included; default 10 s. */
  timeoutMs?: number;
}

export type ApplyFormat = 'yaml' | 'json';

const DEFAULT_TIMEOUT_MS = 10_000;
/** Largest answer read: a listing of every Endpoint of a big mesh fits. */
const MAX_RESPONSE_BYTES = 64 << 20;

const segment = (s: string): string => encodeURIComponent(s);

export class ControlPlaneClient {
  readonly url: URL;
  readonly trustDomain: string;
  readonly expectedServerId: string;
  readonly timeoutMs: number;
  readonly #https: SvidHttpsClient<ControlPlaneClientError>;
  /** What a WebSocket stream (watchTraffic) connects with. */
  readonly #stream: TrafficStreamConnect;

  constructor(opts: ControlPlaneClientOptions) {
    try {
      this.url = new URL(opts.url);
    } catch {
      throw transportError('bad_options', `url: ${JSON.stringify(opts.url)} is not a URL; expected https://HOST:PORT`);
    }
    if (this.url.protocol !== 'https:') throw transportError('bad_options', `url: the admin API is HTTPS only; expected https://HOST:PORT, not ${this.url.protocol}`);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs < 1) throw transportError('bad_options', 'timeoutMs: must be a positive whole number of milliseconds');
    let bundle: TrustBundle;
    try {
      this.trustDomain =
        opts.trustDomain !== undefined
          ? parseTrustDomain(opts.trustDomain)
          : (trustDomainFromPem(opts.credential.certPem) ?? trustDomainFromPem(opts.bundlePem) ?? '');
      if (this.trustDomain === '') throw new Error('neither the credential nor the bundle roots name one; pass trustDomain');
      this.expectedServerId = opts.expectedServerId ?? `spiffe://${this.trustDomain}/control-plane/controller`;
      parseSpiffeId(this.expectedServerId);
      bundle = bundleFromPem(opts.bundlePem, this.trustDomain);
    } catch (err) {
      throw transportError('bad_options', `trust: ${(err as Error).message}`);
    }
    let secureContext: tls.SecureContext;
    try {
      secureContext = tls.createSecureContext({ ca: opts.bundlePem, cert: opts.credential.certPem, key: opts.credential.keyPem, minVersion: 'TLSv1.3' });
    } catch (err) {
      throw transportError('bad_options', `credential: ${(err as Error).message}`);
    }
    this.#https = new SvidHttpsClient({
      url: this.url,
      serverName: 'the control plane',
      expectedServerId: this.expectedServerId,
      bundle,
      secureContext,
      timeoutMs: this.timeoutMs,
      maxResponseBytes: MAX_RESPONSE_BYTES,
      maxSockets: 4,
      maxFreeSockets: 1,
      errors: { transport: transportError, answer: errorFromBody },
    });
    this.#stream = {
      url: this.url,
      bundlePem: opts.bundlePem,
      bundle,
      credential: opts.credential,
      expectedServerId: this.expectedServerId,
      timeoutMs: this.timeoutMs,
      transport: (reason, message) => transportError(reason as ControlPlaneClientTransportReason, message),
      answer: errorFromBody,
    };
  }

  /** Close idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#https.close();
  }

  /** Applies YAML (multi-document) or JSON (an object or an array of them). */
  apply(text: string, format: ApplyFormat, dryRun = false): Promise<ApplyOutcome> {
    const type = format === 'json' ? 'application/json' : 'application/yaml';
    return this.#https.json('POST', `/v1/resources${dryRun ? '?dryRun=true' : ''}`, { type: `${type}; charset=utf-8`, body: Buffer.from(text, 'utf8') });
  }

  /** One resource; 404 (AMIME_ERR_CP_NOT_FOUND) when missing. */
  get(kind: string, namespace: string, name: string): Promise<Resource>;
  /** Every resource of `kind`, or of `kind` in `namespace`. */
  get(kind: string, namespace?: string): Promise<Resource[]>;
  async get(kind: string, namespace?: string, name?: string): Promise<Resource | Resource[]> {
    const parts = [kind, namespace, name].filter((p): p is string => p !== undefined).map(segment);
    const out = await this.#https.json<Resource | { items: Resource[] }>('GET', `/v1/resources/${parts.join('/')}`);
    if (name !== undefined) return out as Resource;
    const items = (out as { items?: unknown }).items;
    if (!Array.isArray(items)) throw transportError('bad_response', 'GET /v1/resources: the answer has no items array');
    return items as Resource[];
  }

  delete(kind: string, namespace: string, name: string, dryRun = false): Promise<DeleteResult> {
    return this.#https.json('DELETE', `/v1/resources/${[kind, namespace, name].map(segment).join('/')}${dryRun ? '?dryRun=true' : ''}`);
  }

  async agents(): Promise<AgentStatus[]> {
    const out = await this.#https.json<{ agents?: unknown }>('GET', '/v1/agents');
    if (!Array.isArray(out.agents)) throw transportError('bad_response', 'GET /v1/agents: the answer has no agents array');
    return out.agents as AgentStatus[];
  }

  status(): Promise<Record<string, unknown>> {
    return this.#https.json('GET', '/v1/status');
  }

  /**
   * A live request stream of one service (GET /v1/tap, a WebSocket): `onFrame`
   * for each frame; resolves with the end frame when the tap's duration ends,
   * or undefined once `signal` aborts (the control plane then untaps).
   */
  tap(request: TapStreamRequest, onFrame: (f: TapFrame) => void, signal?: AbortSignal): Promise<TapEndFrame | undefined> {
    return openTapStream(this.#stream, request, onFrame, signal);
  }

  /** The live per-edge traffic over the last `windowSeconds` (10..3600; the control plane's default, 60, when absent). */
  async traffic(windowSeconds?: number): Promise<TrafficSnapshot> {
    const out = await this.#https.json<unknown>('GET', `/v1/traffic${windowSeconds === undefined ? '' : `?window=${encodeURIComponent(String(windowSeconds))}`}`);
    if (!isTrafficSnapshot(out)) throw transportError('bad_response', 'GET /v1/traffic: the answer is not a traffic snapshot (windowSeconds, generatedAt, edges)');
    return out;
  }

  /**
   * Follows GET /v1/traffic/stream: `onSnapshot` at once, then whenever the
   * view changes (at most once a second), until `signal` aborts (resolves)
   * or the stream ends or is refused (rejects with a ControlPlaneClientError).
   */
  watchTraffic(onSnapshot: (s: TrafficSnapshot) => void, opts: { windowSeconds?: number; signal?: AbortSignal } = {}): Promise<void> {
    return followTraffic(this.#stream, onSnapshot, opts);
  }

  /** Every registered instance, optionally of one service and/or namespace. */
  async endpoints(filter: { service?: string; namespace?: string } = {}): Promise<EndpointView[]> {
    const q = new URLSearchParams();
    if (filter.service !== undefined) q.set('service', filter.service);
    if (filter.namespace !== undefined) q.set('namespace', filter.namespace);
    const qs = q.toString();
    const path = `/v1/endpoints${qs === '' ? '' : `?${qs}`}`;
    const out = await this.#https.json<{ items?: unknown }>('GET', path);
    if (!Array.isArray(out.items)) throw transportError('bad_response', 'GET /v1/endpoints: the answer has no items array');
    return out.items as EndpointView[];
  }

  /** Roots, intermediates, agent and workload SVIDs, each with its expiry. */
  async certs(): Promise<CertInventory> {
    const out = await this.#https.json<Partial<CertInventory>>('GET', '/v1/certs');
    for (const k of ['roots', 'intermediates', 'agents', 'workloads'] as const) {
      if (!Array.isArray(out[k])) throw transportError('bad_response', `GET /v1/certs: the answer has no ${k} array`);
    }
    return out as CertInventory;
  }

  /** What the control plane holds for a connected node; 404 (reason agent_not_connected) otherwise. */
  agentConfig(node: string): Promise<AgentConfigDump> {
    return this.#https.json('GET', `/v1/agents/${segment(node)}/config`);
  }
}

/** The control plane's `{error:{code,reason,message,issues?}}` answer as a ControlPlaneClientError. */
export function errorFromBody(method: string, path: string, status: number, text: string): ControlPlaneClientError {
  const e = parseErrorBody(text);
  if (e) return new ControlPlaneClientError(e.code, e.reason, e.message, status, e.issues as Issue[] | undefined);
  return new ControlPlaneClientError(`${TRANSPORT_PREFIX}BAD_RESPONSE`, 'bad_response', `${method} ${path}: HTTP ${status} without an error body: ${text.slice(0, 200)}`, status);
}
