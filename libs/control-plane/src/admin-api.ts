// The control plane's admin HTTPS API (docs/api/control-plane.md): a request
// handler for an HTTPS server with TLS 1.3 and client certificates requested
// (rejectUnauthorized false, so that a refused peer gets a reason, not a
// reset). Every request, known route or not, first proves an admin SVID of
// our trust domain (verifyPeer: bundle, revocations, SPIFFE profile; path
// /admin/*). Then the raw path is matched segment by segment: no URL
// normalization, so '..', '%2F' and the like are never decoded into
// something else; kinds and names are checked before the store is touched.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { parseSpiffeId, verifyPeer, type RevocationSet, type TrustBundle } from '@amime/identity';
import { DEFAULT_MAX_RESOURCE_BYTES, ValidationError, dns1123Name, object, parseResources, spiffeIdString, validate } from '@amime/protocol';
import type { EdgeKey, Finding } from '@amime/monitor';
import { ControlPlaneError, cpError } from './errors.js';
import { type ResourceService, validationFailure } from './resource-service.js';
import { windowOf, type TrafficApi } from './traffic-api.js';
import type { AgentConfigDump, CertEntry, CertInventory, EndpointView, PeerCertificates } from './operator-views.js';

/** Largest request body: one apply of up to 1 MiB of YAML or JSON. */
export const MAX_ADMIN_BODY_BYTES = DEFAULT_MAX_RESOURCE_BYTES;
/** Longest request target (path and query) accepted. */
export const MAX_ADMIN_URL_LENGTH = 1024;
/** A body must arrive within this long once the headers have. */
export const DEFAULT_ADMIN_BODY_TIMEOUT_MS = 30_000;

/** What `GET /v1/agents` lists: one connected agent. */
export interface AgentStatus {
  node: string;
  spiffeId: string;
  /** ISO time. */
  connectedAt: string;
  /** The agent's remote address. */
  address: string;
  /** Per resource type: the version it acked, the push in flight, its last NACK. */
  types: Record<string, { acked?: string; inFlight?: string; nack?: { version: string; error: string; at: string } }>;
  /** Instances it registered. */
  instances: number;
  /** Its SVID as presented on the push connection (a renewal shows from its next connection). */
  svid?: PeerCertificates['svid'];
  /** The certificates its connection presented above the SVID (the root excluded: see GET /v1/certs). */
  intermediates?: CertEntry[];
}

export interface AdminApiDeps {
  resources: ResourceService;
  /** Current trust roots and revocations; read per request, so rotations apply at once. */
  trust(): { bundle: TrustBundle; revocations?: RevocationSet };
  trustDomain: string;
  agents(): AgentStatus[];
  status(): Record<string, unknown>;
  /** Called once per request: route label (`GET /v1/resources/:kind`, `unknown`), HTTP status, duration. */
  onRequest?(route: string, code: string, seconds: number): void;
  /** Structured events (refused callers, internal errors). */
  log?(event: Record<string, unknown>): void;
  /** Default DEFAULT_ADMIN_BODY_TIMEOUT_MS. */
  bodyTimeoutMs?: number;
  /** Registered instances (GET /v1/endpoints; 404 without it). */
  endpoints?(filter: { service?: string; namespace?: string }): EndpointView[];
  /** Every certificate known, with expiry (GET /v1/certs; 404 without it). */
  certs?(): CertInventory;
  /** What is held for a connected node, or undefined when it is not connected (GET /v1/agents/:node/config). */
  agentConfig?(node: string): AgentConfigDump | undefined;
  /** The communication-pattern monitor's findings; the /v1/anomalies routes answer 404 without it. */
  anomalies?: AnomalyApi;
  /** The live per-edge traffic view; the /v1/traffic routes answer 404 without it. */
  traffic?: TrafficApi;
}

/** What the /v1/anomalies routes need (AnomalyService has it). */
export interface AnomalyApi {
  /** Newest first, at or after `sinceMs`. */
  list(sinceMs?: number, limit?: number): Finding[];
  accept(edge: EdgeKey, by: string): Promise<{ edge: EdgeKey; changed: boolean }>;
  stats(): object;
}

