// The push benchmark's floor: a bare WSS broadcast server with the control
// plane's TLS setup (TLS 1.3, client certificates required and verified by
// OpenSSL against the same root, ws without compression) and no protocol
// logic. The first frame from a socket (the hello) gets one fixed snapshot;
// POST /v1/broadcast sends one fixed delta-shaped frame (the same Route the
// control plane pushes) to every socket; everything else agents send is read
// and dropped. So the workers measure it exactly as they measure amime.
//
//   node --import tsx tools/bench/push/reference.ts --cert F --key F --ca F --route F
//
// Prints {"event":"serving","url":...} on stdout; SIGTERM/SIGINT stop it.
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';

const { values } = parseArgs({
  options: { cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' }, route: { type: 'string' }, port: { type: 'string', default: '0' } },
  strict: true,
});
const need = (k: 'cert' | 'key' | 'ca' | 'route'): string => {
  const v = values[k];
  if (!v) {
    process.stderr.write(`reference: --${k} is required\n`);
    process.exit(64);
  }
  return readFileSync(v, 'utf8');
};
const route = JSON.parse(need('route')) as unknown;

const server = https.createServer({
  cert: need('cert'),
  key: need('key'),
  ca: need('ca'),
  minVersion: 'TLSv1.3',
  requestCert: true,
  rejectUnauthorized: true,
});
server.keepAliveTimeout = 30_000;
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 64 * 1024 });
const sockets = new Set<WebSocket>();
const snapshot = JSON.stringify({ type: 'snapshot', nonce: 's0', resourceType: 'Route', version: 'ref-0', resources: [route] });
let seq = 0;

server.on('upgrade', (req, socket, head) => {
  if ((req.url ?? '').split('?')[0] !== '/v1/push') {
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    sockets.add(ws);
    let said = false;
    ws.on('message', () => {
      if (said) return;
      said = true;
      ws.send(snapshot);
    });
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => sockets.delete(ws));
  });
});

server.on('request', (req, res) => {
  // Drain the body (the trigger carries the same Route the control plane gets), then answer.
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    if (req.method === 'POST' && req.url === '/v1/broadcast') {
      seq++;
      const frame = JSON.stringify({ type: 'delta', nonce: `b${seq}`, resourceType: 'Route', version: `ref-${seq}`, upserts: [route], removals: [] });
      for (const ws of sockets) ws.send(frame);
      res.end(JSON.stringify({ sent: sockets.size, version: `ref-${seq}` }));
    } else if (req.method === 'GET' && req.url === '/v1/status') {
      res.end(JSON.stringify({ agents: sockets.size }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
});

server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'serving', url: `https://127.0.0.1:${port}` })}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    for (const ws of sockets) ws.terminate();
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
