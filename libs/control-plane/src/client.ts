// A client for the control plane's admin API (docs/api/control-plane.md),
// for meshctl. It speaks the wire format only.
//
// As with CaClient (@amime/identity), the server is verified as an X.509-SVID
// on every new connection before a request is written on it: the chain
// against the bundle (OpenSSL), then verifyPeer, then its SPIFFE ID must be
// the expected one (spiffe://<td>/control-plane/controller by default). The
// SVID has a URI SAN only, so hostname checking is replaced by that check.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { bundleFromPem, parseSpiffeId, parseTrustDomain, trustDomainFromPem, verifyPeer, type TrustBundle } from '@amime/identity';
import type { Issue, Resource } from '@amime/protocol';
import type { AgentStatus } from './admin-api.js';
import type { ApplyOutcome, DeleteResult } from './resource-service.js';

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
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

function classify(err: Error & { code?: string }): ControlPlaneClientError {
  if (err instanceof ControlPlaneClientError) return err;
  const code = err.code ?? '';
  const detail = code ? `${code}: ${err.message}` : err.message;
  if (code === 'ETIMEDOUT') return transportError('timeout', `the control plane did not answer in time (${detail})`);
  if (!UNREACHABLE.has(code) && (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /CERT|SIGNATURE|ISSUER|SELF_SIGNED/.test(code))) {
    return transportError('tls', `TLS with the control plane failed (${detail})`);
  }
  return transportError('unreachable', `cannot reach the control plane (${detail})`);
}

/** Connections verified as the expected server before the agent hands them out; no session resumption. */
class VerifiedAgent extends https.Agent {
  constructor(
    private readonly connectOptions: tls.ConnectionOptions,
    private readonly verify: (socket: tls.TLSSocket) => ControlPlaneClientError | undefined,
    private readonly timeoutMs: number,
  ) {
    super({ keepAlive: true, timeout: 20_000, maxSockets: 4, maxFreeSockets: 1, maxCachedSessions: 0 });
  }

  // Node's Agent waits for the callback when createConnection returns nothing.
  override createConnection(options: http.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    if (!callback) throw new Error('VerifiedAgent: createConnection needs a callback (Node >= 20)');
    const host = options.host ?? 'localhost';
    const socket = tls.connect({ ...this.connectOptions, host, port: Number(options.port), ...(isIP(host) ? {} : { servername: host }) });
    let settled = false;
    const settle = (err: ControlPlaneClientError | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('error', onError);
      socket.setTimeout(0);
      if (err) {
        socket.on('error', () => undefined);
        socket.destroy();
      }
      callback(err, socket);
    };
    const onError = (err: Error) => settle(classify(err));
    socket.on('error', onError);
    socket.setTimeout(this.timeoutMs, () => settle(transportError('timeout', `no TLS connection to the control plane within ${this.timeoutMs} ms`)));
    socket.once('secureConnect', () => settle(this.verify(socket) ?? null));
    return undefined;
  }
}

const segment = (s: string): string => encodeURIComponent(s);

