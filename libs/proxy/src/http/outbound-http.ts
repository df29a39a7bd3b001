// Outbound HTTP: the local app's plain HTTP/1.1 request in, routed by the service's
// RouteTable and sent to a peer agent over the pooled connection the caller picks.
// Per request: hygiene → route → fault → limits → body (buffer ≤ 64 KiB when it may be
// replayed) → mirror → attempts with retries (budgeted, jittered, avoiding the endpoint
// that just failed) → response streamed back with backpressure.
//
// Semantics worth knowing:
// - The route timeout starts after any fault delay and covers all attempts and the
//   response body (Envoy's); past it: 504 before the response head, a cut response after.
// - The per-try timeout covers one attempt up to its response head; it counts as a 504
//   for retryOn (gateway-error, 5xx).
// - A retry needs: retryOn matching, attempts left, a replayable body (none, or buffered
//   ≤ 64 KiB), an idempotent method unless the failure was a connect failure (the
//   request never left), another endpoint from pickEndpoint(…, avoid), and the budget.
//   Nothing is retried once the response head went to the app.
// - "Connected" means the socket the agent gave us was connected (a TLS socket: after
//   its handshake); an error before that is a connect failure, after it a reset.
// - Agent-made answers carry x-amime-error: unknown_service, no_route (404),
//   fault_abort, overloaded, no_endpoint, connect_failure (503), upstream_reset (502),
//   timeout (504), and the hygiene refusals of checkRequest.
import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { declaredLength, hasBody, MAX_REPLAY_BODY_BYTES, readBody } from './body.js';
import { forwardableHeaders, MIRROR_HEADER } from './headers.js';
import { Cancellation, relayBody } from './relay.js';
import { REQUEST_ID_HEADER, TRACEPARENT_HEADER, formatTraceparent, requestIdFor, traceFor, type TraceContext } from './trace.js';
import type { RetryBudgetLike } from './retry-budget.js';
import {
  RETRY_ON_5XX,
  RETRY_ON_CONNECT_FAILURE,
  RETRY_ON_GATEWAY_ERROR,
  RETRY_ON_RESET,
  type CompiledBackend,
  type CompiledRule,
  type RouteTable,
  type ServiceRef,
} from './route-table.js';
import { checkRequest, respondError, respondErrorOnSocket, splitTarget } from './server-options.js';

/** A peer agent serving one endpoint of a service. */
export interface PeerEndpoint {
  /** Stable key the balancer knows the endpoint by (passed back as `avoid`). */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** The SPIFFE ID the peer must present. */
  readonly identity: string;
}

/** One pick of the caller's balancer: the endpoint and the pooled (mTLS) agent to reach it. */
export interface EndpointLease {
  readonly endpoint: PeerEndpoint;
  /** Pools connections to this endpoint's peer agent; its `protocol` may be "http:" or "https:". */
  readonly agent: http.Agent;
  /** Passed as `servername` to the agent's createConnection. */
  readonly sni: string;
  /**
   * Extra options merged into every http.request on this lease, e.g. the `peer` route
   * ({ address, port, sni, sourceIdentity, expectedIdentity }) a peer-pool agent reads
   * in createConnection.
   */
  readonly requestOptions?: Readonly<Record<string, unknown>>;
  /** Called when an attempt on this endpoint begins (not on pick). */
  start(): void;
  /** Called exactly once per start(): ok = a response under 500 fully received; latency to the response head. */
  finish(ok: boolean, latencyMs: number): void;
}

/** Connection / request limits of a destination service (the circuit breaker). */
export interface RequestLimiter {
  /** False when the service is at its limit: the request is refused with 503 overloaded. */
  tryRequest(): boolean;
  releaseRequest(): void;
}

