// The agent's admin port (loopback by default): /metrics, /healthz (the
// process serves), /ready (identity held, config loaded, listeners bound),
// /config_dump and /certs. Read-only; GET and HEAD only.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminSources {
  registry: Registry;
  ready(): { ready: boolean; reasons: string[] };
  configDump(): unknown;
  certificates(): unknown;
}

export interface AdminServer {
  url: string;
  close(): Promise<void>;
}

export async function startAdminServer(address: string, port: number, sources: AdminSources): Promise<AdminServer> {
  const server = http.createServer({ maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, JSON.stringify({ error: { code: 'AMIME_ERR_ADMIN_METHOD', message: `${req.method} is not allowed; the admin port is read-only` } }));
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/metrics':
        sources.registry.metrics().then(
          (text) => send(200, text, sources.registry.contentType),
          (err: unknown) => send(500, JSON.stringify({ error: { code: 'AMIME_ERR_ADMIN_METRICS', message: String(err) } })),
        );
        return;
      case '/healthz':
        return send(200, '{"status":"ok"}');
      case '/ready': {
        const r = sources.ready();
        return send(r.ready ? 200 : 503, JSON.stringify(r));
      }
      case '/config_dump':
        return send(200, JSON.stringify(sources.configDump(), null, 2));
      case '/certs':
        return send(200, JSON.stringify(sources.certificates(), null, 2));
      default:
        return send(404, JSON.stringify({ error: { code: 'AMIME_ERR_ADMIN_NOT_FOUND', message: `no ${path}; try /metrics, /healthz, /ready, /config_dump, /certs` } }));
    }
  });
  server.listen(port, address);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