/** Largest accept body. */
const MAX_ACCEPT_BODY_BYTES = 4096;
const acceptBody = object({ source: spiffeIdString({ workload: false }), service: dns1123Name, namespace: dns1123Name });

/** `?since=`: an ISO time or epoch milliseconds. */
function sinceOf(query: URLSearchParams): number | undefined {
  const all = query.getAll('since');
  if (all.length === 0) return undefined;
  const v = all[0]!;
  const ms = /^\d{1,16}$/.test(v) ? Number(v) : Date.parse(v);
  if (all.length > 1 || Number.isNaN(ms)) throw badRequest('since: give it once, as an ISO time (2026-01-01T00:00:00Z) or epoch milliseconds', 'bad_query');
  return ms;
}

function limitOf(query: URLSearchParams): number | undefined {
  const all = query.getAll('limit');
  if (all.length === 0) return undefined;
  const n = Number(all[0]);
  if (all.length > 1 || !Number.isSafeInteger(n) || n < 1 || n > 10_000) throw badRequest('limit: give it once, as a whole number from 1 to 10000', 'bad_query');
  return n;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Ctx {
  req: IncomingMessage;
  params: string[];
  query: URLSearchParams;
  caller: string;
}

interface Route {
  /** Label for metrics and errors, e.g. `/v1/resources/:kind/:namespace`. */
  pattern: string;
  methods: Readonly<Record<string, (ctx: Ctx) => Promise<unknown> | unknown>>;
  /** Query parameters the route accepts. */
  query?: readonly string[];
  /** Query parameters its GET accepts. */
  getQuery?: readonly string[];
}

const FORMATS: Readonly<Record<string, 'yaml' | 'json'>> = {
  'application/json': 'json',
  'application/yaml': 'yaml',
  'application/x-yaml': 'yaml',
  'text/yaml': 'yaml',
  'text/x-yaml': 'yaml',
};

const badRequest = (message: string, reason: string): ControlPlaneError => cpError('AMIME_ERR_CP_BAD_REQUEST', message, reason);

/** `?dryRun=true|false` at most once. */
function dryRun(query: URLSearchParams): boolean {
  const all = query.getAll('dryRun');
  if (all.length === 0) return false;
  if (all.length > 1 || (all[0] !== 'true' && all[0] !== 'false')) throw badRequest('dryRun: give it once, as true or false', 'bad_query');
  return all[0] === 'true';
}

/** The route for raw path segments (after `/`), or undefined. */
function findRoute(segments: readonly string[], deps: AdminApiDeps, bodyTimeoutMs: number): { route: Route; params: string[] } | undefined {
  const [v1, what, ...rest] = segments;
  if (v1 !== 'v1') return undefined;
  const r = deps.resources;
  if (what === 'resources') {
    if (rest.length === 0) {
      return {
        params: [],
        route: {
          pattern: '/v1/resources',
          query: ['dryRun'],
          methods: {
            POST: async ({ req, query }) => {
              const dry = dryRun(query);
              const format = contentFormat(req.headers['content-type']);
              const text = decodeUtf8(await readBody(req, MAX_ADMIN_BODY_BYTES, bodyTimeoutMs));
              let resources;
              try {
                resources = parseResources(text, format, { maxBytes: MAX_ADMIN_BODY_BYTES });
              } catch (err) {
                if (err instanceof ValidationError) throw validationFailure(err);
                throw err;
              }
              if (resources.length === 0) throw badRequest('the body holds no resources; send YAML documents or a JSON object or array of them', 'empty');
              return r.apply(resources, { dryRun: dry });
            },
          },
        },
      };
    }
    if (rest.length === 1) return { params: rest, route: { pattern: '/v1/resources/:kind', methods: { GET: ({ params }) => r.get(params[0]!).then((items) => ({ items })) } } };
    if (rest.length === 2) {
      return { params: rest, route: { pattern: '/v1/resources/:kind/:namespace', methods: { GET: ({ params }) => r.get(params[0]!, params[1]!).then((items) => ({ items })) } } };
    }
    if (rest.length === 3) {
      return {
        params: rest,
        route: {
          pattern: '/v1/resources/:kind/:namespace/:name',
          query: ['dryRun'],
          methods: {
            GET: ({ params }) => r.get(params[0]!, params[1]!, params[2]!),
            DELETE: ({ params, query }) => r.delete(params[0]!, params[1]!, params[2]!, { dryRun: dryRun(query) }),
          },
        },
      };
    }
    return undefined;
  }
  if (what === 'traffic' && deps.traffic && rest.length <= 1) {
    const t = deps.traffic;
    if (rest.length === 0) return { params: [], route: { pattern: '/v1/traffic', getQuery: ['window'], methods: { GET: ({ query }) => t.snapshot(windowOf(query)) } } };
    if (rest[0] === 'stream') {
      // Served on the upgrade (a WebSocket); a plain request only gets told so.
      const ws = () => {
        throw badRequest('the stream is a WebSocket: connect with an Upgrade: websocket request', 'websocket_required');
      };
      return { params: [], route: { pattern: '/v1/traffic/stream', getQuery: ['window'], methods: { GET: ws } } };
    }
    return undefined;
  }
  if (what === 'tap' && rest.length === 0) {
    // Served on the upgrade (tap-broker.ts); a plain request only gets told so.
    const ws = () => {
      throw badRequest('the tap is a WebSocket: connect with an Upgrade: websocket request (meshctl tap does)', 'websocket_required');
    };
    return { params: [], route: { pattern: '/v1/tap', getQuery: ['service', 'namespace', 'duration', 'rate'], methods: { GET: ws } } };
  }
  if (what === 'anomalies' && deps.anomalies) {
    const a = deps.anomalies;
    if (rest.length === 0) {
      return {
        params: [],
        route: { pattern: '/v1/anomalies', getQuery: ['since', 'limit'], methods: { GET: ({ query }) => ({ items: a.list(sinceOf(query), limitOf(query)), monitor: a.stats() }) } },
      };
    }
    if (rest.length === 1 && rest[0] === 'accept') {
      return {
        params: [],
        route: {
          pattern: '/v1/anomalies/accept',
          methods: {
            POST: async ({ req, caller }) => {
              if (contentFormat(req.headers['content-type']) !== 'json') throw cpError('AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE', 'content-type must be application/json', 'content_type');
              const text = decodeUtf8(await readBody(req, MAX_ACCEPT_BODY_BYTES, bodyTimeoutMs));
              let value: unknown;
              try {
                value = JSON.parse(text);
              } catch {
                throw badRequest('the body is not JSON; send {"source": "spiffe://...", "service": "...", "namespace": "..."}', 'bad_json');
              }
              let edge;
              try {
                edge = validate(acceptBody, value, 'edge');
              } catch (err) {
                if (err instanceof ValidationError) throw validationFailure(err, 'edge');
                throw err;
              }
              return a.accept(edge, caller);
            },
          },
        },
      };
    }
    if (rest.length === 1 && rest[0] === 'stream') {
      // Served on the upgrade (a WebSocket); a plain request only gets told so.
      return {
        params: [],
        route: {
          pattern: '/v1/anomalies/stream',
          methods: {
            GET: () => {
              throw badRequest('the stream is a WebSocket: connect with an Upgrade: websocket request', 'websocket_required');
            },
          },
        },
      };
    }
    return undefined;
  }
  const operator = operatorRoute(what, rest, deps);
  if (operator) return operator;
  if (rest.length > 0) return undefined;
  if (what === 'agents') return { params: [], route: { pattern: '/v1/agents', methods: { GET: () => ({ agents: deps.agents() }) } } };
  if (what === 'status') return { params: [], route: { pattern: '/v1/status', methods: { GET: () => deps.status() } } };
  return undefined;
}

/** `?name=` at most once, a DNS-1123 label, or absent. */
function labelParam(query: URLSearchParams, name: string): string | undefined {
  const all = query.getAll(name);
  if (all.length === 0) return undefined;
  if (all.length > 1 || !DNS_LABEL.test(all[0]!)) throw badRequest(`${name}: give it once, as a name of lowercase letters, digits and "-" (at most 63)`, 'bad_query');
  return all[0];
}
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** GET /v1/endpoints, /v1/certs and /v1/agents/:node/config, when their sources are wired. */
function operatorRoute(what: string | undefined, rest: readonly string[], deps: AdminApiDeps): { route: Route; params: string[] } | undefined {
  const { endpoints, certs, agentConfig } = deps;
  if (what === 'endpoints' && rest.length === 0 && endpoints) {
    return {
      params: [],
      route: {
        pattern: '/v1/endpoints',
        getQuery: ['service', 'namespace'],
        methods: {
          GET: ({ query }) => {
            const service = labelParam(query, 'service');
            const namespace = labelParam(query, 'namespace');
            return { items: endpoints({ ...(service !== undefined && { service }), ...(namespace !== undefined && { namespace }) }) };
          },
        },
      },
    };
  }
  if (what === 'certs' && rest.length === 0 && certs) return { params: [], route: { pattern: '/v1/certs', methods: { GET: () => certs() } } };
  if (what === 'agents' && rest.length === 2 && rest[1] === 'config' && agentConfig) {
    return {
      params: [rest[0]!],
      route: {
        pattern: '/v1/agents/:node/config',
        methods: {
          GET: ({ params }) => {
            const node = params[0]!;
            if (!DNS_LABEL.test(node)) throw badRequest(`node: ${JSON.stringify(node.slice(0, 80))} is not a node name (lowercase letters, digits and "-", at most 63)`, 'bad_node');
            const dump = agentConfig(node);
            if (!dump) throw cpError('AMIME_ERR_CP_NOT_FOUND', `agent ${node} is not connected to this control plane; 'meshctl agents' lists the connected ones`, 'agent_not_connected');
            return dump;
          },
        },
      },
    };
  }
  return undefined;
}

function contentFormat(header: string | undefined): 'yaml' | 'json' {
  const [type = '', ...params] = (header ?? '').split(';').map((s) => s.trim().toLowerCase());
  const format = FORMATS[type];
  const charsetOk = params.every((p) => !p.startsWith('charset=') || p === 'charset=utf-8' || p === 'charset="utf-8"');
  if (format === undefined || !charsetOk) {
    throw cpError(
      'AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE',
      `content-type must be application/yaml, text/yaml or application/json (UTF-8), not ${JSON.stringify((header ?? '').slice(0, 80))}`,
      'content_type',
    );
  }
  return format;
}

function decodeUtf8(body: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw badRequest('the body is not valid UTF-8', 'bad_encoding');
  }
}

