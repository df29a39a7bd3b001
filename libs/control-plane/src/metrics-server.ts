// The control plane's metrics HTTP listener (loopback unless told otherwise):
// /metrics, /healthz, and Prometheus HTTP service discovery at
// /v1/sd/prometheus (the http_sd_configs format: a JSON list of {targets,
// labels}), one group per agent that said where it serves /metrics, one per
// control-plane replica and one for the CA when its metrics address is
// configured. With a `discovery` (the replica directory) the list covers the
// whole mesh; without one, or before it is ready, this replica's own view.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { Registry } from 'prom-client';

export const PROMETHEUS_SD_PATH = '/v1/sd/prometheus';

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

export interface ScrapeTargets {
  /** Connected agents and the "host:port" of their /metrics, when they said it. */
  agents(): Iterable<{ node: string; metrics: string | undefined }>;
  /** "host:port" of this control plane's /metrics (this listener). */
  controlPlane?: string;
  /** Its replica id, labelled amime_replica when given. */
  replica?: string;
  /** Every control-plane replica, in place of `controlPlane` (labelled amime_replica). */
  replicas?: { id: string; metrics: string }[];
  /** "host:port" of the CA's /metrics, when known. */
  ca?: string;
}

/** The http_sd target groups: agents sorted by node, then the control plane(s) sorted by replica id, and the CA. */
export function prometheusTargets(t: ScrapeTargets): TargetGroup[] {
  const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const replicas = t.replicas
    ? [...t.replicas].sort(byId).map((r) => ({ targets: [r.metrics], labels: { amime_component: 'control-plane', amime_replica: r.id } }))
    : t.controlPlane
      ? [{ targets: [t.controlPlane], labels: { amime_component: 'control-plane', ...(t.replica !== undefined && { amime_replica: t.replica }) } }]
      : [];
  const agents = [...t.agents()]
    .filter((a): a is { node: string; metrics: string } => typeof a.metrics === 'string' && a.metrics !== '')
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    .map((a) => ({ targets: [a.metrics], labels: { amime_component: 'agent', amime_node: a.node } }));
  return [
    ...agents,
    ...replicas,
    ...(t.ca ? [{ targets: [t.ca], labels: { amime_component: 'ca' } }] : []),
  ];
}

const addresses = new WeakMap<HttpServer, string>();

/** The "host:port" a server from `serveMetrics` is scraped at. */
export function metricsAddress(server: HttpServer): string | undefined {
  return addresses.get(server);
}

export interface MetricsServerOptions {
  registry: Registry;
  /** 0 picks a free port. */
  port: number;
  /** The address to bind; 127.0.0.1 (loopback only) by default. */
  host?: string;
  /** The host others scrape this listener at, when `host` is a wildcard (0.0.0.0, ::). */
  advertiseHost?: string;
  /** This replica's own view, also the fallback of `discovery`. */
  targets: Omit<ScrapeTargets, 'controlPlane' | 'replicas'>;
  /** The whole mesh's target groups, or undefined while not ready. */
  discovery?(): TargetGroup[] | undefined;
}

/** "host:port" for a bound port, with IPv6 hosts in brackets. */
export function joinHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export const isWildcardHost = (host: string): boolean => host === '0.0.0.0' || host === '::';

/** Listens on `host` (loopback by default); resolves once listening, `metricsAddress(server)` then says where. */
export function serveMetrics(opts: MetricsServerOptions): Promise<HttpServer> {
  let self: string | undefined;
  const host = opts.host ?? '127.0.0.1';
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.statusCode = 405;
      res.setHeader('allow', 'GET, HEAD');
      res.end('method not allowed\n');
    } else if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => {
          res.setHeader('content-type', opts.registry.contentType);
          res.end(text);
        },
        (err: Error) => {
          res.statusCode = 500;
          res.end(err.message);
        },
      );
    } else if (path === '/healthz') {
      res.end('ok\n');
    } else if (path === PROMETHEUS_SD_PATH) {
      res.setHeader('content-type', 'application/json');
      res.setHeader('cache-control', 'no-store');
      const groups = opts.discovery?.() ?? prometheusTargets({ ...opts.targets, ...(self !== undefined && { controlPlane: self }) });
      res.end(JSON.stringify(groups) + '\n');
    } else {
      res.statusCode = 404;
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      self = joinHostPort(isWildcardHost(host) ? (opts.advertiseHost ?? host) : host, (server.address() as { port: number }).port);
      addresses.set(server, self);
      resolve(server);
    });
  });
}
