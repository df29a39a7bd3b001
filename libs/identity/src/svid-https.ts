// HTTPS to a server that names itself by SPIFFE ID: the transport under
// CaClient and @amime/control-plane's ControlPlaneClient.
//
// Such a server's SVID has a URI SAN only, so hostname checking is off and
// the server is verified as an X.509-SVID instead: OpenSSL checks the chain
// against the bundle, then verifyPeer checks the SPIFFE profile, and the ID
// must equal the expected one. That happens in the agent's createConnection,
// before the socket is handed to the HTTP request, so not one byte of a
// request (a join token, a CSR, a resource) reaches a server that has not
// proved who it is. Errors are the caller's own type, built by its factories.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { TrustBundle } from './trust-bundle.js';
import { verifyPeer } from './tls.js';

/** Reasons a request failed before the server could answer it. */
export const SVID_HTTPS_TRANSPORT_REASONS = ['unreachable', 'timeout', 'server_identity', 'tls', 'bad_response'] as const;
export type SvidHttpsTransportReason = (typeof SVID_HTTPS_TRANSPORT_REASONS)[number];

/** How the caller's errors are made. */
export interface SvidHttpsErrors<E extends Error> {
  /** A failure before the server answered (socket, TLS, identity, timeout, an unreadable answer). */
  transport(reason: SvidHttpsTransportReason, message: string): E;
  /** A non-200 answer, from its status and body text. */
  answer(method: string, path: string, status: number, text: string): E;
}

export interface SvidHttpsOptions<E extends Error> {
  /** https://host:port of the server; paths are requested against it. */
  url: URL;
  /** The server in messages, e.g. 'the CA', 'the control plane'. */
  serverName: string;
  /** The SPIFFE ID the server must prove. */
  expectedServerId: string;
  /** Trust roots the server's SVID is verified against (as the secure context's `ca`). */
  bundle: TrustBundle;
  /** TLS 1.3 context with the bundle as `ca` and, for mTLS, our SVID and key. */
  secureContext: tls.SecureContext;
  /** Per request attempt, connect included. */
  timeoutMs: number;
  /** Largest answer read; a longer one fails with bad_response. */
  maxResponseBytes: number;
  /** Connections open at once; default 8. */
  maxSockets?: number;
  /** Idle connections kept; default 2. */
  maxFreeSockets?: number;
  errors: SvidHttpsErrors<E>;
}

/** A request body and its content-type header value. */
export interface SvidHttpsBody {
  type: string;
  body: Buffer;
}

// Idle connections close after 20 s, before the servers' 30 s keep-alive timeout.
const IDLE_TIMEOUT_MS = 20_000;
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** Sorts a socket-level failure into a transport reason. */
export function classifySocketError<E extends Error>(err: Error & { code?: string }, serverName: string, errors: Pick<SvidHttpsErrors<E>, 'transport'>): E {
  const code = err.code ?? '';
  const detail = code ? `${code}: ${err.message}` : err.message;
  if (code === 'ETIMEDOUT') return errors.transport('timeout', `${serverName} did not answer in time (${detail})`);
  if (!UNREACHABLE_CODES.has(code) && (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /CERT|SIGNATURE|ISSUER|SELF_SIGNED/.test(code))) {
    return errors.transport('tls', `TLS with ${serverName} failed (${detail})`);
  }
  return errors.transport('unreachable', `cannot reach ${serverName} (${detail})`);
}

/** A refusal body, `{error:{code,reason,message,issues?}}`; `reason` is 'unknown' when the server gave none. */
export interface SvidHttpsErrorBody {
  code: string;
  reason: string;
  message: string;
  issues?: unknown[];
}

/** The refusal in a non-200 answer's text, or undefined when the text is not one. */
export function parseErrorBody(text: string): SvidHttpsErrorBody | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const e = (parsed as { error?: Record<string, unknown> } | null)?.error;
  if (!e || typeof e['code'] !== 'string' || typeof e['message'] !== 'string') return undefined;
  const reason = typeof e['reason'] === 'string' ? e['reason'] : 'unknown';
  return { code: e['code'], reason, message: e['message'], ...(Array.isArray(e['issues']) ? { issues: e['issues'] as unknown[] } : {}) };
}

type Outcome<E> = { ok: true; text: string } | { ok: false; error: E; stale: boolean };

/**
 * A keep-alive agent whose connections are verified as the expected server
 * before any request is written on them. No TLS session resumption: every
 * connection presents (and has verified) the server's full chain.
 */
class VerifiedAgent<E extends Error> extends https.Agent {
  readonly #connectOptions: tls.ConnectionOptions;

  constructor(
    private readonly opts: SvidHttpsOptions<E>,
    private readonly fail: (err: Error) => E,
  ) {
    super({ keepAlive: true, timeout: IDLE_TIMEOUT_MS, maxSockets: opts.maxSockets ?? 8, maxFreeSockets: opts.maxFreeSockets ?? 2, maxCachedSessions: 0 });
    // The SVID names the server by URI SAN; #verify checks that instead of a hostname.
    this.#connectOptions = { secureContext: opts.secureContext, minVersion: 'TLSv1.3', rejectUnauthorized: true, checkServerIdentity: () => undefined };
  }

