// startControlPlane: one HTTPS server (TLS 1.3, client certificates required)
// serving the admin API to operators and the push channel to agents, over one
// store, with the CA kept in sync.
//
//   credential ──▶ HTTPS server ◀── CA sync (bundle, revocations, assignments)
//   store ──watch──▶ ResourceCache ──notify──▶ PushServer ──▶ agents
//   admin API ──▶ ResourceService ──▶ store      registry ──▶ Endpoints ──▶ store
//   agents' edge reports ──▶ AnomalyService (pattern monitor) ──▶ /v1/anomalies, stream, metrics
//                        └──(past its rate limit)──▶ TrafficView ──▶ /v1/traffic, stream
//   sessions ──▶ ReplicaDirectory ◀──▶ store /sd/replicas/ ──▶ /v1/sd/prometheus (every replica's agents)

import { EventEmitter } from 'node:events';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore, EtcdStore, type Store } from '@amime/store';
import { RESOURCE_TYPES, type EndpointResource, type HeldSvid, type ResourceType, type ServiceResource } from '@amime/protocol';
import { fromPem, parseCertificate } from '@amime/identity';
import { PushServer, PUSH_PATH, type PushSession } from '@amime/protocol/server';
import { ResourceCache } from './resource-cache.js';
import { ResourceService } from './resource-service.js';
import { Registry } from './registry.js';
import { authenticateAdmin, createAdminHandler } from './admin-api.js';
import { certInventory, configDump, endpointViews, peerCertificates } from './operator-views.js';
import { AnomalyService, meshMonitorSpec } from './anomaly-service.js';
import { ANOMALY_STREAM_PATH, AnomalyStream } from './anomaly-stream.js';
import { TAP_PATH, TapBroker } from './tap-broker.js';
import { sourceIndex, TrafficView } from '@amime/traffic';
import { TRAFFIC_STREAM_PATH } from './traffic-api.js';
import { TrafficStream } from './traffic-stream.js';
import { isWildcardHost, metricsAddress, serveMetrics } from './metrics-server.js';
import { randomReplicaId, ReplicaDirectory } from './replica-directory.js';
import { SourceNodes } from './source-nodes.js';
import { CaSync } from './ca-sync.js';
import { ControlPlaneCredential } from './credential.js';
import { createControlPlaneMetrics, type ControlPlaneMetrics } from './metrics.js';
import type { Server as HttpServer } from 'node:http';

export interface ControlPlaneOptions {
  /** Data directory: credential/, store/ (embedded). */
  dir: string;
  caUrl: string;
  /** The operator's admin credential, needed on first start to get our SVID. */
  adminDir?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** /metrics, /healthz and /v1/sd/prometheus; undefined for none, 0 for a free port. */
  metricsPort?: number;
  /**
   * The address the metrics listener binds, 127.0.0.1 by default. Other
   * replicas list it as `<metricsHost>:<port>`, or, for 0.0.0.0 and ::, as
   * `<host>:<port>` (the machine's hostname if that is a wildcard too).
   */
  metricsHost?: string;
  /** The CA's /metrics "host:port", listed in Prometheus discovery when given. */
  caMetricsAddress?: string;
  /** etcd endpoints; the embedded store in <dir>/store when absent. */
  etcd?: { hosts: string[]; namespace?: string };
  heartbeatMs?: number;
  debounceMs?: number;
  maxDebounceMs?: number;
  graceMs?: number;
  caSyncIntervalMs?: number;
  log?(event: Record<string, unknown>): void;
}

export interface RunningControlPlane {
  url: string;
  port: number;
  metricsUrl: string | undefined;
  /** This process's id among the replicas (a new one per start), labelled amime_replica in discovery. */
  replicaId: string | undefined;
  spiffeId: string;
  metrics: ControlPlaneMetrics;
  push: PushServer;
  registry: Registry;
  cache: ResourceCache;
  resources: ResourceService;
  anomalies: AnomalyService;
  /** The live per-edge traffic view (GET /v1/traffic). */
  traffic: TrafficView;
  close(): Promise<void>;
}

const jsonLog = (event: Record<string, unknown>) => process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');