export interface OutboundResult {
  /** The service the app addressed; undefined when it resolved to none. */
  readonly service: ServiceRef | undefined;
  /** The backend the rule picked. */
  readonly backend: ServiceRef | undefined;
  /** Route name ('' for the default rule or no rule). */
  readonly route: string;
  /** Rule index in its Route; -1 for the default rule or none. */
  readonly rule: number;
  readonly method: string;
  /** Status sent to the app; 499 when the app went away first. */
  readonly status: number;
  /** Upstream attempts made (0 when refused before any). */
  readonly attempts: number;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** Key of the endpoint of the last attempt. */
  readonly endpoint: string | undefined;
  /** Why the agent answered itself or the exchange broke (x-amime-error value, 'client_closed', 'upstream_aborted'); undefined when an upstream response was passed through whole. */
  readonly error: string | undefined;
  readonly upgrade: boolean;
  /** This hop's span of the request's trace (continued from the app's traceparent, or new). */
  readonly trace: TraceContext;
  /** x-request-id as sent upstream. */
  readonly requestId: string;
  /** The request path as the app sent it (without the query). */
  readonly path: string;
  /** SPIFFE ID of the endpoint of the last attempt. */
  readonly destination: string | undefined;
  /** The Host header as the app sent it (for taps), unvalidated. */
  readonly authority: string | undefined;
}

/** What a request's report carries beyond the per-outcome fields. */
type ResultBase = Pick<OutboundResult, 'trace' | 'requestId' | 'path' | 'authority'>;
type ResultCore = Omit<OutboundResult, keyof ResultBase | 'destination'> & { destination?: string | undefined };

export interface OutboundDeps {
  /** The service a request is for: fixed per listener, or from Host on the HTTP-proxy listener. */
  resolveService(req: IncomingMessage): ServiceRef | undefined;
  /** The compiled table of the current config. */
  routes(service: ServiceRef): RouteTable;
  /**
   * Balancing and pooling; `avoid` is the key of the endpoint whose attempt just failed
   * (undefined on the first pick). undefined = no endpoint. A pick may go unused (the
   * retry budget refuses after the pick): count load from start(), not from the pick.
   */
  pickEndpoint(service: ServiceRef, subset: string | undefined, hashKey: string | undefined, avoid: string | undefined): EndpointLease | undefined;
  /** For ring-hash services: the request's hash key. */
  hashKeyOf?(service: ServiceRef, req: IncomingMessage): string | undefined;
  /** The destination service's limiter, if it has one. */
  limits(service: ServiceRef): RequestLimiter | undefined;
  budget: RetryBudgetLike;
  /** Access log and metrics; called once per request, after the response ended or broke. */
  onResult?(info: OutboundResult): void;
  /** [0, 1); default Math.random. */
  random?: () => number;
  /** Milliseconds, monotonic; default performance.now. */
  now?: () => number;
  /** Base of the jittered exponential retry backoff. Default 25 ms (so 0–25, 0–50, 0–100 ms …, capped at 250). */
  retryBackoffMs?: number;
  /** Mirrored requests in flight at once; more are dropped. Default 32. */
  maxMirrorsInFlight?: number;
  /** Deadline of a mirrored request when its rule has no timeout. Default 10 s. */
  mirrorTimeoutMs?: number;
}

export interface OutboundHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** For `server.on('upgrade', handler.upgrade)`: WebSocket (any Upgrade) pass-through, no retries. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Mirror counters; `dropped` counts copies not sent (concurrency limit, body over 64 KiB, no endpoint). */
  mirrorStats(): { inFlight: number; dropped: number; sent: number };
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
// The trace context is always re-stamped with this hop's span; a request id only when the app's was unusable.
const DROP_TRACE: ReadonlySet<string> = new Set([TRACEPARENT_HEADER]);
const DROP_TRACE_ID: ReadonlySet<string> = new Set([TRACEPARENT_HEADER, REQUEST_ID_HEADER]);
const DROP_TRACE_CL: ReadonlySet<string> = new Set([TRACEPARENT_HEADER, 'content-length']);
const DROP_TRACE_ID_CL: ReadonlySet<string> = new Set([TRACEPARENT_HEADER, REQUEST_ID_HEADER, 'content-length']);
const MAX_BACKOFF_MS = 250;
const CLIENT_CLOSED = 'client_closed';
const ROUTE_TIMEOUT = 'timeout';

type Failure = 'connect-failure' | 'reset' | 'timeout' | 'aborted';
type AttemptOutcome =
  | { readonly kind: 'response'; readonly res: IncomingMessage; readonly latencyMs: number }
  | { readonly kind: Failure; readonly latencyMs: number };

