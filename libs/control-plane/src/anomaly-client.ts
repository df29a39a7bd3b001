// A client for the control plane's /v1/anomalies routes and their WebSocket
// stream, for meshctl. Same transport rules as ControlPlaneClient: the
// server must prove the expected SPIFFE ID (for the stream, checked on the
// upgrade answer, before any finding is read).
import tls from 'node:tls';
import { bundleFromPem, SvidHttpsClient, type TrustBundle } from '@amime/identity';
import type { EdgeKey, Finding } from '@amime/monitor';
import { followAdminSocket, type AdminSocketConnection } from './admin-websocket.js';
import { ControlPlaneClientError, errorFromBody } from './client.js';

export interface AnomalyClientOptions {
  /** https://host:port of the admin API. */
  url: string | URL;
  bundlePem: string;
  credential: { certPem: string; keyPem: string };
  trustDomain: string;
  /** Default spiffe://<td>/control-plane/controller. */
  expectedServerId?: string;
  /** Per request; default 10 s. */
  timeoutMs?: number;
}

export interface AnomalyList {
  items: Finding[];
  /** The monitor's state: edges held, learning or not, settings. */
  monitor: Record<string, unknown>;
}

const transport = (reason: string, message: string) => new ControlPlaneClientError(`AMIME_ERR_CP_CLIENT_${reason.toUpperCase()}`, reason, message);
/** Largest finding frame read from the stream. */
const MAX_FINDING_BYTES = 64 * 1024;

export class AnomalyClient {
  readonly #url: URL;
  readonly #https: SvidHttpsClient<ControlPlaneClientError>;
  /** What the finding stream (watch) connects with. */
  readonly #stream: AdminSocketConnection;

  constructor(opts: AnomalyClientOptions) {
    this.#url = new URL(String(opts.url));
    const expected = opts.expectedServerId ?? `spiffe://${opts.trustDomain}/control-plane/controller`;
    let bundle: TrustBundle;
    try {
      bundle = bundleFromPem(opts.bundlePem, opts.trustDomain);
    } catch (err) {
      throw transport('bad_options', `trust: ${(err as Error).message}`);
    }
    this.#https = new SvidHttpsClient({
      url: this.#url,
      serverName: 'the control plane',
      expectedServerId: expected,
      bundle,
      secureContext: tls.createSecureContext({ ca: opts.bundlePem, cert: opts.credential.certPem, key: opts.credential.keyPem, minVersion: 'TLSv1.3' }),
      timeoutMs: opts.timeoutMs ?? 10_000,
      maxResponseBytes: 16 << 20,
      maxSockets: 2,
      maxFreeSockets: 1,
      errors: { transport: (reason, message) => transport(reason, message), answer: errorFromBody },
    });
    this.#stream = {
      url: this.#url,
      bundlePem: opts.bundlePem,
      bundle,
      credential: opts.credential,
      expectedServerId: expected,
      timeoutMs: opts.timeoutMs ?? 10_000,
      transport,
      answer: errorFromBody,
    };
  }

  close(): void {
    this.#https.close();
  }

  /** Recent findings, newest first; `since` is an ISO time or epoch ms. */
  async list(opts: { since?: string; limit?: number } = {}): Promise<AnomalyList> {
    const q = new URLSearchParams();
    if (opts.since !== undefined) q.set('since', opts.since);
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const out = await this.#https.json<Partial<AnomalyList>>('GET', `/v1/anomalies${q.size > 0 ? `?${q}` : ''}`);
    if (!Array.isArray(out.items)) throw transport('bad_response', 'GET /v1/anomalies: the answer has no items array');
    return { items: out.items, monitor: out.monitor ?? {} };
  }

  accept(edge: EdgeKey): Promise<{ edge: EdgeKey; changed: boolean }> {
    const body = JSON.stringify({ source: edge.source, service: edge.service, namespace: edge.namespace });
    return this.#https.json('POST', '/v1/anomalies/accept', { type: 'application/json', body: Buffer.from(body, 'utf8') });
  }

  /**
   * Follows the stream: `onFinding` for each finding until `signal` aborts
   * (resolves) or the connection ends or is refused (rejects).
   */
  watch(onFinding: (f: Finding) => void, signal?: AbortSignal): Promise<void> {
    return followAdminSocket(this.#stream, {
      url: new URL('/v1/anomalies/stream', this.#url),
      name: 'anomaly stream',
      maxPayload: MAX_FINDING_BYTES,
      signal,
      onFrame: (f) => {
        // a frame that is not JSON is skipped
        if (f !== undefined) onFinding(f as Finding);
      },
    });
  }
}
