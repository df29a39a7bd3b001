// The agent's outbound side: for each local workload, a listener per upstream
// service on 127.0.0.1 (and optionally an HTTP proxy listener that routes by
// Host). HTTP goes through the route table, balancer, retries and limits of
// @amime/proxy over pooled mTLS connections to peer agents; TCP picks an
// endpoint per connection and streams bytes. Each connection presents the SVID
// of the workload the listener belongs to; SNI names the target service.
import http from 'node:http';
import net, { type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RevocationSet } from '@amime/identity';
import type { Balancer, Endpoint } from '@amime/balancing';
import {
  CircuitBreaker,
  MuxPool,
  bridge,
  PeerConnectError,
  PeerConnector,
  PeerHttpAgent,
  RetryBudget,
  createOutboundHandler,
  createProxyServer,
  serviceSni,
  type EndpointLease,
  type PeerRoute,
  type RequestLimiter,
  type ServiceRef,
} from '@amime/proxy';
import type { ServiceResource } from '@amime/protocol';
import type { AgentConfig, WorkloadConfig } from './config/agent-config.js';
import type { IdentityManager } from './identity/index.js';
import type { MeshRuntime } from './mesh/mesh-runtime.js';
import { serviceKey } from './mesh/mesh-state.js';
import { RequestRecorder, type AgentMetrics } from './metrics.js';
import { peerVerifier } from './inbound.js';
import type { AgentLog } from './agent.js';
import type { AccessLog, AccessRecord } from './access-log.js';
import type { TapHub } from './tap.js';

export interface Outbound {
  readonly listeners: { workload: string; upstream: string; port: number }[];
  /** Closes open connections to peers that are now revoked; returns how many. */
  closeRevoked(set: RevocationSet): number;
  drain(ms: number): Promise<void>;
}

interface OutboundDepsIn {
  access?: AccessLog | undefined;
  /** Live taps: a record is built for them only while one is open. */
  taps?: TapHub | undefined;
  config: AgentConfig;
  identity: IdentityManager;
  runtime: () => MeshRuntime;
  metrics: AgentMetrics;
  log: AgentLog;
}

/** Pooled connections per (endpoint, source identity); idle ones close after the agent's 30 s timeout. */
const PEER_POOL_SIZE = 256;

/** Connections tried per new TCP connection before giving up on the upstream. */
const TCP_ATTEMPTS = 3;

/** A PeerHttpAgent pinned to one route: the pool the outbound handler sees for one endpoint. */
class RoutePeerAgent extends PeerHttpAgent {
  constructor(
    readonly route: PeerRoute,
    connector: PeerConnector,
    private readonly onSocket: (s: TLSSocket, peerId: string) => void,
  ) {
    // Keep as many idle connections as may be busy: a smaller free pool closes sockets under load and reconnects.
    super({ connector, maxSockets: PEER_POOL_SIZE, maxFreeSockets: PEER_POOL_SIZE });
  }
  override getName(): string {
    return 'peer';
  }
  override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    // One object per new connection (not per request): the pool reuses sockets.
    return super.createConnection({ ...options, peer: this.route } as http.ClientRequestArgs, (err, stream) => {
      if (!err) this.onSocket(stream as TLSSocket, this.route.expectedIdentity);
      callback?.(err, stream);
    });
  }
}

interface Lease extends EndpointLease {
  readonly ep: Endpoint;
}