  // Node's Agent calls createConnection(options, callback) and waits for the callback when it returns nothing.
  override createConnection(options: http.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    if (!callback) throw new Error('VerifiedAgent: createConnection needs a callback (Node >= 20)');
    const host = options.host ?? 'localhost';
    const socket = tls.connect({ ...this.#connectOptions, host, port: Number(options.port), ...(isIP(host) ? {} : { servername: host }) });
    let settled = false;
    const settle = (err: E | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('error', onError);
      socket.setTimeout(0);
      if (err) {
        socket.on('error', () => undefined); // late errors of a socket we gave up on
        socket.destroy();
      }
      callback(err, socket);
    };
    const onError = (err: Error) => settle(this.fail(err));
    socket.on('error', onError);
    const { timeoutMs, serverName, errors } = this.opts;
    socket.setTimeout(timeoutMs, () => settle(errors.transport('timeout', `no TLS connection to ${serverName} within ${timeoutMs} ms`)));
    socket.once('secureConnect', () => settle(this.#verify(socket) ?? null));
    return undefined;
  }

  #verify(socket: tls.TLSSocket): E | undefined {
    const { bundle, expectedServerId, serverName, url, errors } = this.opts;
    const peer = verifyPeer(socket, { bundle });
    if (!peer.ok) return errors.transport('server_identity', `${serverName}'s server certificate was refused (${peer.reason}): ${peer.message}`);
    if (peer.spiffeId !== expectedServerId) return errors.transport('server_identity', `the server at ${url.host} is ${peer.spiffeId}, not ${expectedServerId}`);
    return undefined;
  }
}

/**
 * Requests to one server over verified, kept-alive connections. Resolves
 * with the body of a 200 answer; rejects with the caller's error otherwise.
 */
export class SvidHttpsClient<E extends Error> {
  readonly #opts: SvidHttpsOptions<E>;
  readonly #agent: VerifiedAgent<E>;
  /** Errors this client made, passed through instead of classified again. */
  readonly #own = new WeakSet<Error>();

  constructor(opts: SvidHttpsOptions<E>) {
    const made = (e: E): E => {
      this.#own.add(e);
      return e;
    };
    this.#opts = {
      ...opts,
      errors: {
        transport: (reason, message) => made(opts.errors.transport(reason, message)),
        answer: (method, path, status, text) => made(opts.errors.answer(method, path, status, text)),
      },
    };
    this.#agent = new VerifiedAgent(this.#opts, (err) => this.#classify(err));
  }

  /** Close idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#agent.destroy();
  }

  /** The body text of a 200 answer. */
  async request(method: string, path: string, body?: SvidHttpsBody): Promise<string> {
    let out = await this.#once(method, path, body);
    // A kept-alive connection the server closed while idle: the request
    // never reached it, so one retry on a fresh connection is safe.
    if (!out.ok && out.stale) out = await this.#once(method, path, body);
    if (!out.ok) throw out.error;
    return out.text;
  }

  /** A 200 answer parsed as JSON; any other body is a bad_response. */
  async json<T>(method: string, path: string, body?: SvidHttpsBody): Promise<T> {
    const text = await this.request(method, path, body);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw this.#opts.errors.transport('bad_response', `${method} ${path}: ${this.#opts.serverName} answered 200 with a body that is not JSON`);
    }
  }

  #classify(err: Error): E {
    return this.#own.has(err) ? (err as E) : classifySocketError(err, this.#opts.serverName, this.#opts.errors);
  }

  #once(method: string, path: string, payload: SvidHttpsBody | undefined): Promise<Outcome<E>> {
    const { url, timeoutMs, maxResponseBytes, serverName, errors } = this.#opts;
    return new Promise((resolve) => {
      let done = false;
      const finish = (out: Outcome<E>) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(out);
      };
      const fail = (error: E, stale = false) => finish({ ok: false, error, stale });
      const req = https.request({
        agent: this.#agent,
        protocol: 'https:',
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || 443,
        method,
        path,
        headers: {
          accept: 'application/json',
          'x-request-id': randomUUID(),
          ...(payload ? { 'content-type': payload.type, 'content-length': String(payload.body.length) } : {}),
        },
      });
      const timer = setTimeout(() => {
        fail(errors.transport('timeout', `${method} ${path}: no answer from ${serverName} within ${timeoutMs} ms`));
        req.destroy();
      }, timeoutMs);
      req.on('error', (err: Error & { code?: string }) => fail(this.#classify(err), req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxResponseBytes) {
            fail(errors.transport('bad_response', `${method} ${path}: answer over ${maxResponseBytes} bytes`));
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => fail(this.#classify(err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 200) finish({ ok: true, text });
          else fail(errors.answer(method, path, status, text));
        });
      });
      req.end(payload?.body);
    });
  }
}
