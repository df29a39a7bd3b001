// A client for the CA's HTTPS API (docs/api/ca.md), for meshctl and the
// node agent. It never imports the CA: it speaks the wire format only.
//
// The CA's SVID names it by URI SAN (spiffe://<td>/control-plane/ca), not by
// hostname; SvidHttpsClient verifies it as an X.509-SVID with that ID on
// every new connection, before a request (a join token, a CSR) is written.
import tls from 'node:tls';
import { parseCertificate } from './parse-certificate.js';
import { fromPem, toPem } from './pem.js';
import { parseSpiffeId, parseTrustDomain } from './spiffe-id.js';
import { classifySocketError, parseErrorBody, SvidHttpsClient, type SvidHttpsErrors } from './svid-https.js';
import { bundleFromPem, type SpiffeBundleDocument, type TrustBundle } from './trust-bundle.js';

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
  /** The CA's clock when it answered (ISO 8601, ms); absent from older CAs. */
  time?: string;
}

// ------------------------------------------------------------ helpers

const DEFAULT_TIMEOUT_MS = 10_000;
/** Largest answer read (a SPIFFE bundle is at most 1 MiB; revocation lists stay well below). */
const MAX_RESPONSE_BYTES = 4 << 20;
const SERVER_NAME = 'the CA';
const ERRORS: SvidHttpsErrors<CaClientError> = { transport: transportError, answer: errorFromBody };

/** Sorts a socket-level failure into a transport reason. */
export function classifyTransportError(err: Error & { code?: string }): CaClientError {
  return err instanceof CaClientError ? err : classifySocketError(err, SERVER_NAME, ERRORS);
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

export class CaClient {
  readonly url: URL;
  readonly trustDomain: string;
  readonly expectedServerId: string;
  readonly timeoutMs: number;
  #credential: CaCredential | undefined;
  #bundlePem: string;
  #https: SvidHttpsClient<CaClientError>;

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
    this.#https = this.#buildTransport();
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
    this.#https.close();
  }

  #replace(change: () => void): void {
    const [oldBundle, oldCred] = [this.#bundlePem, this.#credential];
    change();
    try {
      const next = this.#buildTransport();
      this.#https.close();
      this.#https = next;
    } catch (err) {
      [this.#bundlePem, this.#credential] = [oldBundle, oldCred];
      throw err;
    }
  }

  #buildTransport(): SvidHttpsClient<CaClientError> {
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
    return new SvidHttpsClient({
      url: this.url,
      serverName: SERVER_NAME,
      expectedServerId: this.expectedServerId,
      bundle,
      secureContext,
      timeoutMs: this.timeoutMs,
      maxResponseBytes: MAX_RESPONSE_BYTES,
      errors: ERRORS,
    });
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
    return this.#https.request('GET', '/v1/bundle?format=pem');
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

  #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.#https.json(method, path, body === undefined ? undefined : { type: 'application/json', body: Buffer.from(JSON.stringify(body)) });
  }
}

/** The CA's `{error:{code,reason,message}}` answer as a CaClientError. */
export function errorFromBody(method: string, path: string, status: number, text: string): CaClientError {
  const e = parseErrorBody(text);
  if (e) return new CaClientError(e.code, e.reason, e.message, status);
  return new CaClientError('AMIME_ERR_CA_CLIENT_BAD_RESPONSE', 'bad_response', `${method} ${path}: HTTP ${status} without an error body: ${text.slice(0, 200)}`, status);
}
