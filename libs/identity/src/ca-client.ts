// A client for the CA's HTTPS API (docs/api/ca.md), for meshctl and the
// node agent. It never imports the CA: it speaks the wire format only.
//
// The CA's SVID names it by URI SAN (spiffe://<td>/control-plane/ca), not by
// hostname, so hostname checking is off and the server is verified as an
// X.509-SVID instead: OpenSSL checks the chain against the bundle, then
// verifyPeer checks the SPIFFE profile and the ID must equal the expected
// one. That happens in the agent's createConnection, before the socket is
// handed to the HTTP request, so not one byte of a request (a join token, a
// CSR) reaches a server that has not proved it is the CA.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parseCertificate } from './parse-certificate.js';
import { fromPem, toPem } from './pem.js';
import { parseSpiffeId, parseTrustDomain } from './spiffe-id.js';
import { bundleFromPem, type SpiffeBundleDocument, type TrustBundle } from './trust-bundle.js';
import { verifyPeer } from './tls.js';

/** Reasons a request failed before the CA could answer it. */
export const CA_CLIENT_TRANSPORT_REASONS = ['unreachable', 'timeout', 'server_identity', 'tls', 'bad_response'] as const;
export type CaClientTransportReason = (typeof CA_CLIENT_TRANSPORT_REASONS)[number];

/**
 * Either the CA's refusal (code, reason, message and HTTP status from its
 * `{error:{code,reason,message}}` body) or a transport failure (status 0,
 * code AMIME_ERR_CA_CLIENT_<REASON>, reason one of CA_CLIENT_TRANSPORT_REASONS).
 */
export class CaClientError extends Error {
  constructor(
    readonly code: string,
    readonly reason: string,
    message: string,
    /** HTTP status; 0 when the CA never answered. */
    readonly status = 0,
  ) {
    super(message);
    this.name = 'CaClientError';
  }

  /** True when the CA itself refused the request (it answered with its error JSON). */
  get refused(): boolean {
    return !this.code.startsWith('AMIME_ERR_CA_CLIENT_');
  }
}

function transportError(reason: CaClientTransportReason | 'bad_options', message: string): CaClientError {
  return new CaClientError(`AMIME_ERR_CA_CLIENT_${reason.toUpperCase()}`, reason, message);
}

export interface CaCredential {
  /** Our SVID chain, leaf first (PEM). */
  certPem: string;
  /** PKCS#8 private key (PEM). */
  keyPem: string;
}

export interface CaClientOptions {
  /** https://host:port of the CA API. */
  url: string;
  /** Trust roots (PEM) the CA's server certificate must chain to. */
  bundlePem: string;
  /** Our SVID for mTLS; absent only for join-token bootstrap. */
  credential?: CaCredential;
  /** Trust domain; by default taken from the credential's SPIFFE ID, else from the bundle roots' URI SAN. */
  trustDomain?: string;
  /** The server must prove this SPIFFE ID; default spiffe://<td>/control-plane/ca. */
  expectedServerId?: string;
  /** Per request, connect included; default 10 s. */
  timeoutMs?: number;
}

// ------------------------------------------------------------ wire types

export interface JoinResult {
  spiffeId: string;
  node: string;
  serial: string;
  notAfter: string;
  /** Leaf then intermediate (PEM). */
  svid: string;
  /** The trust bundle's roots (PEM). */
  bundle: string;
}
export interface SvidResult {
  spiffeId: string;
  serial: string;
  notAfter: string;
  svid: string;
}
export interface RevocationList {
  version: number;
  serials: string[];
  spiffeIds: string[];
}
export type Assignments = Record<string, string[]>;
export interface JoinToken {
  token: string;
  node: string;
  expiresAt: string;
}
export interface Assignment {
  node: string;
  spiffeId: string;
}
export type RevokeTarget = ({ serial: string } | { spiffeId: string } | { node: string }) & { reason?: string };
export interface RevokeResult {
  version: number;
  /** Only when a node was evicted. */
  revokedSerials?: number;
}
export type RotationStep = 'prepare' | 'activate' | 'retire';
export interface RotationStatus {
  phase: 'steady' | 'prepared' | 'activated';
  newSlot?: string;
  oldSlot?: string;
  preparedAt?: string;
  activatedAt?: string;
  retireAfter?: string;
  activeSlot: string;
  bundleSequence: number;
  roots: { slot: string; fingerprint: string; notAfter: string }[];
  canActivateAfter?: string;
}
export interface CaStatus {
  trustDomain: string;
  keyAlgorithm: string;
  bundleSequence: number;
  revocationVersion: number;
  rotation: RotationStatus['phase'];
  roots: string[];
  activeSlot: string;
  nodes: Record<string, { joinedAt?: string; evictedAt?: string }>;
  assignments: number;
  pendingTokens: number;
  ttl: Record<string, number>;
}

