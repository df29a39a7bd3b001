// The control plane's loopback HTTP listener: /metrics, /healthz, and
// Prometheus HTTP service discovery at /v1/sd/prometheus (the http_sd_configs
// format: a JSON list of {targets, labels}), one group per connected agent
// that said where it serves /metrics, one for the control plane itself and
// one for the CA when its metrics address is configured.
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
  /** "host:port" of the CA's /metrics, when known. */
  ca?: string;
}

/** The http_sd target groups: agents sorted by node, then the control plane and the CA. */
export function prometheusTargets(t: ScrapeTargets): TargetGroup[] {
  const agents = [...t.agents()]
    .filter((a): a is { node: string; metrics: string } => typeof a.metrics === 'string' && a.metrics !== '')
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    .map((a) => ({ targets: [a.metrics], labels: { amime_component: 'agent', amime_node: a.node } }));
  return [
    ...agents,
    ...(t.controlPlane ? [{ targets: [t.controlPlane], labels: { amime_component: 'control-plane' } }] : []),
    ...(t.ca ? [{ targets: [t.ca], labels: { amime_component: 'ca' } }] : []),
  ];
}

export interface MetricsServerOptions {
  registry: Registry;
  /** 0 picks a free port. */
  port: number;
  targets: Omit<ScrapeTargets, 'controlPlane'>;
}

/** Listens on 127.0.0.1 (metrics stay on loopback, apart from the mTLS API). */
export function serveMetrics(opts: MetricsServerOptions): Promise<HttpServer> {
  let self: string | undefined;
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
      res.end(JSON.stringify(prometheusTargets({ ...opts.targets, ...(self !== undefined && { controlPlane: self }) })) + '\n');
    } else {
      res.statusCode = 404;
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      self = `127.0.0.1:${(server.address() as { port: number }).port}`;
      resolve(server);
    });
  });
}
