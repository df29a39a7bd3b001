// The dashboard's HTTP server: the static page, read-only JSON of what the
// page shows, and a WebSocket that pushes every change. It holds the admin
// credential, so every request is checked before it is served:
// - Host must be an IP address, localhost or an --allow-host name: a
//   DNS-rebinding page (evil.example resolving to 127.0.0.1) cannot read the
//   mesh through it, and rebinding needs a name, never an IP literal;
// - the WebSocket's Origin must be this server's own (no cross-site sockets);
// - GET/HEAD only, short URLs, a strict CSP with no inline script.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import type { MeshView, SectionName, ViewEvent } from './mesh-view.js';

export interface DashboardServerOptions {
  view: MeshView;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 18090; 0 for any free port. */
  port?: number;
  /** Host names (besides IP addresses and localhost) the page may be reached by. */
  allowedHosts?: readonly string[];
  /** Browsers connected at once; default 16. */
  maxClients?: number;
  /** A client whose unsent updates exceed this is dropped (it reloads and starts over); default 4 MiB. */
  maxClientBufferBytes?: number;
  /** Where index.html, dashboard.css and dashboard.mjs are; default the lib's static/. */
  staticDir?: string;
  log?(event: Record<string, unknown>): void;
}

export interface RunningDashboard {
  url: string;
  port: number;
  clients(): number;
  close(): Promise<void>;
}

export const DEFAULT_DASHBOARD_PORT = 18090;
/** The page and its two files, as shipped beside this module (libs/dashboard/static). */
export const DEFAULT_STATIC_DIR = join(import.meta.dirname, '..', 'static');
const STATIC_FILES = { '/': ['index.html', 'text/html; charset=utf-8'], '/dashboard.css': ['dashboard.css', 'text/css; charset=utf-8'], '/dashboard.mjs': ['dashboard.mjs', 'text/javascript; charset=utf-8'] } as const;
const API_SECTIONS: Record<string, SectionName> = {
  '/api/graph': 'graph',
  '/api/certs': 'certs',
  '/api/anomalies': 'anomalies',
  '/api/policies': 'policies',
  '/api/routes': 'routes',
  '/api/agents': 'agents',
  '/api/connection': 'connection',
};
const MAX_URL_LENGTH = 2048;
const PING_MS = 30_000;
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** host[:port] of a Host header or an Origin's host, lowercased; undefined when it does not parse. */
function hostOf(value: string): { name: string; port: string } | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/.exec(value.toLowerCase());
  return m ? { name: m[1]!, port: m[2] ?? '' } : undefined;
}

export async function startDashboardServer(o: DashboardServerOptions): Promise<RunningDashboard> {
  const host = o.host ?? '127.0.0.1';
  const maxClients = o.maxClients ?? 16;
  const maxBuffer = o.maxClientBufferBytes ?? 4 << 20;
  const log = o.log ?? (() => undefined);
  const dir = o.staticDir ?? DEFAULT_STATIC_DIR;
  // Read once: nothing on disk is served by a path from the request.
  const files = new Map(Object.entries(STATIC_FILES).map(([path, [file, type]]) => [path, { body: readFileSync(join(dir, file)), type }]));
  const allowed = new Set(['localhost', ...(o.allowedHosts ?? []).map((h) => h.toLowerCase())]);

  /**
   * Why a request's Host is refused, or undefined when it names us. The
   * port is not checked: `ssh -L 8080:127.0.0.1:18090` must work, and
   * rebinding is stopped by the name alone.
   */
  const badHost = (req: IncomingMessage): string | undefined => {
    const h = hostOf(req.headers.host ?? '');
    if (!h) return 'no readable Host header';
    if (isIP(h.name.replace(/^\[|\]$/g, '')) === 0 && !allowed.has(h.name)) return `Host ${JSON.stringify(h.name)} is not a name of this dashboard (start it with --allow-host ${h.name} to serve it under that name)`;
    return undefined;
  };

  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const fail = (status: number, message: string) => send(status, 'application/json', JSON.stringify({ error: { message } }), { 'cache-control': 'no-store' });
    const refused = badHost(req);
    if (refused) return fail(421, refused);
    if ((req.url ?? '').length > MAX_URL_LENGTH) return fail(414, `the request target is longer than ${MAX_URL_LENGTH} characters`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, `${req.method} is not served: the dashboard is read-only (GET)`);
    const path = (req.url ?? '/').split('?')[0]!;
    const file = files.get(path);
    if (file) return send(200, file.type, file.body, { 'cache-control': 'no-cache' });
    if (path === '/api/state') return send(200, 'application/json', JSON.stringify(o.view.snapshot()), { 'cache-control': 'no-store' });
    const name = API_SECTIONS[path];
    if (name) return send(200, 'application/json', JSON.stringify(o.view.section(name)), { 'cache-control': 'no-store' });
    if (path === '/healthz') return send(200, 'text/plain; charset=utf-8', 'ok\n', { 'cache-control': 'no-store' });
    if (path === '/favicon.ico') return send(204, 'image/x-icon', ''); // browsers ask; no 404 in their console
    return fail(404, `nothing at ${JSON.stringify(path.slice(0, 200))}: the page is at /, its data under /api/ (state, graph, certs, anomalies, policies, routes, agents, connection)`);
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: true });
  const alive = new WeakMap<WebSocket, boolean>();
  const refuseUpgrade = (socket: Duplex, status: number, reason: string, message: string) => {
    log({ event: 'websocket_refused', status, reason: message });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
  };
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const refused = badHost(req);
    if (refused) return refuseUpgrade(socket, 421, 'Misdirected Request', refused);
    if ((req.url ?? '').split('?')[0] !== '/ws') return refuseUpgrade(socket, 404, 'Not Found', 'the WebSocket is at /ws');
    // A browser always sends Origin on a WebSocket; it must be this very page (host and port; https when a TLS proxy fronts us).
    const origin = req.headers.origin;
    const host = (req.headers.host ?? '').toLowerCase();
    if (origin === undefined || (origin.toLowerCase() !== `http://${host}` && origin.toLowerCase() !== `https://${host}`)) {
      return refuseUpgrade(socket, 403, 'Forbidden', `Origin ${JSON.stringify(origin ?? null)} is not this dashboard (http://${host}): cross-site WebSockets are refused`);
    }
    if (wss.clients.size >= maxClients) return refuseUpgrade(socket, 503, 'Service Unavailable', `already ${maxClients} browsers connected (--max-clients)`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      ws.on('error', () => ws.terminate());
      // The page never speaks: anything it sends is a mistake or an attack.
      ws.on('message', () => ws.close(1008, 'the dashboard socket is one-way'));
      ws.send(JSON.stringify({ type: 'state', sections: o.view.snapshot() }));
    });
  });

  const broadcast = (e: ViewEvent) => {
    if (wss.clients.size === 0) return;
    const frame = JSON.stringify(e);
    for (const ws of wss.clients) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      if (ws.bufferedAmount + frame.length > maxBuffer) {
        // A browser that stopped reading would hold every update in memory: let it go (it reconnects and gets the whole state).
        log({ event: 'websocket_slow_client_dropped', buffered: ws.bufferedAmount });
        ws.terminate();
        continue;
      }
      ws.send(frame);
    }
  };
  const unsubscribe = o.view.onChange(broadcast);
  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.get(ws)) ws.terminate();
      else {
        alive.set(ws, false);
        ws.ping();
      }
    }
  }, PING_MS);
  pinger.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? DEFAULT_DASHBOARD_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${port}/`,
    port,
    clients: () => wss.clients.size,
    close: async () => {
      unsubscribe();
      clearInterval(pinger);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
