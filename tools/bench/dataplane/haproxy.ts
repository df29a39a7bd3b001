// The reference pair: two Debian haproxy processes in TCP mode doing the
// same mTLS hop as two agents. The client side takes plaintext and opens
// TLS 1.3 with a client certificate (verifying the server); the server side
// requires and verifies the client certificate and forwards plaintext to the
// backend. Certificates: a throwaway ECDSA P-256 CA and two leaves made
// with openssl. Session resumption stays at HAProxy's default (on).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './fixtures.js';
import { spawnTracked } from './children.js';

export interface HaproxyPair {
  /** Where the load generator connects (plaintext). */
  port: number;
  client: ChildProcess;
  server: ChildProcess;
  /** Stats sockets (`show info`) of the client and server side. */
  sockets: { client: string; server: string };
  version: string;
  threads: number;
}

function openssl(dir: string, ...args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** CA, server and client leaves (P-256, 2 days); returns the PEM files haproxy loads. */
function makeCerts(dir: string): { ca: string; server: string; client: string } {
  mkdirSync(dir, { recursive: true });
  const ec = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out'];
  openssl(dir, ...ec, 'ca.key');
  openssl(dir, 'req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/CN=dataplane-bench-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-out', 'ca.pem');
  for (const [name, san] of [
    ['server', 'DNS:server.bench,URI:spiffe://bench.test/ns/bench/sa/backend'],
    ['client', 'DNS:client.bench,URI:spiffe://bench.test/ns/bench/sa/web'],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`);
    openssl(dir, ...ec, `${name}.key`);
    openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}.bench`, '-out', `${name}.csr`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
    writeFileSync(join(dir, `${name}.pem`), readFileSync(join(dir, `${name}.crt`), 'utf8') + readFileSync(join(dir, `${name}.key`), 'utf8'));
  }
  return { ca: join(dir, 'ca.pem'), server: join(dir, 'server.pem'), client: join(dir, 'client.pem') };
}

const globalSection = (threads: number, sock: string) => `global
  nbthread ${threads}
  stats socket ${sock} mode 600 level user
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 75s
  timeout server 75s
`;

async function waitForPort(port: number, child: ChildProcess & { stderrTail: () => string }, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}) before listening on ${port}: ${child.stderrTail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function startHaproxyPair(dir: string, backendPort: number, threads: number): Promise<HaproxyPair> {
  const certs = makeCerts(join(dir, 'certs'));
  const [front, tls] = [await freePort(), await freePort()];
  const serverCfg = join(dir, 'server.cfg');
  const clientCfg = join(dir, 'client.cfg');
  writeFileSync(
    serverCfg,
    `${globalSection(threads, join(dir, 'server.sock'))}frontend mtls_in
  bind 127.0.0.1:${tls} ssl crt ${certs.server} ca-file ${certs.ca} verify required
  default_backend app
backend app
  server backend 127.0.0.1:${backendPort}
`,
  );
  writeFileSync(
    clientCfg,
    `${globalSection(threads, join(dir, 'client.sock'))}frontend plain_in
  bind 127.0.0.1:${front}
  default_backend mtls_out
backend mtls_out
  server peer 127.0.0.1:${tls} ssl crt ${certs.client} ca-file ${certs.ca} verify required sni str(server.bench) verifyhost server.bench
`,
  );
  for (const cfg of [serverCfg, clientCfg]) {
    const check = spawnSync('haproxy', ['-c', '-q', '-f', cfg], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`haproxy -c ${cfg}: ${check.stderr}${check.stdout}`);
  }
  const server = spawnTracked('haproxy', ['-db', '-f', serverCfg]);
  await waitForPort(tls, server);
  const client = spawnTracked('haproxy', ['-db', '-f', clientCfg]);
  await waitForPort(front, client);
  const version = /HAProxy version (\S+)/.exec(spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  return { port: front, client, server, sockets: { client: join(dir, 'client.sock'), server: join(dir, 'server.sock') }, version, threads };
}

/** TLS counters from `show info` on a stats socket (connections, key rate, session reuse). */
export function haproxyTlsInfo(sock: string, timeoutMs = 2000): Promise<Record<string, number>> {
  const keep = /^(CumSslConns|SslFrontendSessionReuse_pct|SslFrontendMaxKeyRate|SslBackendMaxKeyRate|SslCacheLookups|SslCacheMisses|CumConns):\s*(\d+)/;
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect(sock, () => s.end('show info\n'));
    s.setTimeout(timeoutMs, () => s.destroy());
    s.setEncoding('utf8').on('data', (d: string) => (out += d));
    s.on('error', () => resolve({}));
    s.on('close', () => {
      const info: Record<string, number> = {};
      for (const line of out.split('\n')) {
        const m = keep.exec(line);
        if (m) info[m[1]!] = Number(m[2]);
      }
      resolve(info);
    });
  });
}