export class ControlPlaneClient {
  readonly url: URL;
  readonly trustDomain: string;
  readonly expectedServerId: string;
  readonly timeoutMs: number;
  readonly #agent: VerifiedAgent;

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
    const verify = (socket: tls.TLSSocket): ControlPlaneClientError | undefined => {
      const peer = verifyPeer(socket, { bundle });
      if (!peer.ok) return transportError('server_identity', `the control plane's server certificate was refused (${peer.reason}): ${peer.message}`);
      if (peer.spiffeId !== this.expectedServerId) return transportError('server_identity', `the server at ${this.url.host} is ${peer.spiffeId}, not ${this.expectedServerId}`);
      return undefined;
    };
    // The SVID names the server by URI SAN; verify() checks that instead of a hostname.
    this.#agent = new VerifiedAgent({ secureContext, minVersion: 'TLSv1.3', rejectUnauthorized: true, checkServerIdentity: () => undefined }, verify, this.timeoutMs);
  }

  /** Close idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#agent.destroy();
  }

  /** Applies YAML (multi-document) or JSON (an object or an array of them). */
  apply(text: string, format: ApplyFormat, dryRun = false): Promise<ApplyOutcome> {
    const type = format === 'json' ? 'application/json' : 'application/yaml';
    return this.#json('POST', `/v1/resources${dryRun ? '?dryRun=true' : ''}`, { type, body: Buffer.from(text, 'utf8') });
  }

  /** One resource; 404 (AMIME_ERR_CP_NOT_FOUND) when missing. */
  get(kind: string, namespace: string, name: string): Promise<Resource>;
  /** Every resource of `kind`, or of `kind` in `namespace`. */
  get(kind: string, namespace?: string): Promise<Resource[]>;
  async get(kind: string, namespace?: string, name?: string): Promise<Resource | Resource[]> {
    const parts = [kind, namespace, name].filter((p): p is string => p !== undefined).map(segment);
    const out = await this.#json<Resource | { items: Resource[] }>('GET', `/v1/resources/${parts.join('/')}`);
    if (name !== undefined) return out as Resource;
    const items = (out as { items?: unknown }).items;
    if (!Array.isArray(items)) throw transportError('bad_response', 'GET /v1/resources: the answer has no items array');
    return items as Resource[];
  }

  delete(kind: string, namespace: string, name: string, dryRun = false): Promise<DeleteResult> {
    return this.#json('DELETE', `/v1/resources/${[kind, namespace, name].map(segment).join('/')}${dryRun ? '?dryRun=true' : ''}`);
  }

  async agents(): Promise<AgentStatus[]> {
    const out = await this.#json<{ agents?: unknown }>('GET', '/v1/agents');
    if (!Array.isArray(out.agents)) throw transportError('bad_response', 'GET /v1/agents: the answer has no agents array');
    return out.agents as AgentStatus[];
  }

  status(): Promise<Record<string, unknown>> {
    return this.#json('GET', '/v1/status');
  }

  async #json<T>(method: string, path: string, payload?: { type: string; body: Buffer }): Promise<T> {
    let text: string;
    try {
      text = await this.#once(method, path, payload);
    } catch (err) {
      // A kept-alive connection the server closed while idle: the request
      // never reached it, so one retry on a fresh connection is safe.
      if (!(err as { staleSocket?: boolean }).staleSocket) throw err;
      text = await this.#once(method, path, payload);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw transportError('bad_response', `${method} ${path}: the control plane answered 200 with a body that is not JSON`);
    }
  }

  #once(method: string, path: string, payload: { type: string; body: Buffer } | undefined): Promise<string> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Error | null, text?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(text!);
      };
      const req = https.request({
        agent: this.#agent,
        protocol: 'https:',
        host: this.url.hostname.replace(/^\[|\]$/g, ''),
        port: this.url.port || 443,
        method,
        path,
        headers: {
          accept: 'application/json',
          'x-request-id': randomUUID(),
          ...(payload ? { 'content-type': `${payload.type}; charset=utf-8`, 'content-length': String(payload.body.length) } : {}),
        },
      });
      const timer = setTimeout(() => {
        finish(transportError('timeout', `${method} ${path}: no answer from the control plane within ${this.timeoutMs} ms`));
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err: Error & { code?: string }) => {
        const e = classify(err);
        if (req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) Object.assign(e, { staleSocket: true });
        finish(e);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            finish(transportError('bad_response', `${method} ${path}: answer over ${MAX_RESPONSE_BYTES} bytes`));
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => finish(classify(err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 200) finish(null, text);
          else finish(errorFromBody(method, path, status, text));
        });
      });
      req.end(payload?.body);
    });
  }
}

/** The control plane's `{error:{code,reason,message,issues?}}` answer as a ControlPlaneClientError. */
export function errorFromBody(method: string, path: string, status: number, text: string): ControlPlaneClientError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const e = (parsed as { error?: Record<string, unknown> } | undefined)?.error;
  if (e && typeof e['code'] === 'string' && typeof e['message'] === 'string') {
    const issues = Array.isArray(e['issues']) ? (e['issues'] as Issue[]) : undefined;
    return new ControlPlaneClientError(e['code'], typeof e['reason'] === 'string' ? e['reason'] : 'unknown', e['message'], status, issues);
  }
  return new ControlPlaneClientError(`${TRANSPORT_PREFIX}BAD_RESPONSE`, 'bad_response', `${method} ${path}: HTTP ${status} without an error body: ${text.slice(0, 200)}`, status);
}