/** How a request's body reaches each attempt. */
type Body =
  | { readonly kind: 'none' }
  | { readonly kind: 'buffered'; readonly body: Buffer }
  | { readonly kind: 'stream'; readonly prefix: readonly Buffer[] };

const NO_BODY: Body = { kind: 'none' };

/** Which RETRY_ON_* bits an outcome satisfies. */
function retryBits(o: AttemptOutcome): number {
  switch (o.kind) {
    case 'connect-failure':
      return RETRY_ON_CONNECT_FAILURE;
    case 'reset':
      return RETRY_ON_RESET;
    case 'timeout':
      return RETRY_ON_GATEWAY_ERROR | RETRY_ON_5XX; // a per-try timeout counts as a 504
    case 'aborted':
      return 0;
    case 'response': {
      const s = o.res.statusCode ?? 0;
      if (s === 502 || s === 503 || s === 504) return RETRY_ON_GATEWAY_ERROR | RETRY_ON_5XX;
      return s >= 500 && s <= 599 ? RETRY_ON_5XX : 0;
    }
  }
}

/** The response the agent makes when attempts ended without an upstream response. */
function failureResponse(kind: Failure): { status: number; reason: string } {
  switch (kind) {
    case 'connect-failure':
      return { status: 503, reason: 'connect_failure' };
    case 'reset':
      return { status: 502, reason: 'upstream_reset' };
    default:
      return { status: 504, reason: ROUTE_TIMEOUT };
  }
}

/** The target to send upstream: origin-form as received, or the path and query of an absolute-form target. */
function originForm(url: string): string {
  if (url.charCodeAt(0) === 0x2f) return url;
  const { path, query } = splitTarget(url);
  return query ? `${path}?${query}` : path;
}

function protocolOf(agent: http.Agent): string {
  return (agent as { protocol?: string }).protocol ?? 'http:';
}

function requestOptions(lease: EndpointLease, method: string, path: string, headers: string[]): http.RequestOptions {
  return {
    ...lease.requestOptions,
    agent: lease.agent,
    protocol: protocolOf(lease.agent),
    host: lease.endpoint.address,
    port: lease.endpoint.port,
    servername: lease.sni,
    method,
    path,
    headers,
    setHost: false,
  } as http.RequestOptions;
}

/**
 * Whether the socket carrying `req` is connected (TLS: handshake done); calls `onConnected`
 * once it is. A failure before that means the request never left: a connect failure.
 */
function watchConnect(socket: Socket, onConnected: () => void): void {
  if (!socket.connecting) {
    onConnected();
    return;
  }
  socket.once((socket as { encrypted?: boolean }).encrypted ? 'secureConnect' : 'connect', onConnected);
}