export async function startOutbound(deps: OutboundDepsIn): Promise<Outbound> {
  const { config, identity, runtime, metrics, log, access, taps } = deps;
  const connector = new PeerConnector({ context: (src) => identity.contextFor(src), verify: peerVerifier(identity) });
  // A rotated SVID: later connections present the new one; sessions of the old are dropped.
  identity.on('rotated', (id) => connector.forgetSessions(id));
  /** Open mTLS sockets to peers (pooled HTTP and TCP), with the peer's ID, for revocation. */
  const peerSockets = new Map<TLSSocket, string>();
  const track = (s: TLSSocket, peerId: string) => {
    peerSockets.set(s, peerId);
    s.once('close', () => peerSockets.delete(s));
  };
  // L4: streams multiplexed over one pooled connection per (source, endpoint, service).
  const mux = new MuxPool({ connector, onConnection: (s, t) => track(s, t.expectedIdentity) });
  const budget = new RetryBudget({ percent: runtime().state.mesh.retryBudget.percent, minRetriesPerSecond: runtime().state.mesh.retryBudget.minRetriesPerSecond });
  const breakers = new Map<string, { res: ServiceResource | undefined; sig: string; breaker: CircuitBreaker | undefined }>();
  const servers: Server[] = [];
  const httpServers: http.Server[] = [];
  const tcpOpen = new Set<Socket>();
  const listeners: Outbound['listeners'] = [];
  const recorder = new RequestRecorder(metrics, 'outbound');

  const limits = (svc: ServiceRef): RequestLimiter | undefined => {
    const res = runtime().state.service(svc.namespace, svc.name);
    const k = serviceKey(svc.namespace, svc.name);
    const b = breakers.get(k);
    // Per request only a map lookup and an identity compare; limits are rebuilt when the Service changes.
    if (b && b.res === res) return b.breaker;
    const cp = res?.spec.trafficPolicy?.connectionPool;
    if (!res || !cp) {
      breakers.set(k, { res, sig: '', breaker: undefined });
      return undefined;
    }
    const sig = `${cp.maxConnections}/${cp.maxPendingRequests}/${cp.maxRequests}`;
    const breaker =
      b?.sig === sig && b.breaker
        ? b.breaker
        : new CircuitBreaker({ ...(cp.maxConnections !== undefined && { maxConnections: cp.maxConnections }), ...(cp.maxPendingRequests !== undefined && { maxPendingRequests: cp.maxPendingRequests }), ...(cp.maxRequests !== undefined && { maxRequests: cp.maxRequests }) });
    breakers.set(k, { res, sig, breaker });
    return breaker;
  };

  const hashKeyOf = (svc: ServiceRef, req: http.IncomingMessage): string | undefined => {
    const h = runtime().state.service(svc.namespace, svc.name)?.spec.trafficPolicy?.loadBalancing?.hash;
    if (!h) return undefined;
    if (h.header) {
      const v = req.headers[h.header.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    }
    const cookie = req.headers.cookie;
    if (!cookie || !h.cookie) return undefined;
    for (const part of cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === h.cookie) return part.slice(eq + 1).trim();
    }
    return undefined;
  };

  for (const w of config.workloads) {
    const source = w.identity;
    // Leases and pools per endpoint object: a balancer keeps its endpoint objects across
    // updates, so these live as long as the endpoint does (WeakMap: no cleanup needed).
    const leases = new WeakMap<Endpoint, Lease>();
    const byKey = new Map<string, Endpoint>();
    const leaseFor = (svc: ServiceRef, b: Balancer, ep: Endpoint): Lease => {
      let l = leases.get(ep);
      if (!l) {
        const sni = serviceSni({ service: svc.name, namespace: svc.namespace });
        const agent = new RoutePeerAgent({ address: ep.address, port: ep.port, sni, sourceIdentity: source, expectedIdentity: ep.identity }, connector, track);
        l = { ep, endpoint: ep, agent, sni, start: () => b.start(ep), finish: (ok, ms) => b.finish(ep, ok, ms) };
        leases.set(ep, l);
      }
      if (byKey.size > 10_000) byKey.clear();
      byKey.set(ep.key, ep);
      return l;
    };
    const handlerFor = (resolveService: (req: http.IncomingMessage) => ServiceRef | undefined) => {
      const handler = createOutboundHandler({
        resolveService,
        routes: (svc) => runtime().routes(svc.namespace, svc.name),
        pickEndpoint: (svc, subset, hashKey, avoid) => {
          const b = runtime().balancer(svc.namespace, svc.name, subset);
          if (!b) return undefined;
          const ep = b.pick(hashKey, avoid !== undefined ? byKey.get(avoid) : undefined);
          return ep && leaseFor(svc, b, ep);
        },
        hashKeyOf,
        limits,
        budget,
        onResult: (r) => {
          const service = r.backend ? `${r.backend.namespace}/${r.backend.name}` : r.service ? `${r.service.namespace}/${r.service.name}` : '';
          recorder.record(service, source, r.status, r.durationMs, r.destination ?? '');
          if (r.attempts > 1) metrics.retries.inc({ service }, r.attempts - 1);
          if (!access && !taps?.active) return;
          const rec: AccessRecord = {
            protocol: 'http',
            direction: 'outbound',
            service,
            source,
            destination: r.destination,
            requestId: r.requestId,
            traceId: r.trace.traceId,
            spanId: r.trace.spanId,
            parentSpanId: r.trace.parentSpanId,
            sampled: r.trace.sampled,
            route: r.route,
            upstream: r.endpoint,
            method: r.method,
            path: r.path,
            status: r.status,
            durationMs: r.durationMs,
            retries: Math.max(0, r.attempts - 1),
            bytesReceived: r.responseBytes,
            bytesSent: r.requestBytes,
            error: r.error,
            authority: r.authority,
          };
          access?.log(rec);
          taps?.offer(rec);
        },
      });
      const server = createProxyServer(handler);
      httpServers.push(server);
      return server;
    };

    for (const up of w.upstreams) {
      const target: ServiceRef = { name: up.service, namespace: up.namespace };
      const httpServer = handlerFor(() => target);
      const listener = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
        const protocol = up.protocol ?? runtime().state.protocolOf(up.namespace, up.service);
        if (protocol === 'http') {
          httpServer.emit('connection', socket);
          socket.resume();
        } else {
          void tcpOut(w, target, socket);
        }
      });
      await listen(listener, up.port);
      servers.push(listener);
      listeners.push({ workload: `${w.namespace}/${w.service}`, upstream: `${up.namespace}/${up.service}`, port: up.port });
    }
    if (w.httpProxyPort !== undefined) {
      const proxy = handlerFor((req) => {
        const r = runtime().state.resolveHost(req.headers.host, w.namespace);
        return r && { name: r.name, namespace: r.namespace };
      });
      proxy.listen(w.httpProxyPort, '127.0.0.1');
      await new Promise<void>((resolve, reject) => {
        proxy.once('listening', resolve);
        proxy.once('error', reject);
      });
      listeners.push({ workload: `${w.namespace}/${w.service}`, upstream: '*', port: w.httpProxyPort });
    }
  }

  /** One TCP connection: pick, open a stream over a pooled mTLS session (trying other endpoints on failure), then bridge. */
  async function tcpOut(w: WorkloadConfig, svc: ServiceRef, socket: Socket): Promise<void> {
    const service = `${svc.namespace}/${svc.name}`;
    const b = runtime().balancer(svc.namespace, svc.name);
    let avoid: Endpoint | undefined;
    socket.on('error', () => undefined);
    for (let attempt = 0; attempt < TCP_ATTEMPTS && b; attempt++) {
      const ep = b.pick(undefined, avoid);
      if (!ep) break;
      b.start(ep);
      const t0 = performance.now();
      let stream;
      try {
        stream = await mux.open({ address: ep.address, port: ep.port, sni: serviceSni({ service: svc.name, namespace: svc.namespace }), sourceIdentity: w.identity, expectedIdentity: ep.identity });
      } catch (err) {
        b.finish(ep, false, performance.now() - t0);
        metrics.handshakeFailures.inc({ side: 'outbound', reason: err instanceof PeerConnectError ? err.reason : 'connect_failed' });
        avoid = ep;
        if (socket.destroyed) return;
        continue;
      }
      const connectMs = performance.now() - t0;
      if (socket.destroyed) {
        b.finish(ep, true, connectMs);
        stream.reset('cancel');
        return;
      }
      tcpOpen.add(socket);
      metrics.connectionsOpened.inc({ direction: 'outbound', service });
      const s = bridge(socket, stream);
      socket.resume();
      const r = await s.closed;
      tcpOpen.delete(socket);
      // a stream the peer could not serve (its app refused) counts against the endpoint
      b.finish(ep, r.reset !== 'unavailable' && r.reset !== 'connection_lost', connectMs);
      metrics.connectionsClosed.inc({ direction: 'outbound', service });
      metrics.bytes.inc({ direction: 'outbound', service, flow: 'sent' }, r.bytesOut);
      metrics.bytes.inc({ direction: 'outbound', service, flow: 'received' }, r.bytesIn);
      if (access || taps?.active) {
        const rec: AccessRecord = {
          protocol: 'tcp',
          direction: 'outbound',
          service,
          source: w.identity,
          destination: ep.identity,
          upstream: `${ep.address}:${ep.port}`,
          durationMs: performance.now() - t0,
          bytesReceived: r.bytesIn,
          bytesSent: r.bytesOut,
          error: r.reset ?? (r.error ? (r.error as NodeJS.ErrnoException).code ?? 'error' : undefined),
        };
        access?.log(rec);
        taps?.offer(rec);
      }
      return;
    }
    log({ level: 'warn', event: 'tcp_upstream_unavailable', workload: `${w.namespace}/${w.service}`, service });
    socket.destroy();
  }

  return {
    listeners,
    closeRevoked: (set) => {
      let n = 0;
      for (const [s, peerId] of peerSockets) {
        if (set.spiffeIds.has(peerId)) {
          s.destroy();
          n++;
        }
      }
      connector.forgetPeers((peerId, serial) => set.spiffeIds.has(peerId) || set.serials.has(serial));
      // Our own workload revoked: its sessions must not be offered for resumption either.
      for (const w of config.workloads) if (set.spiffeIds.has(w.identity)) connector.forgetSessions(w.identity);
      return n;
    },
    drain: async (ms) => {
      for (const s of servers) s.close();
      for (const s of httpServers) s.close();
      const deadline = Date.now() + ms;
      while (Date.now() < deadline && tcpOpen.size > 0) await new Promise((r) => setTimeout(r, 50));
      for (const s of httpServers) s.closeAllConnections();
      for (const s of tcpOpen) s.destroy();
      mux.close();
      for (const s of peerSockets.keys()) s.destroy();
    },
  };
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}
