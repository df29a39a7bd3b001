// A third reference: the barest HTTP/1.1 proxy pair Node can make for the
// same mTLS hop — Node's http server and client on both sides, keep-alive
// pools (TLS between the two), and nothing else: no routing, policy,
// balancing, retries, header hygiene or metrics. It is the floor for an L7
// proxy built on Node's HTTP parser, to tell the runtime's cost from the
// agent's code.
//
// Run as a child: node --import tsx node-http.ts client|server PORT TARGET_PORT CERTDIR
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const [role, listenPort, targetPort, dir] = process.argv.slice(2) as [string, string, string, string];
const ca = readFileSync(join(dir, 'ca.pem'));

const forward = (req: http.IncomingMessage, res: http.ServerResponse, request: (o: http.RequestOptions, cb: (r: http.IncomingMessage) => void) => http.ClientRequest, agent: http.Agent) => {
  const up = request({ host: '127.0.0.1', port: Number(targetPort), method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
};

let server: http.Server;
if (role === 'client') {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 256, cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')), ca, servername: 'server.bench', minVersion: 'TLSv1.3' });
  server = http.createServer((req, res) => forward(req, res, https.request, agent));
} else {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  server = https.createServer({ cert: readFileSync(join(dir, 'server.crt')), key: readFileSync(join(dir, 'server.key')), ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (req, res) => forward(req, res, http.request, agent));
}
server.keepAliveTimeout = 60_000;
server.listen(Number(listenPort), '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ event: 'listening', port: (server.address() as AddressInfo).port })}\n`));
process.on('SIGTERM', () => process.exit(0));
