// A client for the control plane's /v1/anomalies routes and their WebSocket
// stream, for meshctl. Same transport rules as ControlPlaneClient: the
// server must prove the expected SPIFFE ID (for the stream, checked on the
// upgrade answer, before any finding is read).
import tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import { bundleFromPem, SvidHttpsClient, verifyPeer, type TrustBundle } from '@amime/identity';
import type { EdgeKey, Finding } from '@amime/monitor';
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
  readonly #opts: AnomalyClientOptions;
  readonly #bundle: TrustBundle;
  readonly #expected: string;
  readonly #https: SvidHttpsClient<ControlPlaneClientError>;

  constructor(opts: AnomalyClientOptions) {
    this.#opts = opts;
    this.#url = new URL(String(opts.url));
    this.#expected = opts.expectedServerId ?? `spiffe://${opts.trustDomain}/control-plane/controller`;
    try {
      this.#bundle = bundleFromPem(opts.bundlePem, opts.trustDomain);
    } catch (err) {
      throw transport('bad_options', `trust: ${(err as Error).message}`);
    }
    this.#https = new SvidHttpsClient({
      url: this.#url,
      serverName: 'the control plane',
      expectedServerId: this.#expected,
      bundle: this.#bundle,
      secureContext: tls.createSecureContext({ ca: opts.bundlePem, cert: opts.credential.certPem, key: opts.credential.keyPem, minVersion: 'TLSv1.3' }),
      timeoutMs: opts.timeoutMs ?? 10_000,
      maxResponseBytes: 16 << 20,
      maxSockets: 2,
      maxFreeSockets: 1,
      errors: { transport: (reason, message) => transport(reason, message), answer: errorFromBody },
    });
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
    const url = new URL('/v1/anomalies/stream', this.#url);
    url.protocol = 'wss:';
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const tlsOptions: tls.ConnectionOptions = {
        ca: this.#opts.bundlePem,
        cert: this.#opts.credential.certPem,
        key: this.#opts.credential.keyPem,
        minVersion: 'TLSv1.3',
        rejectUnauthorized: true,
        // the SVID names the server by URI SAN: checked on the upgrade below instead
        checkServerIdentity: () => undefined,
      };
      const ws = new WebSocket(url, {
        ...tlsOptions,
        maxPayload: MAX_FINDING_BYTES,
        perMessageDeflate: false,
        handshakeTimeout: this.#opts.timeoutMs ?? 10_000,
        followRedirects: false,
      } as ClientOptions);
      const onAbort = () => {
        ws.close(1000, 'done');
        finish();
      };
      signal?.addEventListener('abort', onAbort);
      ws.on('upgrade', (res: IncomingMessage) => {
        const peer = verifyPeer(res.socket as tls.TLSSocket, { bundle: this.#bundle });
        const problem = !peer.ok ? `the control plane's certificate was refused (${peer.reason}): ${peer.message}` : peer.spiffeId !== this.#expected ? `the server at ${url.host} is ${peer.spiffeId}, not ${this.#expected}` : undefined;
        if (problem) {
          ws.terminate();
          finish(transport('server_identity', problem));
        }
      });
      ws.on('unexpected-response', (_req, res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
        res.on('end', () => finish(errorFromBody('GET', url.pathname, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
        res.on('error', (err) => finish(transport('unreachable', err.message)));
      });
      ws.on('message', (data) => {
        let f: Finding;
        try {
          f = JSON.parse(String(data)) as Finding;
        } catch {
          return;
        }
        try {
          onFinding(f);
        } catch (err) {
          ws.terminate();
          finish(err as Error);
        }
      });
      ws.on('error', (err: Error & { code?: string }) => finish(transport(/TLS|SSL|CERT/.test(err.code ?? '') ? 'tls' : 'unreachable', `anomaly stream: ${err.message}`)));
      ws.on('close', (code: number, reason: Buffer) => {
        if (signal?.aborted) finish();
        else finish(transport('unreachable', `the control plane closed the anomaly stream (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
      });
    });
  }
}