// ------------------------------------------------------------ helpers

const DEFAULT_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 20_000;
/** Largest answer read (a SPIFFE bundle is at most 1 MiB; revocation lists stay well below). */
const MAX_RESPONSE_BYTES = 4 << 20;

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** Sorts a socket-level failure into a transport reason. */
export function classifyTransportError(err: Error & { code?: string }): CaClientError {
  if (err instanceof CaClientError) return err;
  const code = err.code ?? '';
  const detail = code ? `${code}: ${err.message}` : err.message;
  if (code === 'ETIMEDOUT') return transportError('timeout', `CA did not answer in time (${detail})`);
  if (UNREACHABLE_CODES.has(code)) return transportError('unreachable', `cannot reach the CA (${detail})`);
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /CERT|SIGNATURE|ISSUER|SELF_SIGNED/.test(code)) {
    return transportError('tls', `TLS with the CA failed (${detail})`);
  }
  return transportError('unreachable', `cannot reach the CA (${detail})`);
}

/** Trust domain named by the first spiffe:// URI SAN in the PEM certificates, if any. */
export function trustDomainFromPem(pem: string): string | undefined {
  for (const der of fromPem(pem, 'CERTIFICATE')) {
    const uri = parseCertificate(der).uris.find((u) => u.startsWith('spiffe://'));
    if (uri) return parseSpiffeId(uri).trustDomain;
  }
  return undefined;
}

const csrText = (csr: string | Buffer): string => (typeof csr === 'string' ? csr : toPem('CERTIFICATE REQUEST', csr));

interface Transport {
  agent: https.Agent;
  bundle: TrustBundle;
}

/**
 * A keep-alive agent whose connections are verified as the CA before any
 * request is written on them. No TLS session resumption: every connection
 * presents (and has verified) the server's full chain.
 */
class VerifiedCaAgent extends https.Agent {
  constructor(
    private readonly connectOptions: tls.ConnectionOptions,
    private readonly verify: (socket: tls.TLSSocket) => CaClientError | undefined,
    private readonly timeoutMs: number,
  ) {
    // Idle connections close after 20 s, before the CA's 30 s keep-alive timeout.
    super({ keepAlive: true, timeout: IDLE_TIMEOUT_MS, maxSockets: 8, maxFreeSockets: 2, maxCachedSessions: 0 });
  }

  // Node's Agent calls createConnection(options, callback) and waits for the callback when it returns nothing.
  override createConnection(options: http.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    if (!callback) throw new Error('VerifiedCaAgent: createConnection needs a callback (Node >= 20)');
    const host = options.host ?? 'localhost';
    const socket = tls.connect({
      ...this.connectOptions,
      host,
      port: Number(options.port),
      ...(isIP(host) ? {} : { servername: host }),
    });
    let settled = false;
    const settle = (err: CaClientError | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('error', onError);
      socket.setTimeout(0);
      if (err) {
        socket.on('error', () => undefined); // late errors of a socket we gave up on
        socket.destroy();
        callback(err, socket);
      } else callback(null, socket);
    };
    const onError = (err: Error) => settle(classifyTransportError(err));
    socket.on('error', onError);
    socket.setTimeout(this.timeoutMs, () => settle(transportError('timeout', `no TLS connection to the CA within ${this.timeoutMs} ms`)));
    socket.once('secureConnect', () => settle(this.verify(socket) ?? null));
    return undefined;
  }
}

export class CaClient {
  readonly url: URL;
  readonly trustDomain: string;
  readonly expectedServerId: string;
  readonly timeoutMs: number;
  #credential: CaCredential | undefined;
  #bundlePem: string;
  #transport: Transport;