export async function startControlPlane(opts: ControlPlaneOptions): Promise<RunningControlPlane> {
  const log = opts.log ?? jsonLog;
  const closers: (() => unknown)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        log({ event: 'close_failed', error: (err as Error).message });
      }
    }
  };
  try {
    const credential = await ControlPlaneCredential.obtain({ caUrl: opts.caUrl, dir: opts.dir, adminDir: opts.adminDir, log });
    closers.push(() => credential.stop());
    const trustDomain = credential.trustDomain;

    const store: Store = opts.etcd ? new EtcdStore({ hosts: opts.etcd.hosts, namespace: opts.etcd.namespace ?? 'amime/' }) : await EmbeddedStore.open(join(opts.dir, 'store'));
    closers.push(() => store.close());
    const resources = new ResourceService(store);

    const caSync = new CaSync({
      // This client follows our renewals and the CA's bundle by itself.
      client: () => credential.client,
      trustDomain,
      intervalMs: opts.caSyncIntervalMs ?? 5000,
      publish: async (resource) => void (await resources.putDerived(resource)),
      log,
    });
    await caSync.start();
    closers.push(() => caSync.stop());
    // The WebSocket routes (tap, traffic and anomaly streams) authenticate their upgrades as the admin API does its requests.
    const authenticateStream = (socket: TLSSocket): string => authenticateAdmin(socket, { trustDomain, trust: () => ({ bundle: caSync.bundle(), revocations: caSync.revocations() }), log });

    const cache = await ResourceCache.open(store, { log });
    closers.push(() => cache.close());

    const registry = new Registry(
      {
        isAssigned: (node, id) => caSync.isAssigned(node, id),
        service: (ns, name) => cache.get(`/resources/Service/${ns}/${name}`) as ServiceResource | undefined,
        endpoints: () => cache.list('Endpoint'),
        putEndpoint: (e: EndpointResource) => resources.putDerived(e),
        deleteEndpoint: (ns, name) => resources.deleteDerived('Endpoint', ns, name),
        log,
      },
      { heartbeatTtlMs: 3 * (opts.heartbeatMs ?? 5000), graceMs: opts.graceMs ?? 60_000 },
    );
    closers.push(() => registry.close());

    // The monitor asks synchronously which node an identity is assigned to: a copy kept current.
    const toSets = (a: Record<string, string[]>) => new Map(Object.entries(a).map(([node, ids]) => [node, new Set(ids)]));
    let assignments = toSets(caSync.assignments());
    caSync.on('assignments', (a: Record<string, string[]>) => (assignments = toSets(a)));
    const assigned = (node: string, identity: string): boolean => {
      if (node.startsWith('unknown:')) return false;
      if (identity === `spiffe://${trustDomain}/agent/${node}`) return true;
      return assignments.get(node)?.has(identity) ?? false;
    };
    const sessions = new Map<string, PushSession>();
    /** The SVIDs each agent session last reported holding (for GET /v1/certs). */
    const heldSvids = new WeakMap<PushSession, HeldSvid[]>();
    // Created once the metrics listener knows its address; told when the agents change.
    let directory: ReplicaDirectory | undefined;
    const sourceNodes = new SourceNodes({ endpoints: () => cache.list('Endpoint'), sessions: () => sessions.values(), assigned });

    // Collected lazily on scrape, after everything below exists.
    const metrics = createControlPlaneMetrics({
      revision: (t) => cache.revision(t),
      count: (t) => cache.count(t),
      agents: () => push.size,
      endpointsByHealth: () => {
        let healthy = 0;
        let unhealthy = 0;
        for (const e of cache.list('Endpoint')) {
          if ((e as EndpointResource).spec.health === 'healthy') healthy++;
          else unhealthy++;
        }
        return { healthy, unhealthy };
      },
    });
    // The traffic view names a source's service from the registered instances with its identity (rebuilt when Endpoints change).
    let sources: ReturnType<typeof sourceIndex> | undefined;
    const endpointSources = () =>
      sourceIndex((cache.list('Endpoint') as EndpointResource[]).map((e) => ({ identity: e.spec.identity, namespace: e.metadata.namespace, service: e.spec.service })));
    const traffic = new TrafficView({ resolveSource: (id) => (sources ??= endpointSources())(id) });
    const anomalies = await AnomalyService.open({
      store,
      resolveSourceNode: (ip, identity) => sourceNodes.resolve(ip, identity),
      assigned,
      metrics,
      log,
      // after the report gate: a node flooding reports is limited here too
      onReport: (node, report) => {
        try {
          // An agent speaks for the services it fronts: an edge into a Service whose identity is not
          // assigned to the reporting node is not shown (one without a Service resource is).
          const own = report.edges.filter((e) => {
            const svc = cache.get(`/resources/Service/${e.namespace}/${e.service}`) as ServiceResource | undefined;
            return !svc || assigned(node, svc.spec.identity);
          });
          if (own.length < report.edges.length) log({ event: 'traffic_edges_refused', node, edges: report.edges.length - own.length, reason: 'destination_not_on_node' });
          traffic.ingest(node, own.length === report.edges.length ? report : { ...report, edges: own });
        } catch (err) {
          log({ event: 'traffic_report_failed', node, error: (err as Error).message });
        }
      },
    });
    closers.push(() => anomalies.close());
    anomalies.configure(meshMonitorSpec(cache.list('MeshConfig')));

    // Live taps (meshctl tap): sent to every connected agent; fed by the push server's hooks below.
    const taps: TapBroker = new TapBroker({
      agents: { nodes: () => sessions.keys(), send: (node, m): boolean => push.sendTap(node, m) },
      authenticate: authenticateStream,
      log,
    });
    closers.push(() => taps.close());
    const push = new PushServer({
      view: cache,
      trustDomain,
      trust: () => ({ bundle: caSync.bundle(), revocations: caSync.revocations() }),
      heartbeatMs: opts.heartbeatMs,
      debounceMs: opts.debounceMs,
      maxDebounceMs: opts.maxDebounceMs,
      log,
      hooks: {
        onConnect: (s) => {
          registry.connected(s.node);
          sessions.set(s.node, s);
          sourceNodes.invalidate();
          directory?.changed();
          taps.nodeConnected(s.node);
        },
        onDisconnect: (s) => {
          registry.disconnected(s.node);
          if (sessions.get(s.node) === s) sessions.delete(s.node);
          sourceNodes.invalidate();
          anomalies.forgetNode(s.node);
          taps.nodeDisconnected(s.node);
          traffic.forgetNode(s.node);
          directory?.changed();
        },
        onReport: (s, report) => anomalies.report(s.node, report),
        onTapEvents: (s, m) => taps.onTapEvents(s.node, m),
        onHeartbeat: (s) => registry.heartbeat(s.node),
        onRegister: (s, instances, svids) => {
          // The agent's whole set, as with instances: a frame without svids (an older agent, or one over the size bound) clears it.
          heldSvids.set(s, svids ?? []);
          return registry.register(s.node, instances);
        },
        onPush: (type, kind) => metrics.pushes.inc({ type, kind }),
        onAck: (type, ms) => {
          metrics.acks.inc({ type });
          if (ms !== undefined) metrics.pushLatency.observe({ type }, ms / 1000);
        },
        onNack: (_s, type) => metrics.nacks.inc({ type }),
        onRefused: (reason) => metrics.refused.inc({ reason }),
      },
    });
    closers.push(() => push.close());
    cache.onChange((types) => push.notify(types as Iterable<ResourceType>));
    cache.onChange((types) => {
      const changed = new Set<string>(types as Iterable<string>);
      if (changed.has('Endpoint')) {
        sourceNodes.invalidate();
        sources = undefined;
      }
      if (changed.has('MeshConfig')) anomalies.configure(meshMonitorSpec(cache.list('MeshConfig')));
    });


    const tlsOptions = () => {
      const c = credential.current();
      return { cert: c.certPem, key: c.keyPem, ca: caSync.bundlePem(), minVersion: 'TLSv1.3' as const };
    };
    const server = https.createServer({
      ...tlsOptions(),
      requestCert: true,
      // Every route and the push channel need a client certificate that
      // chains to our roots: others fail in the handshake.
      rejectUnauthorized: true,
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      maxHeaderSize: 16 * 1024,
    });
    server.keepAliveTimeout = 30_000;
    const started = new Date();
    server.on(
      'request',
      createAdminHandler({
        resources,
        trustDomain,
        trust: () => ({ bundle: caSync.bundle(), revocations: caSync.revocations() }),
        agents: () => {
          const counts = registry.counts();
          return push.status().map((s) => ({ ...s, instances: counts.get(s.node) ?? 0, ...peerCertificates(push.session(s.node)) }));
        },
        endpoints: (filter) => endpointViews(cache.list('Endpoint'), filter),
        certs: () =>
          certInventory({
            roots: caSync.bundle().roots,
            sessions: [...sessions.values()].map((session) => ({ session, reported: heldSvids.get(session) ?? [] })),
            owns: assigned,
            own: fromPem(credential.current().certPem, 'CERTIFICATE').map((der) => parseCertificate(der)),
          }),
        agentConfig: (node) => {
          const status = push.status().find((s) => s.node === node);
          const session = push.session(node);
          return status && configDump({ status, ...(session && { session }), view: cache, endpoints: cache.list('Endpoint') });
        },
        status: () => ({
          spiffeId: credential.spiffeId,
          trustDomain,
          startedAt: started.toISOString(),
          // For clock-skew checks (meshctl check): the control plane's clock when it answered.
          time: new Date().toISOString(),
          store: opts.etcd ? 'etcd' : 'embedded',
          epoch: cache.epoch,
          agents: push.size,
          versions: Object.fromEntries(RESOURCE_TYPES.map((t) => [t, cache.version(t)])),
        }),
        anomalies,
        traffic,
        onRequest: (route, code, seconds) => {
          metrics.adminRequests.inc({ route, code: String(code) });
          metrics.adminDuration.observe(seconds);
        },
      }),
    );
    // One upgrade listener: the anomaly stream is ours, everything else goes to the push server.
    const stream = new AnomalyStream({
      authenticate: authenticateStream,
      subscribe: (fn) => anomalies.subscribe(fn),
      log,
    });
    closers.push(() => stream.close());
    const trafficStream = new TrafficStream({
      authenticate: authenticateStream,
      view: traffic,
      log,
    });
    closers.push(() => trafficStream.close());
    const pushUpgrades = new EventEmitter();
    push.attach(pushUpgrades as unknown as https.Server);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if ((req.url ?? '').split('?')[0] === ANOMALY_STREAM_PATH) stream.handleUpgrade(req, socket, head);
      else if ((req.url ?? '').split('?')[0] === TRAFFIC_STREAM_PATH) trafficStream.handleUpgrade(req, socket, head);
      else if ((req.url ?? '').split('?')[0] === TAP_PATH) taps.handleUpgrade(req, socket, head);
      else pushUpgrades.emit('upgrade', req, socket, head);
    });
    const refreshTls = () => server.setSecureContext(tlsOptions() as never);
    credential.on('renewed', refreshTls);
    caSync.on('bundle', () => {
      credential.setBundle(caSync.bundlePem());
      refreshTls();
      push.revalidate();
    });
    caSync.on('revocations', () => push.revalidate());

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
    });
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
          // Upgraded sockets are no HTTP connections: end them now, or close waits for every agent to leave.
          push.close();
          stream.close();
          taps.close();
          trafficStream.close();
        }),
    );
    const port = (server.address() as { port: number }).port;

    const host = opts.host ?? '127.0.0.1';
    let metricsUrl: string | undefined;
    if (opts.metricsPort !== undefined) {
      const agents = () => [...sessions.values()].map((s) => ({ node: s.node, metrics: s.metrics }));
      const ca = opts.caMetricsAddress !== undefined ? { ca: opts.caMetricsAddress } : {};
      const replicaId = randomReplicaId();
      const m: HttpServer = await serveMetrics({
        registry: metrics.registry,
        port: opts.metricsPort,
        host: opts.metricsHost ?? '127.0.0.1',
        advertiseHost: isWildcardHost(host) ? hostname() : host,
        targets: { agents, replica: replicaId, ...ca },
        // Until the directory has loaded the other replicas, this replica's own view.
        discovery: () => (directory?.ready ? directory.targets() : undefined),
      });
      closers.push(() => new Promise<void>((resolve) => m.close(() => resolve())));
      const self = metricsAddress(m)!;
      metricsUrl = `http://${self}`;
      directory = new ReplicaDirectory({ store, id: replicaId, metrics: self, agents, ...ca, log });
      // Closed before the store (closers run in reverse): a clean stop removes our entry.
      closers.push(() => directory?.stop());
      await directory.start();
    }
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    log({ event: 'listening', url, push: `wss://${host}:${port}${PUSH_PATH}`, metrics: metricsUrl, replica: directory?.id, spiffeId: credential.spiffeId });
    return { url, port, metricsUrl, replicaId: directory?.id, spiffeId: credential.spiffeId, metrics, push, registry, cache, resources, anomalies, traffic, close };
  } catch (err) {
    await close();
    throw err;
  }
}
