// A second reference: the naive Node mTLS pipe pair the issue measured
// ("0.53× the HAProxy pair's rps at 1.95× its CPU per request"): one
// process takes plaintext and pipes each connection into its own TLS 1.3
// connection with a client certificate; the other requires the certificate
// and pipes to the backend. No pooling, no resumption, no policy: what plain
// Node costs for the same hop, to tell the runtime's floor from the agent's code.
//
// Run as a child: node --import tsx node-pipe.ts client|server PORT TARGET_PORT CERTDIR
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';

const [role, listenPort, targetPort, dir] = process.argv.slice(2) as [string, string, string, string];
const ca = readFileSync(join(dir, 'ca.pem'));
const both = (a: net.Socket, b: net.Socket) => {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b).pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
};
let server: net.Server;
if (role === 'client') {
  const context = tls.createSecureContext({ cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')), ca, minVersion: 'TLSv1.3' });
  server = net.createServer((plain) => {
    const up = tls.connect({ host: '127.0.0.1', port: Number(targetPort), secureContext: context, servername: 'server.bench' });
    both(plain, up);
  });
} else {
  server = tls.createServer({ cert: readFileSync(join(dir, 'server.crt')), key: readFileSync(join(dir, 'server.key')), ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (secure) => {
    both(secure, net.connect({ host: '127.0.0.1', port: Number(targetPort) }));
  });
}
server.listen(Number(listenPort), '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port })}\n`));
process.on('SIGTERM', () => process.exit(0));
