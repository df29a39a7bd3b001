// The CA's HTTPS API. TLS 1.3 only, served with the CA's own SVID; a client
// certificate is required on every route except join-token bootstrap. Peers
// are verified with @amime/identity (bundle, trust domain, revocation), not
// just by OpenSSL, so revoked SVIDs are refused at once.
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createCsr, generateKeyPair, verifyPeer } from '@amime/identity';
import { type CertificateAuthorityService, log } from './authority.js';
import { CaError } from './errors.js';
import type { CaMetrics } from './metrics.js';

export const MAX_BODY_BYTES = 64 * 1024;

type Role = 'anyone' | 'peer' | 'admin';
interface Ctx {
  caller: string;
  body: Record<string, unknown>;
  url: URL;
  res: ServerResponse;
}
interface Route {
  role: Role;
  fields?: readonly string[];
  handle: (ctx: Ctx) => Promise<unknown> | unknown;
}

export interface CaServerOptions {
  host?: string;
  port?: number;
  metrics?: CaMetrics;
}

export interface RunningCaServer {
  server: https.Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

function badRequest(message: string, reason = 'bad_request'): CaError {
  return new CaError('AMIME_ERR_CA_BAD_REQUEST', message, reason);
}

function routes(ca: CertificateAuthorityService): Map<string, Route> {
  const r = new Map<string, Route>();
  const add = (method: string, path: string, route: Route) => r.set(`${method} ${path}`, route);

  add('POST', '/v1/join', {
    role: 'anyone',
    fields: ['token', 'csr'],
    handle: async ({ body }) => {
      const out = await ca.join(body['token'], body['csr']);
      return { spiffeId: out.spiffeId, node: out.node, serial: out.serial, notAfter: out.notAfter.toISOString(), svid: out.chainPem, bundle: ca.bundlePem() };
    },
  });
  add('POST', '/v1/svid', {
    role: 'peer',
    fields: ['csr', 'spiffeId'],
    handle: async ({ body, caller }) => {
      if (typeof body['csr'] !== 'string') throw badRequest('csr: required PEM string');
      const out = await ca.issue(caller, body['csr'], body['spiffeId']);
      return { spiffeId: out.spiffeId, serial: out.serial, notAfter: out.notAfter.toISOString(), svid: out.chainPem };
    },
  });
  add('GET', '/v1/bundle', {
    role: 'peer',
    handle: ({ url, res }) => {
      if (url.searchParams.get('format') === 'pem') {
        res.setHeader('content-type', 'application/x-pem-file');
        return ca.bundlePem();
      }
      return ca.bundleJson();
    },
  });
  add('GET', '/v1/revocations', { role: 'peer', handle: () => ca.revocationList() });
  add('GET', '/v1/assignments', {
    role: 'peer',
    handle: ({ url, caller }) => {
      const node = url.searchParams.get('node') ?? undefined;
      const own = caller.match(/\/agent\/([^/]+)$/)?.[1];
      const path = caller.slice(`spiffe://${ca.trustDomain}`.length);
      // Agents read their own node's; the control plane and admins any node's; workloads nothing.
      if (own === undefined && !path.startsWith('/control-plane/') && !ca.isAdmin(caller)) {
        throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${caller} may not read identity assignments`, 'caller_not_allowed');
      }
      if (own !== undefined && node !== undefined && node !== own) {
        throw new CaError('AMIME_ERR_CA_FORBIDDEN', 'an agent may read only its own node\'s assignments');
      }
      return ca.assignments(own ?? node);
    },
  });

  add('POST', '/v1/admin/tokens', {
    role: 'admin',
    fields: ['node', 'ttlSeconds'],
    handle: ({ body }) => ca.createJoinToken(body['node'], body['ttlSeconds'] ?? 600),
  });
  add('GET', '/v1/admin/assignments', { role: 'admin', handle: () => ca.assignments() });
  add('POST', '/v1/admin/assignments', {
    role: 'admin',
    fields: ['node', 'spiffeId'],
    handle: ({ body }) => ca.assign(body['node'], body['spiffeId']),
  });
  add('DELETE', '/v1/admin/assignments', {
    role: 'admin',
    fields: ['node', 'spiffeId'],
    handle: ({ body }) => ca.unassign(body['node'], body['spiffeId']),
  });
  add('POST', '/v1/admin/revocations', {
    role: 'admin',
    fields: ['serial', 'spiffeId', 'node', 'reason'],
    handle: ({ body }) => {
      const given = ['serial', 'spiffeId', 'node'].filter((k) => body[k] !== undefined);
      if (given.length !== 1) throw badRequest('give exactly one of serial, spiffeId or node');
      if (body['reason'] !== undefined && (typeof body['reason'] !== 'string' || body['reason'].length > 200)) {
        throw badRequest('reason: a string of at most 200 characters');
      }
      const reason = (body['reason'] as string | undefined) ?? 'operator';
      if (body['serial'] !== undefined) return ca.revokeSerial(body['serial'], reason);
      if (body['spiffeId'] !== undefined) return ca.revokeSpiffeId(body['spiffeId'], reason);
      return ca.evictNode(body['node']);
    },
  });
  add('DELETE', '/v1/admin/revocations', {
    role: 'admin',
    fields: ['spiffeId'],
    handle: ({ body }) => ca.unrevokeSpiffeId(body['spiffeId']),
  });
  add('GET', '/v1/admin/rotation', { role: 'admin', handle: () => ca.rotationStatus() });
  for (const step of ['prepare', 'activate', 'retire'] as const) {
    add('POST', `/v1/admin/rotation/${step}`, {
      role: 'admin',
      fields: ['force'],
      handle: ({ body }) => {
        const force = body['force'] === true;
        if (step === 'prepare') return ca.prepareRotation();
        if (step === 'activate') return ca.activateRotation(force);
        return ca.retireRotation(force);
      },
    });
  }
  add('GET', '/v1/admin/status', {
    role: 'admin',
    handle: () => {
      const s = ca.state;
      return {
        trustDomain: s.trustDomain,
        keyAlgorithm: s.keyAlgorithm,
        bundleSequence: s.bundleSequence,
        revocationVersion: s.revocations.version,
        rotation: s.rotation.phase,
        roots: s.slots.map((x) => x.id),
        activeSlot: s.activeSlot,
        nodes: s.nodes,
        assignments: Object.keys(s.assignments).length,
        pendingTokens: s.tokens.filter((t) => !t.usedAt).length,
        ttl: s.ttl,
        // The CA's clock when it answered, for clock-skew checks (meshctl check).
        time: new Date().toISOString(),
      };
    },
  });
  return r;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new CaError('AMIME_ERR_CA_TOO_LARGE', `body: ${declared} bytes is over the ${MAX_BODY_BYTES}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new CaError('AMIME_ERR_CA_TOO_LARGE', `body: over the ${MAX_BODY_BYTES}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  const ct = req.headers['content-type'] ?? '';
  if (!ct.startsWith('application/json')) throw badRequest(`content-type must be application/json, not ${JSON.stringify(ct.slice(0, 60))}`, 'content_type');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw badRequest(`body: malformed JSON (${(err as Error).message})`, 'malformed_json');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badRequest('body: must be a JSON object', 'malformed_json');
  return parsed as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
  if (!res.hasHeader('content-type')) res.setHeader('content-type', typeof body === 'string' ? 'text/plain' : 'application/json');
  res.statusCode = status;
  res.setHeader('cache-control', 'no-store');
  res.end(text);
}

/** The CA's serving credential: fresh key in memory, SVID spiffe://<td>/control-plane/ca. */
function serverCredential(ca: CertificateAuthorityService) {
  const kp = generateKeyPair('ec-p256');
  const out = ca.issueOwn(createCsr(kp, `spiffe://${ca.trustDomain}/control-plane/ca`));
  return { key: kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: out.chainPem, notAfter: out.notAfter };
}

export async function startCaServer(ca: CertificateAuthorityService, opts: CaServerOptions = {}): Promise<RunningCaServer> {
  const table = routes(ca);
  let cred = serverCredential(ca);
  const tlsOptions = () => ({ key: cred.key, cert: cred.cert, ca: ca.bundlePem() });
  const server = https.createServer({
    ...tlsOptions(),
    minVersion: 'TLSv1.3',
    requestCert: true,
    // Bootstrap must reach /v1/join without a client certificate; every
    // other route checks the peer below.
    rejectUnauthorized: false,
    headersTimeout: 10_000,
    requestTimeout: 30_000,
    maxHeaderSize: 16 * 1024,
  });
  server.keepAliveTimeout = 30_000;

  const refreshCredential = () => {
    cred = serverCredential(ca);
    server.setSecureContext({ ...tlsOptions(), minVersion: 'TLSv1.3' } as never);
  };
  // Bundle changes (rotation) and our own SVID's half-life both rebuild the context.
  const unsubscribe = ca.onChange(refreshCredential);
  const renewTimer = setInterval(() => {
    try {
      ca.renewIntermediateIfDue();
      const half = (cred.notAfter.getTime() - ca.clock()) < (ca.state.ttl.agentSeconds * 1000) / 2;
      if (half) refreshCredential();
    } catch (err) {
      log({ event: 'renewal_failed', error: (err as Error).message });
    }
    // at least four checks per serving-SVID lifetime, so a short --agent-ttl never lapses
  }, Math.max(250, Math.min(30_000, (ca.state.ttl.agentSeconds * 1000) / 4)));
  renewTimer.unref();

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    res.setHeader('x-request-id', requestId);
    const url = new URL(req.url ?? '/', 'https://ca.invalid');
    const route = table.get(`${req.method} ${url.pathname}`);
    const done = (status: number, body: unknown, reason?: string) => {
      send(res, status, body);
      opts.metrics?.requests.inc({ route: route ? url.pathname : 'unknown', code: String(status) });
      opts.metrics?.duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      if (reason) opts.metrics?.refused.inc({ reason });
    };
    (async () => {
      if (!route) {
        const allowed = [...table.keys()].filter((k) => k.endsWith(` ${url.pathname}`)).map((k) => k.split(' ')[0]);
        if (allowed.length) {
          res.setHeader('allow', allowed.join(', '));
          throw new CaError('AMIME_ERR_CA_METHOD_NOT_ALLOWED', `method ${req.method} not allowed on ${url.pathname}`, 'method_not_allowed');
        }
        throw new CaError('AMIME_ERR_CA_NOT_FOUND', `no route ${url.pathname}`, 'not_found');
      }
      let caller = '';
      if (route.role !== 'anyone') {
        const peer = verifyPeer(req.socket as TLSSocket, { bundle: ca.bundle(), revocations: ca.revocations() });
        if (!peer.ok) throw new CaError('AMIME_ERR_CA_UNAUTHENTICATED', `client certificate refused: ${peer.message}`, `peer_${peer.reason}`);
        caller = peer.spiffeId;
        if (route.role === 'admin' && !ca.isAdmin(caller)) {
          log({ event: 'admin_refused', caller, path: url.pathname });
          throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${caller} is not an admin identity`, 'not_admin');
        }
      }
      const body = req.method === 'GET' ? {} : await readJson(req);
      for (const k of Object.keys(body)) {
        if (!route.fields?.includes(k)) throw badRequest(`body: unknown field ${JSON.stringify(k.slice(0, 60))}; allowed: ${(route.fields ?? []).join(', ') || 'none'}`, 'unknown_field');
      }
      const out = await route.handle({ caller, body, url, res });
      done(200, out);
    })().catch((err: unknown) => {
      if (err instanceof CaError) {
        if (err.code === 'AMIME_ERR_CA_TOO_LARGE') res.setHeader('connection', 'close');
        done(err.status, { error: { code: err.code, reason: err.reason, message: err.message } }, err.reason);
      } else {
        log({ event: 'internal_error', requestId, error: (err as Error).stack ?? String(err) });
        done(500, { error: { code: 'AMIME_ERR_CA_INTERNAL', reason: 'internal', message: `internal error (request ${requestId})` } }, 'internal');
      }
    });
  });
  server.on('tlsClientError', (err) => opts.metrics?.tlsErrors.inc({ reason: tlsReason(err) }));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    url: `https://${opts.host ?? '127.0.0.1'}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        unsubscribe();
        clearInterval(renewTimer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function tlsReason(err: Error & { code?: string }): string {
  const code = err.code ?? '';
  if (code.includes('VERSION') || code.includes('PROTOCOL')) return 'protocol_version';
  if (code.includes('CERT')) return 'certificate';
  if (code === 'ECONNRESET') return 'reset';
  return 'other';
}