  constructor(opts: CaClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw transportError('bad_options', `url: ${JSON.stringify(opts.url)} is not a URL; expected https://HOST:PORT`);
    }
    if (url.protocol !== 'https:') throw transportError('bad_options', `url: the CA API is HTTPS only; expected https://HOST:PORT, not ${url.protocol}`);
    this.url = url;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs < 1) throw transportError('bad_options', 'timeoutMs: must be a positive whole number of milliseconds');
    this.trustDomain = CaClient.#trustDomain(opts);
    this.expectedServerId = opts.expectedServerId ?? `spiffe://${this.trustDomain}/control-plane/ca`;
    try {
      parseSpiffeId(this.expectedServerId);
    } catch (err) {
      throw transportError('bad_options', `expectedServerId: ${(err as Error).message}`);
    }
    this.#credential = opts.credential;
    this.#bundlePem = opts.bundlePem;
    this.#transport = this.#buildTransport();
  }

  static #trustDomain(opts: CaClientOptions): string {
    try {
      if (opts.trustDomain !== undefined) return parseTrustDomain(opts.trustDomain);
      if (opts.expectedServerId !== undefined) return parseSpiffeId(opts.expectedServerId).trustDomain;
      const td = (opts.credential && trustDomainFromPem(opts.credential.certPem)) ?? trustDomainFromPem(opts.bundlePem);
      if (td !== undefined) return td;
    } catch (err) {
      throw transportError('bad_options', `trust domain: ${(err as Error).message}`);
    }
    throw transportError('bad_options', 'trust domain: neither the credential nor the bundle roots name one; pass trustDomain or expectedServerId');
  }

  /** The trust roots in use (PEM). */
  get bundlePemInUse(): string {
    return this.#bundlePem;
  }

  /** Trust new roots (after a bundle refresh or a rotation step); open connections are dropped. */
  updateTrust(bundlePem: string): void {
    this.#replace(() => (this.#bundlePem = bundlePem));
  }

  /** Authenticate with a renewed SVID from now on; open connections are dropped. */
  updateCredential(credential: CaCredential): void {
    this.#replace(() => (this.#credential = credential));
  }

  /** Close idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#transport.agent.destroy();
  }

  #replace(change: () => void): void {
    const [oldBundle, oldCred] = [this.#bundlePem, this.#credential];
    change();
    try {
      const next = this.#buildTransport();
      this.#transport.agent.destroy();
      this.#transport = next;
    } catch (err) {
      [this.#bundlePem, this.#credential] = [oldBundle, oldCred];
      throw err;
    }
  }

  #buildTransport(): Transport {
    let bundle: TrustBundle;
    try {
      bundle = bundleFromPem(this.#bundlePem, this.trustDomain);
    } catch (err) {
      throw transportError('bad_options', `bundlePem: ${(err as Error).message}`);
    }
    let secureContext: tls.SecureContext;
    try {
      secureContext = tls.createSecureContext({
        ca: this.#bundlePem,
        minVersion: 'TLSv1.3',
        ...(this.#credential ? { cert: this.#credential.certPem, key: this.#credential.keyPem } : {}),
      });
    } catch (err) {
      throw transportError('bad_options', `credential: ${(err as Error).message}`);
    }
    const verify = (socket: tls.TLSSocket): CaClientError | undefined => {
      const peer = verifyPeer(socket, { bundle });
      if (!peer.ok) return transportError('server_identity', `the CA's server certificate was refused (${peer.reason}): ${peer.message}`);
      if (peer.spiffeId !== this.expectedServerId) {
        return transportError('server_identity', `the server at ${this.url.host} is ${peer.spiffeId}, not ${this.expectedServerId}`);
      }
      return undefined;
    };
    const connectOptions: tls.ConnectionOptions = {
      secureContext,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      // The CA's SVID has a URI SAN only; verify() checks its SPIFFE ID instead.
      checkServerIdentity: () => undefined,
    };
    return { agent: new VerifiedCaAgent(connectOptions, verify, this.timeoutMs), bundle };
  }

  // ------------------------------------------------------------ anyone

  /** Bootstrap: spend a join token for the SVID spiffe://<td>/agent/<node>. */
  join(token: string, csr: string | Buffer): Promise<JoinResult> {
    return this.#json('POST', '/v1/join', { token, csr: csrText(csr) });
  }

  // ------------------------------------------------------------ any SVID of the trust domain

  /** An SVID for `spiffeId` (our own, an assigned workload's, or an admin's control-plane/admin ID). */
  svid(csr: string | Buffer, spiffeId: string): Promise<SvidResult> {
    return this.#json('POST', '/v1/svid', { csr: csrText(csr), spiffeId });
  }
  /** The trust bundle as a SPIFFE bundle document (JWKS with spiffe_sequence). */
  bundle(): Promise<SpiffeBundleDocument> {
    return this.#json('GET', '/v1/bundle');
  }
  /** The trust bundle's roots as PEM. */
  async bundlePem(): Promise<string> {
    return (await this.#request('GET', '/v1/bundle?format=pem')).text;
  }
  revocations(): Promise<RevocationList> {
    return this.#json('GET', '/v1/revocations');
  }
  /** Assignments of `node` (an agent always gets its own node's). */
  assignments(node?: string): Promise<Assignments> {
    return this.#json('GET', node === undefined ? '/v1/assignments' : `/v1/assignments?node=${encodeURIComponent(node)}`);
  }

  // ------------------------------------------------------------ admin

  createToken(node: string, ttlSeconds?: number): Promise<JoinToken> {
    return this.#json('POST', '/v1/admin/tokens', ttlSeconds === undefined ? { node } : { node, ttlSeconds });
  }
  assign(node: string, spiffeId: string): Promise<Assignment> {
    return this.#json('POST', '/v1/admin/assignments', { node, spiffeId });
  }
  unassign(node: string, spiffeId: string): Promise<Assignment> {
    return this.#json('DELETE', '/v1/admin/assignments', { node, spiffeId });
  }
  listAssignments(): Promise<Assignments> {
    return this.#json('GET', '/v1/admin/assignments');
  }
  /** Revoke one serial, one SPIFFE ID, or evict a node (every SVID whose key lives there). */
  revoke(target: RevokeTarget): Promise<RevokeResult> {
    return this.#json('POST', '/v1/admin/revocations', target);
  }
  unrevoke(spiffeId: string): Promise<{ version: number }> {
    return this.#json('DELETE', '/v1/admin/revocations', { spiffeId });
  }
  rotation(): Promise<RotationStatus> {
    return this.#json('GET', '/v1/admin/rotation');
  }
  rotate(step: RotationStep, force = false): Promise<RotationStatus> {
    return this.#json('POST', `/v1/admin/rotation/${step}`, force ? { force: true } : {});
  }
  status(): Promise<CaStatus> {
    return this.#json('GET', '/v1/admin/status');
  }

  // ------------------------------------------------------------ transport

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const reply = await this.#request(method, path, body);
    try {
      return JSON.parse(reply.text) as T;
    } catch {
      throw transportError('bad_response', `${method} ${path}: the CA answered 200 with a body that is not JSON`);
    }
  }

  async #request(method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    try {
      return await this.#once(method, path, payload);
    } catch (err) {
      // A kept-alive connection the CA closed while idle: the request never
      // reached it, so one retry on a fresh connection is safe.
      if ((err as { staleSocket?: boolean }).staleSocket) return this.#once(method, path, payload);
      throw err;
    }
  }

  #once(method: string, path: string, payload: Buffer | undefined): Promise<{ status: number; text: string }> {
    const { agent } = this.#transport;
    return new Promise((resolve, reject) => {
      let done = false;
      const timing: { timer?: NodeJS.Timeout } = {};
      const finish = (err: Error | null, value?: { status: number; text: string }) => {
        if (done) return;
        done = true;
        clearTimeout(timing.timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const req = https.request({
        agent,
        protocol: 'https:',
        host: this.url.hostname.replace(/^\[|\]$/g, ''),
        port: this.url.port || 443,
        method,
        path,
        headers: {
          accept: 'application/json',
          'x-request-id': randomUUID(),
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      });
      timing.timer = setTimeout(() => {
        finish(transportError('timeout', `${method} ${path}: no answer from the CA within ${this.timeoutMs} ms`));
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err: Error & { code?: string }) => {
        const e = classifyTransportError(err);
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
        res.on('error', (err) => finish(classifyTransportError(err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 200) return finish(null, { status, text });
          finish(errorFromBody(method, path, status, text));
        });
      });
      req.end(payload);
    });
  }
}

/** The CA's `{error:{code,reason,message}}` answer as a CaClientError. */
export function errorFromBody(method: string, path: string, status: number, text: string): CaClientError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const e = (parsed as { error?: Record<string, unknown> } | undefined)?.error;
  if (e && typeof e['code'] === 'string' && typeof e['message'] === 'string') {
    return new CaClientError(e['code'], typeof e['reason'] === 'string' ? e['reason'] : 'unknown', e['message'], status);
  }
  return new CaClientError('AMIME_ERR_CA_CLIENT_BAD_RESPONSE', 'bad_response', `${method} ${path}: HTTP ${status} without an error body: ${text.slice(0, 200)}`, status);
}
