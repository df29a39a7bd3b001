// Inbound HTTP: a peer agent's request, arrived over a verified mTLS connection, to the
// local app. Per request: hygiene → strip x-amime-source-identity → authorize (policy
// and path normalisation, the caller's) → rate limit → forward the normalised path and
// the original query with the identity header set to the verified peer ID.
import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { forwardableHeaders, SOURCE_IDENTITY_HEADER } from './headers.js';
import { relayBody } from './relay.js';
import { REQUEST_ID_HEADER, TRACEPARENT_HEADER, formatTraceparent, requestIdFor, traceFor, type TraceContext } from './trace.js';
import { checkRequest, respondError, respondErrorOnSocket } from './server-options.js';

export type AuthorizeResult =
  | { readonly allowed: true; /** Normalised path: what the app sees and what was authorized. */ readonly path: string; /** Raw query without "?" ('' for none). */ readonly query: string }
  | { readonly allowed: false; readonly status: 403 | 400; /** snake_case, sent as x-amime-error. */ readonly reason: string };

export interface LocalApp {
  readonly host: string;
  readonly port: number;
  /** Keep-alive agent to the app. */
  readonly agent: http.Agent;
}

export interface InboundResult {
  /** Verified caller; undefined when the connection carried none. */
  readonly peerId: string | undefined;
  readonly method: string;
  /** The path forwarded (normalised); the raw target when refused before authorization. */
  readonly path: string;
  /** Status sent to the peer; 499 when the peer went away first. */
  readonly status: number;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** Why the agent answered itself or the exchange broke; undefined when the app's response passed through whole. */
  readonly error: string | undefined;
  readonly upgrade: boolean;
  /** This hop's span of the request's trace (continued from the caller's traceparent, or new). */
  readonly trace: TraceContext;
  /** x-request-id as sent to the app. */
  readonly requestId: string;
  /** The caller's IP address (IPv4-mapped IPv6 unwrapped). */
  readonly peerAddress: string | undefined;
  /** The Host header as received (for taps), unvalidated. */
  readonly authority: string | undefined;
}

type ResultCore = Omit<InboundResult, 'trace' | 'requestId' | 'peerAddress' | 'authority'>;

function addressOf(req: IncomingMessage): string | undefined {
  const a = req.socket.remoteAddress;
  return a?.startsWith('::ffff:') ? a.slice(7) : a;
}

export interface InboundDeps {
  /** The verified SPIFFE ID of the peer on this connection (set by the caller when the mTLS handshake verified it). */
  peerIdOf(socket: Socket): string | undefined;
  /** Policy and path normalisation (the caller's). `rawTarget` is the request-target as received. */
  authorize(peerId: string, method: string, rawTarget: string): AuthorizeResult;
  /** Per-peer rate limit; false answers 429. */
  rateLimit?(peerId: string): boolean;
  local: LocalApp;
  onResult?(info: InboundResult): void;
  /** Time for the app to send its response head; 0 = none (the default). Past it: 504. */
  responseTimeoutMs?: number;
  /** Milliseconds, monotonic; default performance.now. */
  now?: () => number;
}

export interface InboundHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** For `server.on('upgrade', handler.upgrade)`: authorised like any request, then spliced to the app. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

// The identity header is never forwarded from a caller; the trace context is re-stamped with this hop's span.
const DROP_IDENTITY: ReadonlySet<string> = new Set([SOURCE_IDENTITY_HEADER, TRACEPARENT_HEADER]);
const DROP_IDENTITY_ID: ReadonlySet<string> = new Set([SOURCE_IDENTITY_HEADER, TRACEPARENT_HEADER, REQUEST_ID_HEADER]);

interface Ids {
  readonly trace: TraceContext;
  readonly requestId: string;
}

type Admission = { ok: true; peerId: string; headers: string[]; path: string; ids: Ids } | { ok: false; status: number; reason: string; peerId: string | undefined; ids: Ids | undefined };

