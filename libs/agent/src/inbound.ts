// The agent's inbound side: one mTLS port for every local workload. The
// caller's SVID is verified (bundle, trust domain, revocation) in the
// handshake; SNI names the target service, whose SVID is served; ALPN says
// TCP or HTTP/1.1. Then authorization (deny by default), the rate limit per
// source identity, and the local app.
import http from 'node:http';
import net, { type Socket } from 'node:net';
import { verifyPeer, type RevocationSet } from '@amime/identity';
import { isValidMethod, normalizePath } from '@amime/policy';
import {
  ALPN_HTTP1,
  ALPN_MUX,
  ALPN_TCP,
  MuxSession,
  bridge,
  RateLimiter,
  createInboundHandler,
  createInboundServer,
  parseServiceSni,
  createProxyServer,
  splice,
  type AuthorizeResult,
  type InboundConnection,
  type MuxStream,
  type VerifyPeerFn,
} from '@amime/proxy';
import type { ServiceResource } from '@amime/protocol';
import type { AgentConfig, WorkloadConfig } from './config/agent-config.js';
import type { IdentityManager } from './identity/index.js';
import type { MeshRuntime } from './mesh/mesh-runtime.js';
import { RequestRecorder, type AgentMetrics } from './metrics.js';
import type { AgentLog } from './agent.js';
import type { AccessLog } from './access-log.js';
import type { EdgeReporter } from './edge-reporter.js';
import type { TapHub } from './tap.js';
import type { AccessRecord } from './access-log.js';

export interface Inbound {
  readonly port: number;
  /** Closes open connections whose caller is now revoked; returns how many. */
  closeRevoked(set: RevocationSet): number;
  drain(ms: number): Promise<void>;
}

interface InboundDepsIn {
  access?: AccessLog | undefined;
  /** Per-edge traffic for the control plane's communication-pattern monitor. */
  edges?: EdgeReporter | undefined;
  /** Live taps: a record is built for them only while one is open. */
  taps?: TapHub | undefined;
  config: AgentConfig;
  identity: IdentityManager;
  runtime: () => MeshRuntime;
  metrics: AgentMetrics;
  log: AgentLog;
}

interface LocalWorkload {
  readonly w: WorkloadConfig;
  readonly http: http.Server;
  readonly agent: http.Agent;
  /** Rate limiter for this service, rebuilt when its trafficPolicy.rateLimit changes. */
  limiter: { res: ServiceResource | undefined; key: string; limiter: RateLimiter | undefined } | undefined;
}

export function peerVerifier(identity: IdentityManager): VerifyPeerFn {
  return (socket) => {
    const r = verifyPeer(socket, { bundle: identity.bundle(), revocations: identity.revocations() });
    return r.ok ? { ok: true, spiffeId: r.spiffeId } : { ok: false, reason: r.reason, message: r.message };
  };
}