export function createOutboundHandler(deps: OutboundDeps): OutboundHandler {
  const random = deps.random ?? Math.random;
  const now = deps.now ?? (() => performance.now());
  const backoffBase = deps.retryBackoffMs ?? 25;
  const maxMirrors = deps.maxMirrorsInFlight ?? 32;
  const mirrorTimeoutDefault = deps.mirrorTimeoutMs ?? 10_000;
  const mirrors = { inFlight: 0, dropped: 0, sent: 0 };

  function report(base: ResultBase, info: ResultCore): void {
    if (!deps.onResult) return;
    try {
      deps.onResult({ ...info, ...base, destination: info.destination });
    } catch {
      // a broken access logger must not break the data plane
    }
  }

  /** One attempt: resolves on the response head or a failure; never rejects. */
  function attempt(lease: EndpointLease, method: string, path: string, headers: string[], body: Body, req: IncomingMessage, perTryMs: number, cancel: Cancellation, countBytes: (n: number) => void): Promise<AttemptOutcome> {
    return new Promise((resolve) => {
      const t0 = now();
      let connected = false;
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let upReq: ClientRequest;
      const settle = (o: AttemptOutcome): void => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        cancel.onCancel(undefined);
        resolve(o);
      };
      const onAbort = (): void => {
        settle({ kind: 'aborted', latencyMs: now() - t0 });
        upReq.destroy();
      };
      try {
        upReq = http.request(requestOptions(lease, method, path, headers));
      } catch {
        settle({ kind: 'connect-failure', latencyMs: 0 });
        return;
      }
      upReq.setNoDelay(true);
      upReq.on('socket', (s: Socket) => watchConnect(s, () => (connected = true)));
      upReq.on('response', (r) => settle({ kind: 'response', res: r, latencyMs: now() - t0 }));
      upReq.on('error', () => settle({ kind: connected ? 'reset' : 'connect-failure', latencyMs: now() - t0 }));
      if (perTryMs > 0) {
        timer = setTimeout(() => {
          settle({ kind: 'timeout', latencyMs: now() - t0 });
          upReq.destroy();
        }, perTryMs);
      }
      cancel.onCancel(onAbort);
      if (body.kind === 'none') upReq.end();
      else if (body.kind === 'buffered') upReq.end(body.body);
      else {
        for (const chunk of body.prefix) upReq.write(chunk);
        req.pipe(upReq);
        req.on('data', (c: Buffer) => countBytes(c.length));
      }
    });
  }

  /** Sends a copy, fire-and-forget; the response is discarded. */
  function mirror(rule: CompiledRule, method: string, path: string, headers: string[], body: Body, hashKey: string | undefined): void {
    if (!rule.mirror) return;
    if (body.kind === 'stream' || mirrors.inFlight >= maxMirrors) {
      mirrors.dropped++;
      return;
    }
    const lease = deps.pickEndpoint(rule.mirror.service, undefined, hashKey, undefined);
    if (!lease) {
      mirrors.dropped++;
      return;
    }
    mirrors.inFlight++;
    mirrors.sent++;
    lease.start();
    const t0 = now();
    let latency = -1;
    let finished = false;
    const finish = (ok: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      mirrors.inFlight--;
      lease.finish(ok, latency < 0 ? now() - t0 : latency);
    };
    let r: ClientRequest;
    try {
      r = http.request(requestOptions(lease, method, path, [...headers, MIRROR_HEADER, '1']));
    } catch {
      mirrors.inFlight--;
      lease.finish(false, 0);
      return;
    }
    const timer = setTimeout(() => {
      finish(false);
      r.destroy();
    }, rule.timeoutMs || mirrorTimeoutDefault);
    r.setNoDelay(true);
    r.on('error', () => finish(false));
    r.on('response', (m) => {
      latency = now() - t0;
      const ok = (m.statusCode ?? 500) < 500;
      m.on('end', () => finish(ok));
      m.on('error', () => finish(false));
      m.on('close', () => finish(false));
      m.resume();
    });
    if (body.kind === 'buffered') r.end(body.body);
    else r.end();
  }

  /** The ids of a request: its trace continued (or started) with this hop's span, and its request id. */
  function idsOf(req: IncomingMessage): { base: ResultBase; freshId: boolean } {
    const trace = traceFor(req.headers.traceparent);
    const rid = requestIdFor(req.headers[REQUEST_ID_HEADER]);
    return { base: { trace, requestId: rid.id, path: splitTarget(req.url ?? '/').path, authority: req.headers.host }, freshId: rid.fresh };
  }

  /** The headers to send upstream: hygiene, then this hop's traceparent (and a request id when needed). */
  function upstreamHeaders(req: IncomingMessage, ids: { base: ResultBase; freshId: boolean }, dropContentLength: boolean): string[] {
    const drop = ids.freshId ? (dropContentLength ? DROP_TRACE_ID_CL : DROP_TRACE_ID) : dropContentLength ? DROP_TRACE_CL : DROP_TRACE;
    const headers = forwardableHeaders(req.rawHeaders, drop);
    headers.push(TRACEPARENT_HEADER, formatTraceparent(ids.base.trace));
    if (ids.freshId) headers.push(REQUEST_ID_HEADER, ids.base.requestId);
    return headers;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = now();
    const method = req.method ?? 'GET';
    const ids = idsOf(req);
    const base = ids.base;
    let destination: string | undefined;
    let service: ServiceRef | undefined;
    let rule: CompiledRule | undefined;
    let attempts = 0;
    let requestBytes = 0;
    let responseBytes = 0;
    let endpointKey: string | undefined;
    let error: string | undefined;
    let status = 0;
    const finishWith = (s: number, reason: string, close = false): void => {
      status = s;
      error = reason;
      respondError(res, s, reason, close);
    };

    const refusal = checkRequest(req);
    if (refusal) {
      finishWith(refusal.status, refusal.reason, true);
      req.resume();
    } else {
      service = deps.resolveService(req);
      if (!service) finishWith(404, 'unknown_service');
      else {
        rule = deps.routes(service).match(method, splitTarget(req.url ?? '/').path, req.headers);
        if (!rule) finishWith(404, 'no_route');
      }
    }
    if (status !== 0 || !service || !rule) {
      req.resume();
      report(base, { service, backend: undefined, route: rule?.route ?? '', rule: rule?.index ?? -1, method, status, attempts, durationMs: now() - t0, requestBytes, responseBytes, endpoint: undefined, error, upgrade: false });
      return;
    }
    const backend = rule.pickBackend(random);

    const cancel = new Cancellation();
    res.once('close', () => {
      if (!res.writableFinished) cancel.cancel(CLIENT_CLOSED);
    });

    const fault = rule.fault;
    if (fault && fault.delayPercent > 0 && random() * 100 < fault.delayPercent) await cancel.wait(fault.delayMs);
    if (cancel.cancelled) {
      report(base, { service, backend: backend.service, route: rule.route, rule: rule.index, method, status: 499, attempts, durationMs: now() - t0, requestBytes, responseBytes, endpoint: undefined, error: CLIENT_CLOSED, upgrade: false });
      return;
    }
    if (fault && fault.abortPercent > 0 && random() * 100 < fault.abortPercent) {
      finishWith(fault.abortStatus, 'fault_abort');
      req.resume();
      report(base, { service, backend: backend.service, route: rule.route, rule: rule.index, method, status, attempts, durationMs: now() - t0, requestBytes, responseBytes, endpoint: undefined, error, upgrade: false });
      return;
    }

    const limiter = deps.limits(backend.service);
    if (limiter && !limiter.tryRequest()) {
      finishWith(503, 'overloaded');
      req.resume();
      report(base, { service, backend: backend.service, route: rule.route, rule: rule.index, method, status, attempts, durationMs: now() - t0, requestBytes, responseBytes, endpoint: undefined, error, upgrade: false });
      return;
    }

    let routeTimer: NodeJS.Timeout | undefined;
    if (rule.timeoutMs > 0) routeTimer = setTimeout(() => cancel.cancel(ROUTE_TIMEOUT), rule.timeoutMs);
    try {
      deps.budget.recordRequest();
      const hashKey = deps.hashKeyOf?.(backend.service, req);
      const mirrorThis = rule.mirror !== undefined && rule.mirror.percent > 0 && random() * 100 < rule.mirror.percent;

      // The body: buffered when it may be replayed and fits, otherwise streamed once.
      let body: Body = NO_BODY;
      if (hasBody(req)) {
        const declared = declaredLength(req);
        if ((rule.retries > 0 || mirrorThis) && declared <= MAX_REPLAY_BODY_BYTES) {
          const read = await readBody(req, MAX_REPLAY_BODY_BYTES, (stop) => cancel.onCancel(stop));
          cancel.onCancel(undefined);
          if (read.kind === 'failed') {
            if (cancel.reason === ROUTE_TIMEOUT) finishWith(504, ROUTE_TIMEOUT, true);
            else {
              status = 499;
              error = CLIENT_CLOSED;
            }
            return;
          }
          if (read.kind === 'buffered') {
            body = { kind: 'buffered', body: read.body };
            requestBytes = read.body.length;
          } else {
            body = { kind: 'stream', prefix: read.prefix };
            requestBytes = read.prefixBytes;
          }
        } else {
          body = { kind: 'stream', prefix: [] };
        }
      }
      const headers = upstreamHeaders(req, ids, body.kind === 'buffered');
      if (body.kind === 'buffered') headers.push('Content-Length', String(body.body.length));
      else if (body.kind === 'stream' && req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
      const path = originForm(req.url ?? '/');

      if (mirrorThis) mirror(rule, method, path, headers, body, hashKey);

      const replayable = body.kind !== 'stream';
      const idempotent = IDEMPOTENT.has(method);
      const countBytes = (n: number): void => {
        requestBytes += n;
      };
      let lease = deps.pickEndpoint(backend.service, backend.subset, hashKey, undefined);
      if (!lease) {
        finishWith(503, 'no_endpoint');
        req.resume();
        return;
      }
      for (;;) {
        attempts++;
        endpointKey = lease.endpoint.key;
        destination = lease.endpoint.identity;
        lease.start();
        const outcome = await attempt(lease, method, path, headers, body, req, rule.perTryTimeoutMs, cancel, countBytes);

        // Retry? Only before anything reached the app, for safe requests, within attempts and budget.
        const bits = retryBits(outcome);
        let next: EndpointLease | undefined;
        if (
          (bits & rule.retryOn) !== 0 &&
          attempts <= rule.retries &&
          replayable &&
          (idempotent || outcome.kind === 'connect-failure') &&
          !cancel.cancelled
        ) {
          next = deps.pickEndpoint(backend.service, backend.subset, hashKey, lease.endpoint.key);
          if (next && !deps.budget.tryRetry()) next = undefined;
        }

        if (outcome.kind === 'response') {
          const up = outcome.res;
          if (next) {
            lease.finish(false, outcome.latencyMs);
            up.resume();
          } else {
            status = up.statusCode ?? 502;
            const r = await streamResponse(up, res, (n) => (responseBytes += n));
            lease.finish(r && status < 500, outcome.latencyMs);
            if (!r) error = cancel.reason ?? 'upstream_aborted';
            if (!r && error === CLIENT_CLOSED) status = 499;
            return;
          }
        } else {
          lease.finish(false, outcome.latencyMs);
          if (!next) {
            if (outcome.kind === 'aborted' && cancel.reason === CLIENT_CLOSED) {
              status = 499;
              error = CLIENT_CLOSED;
            } else {
              const f = failureResponse(outcome.kind);
              finishWith(f.status, f.reason);
            }
            req.resume();
            return;
          }
        }
        lease = next;
        if (!(await cancel.wait(random() * Math.min(backoffBase * 2 ** (attempts - 1), MAX_BACKOFF_MS)))) {
          if (cancel.reason === CLIENT_CLOSED) {
            status = 499;
            error = CLIENT_CLOSED;
          } else finishWith(504, ROUTE_TIMEOUT);
          return;
        }
      }
    } finally {
      if (routeTimer) clearTimeout(routeTimer);
      limiter?.releaseRequest();
      report(base, { service, backend: backend.service, route: rule.route, rule: rule.index, method, status, attempts, durationMs: now() - t0, requestBytes, responseBytes, endpoint: endpointKey, error, upgrade: false, destination });
    }

    /** Streams the upstream response to the app with backpressure; true when it completed. */
    function streamResponse(up: IncomingMessage, out: ServerResponse, count: (n: number) => void): Promise<boolean> {
      return new Promise((resolve) => {
        if (cancel.cancelled) {
          up.destroy();
          out.destroy();
          resolve(false);
          return;
        }
        try {
          out.writeHead(up.statusCode ?? 502, up.statusMessage, forwardableHeaders(up.rawHeaders));
        } catch {
          up.destroy();
          out.destroy();
          resolve(false);
          return;
        }
        cancel.onCancel(() => up.destroy());
        up.on('data', (c: Buffer) => count(c.length));
        relayBody(up, out, (ok) => {
          cancel.onCancel(undefined);
          resolve(ok);
        });
      });
    }
  }

  function handler(req: IncomingMessage, res: ServerResponse): void {
    handle(req, res).catch(() => {
      // unexpected: never let an exception escape into the socket callbacks
      respondError(res, 500, 'proxy_error', true);
    });
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    upgradeAsync(req, socket, head).catch(() => socket.destroy());
  }

  async function upgradeAsync(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const t0 = now();
    const method = req.method ?? 'GET';
    socket.on('error', () => socket.destroy());
    const ids = idsOf(req);
    const st: { service?: ServiceRef; rule?: CompiledRule; backend?: CompiledBackend; endpoint?: string; destination?: string } = {};
    const done = (status: number, error: string | undefined, attempts: number): void =>
      report(ids.base, { service: st.service, backend: st.backend?.service, route: st.rule?.route ?? '', rule: st.rule?.index ?? -1, method, status, attempts, durationMs: now() - t0, requestBytes: 0, responseBytes: 0, endpoint: st.endpoint, error, upgrade: true, destination: st.destination });
    const refuse = (status: number, reason: string): void => {
      respondErrorOnSocket(socket, status, reason);
      done(status, reason, 0);
    };
    const refusal = checkRequest(req);
    if (refusal) return refuse(refusal.status, refusal.reason);
    const service = (st.service = deps.resolveService(req));
    if (!service) return refuse(404, 'unknown_service');
    const rule = (st.rule = deps.routes(service).match(method, splitTarget(req.url ?? '/').path, req.headers));
    if (!rule) return refuse(404, 'no_route');
    const backend = (st.backend = rule.pickBackend(random));
    if (rule.fault && rule.fault.abortPercent > 0 && random() * 100 < rule.fault.abortPercent) return refuse(rule.fault.abortStatus, 'fault_abort');
    const limiter = deps.limits(backend.service);
    if (limiter && !limiter.tryRequest()) return refuse(503, 'overloaded');
    const lease = deps.pickEndpoint(backend.service, backend.subset, deps.hashKeyOf?.(backend.service, req), undefined);
    if (!lease) {
      limiter?.releaseRequest();
      return refuse(503, 'no_endpoint');
    }
    st.endpoint = lease.endpoint.key;
    st.destination = lease.endpoint.identity;
    const headers = upstreamHeaders(req, ids, false);
    headers.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'websocket');
    lease.start();
    const ts = now();
    let headLatency = -1;
    let settled = false;
    let upgraded = false;
    const settle = (ok: boolean, status: number, error: string | undefined): void => {
      if (settled) return;
      settled = true;
      lease.finish(ok, headLatency < 0 ? now() - ts : headLatency);
      limiter?.releaseRequest();
      done(status, error, 1);
    };
    const upReq = http.request(requestOptions(lease, method, originForm(req.url ?? '/'), headers));
    upReq.setNoDelay(true);
    let connected = false;
    upReq.on('socket', (s: Socket) => watchConnect(s, () => (connected = true)));
    const timer = rule.timeoutMs > 0 ? setTimeout(() => upReq.destroy(new Error('timeout')), rule.timeoutMs) : undefined;
    upReq.on('error', (err) => {
      if (timer) clearTimeout(timer);
      if (settled) return;
      const f = err.message === 'timeout' ? { status: 504, reason: ROUTE_TIMEOUT } : failureResponse(connected ? 'reset' : 'connect-failure');
      respondErrorOnSocket(socket, f.status, f.reason);
      settle(false, f.status, f.reason);
    });
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      if (timer) clearTimeout(timer);
      headLatency = now() - ts;
      upgraded = true;
      let headText = `HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}\r\n`;
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) headText += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
      socket.write(`${headText}\r\n`);
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.setNoDelay?.(true);
      upSocket.on('error', () => upSocket.destroy());
      const close = (): void => {
        socket.destroy();
        upSocket.destroy();
        settle(true, 101, undefined);
      };
      socket.on('close', close);
      upSocket.on('close', close);
      socket.pipe(upSocket);
      upSocket.pipe(socket);
    });
    upReq.on('response', (upRes) => {
      // the peer refused the upgrade: relay its answer and close
      if (timer) clearTimeout(timer);
      headLatency = now() - ts;
      let headText = `HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}\r\n`;
      const fwd = forwardableHeaders(upRes.rawHeaders);
      for (let i = 0; i < fwd.length; i += 2) headText += `${fwd[i]}: ${fwd[i + 1]}\r\n`;
      socket.write(`${headText}connection: close\r\n\r\n`);
      const status = upRes.statusCode ?? 502;
      pipeline(upRes, socket, () => settle(status < 500, status, undefined));
    });
    socket.once('close', () => {
      if (!settled && !upgraded) {
        upReq.destroy();
        settle(false, 499, CLIENT_CLOSED);
      }
    });
    upReq.end();
  }

  return Object.assign(handler, { upgrade, mirrorStats: () => ({ ...mirrors }) });
}