export function createInboundHandler(deps: InboundDeps): InboundHandler {
  const now = deps.now ?? (() => performance.now());
  const local = deps.local;

  function report(req: IncomingMessage, ids: Ids | undefined, info: ResultCore): void {
    if (!deps.onResult) return;
    try {
      deps.onResult({ ...info, ...(ids ?? { trace: traceFor(undefined), requestId: requestIdFor(undefined).id }), peerAddress: addressOf(req), authority: req.headers.host });
    } catch {
      // a broken access logger must not break the data plane
    }
  }

  /** Everything a request must pass before the app sees it; shared by requests and upgrades. */
  function admit(req: IncomingMessage): Admission {
    // The identity header is dropped from what is forwarded before anything else reads
    // the request; only the verified peer ID is ever sent on.
    const rid = requestIdFor(req.headers[REQUEST_ID_HEADER]);
    const headers = forwardableHeaders(req.rawHeaders, rid.fresh ? DROP_IDENTITY_ID : DROP_IDENTITY);
    const ids: Ids = { trace: traceFor(req.headers.traceparent), requestId: rid.id };
    const refusal = checkRequest(req);
    const peerId = deps.peerIdOf(req.socket);
    if (refusal) return { ok: false, status: refusal.status, reason: refusal.reason, peerId, ids };
    if (!peerId) return { ok: false, status: 403, reason: 'unauthenticated', peerId, ids };
    const method = req.method ?? '';
    const decision = deps.authorize(peerId, method, req.url ?? '');
    if (!decision.allowed) return { ok: false, status: decision.status, reason: decision.reason, peerId, ids };
    if (deps.rateLimit && !deps.rateLimit(peerId)) return { ok: false, status: 429, reason: 'rate_limited', peerId, ids };
    headers.push(SOURCE_IDENTITY_HEADER, peerId, TRACEPARENT_HEADER, formatTraceparent(ids.trace));
    if (rid.fresh) headers.push(REQUEST_ID_HEADER, rid.id);
    return { ok: true, peerId, headers, path: decision.query ? `${decision.path}?${decision.query}` : decision.path, ids };
  }

  function localRequest(method: string, path: string, headers: string[]): ClientRequest {
    const r = http.request({ agent: local.agent, host: local.host, port: local.port, method, path, headers, setHost: false } as http.RequestOptions);
    r.setNoDelay(true);
    return r;
  }

  function handler(req: IncomingMessage, res: ServerResponse): void {
    const t0 = now();
    const method = req.method ?? '';
    let a: Admission;
    try {
      a = admit(req);
    } catch {
      a = { ok: false, status: 500, reason: 'proxy_error', peerId: undefined, ids: undefined };
    }
    if (!a.ok) {
      respondError(res, a.status, a.reason, a.status === 400 || a.status >= 500);
      req.resume();
      report(req, a.ids, { peerId: a.peerId, method, path: req.url ?? '', status: a.status, durationMs: now() - t0, requestBytes: 0, responseBytes: 0, error: a.reason, upgrade: false });
      return;
    }
    const { peerId, path, ids } = a;
    let requestBytes = 0;
    let responseBytes = 0;
    let done = false;
    let connected = false;
    const finish = (status: number, error: string | undefined): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      report(req, ids, { peerId, method, path, status, durationMs: now() - t0, requestBytes, responseBytes, error, upgrade: false });
    };
    const headers = a.headers;
    if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
    const up = localRequest(method, path, headers);
    const timer = deps.responseTimeoutMs ? setTimeout(() => up.destroy(new Error('timeout')), deps.responseTimeoutMs) : undefined;
    up.on('socket', (s: Socket) => {
      if (!s.connecting) connected = true;
      else s.once('connect', () => (connected = true));
    });
    up.on('error', (err) => {
      if (res.headersSent) {
        res.destroy();
        finish(res.statusCode, 'upstream_aborted');
        return;
      }
      const status = err.message === 'timeout' ? 504 : 502;
      const reason = err.message === 'timeout' ? 'local_timeout' : connected ? 'local_reset' : 'local_connect_failure';
      respondError(res, status, reason);
      req.resume();
      finish(status, reason);
    });
    up.on('response', (r) => {
      if (timer) clearTimeout(timer);
      const status = r.statusCode ?? 502;
      try {
        res.writeHead(status, r.statusMessage, forwardableHeaders(r.rawHeaders));
      } catch {
        r.destroy();
        res.destroy();
        finish(502, 'bad_local_response');
        return;
      }
      r.on('data', (c: Buffer) => (responseBytes += c.length));
      relayBody(r, res, (ok) => {
        if (ok) finish(status, undefined);
        else if (r.complete) finish(499, 'client_closed');
        else finish(status, 'upstream_aborted');
      });
    });
    res.once('close', () => {
      if (!res.writableFinished) {
        up.destroy();
        finish(499, 'client_closed');
      }
    });
    req.on('data', (c: Buffer) => (requestBytes += c.length));
    req.pipe(up);
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const t0 = now();
    const method = req.method ?? '';
    socket.on('error', () => socket.destroy());
    let a: Admission;
    try {
      a = admit(req);
    } catch {
      a = { ok: false, status: 500, reason: 'proxy_error', peerId: undefined, ids: undefined };
    }
    if (!a.ok) {
      respondErrorOnSocket(socket, a.status, a.reason);
      report(req, a.ids, { peerId: a.peerId, method, path: req.url ?? '', status: a.status, durationMs: now() - t0, requestBytes: 0, responseBytes: 0, error: a.reason, upgrade: true });
      return;
    }
    const { peerId, path, ids } = a;
    let done = false;
    let upgraded = false;
    const finish = (status: number, error: string | undefined): void => {
      if (done) return;
      done = true;
      report(req, ids, { peerId, method, path, status, durationMs: now() - t0, requestBytes: 0, responseBytes: 0, error, upgrade: true });
    };
    a.headers.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'websocket');
    const up = localRequest(method, path, a.headers);
    up.on('error', () => {
      if (upgraded) return;
      respondErrorOnSocket(socket, 502, 'local_connect_failure');
      finish(502, 'local_connect_failure');
    });
    up.on('upgrade', (r, appSocket, appHead) => {
      upgraded = true;
      let text = `HTTP/1.1 ${r.statusCode ?? 101} ${r.statusMessage ?? 'Switching Protocols'}\r\n`;
      for (let i = 0; i < r.rawHeaders.length; i += 2) text += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`;
      socket.write(`${text}\r\n`);
      if (appHead.length) socket.write(appHead);
      if (head.length) appSocket.write(head);
      appSocket.setNoDelay(true);
      appSocket.on('error', () => appSocket.destroy());
      const close = (): void => {
        socket.destroy();
        appSocket.destroy();
        finish(101, undefined);
      };
      socket.on('close', close);
      appSocket.on('close', close);
      socket.pipe(appSocket);
      appSocket.pipe(socket);
    });
    up.on('response', (r) => {
      // the app declined the upgrade: relay its answer and close
      let text = `HTTP/1.1 ${r.statusCode ?? 502} ${r.statusMessage ?? ''}\r\n`;
      const fwd = forwardableHeaders(r.rawHeaders);
      for (let i = 0; i < fwd.length; i += 2) text += `${fwd[i]}: ${fwd[i + 1]}\r\n`;
      socket.write(`${text}connection: close\r\n\r\n`);
      const status = r.statusCode ?? 502;
      pipeline(r, socket, () => finish(status, undefined));
    });
    socket.once('close', () => {
      if (!upgraded && !done) {
        up.destroy();
        finish(499, 'client_closed');
      }
    });
    up.end();
  }

  return Object.assign(handler, { upgrade });
}