export async function startInbound(deps: InboundDepsIn): Promise<Inbound> {
  const { config, identity, runtime, metrics, log, access, edges, taps } = deps;
  const ipOf = (s: Socket): string | undefined => {
    const a = s.remoteAddress;
    return a?.startsWith('::ffff:') ? a.slice(7) : a;
  };
  const peerIds = new WeakMap<Socket, string>();
  const workloads = new Map<string, LocalWorkload>();
  const tcpOpen = new Set<Socket>();
  const recorder = new RequestRecorder(metrics, 'inbound');

  const limiterFor = (lw: LocalWorkload): RateLimiter | undefined => {
    const res = runtime().state.service(lw.w.namespace, lw.w.service);
    if (lw.limiter && lw.limiter.res === res) return lw.limiter.limiter;
    const rl = res?.spec.trafficPolicy?.rateLimit;
    const key = rl ? `${rl.requestsPerSecond}/${rl.burst ?? rl.requestsPerSecond}` : '';
    // Rebuilt only when the Service changes its limit: buckets survive unrelated pushes.
    const limiter = !rl ? undefined : lw.limiter?.key === key ? lw.limiter.limiter : new RateLimiter({ ratePerSecond: rl.requestsPerSecond, burst: rl.burst ?? rl.requestsPerSecond });
    lw.limiter = { res, key, limiter };
    return limiter;
  };

  /** Authorization decisions by (service, result, policy): label children resolved once. */
  const authzCounters = new Map<string, { inc(): void }>();
  const decide = (w: WorkloadConfig, peerId: string, method?: string, path?: string) => {
    const d = runtime().authorizer.decide({ service: w.service, namespace: w.namespace }, { source: peerId, ...(method !== undefined && { method }), ...(path !== undefined && { path }) });
    const ck = `${w.namespace}/${w.service}\0${d.allowed}\0${d.policy ?? ''}`;
    let c = authzCounters.get(ck);
    if (!c) authzCounters.set(ck, (c = metrics.authz.labels({ service: `${w.namespace}/${w.service}`, result: d.allowed ? 'allow' : 'deny', policy: d.policy ?? '' })));
    c.inc();
    if (d.audit.length > 0) log({ level: 'info', event: 'authz_audit', service: `${w.namespace}/${w.service}`, source: peerId, method, path, allowed: d.allowed, audit: d.audit });
    return d;
  };

  for (const w of config.workloads) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 32 });
    const lw: LocalWorkload = { w, agent, http: undefined as unknown as http.Server, limiter: undefined };
    const service = `${w.namespace}/${w.service}`;
    const localApp = `${w.address}:${w.port}`;
    const handler = createInboundHandler({
      peerIdOf: (s) => peerIds.get(s),
      authorize: (peerId, method, rawTarget): AuthorizeResult => {
        if (!isValidMethod(method)) return { allowed: false, status: 400, reason: 'bad_method' };
        const n = normalizePath(rawTarget);
        if (!n.ok) return { allowed: false, status: 400, reason: n.reason };
        const d = decide(w, peerId, method, n.path);
        return d.allowed ? { allowed: true, path: n.path, query: n.query } : { allowed: false, status: 403, reason: d.reason };
      },
      rateLimit: (peerId) => {
        const l = limiterFor(lw);
        if (!l || l.take(peerId)) return true;
        metrics.rateLimited.inc({ service });
        return false;
      },
      local: { host: w.address, port: w.port, agent },
      onResult: (r) => {
        recorder.record(service, r.peerId ?? '', r.status, r.durationMs, w.identity);
        // denied requests count as requests too: a denial spike is one of the monitor's findings
        if (edges && r.peerId && r.peerAddress) edges.record(r.peerId, w.service, w.namespace, r.peerAddress, { error: r.status >= 500, denied: r.status === 403 && r.error !== undefined, bytesIn: r.requestBytes, bytesOut: r.responseBytes, durationMs: r.durationMs });
        if (access || taps?.active) {
          const q = r.path.indexOf('?');
          const rec: AccessRecord = {
            protocol: 'http',
            direction: 'inbound',
            service,
            source: r.peerId ?? '',
            destination: w.identity,
            requestId: r.requestId,
            traceId: r.trace.traceId,
            spanId: r.trace.spanId,
            parentSpanId: r.trace.parentSpanId,
            sampled: r.trace.sampled,
            upstream: localApp,
            method: r.method,
            // the query stays out of the log: it often carries tokens
            path: q < 0 ? r.path : r.path.slice(0, q),
            status: r.status,
            durationMs: r.durationMs,
            bytesReceived: r.requestBytes,
            bytesSent: r.responseBytes,
            error: r.error,
            authority: r.authority,
          };
          access?.log(rec);
          taps?.offer(rec);
        }
      },
    });
    (lw as { http: http.Server }).http = createProxyServer(handler);
    workloads.set(service, lw);
  }

  const verify = peerVerifier(identity);
  const server = createInboundServer({
    contexts: (servername) => {
      const t = parseServiceSni(servername);
      const lw = t && workloads.get(`${t.namespace}/${t.service}`);
      if (!lw) return undefined;
      try {
        return identity.contextFor(lw.w.identity);
      } catch {
        return undefined; // no SVID for it yet: refuse rather than serve the wrong identity
      }
    },
    defaultContext: identity.agentContext(),
    verify,
    onRefused: (reason, message, remote) => {
      metrics.handshakeFailures.inc({ side: 'inbound', reason });
      log({ level: 'info', event: 'inbound_refused', reason, message, remote });
    },
    onConnection: (conn: InboundConnection) => {
      const lw = conn.target && workloads.get(`${conn.target.namespace}/${conn.target.service}`);
      if (!lw) {
        conn.socket.destroy();
        return;
      }
      if (conn.alpn === ALPN_HTTP1) {
        peerIds.set(conn.socket, conn.peerId);
        lw.http.emit('connection', conn.socket);
        return;
      }
      if (conn.alpn === ALPN_MUX) {
        muxIn(lw, conn);
        return;
      }
      if (conn.alpn !== ALPN_TCP) {
        conn.socket.destroy();
        return;
      }
      tcpIn(lw, conn);
    },
  });

  /** Multiplexed L4 (amime-mux/1): each stream is one TCP connection, authorized and limited like one. */
  const muxSessions = new Set<MuxSession>();
  const muxIn = (lw: LocalWorkload, conn: InboundConnection): void => {
    const service = `${lw.w.namespace}/${lw.w.service}`;
    const ip = ipOf(conn.socket);
    const session = new MuxSession(conn.socket, {
      role: 'server',
      // the client closes idle sessions after 30 s; this only reaps abandoned ones
      idleTimeoutMs: 300_000,
      onStream: (stream: MuxStream) => {
        // per stream, not per session: a policy or limit change applies to the next connection
        const d = decide(lw.w, conn.peerId);
        if (!d.allowed) {
          if (edges && ip) edges.record(conn.peerId, lw.w.service, lw.w.namespace, ip, { denied: true });
          if (taps?.active) taps.offer(deniedStream(service, conn.peerId, lw.w.identity, d.reason));
          stream.reset('refused');
          return;
        }
        const l = limiterFor(lw);
        if (l && !l.take(conn.peerId)) {
          metrics.rateLimited.inc({ service });
          stream.reset('refused');
          return;
        }
        const local = net.connect({ host: lw.w.address, port: lw.w.port, noDelay: true });
        const t0 = performance.now();
        if (edges && ip) edges.record(conn.peerId, lw.w.service, lw.w.namespace, ip);
        let connected = false;
        local.once('connect', () => (connected = true));
        // the app refused the connection: tell the caller's agent, which counts it against this endpoint
        local.once('error', () => {
          if (!connected) stream.reset('unavailable');
        });
        metrics.connectionsOpened.inc({ direction: 'inbound', service });
        tcpOpen.add(local);
        const b = bridge(local, stream);
        void b.closed.then((r) => {
          tcpOpen.delete(local);
          metrics.connectionsClosed.inc({ direction: 'inbound', service });
          if (edges && ip) edges.recordEnd(conn.peerId, lw.w.service, lw.w.namespace, ip, { bytesIn: r.bytesIn, bytesOut: r.bytesOut, error: r.reset !== undefined || r.error !== undefined });
          // the bridge's "in" is from the peer (to the app), its "out" from the app (to the peer)
          metrics.bytes.inc({ direction: 'inbound', service, flow: 'received' }, r.bytesIn);
          metrics.bytes.inc({ direction: 'inbound', service, flow: 'sent' }, r.bytesOut);
          if (access || taps?.active) {
            const rec: AccessRecord = {
              protocol: 'tcp',
              direction: 'inbound',
              service,
              source: conn.peerId,
              destination: lw.w.identity,
              upstream: `${lw.w.address}:${lw.w.port}`,
              durationMs: performance.now() - t0,
              bytesReceived: r.bytesIn,
              bytesSent: r.bytesOut,
              error: r.reset ?? (r.error ? (r.error as NodeJS.ErrnoException).code ?? 'error' : undefined),
            };
            access?.log(rec);
            taps?.offer(rec);
          }
        });
      },
      onClose: () => muxSessions.delete(session),
    });
    muxSessions.add(session);
  };

  const tcpIn = (lw: LocalWorkload, conn: InboundConnection): void => {
    const service = `${lw.w.namespace}/${lw.w.service}`;
    const d = decide(lw.w, conn.peerId);
    const ip = ipOf(conn.socket);
    if (!d.allowed) {
      if (edges && ip) edges.record(conn.peerId, lw.w.service, lw.w.namespace, ip, { denied: true });
      if (taps?.active) taps.offer(deniedStream(service, conn.peerId, lw.w.identity, d.reason));
      conn.socket.destroy();
      return;
    }
    const l = limiterFor(lw);
    if (l && !l.take(conn.peerId)) {
      metrics.rateLimited.inc({ service });
      conn.socket.destroy();
      return;
    }
    const local = net.connect({ host: lw.w.address, port: lw.w.port, noDelay: true });
    metrics.connectionsOpened.inc({ direction: 'inbound', service });
    if (edges && ip) edges.record(conn.peerId, lw.w.service, lw.w.namespace, ip);
    tcpOpen.add(conn.socket);
    const t0 = performance.now();
    const s = splice(conn.socket, local);
    void s.closed.then((r) => {
      // plain (unmultiplexed) streams reach taps only, as before they reached no access log
      if (taps?.active) taps.offer({ protocol: 'tcp', direction: 'inbound', service, source: conn.peerId, destination: lw.w.identity, upstream: `${lw.w.address}:${lw.w.port}`, durationMs: performance.now() - t0, bytesReceived: r.bytesOut, bytesSent: r.bytesIn, error: r.error ? (r.error as NodeJS.ErrnoException).code ?? 'error' : undefined });
      tcpOpen.delete(conn.socket);
      metrics.connectionsClosed.inc({ direction: 'inbound', service });
      metrics.bytes.inc({ direction: 'inbound', service, flow: 'received' }, r.bytesOut);
      metrics.bytes.inc({ direction: 'inbound', service, flow: 'sent' }, r.bytesIn);
      if (edges && ip) edges.recordEnd(conn.peerId, lw.w.service, lw.w.namespace, ip, { bytesIn: r.bytesOut, bytesOut: r.bytesIn, error: r.error !== undefined });
    });
  };

  // A renewed agent SVID serves new handshakes at once; open connections keep theirs.
  identity.on('rotated', (id) => {
    if (id.includes('/agent/')) server.setDefaultContext(identity.agentContext());
  });
  // New roots: a new default context also rotates the ticket keys, so tickets issued under the old trust stop resuming.
  identity.on('trust', () => server.setDefaultContext(identity.agentContext()));

  const addr = await server.listen(config.inbound.port, config.inbound.address);
  return {
    port: addr.port,
    closeRevoked: (set) => server.closeWhere((peerId, serial) => set.spiffeIds.has(peerId) || set.serials.has(serial)),
    drain: async (ms) => {
      // Stop accepting; let requests in flight finish (idle keep-alive connections close now), then close the rest.
      server.server.close();
      for (const m of muxSessions) m.goAway();
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        for (const lw of workloads.values()) lw.http.closeIdleConnections();
        const open = await new Promise<number>((r) => server.server.getConnections((_e, n) => r(n ?? 0)));
        if (open === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await server.close();
      for (const lw of workloads.values()) {
        lw.http.closeAllConnections();
        lw.agent.destroy();
      }
      for (const s of tcpOpen) s.destroy();
    },
  };
}

/** A stream refused by authorization, for taps (it never reached the app). */
function deniedStream(service: string, source: string, destination: string, reason: string | undefined): AccessRecord {
  return { protocol: 'tcp', direction: 'inbound', service, source, destination, durationMs: 0, bytesReceived: 0, bytesSent: 0, error: reason ?? 'denied' };
}