/** The body, at most `limit` bytes, arriving within `timeoutMs`; else 413 or 408 (the connection is then closed). */
function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  const tooLarge = () => cpError('AMIME_ERR_CP_TOO_LARGE', `the body is over the ${limit}-byte limit; split the input into several files`, 'body_too_large');
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const fail = (err: Error) => {
      cleanup();
      // stop reading: the answer closes the connection
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) fail(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => fail(err);
    const onAborted = () => fail(new Error('request aborted'));
    const timer = setTimeout(
      () => fail(cpError('AMIME_ERR_CP_TIMEOUT', `the body did not arrive within ${timeoutMs} ms`, 'body_timeout')),
      timeoutMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-content-type-options', 'nosniff');
  res.end(JSON.stringify(body) + '\n');
}

const ADMIN_PREFIX = '/admin/';

/**
 * The caller's SPIFFE ID; throws 401 without a valid SVID, 403 unless an
 * admin of our trust domain. Every route and the anomaly stream use it.
 */
export function authenticateAdmin(socket: TLSSocket, deps: Pick<AdminApiDeps, 'trust' | 'trustDomain' | 'log'>): string {
  const { bundle, revocations } = deps.trust();
  const peer = verifyPeer(socket, { bundle, trustDomain: deps.trustDomain, ...(revocations ? { revocations } : {}) });
  // not logged: anyone can cause these; onRequest counts them
  if (!peer.ok) {
    throw cpError('AMIME_ERR_CP_UNAUTHENTICATED', `client certificate refused: ${peer.message}`, `peer_${peer.reason}`);
  }
  const id = parseSpiffeId(peer.spiffeId);
  if (id.trustDomain !== deps.trustDomain) {
    throw cpError('AMIME_ERR_CP_FORBIDDEN', `${peer.spiffeId} is not of trust domain ${deps.trustDomain}`, 'foreign_trust_domain');
  }
  if (!id.path.startsWith(ADMIN_PREFIX) || id.path.length === ADMIN_PREFIX.length) {
    deps.log?.({ event: 'admin_refused', caller: peer.spiffeId });
    throw cpError('AMIME_ERR_CP_FORBIDDEN', `${peer.spiffeId} is not an admin identity (spiffe://${deps.trustDomain}/admin/...)`, 'not_admin');
  }
  return peer.spiffeId;
}

/**
 * The admin API's request handler. Attach it to an HTTPS server that
 * requests client certificates; it authenticates every request itself.
 */
export function createAdminHandler(deps: AdminApiDeps): Handler {
  const log = deps.log ?? (() => undefined);
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? DEFAULT_ADMIN_BODY_TIMEOUT_MS;

  const authenticate = (req: IncomingMessage): string => authenticateAdmin(req.socket as TLSSocket, deps);

  return (req, res) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    res.setHeader('x-request-id', requestId);
    let label = 'unknown';

    const finish = (status: number, body: unknown) => {
      // a body not read to its end (refused early, too large, too slow) ends the connection
      if (!req.complete) res.setHeader('connection', 'close');
      send(res, status, body);
      try {
        deps.onRequest?.(label, String(status), Number(process.hrtime.bigint() - started) / 1e9);
      } catch {
        // metrics must never fail a request
      }
    };

    const handle = async (): Promise<unknown> => {
      const raw = req.url ?? '';
      if (raw.length > MAX_ADMIN_URL_LENGTH) throw badRequest(`the request target is over ${MAX_ADMIN_URL_LENGTH} characters`, 'url_too_long');
      if (!raw.startsWith('/')) throw badRequest('the request target must be a path starting with "/"', 'bad_path');
      const q = raw.indexOf('?');
      const path = q === -1 ? raw : raw.slice(0, q);
      const query = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
      const found = findRoute(path.slice(1).split('/'), deps, bodyTimeoutMs);
      if (found) label = `${req.method} ${found.route.pattern}`;

      const caller = authenticate(req);

      if (!found) throw cpError('AMIME_ERR_CP_NOT_FOUND', `no route ${JSON.stringify(path.slice(0, 200))}; see docs/api/control-plane.md`, 'no_route');
      const { route, params } = found;
      const method = route.methods[req.method ?? ''];
      if (!method) {
        label = `${req.method === undefined || req.method.length > 10 ? 'OTHER' : req.method} ${route.pattern}`;
        res.setHeader('allow', Object.keys(route.methods).join(', '));
        throw cpError('AMIME_ERR_CP_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${route.pattern}; use ${Object.keys(route.methods).join(' or ')}`, 'method_not_allowed');
      }
      for (const k of new Set(query.keys())) {
        if (req.method === 'GET' && route.getQuery?.includes(k)) continue;
        if (!route.query?.includes(k) || req.method === 'GET') {
          throw badRequest(`unknown query parameter ${JSON.stringify(k.slice(0, 60))}${req.method === 'GET' ? '' : `; allowed: ${(route.query ?? []).join(', ')}`}`, 'bad_query');
        }
      }
      return method({ req, params, query, caller });
    };

    handle().then(
      (body) => finish(200, body),
      (err: unknown) => {
        if (err instanceof ControlPlaneError) {
          finish(err.status, { error: { code: err.code, reason: err.reason, message: err.message, ...(err.issues ? { issues: err.issues } : {}) } });
          return;
        }
        log({ event: 'admin_internal_error', requestId, route: label, error: (err as Error)?.stack ?? String(err) });
        finish(500, { error: { code: 'AMIME_ERR_CP_INTERNAL', reason: 'internal', message: `internal error (request ${requestId})` } });
      },
    );
  };
}
