// startControlPlane: one HTTPS server (TLS 1.3, client certificates required)
// serving the admin API to operators and the push channel to agents, over one
// store, with the CA kept in sync.
//
//   credential ──▶ HTTPS server ◀── CA sync (bundle, revocations, assignments)
//   store ──watch──▶ ResourceCache ──notify──▶ PushServer ──▶ agents
//   admin API ──▶ ResourceService ──▶ store      registry ──▶ Endpoints ──▶ store

import https from 'node:https';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { EmbeddedStore, EtcdStore, type Store } from '@amime/store';
import { RESOURCE_TYPES, type EndpointResource, type ResourceType, type ServiceResource } from '@amime/protocol';
import { PushServer, PUSH_PATH } from '@amime/protocol/server';
import { ResourceCache } from './resource-cache.js';
import { ResourceService } from './resource-service.js';
import { Registry } from './registry.js';
import { createAdminHandler } from './admin-api.js';
import { CaSync } from './ca-sync.js';
import { ControlPlaneCredential } from './credential.js';
import { createControlPlaneMetrics, type ControlPlaneMetrics } from './metrics.js';

export interface ControlPlaneOptions {
  /** Data directory: credential/, store/ (embedded). */
  dir: string;
  caUrl: string;
  /** The operator's admin credential, needed on first start to get our SVID. */
  adminDir?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Loopback /metrics and /healthz; undefined for none, 0 for a free port. */
  metricsPort?: number;
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
  spiffeId: string;
  metrics: ControlPlaneMetrics;
  push: PushServer;
  registry: Registry;
  cache: ResourceCache;
  resources: ResourceService;
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
    const push = new PushServer({
      view: cache,
      trustDomain,
      trust: () => ({ bundle: caSync.bundle(), revocations: caSync.revocations() }),
      heartbeatMs: opts.heartbeatMs,
      debounceMs: opts.debounceMs,
      maxDebounceMs: opts.maxDebounceMs,
      log,
      hooks: {
        onConnect: (s) => registry.connected(s.node),
        onDisconnect: (s) => registry.disconnected(s.node),
        onHeartbeat: (s) => registry.heartbeat(s.node),
        onRegister: (s, instances) => registry.register(s.node, instances),
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
          return push.status().map((s) => ({ ...s, instances: counts.get(s.node) ?? 0 }));
        },
        status: () => ({
          spiffeId: credential.spiffeId,
          trustDomain,
          startedAt: started.toISOString(),
          store: opts.etcd ? 'etcd' : 'embedded',
          epoch: cache.epoch,
          agents: push.size,
          versions: Object.fromEntries(RESOURCE_TYPES.map((t) => [t, cache.version(t)])),
        }),
        onRequest: (route, code, seconds) => {
          metrics.adminRequests.inc({ route, code: String(code) });
          metrics.adminDuration.observe(seconds);
        },
      }),
    );
    push.attach(server);
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
        }),
    );
    const port = (server.address() as { port: number }).port;

    let metricsUrl: string | undefined;
    if (opts.metricsPort !== undefined) {
      const m = await serveMetrics(metrics, opts.metricsPort);
      closers.push(() => new Promise<void>((resolve) => m.close(() => resolve())));
      metricsUrl = `http://127.0.0.1:${(m.address() as { port: number }).port}`;
    }
    const host = opts.host ?? '127.0.0.1';
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    log({ event: 'listening', url, push: `wss://${host}:${port}${PUSH_PATH}`, metrics: metricsUrl, spiffeId: credential.spiffeId });
    return { url, port, metricsUrl, spiffeId: credential.spiffeId, metrics, push, registry, cache, resources, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function serveMetrics(metrics: ControlPlaneMetrics, port: number): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.setHeader('content-type', metrics.registry.contentType);
          res.end(text);
        },
        (err: Error) => {
          res.statusCode = 500;
          res.end(err.message);
        },
      );
    } else if (req.url === '/healthz') {
      res.end('ok\n');
    } else {
      res.statusCode = 404;
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Metrics stay on loopback, apart from the mTLS API.
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
