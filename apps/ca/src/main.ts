#!/usr/bin/env node
// amime CA: a thin shell over @amime/ca. Validates flags before touching
// disk or ports, logs where it listens, and drains on SIGTERM/SIGINT.
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CertificateAuthorityService, createCaMetrics, initCa, startCaServer, writeAdminCredential, type InitOptions } from '@amime/ca';
import { writeFileAtomicSync } from '@amime/store';
import { createProcessRegistry } from '@amime/telemetry';

const USAGE = `usage:
  ca init  --dir DIR --trust-domain TD [--key-algorithm ec-p256|rsa-2048] [--admin-name NAME]
           [--workload-ttl S] [--agent-ttl S] [--admin-ttl S] [--intermediate-ttl S] [--root-ttl S]
           [--refresh-hint S]   (durations in seconds)
           [--root-cert F [--root-key F]] [--intermediate-cert F --intermediate-key F]
  ca admin-credential --dir DIR [--out DIR] [--admin-name NAME]
           (a fresh admin SVID from the CA's own files, for an operator whose credential expired)
  ca serve --dir DIR [--host 127.0.0.1] [--port 8443] [--metrics-port 0]
           [--metrics-host 127.0.0.1]  where /metrics and /healthz listen (plain HTTP, no auth)
           [--init-if-missing --trust-domain TD]`;

function fail(message: string): never {
  process.stderr.write(`ca: ${message}\n${USAGE}\n`);
  process.exit(64);
}

function port(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${flag} must be a port number 0-65535, not ${JSON.stringify(v)}`);
  return n;
}

function bindHost(v: string | undefined, flag: string): string | undefined {
  if (v === undefined) return undefined;
  if (isIP(v) === 0 && !(v.length <= 253 && /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(v))) {
    fail(`${flag} must be an IP address (IPv6 without brackets) or a host name, not ${JSON.stringify(v)}`);
  }
  return v;
}

const [command, ...rest] = process.argv.slice(2);
let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      dir: { type: 'string' },
      'trust-domain': { type: 'string' },
      'key-algorithm': { type: 'string' },
      'admin-name': { type: 'string' },
      'root-cert': { type: 'string' },
      'root-key': { type: 'string' },
      'intermediate-cert': { type: 'string' },
      'intermediate-key': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'init-if-missing': { type: 'boolean' },
      out: { type: 'string' },
      'workload-ttl': { type: 'string' },
      'agent-ttl': { type: 'string' },
      'admin-ttl': { type: 'string' },
      'intermediate-ttl': { type: 'string' },
      'root-ttl': { type: 'string' },
      'refresh-hint': { type: 'string' },
    },
  }));
} catch (err) {
  fail((err as Error).message);
}
const dir = (values['dir'] as string | undefined) ?? fail('--dir is required');

function initOptions(): InitOptions {
  const td = (values['trust-domain'] as string | undefined) ?? fail('--trust-domain is required to create a CA');
  const alg = (values['key-algorithm'] as string | undefined) ?? 'ec-p256';
  if (alg !== 'ec-p256' && alg !== 'rsa-2048') fail(`--key-algorithm must be ec-p256 or rsa-2048, not ${JSON.stringify(alg)}`);
  const read = (flag: string) => (values[flag] ? readFileSync(values[flag] as string, 'utf8') : undefined);
  const rootCertPem = read('root-cert');
  const opts: InitOptions = { trustDomain: td, keyAlgorithm: alg, ...(values['admin-name'] ? { adminName: values['admin-name'] as string } : {}) };
  const seconds = (flag: string): number | undefined => {
    const v = values[flag] as string | undefined;
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 100 * 365 * 86400) fail(`--${flag} must be a whole number of seconds, not ${JSON.stringify(v)}`);
    return n;
  };
  const ttl: NonNullable<InitOptions['ttl']> = {};
  for (const [flag, k] of [['workload-ttl', 'workloadSeconds'], ['agent-ttl', 'agentSeconds'], ['admin-ttl', 'adminSeconds'], ['intermediate-ttl', 'intermediateSeconds'], ['root-ttl', 'rootSeconds']] as const) {
    const v = seconds(flag);
    if (v !== undefined) ttl[k] = v;
  }
  opts.ttl = ttl;
  const hint = seconds('refresh-hint');
  if (hint !== undefined) opts.refreshHintSeconds = hint;
  if (rootCertPem) {
    const plugIn: NonNullable<InitOptions['plugIn']> = { rootCertPem };
    for (const [flag, k] of [['root-key', 'rootKeyPem'], ['intermediate-cert', 'intermediateCertPem'], ['intermediate-key', 'intermediateKeyPem']] as const) {
      const v = read(flag);
      if (v) plugIn[k] = v;
    }
    opts.plugIn = plugIn;
  } else if (values['root-key'] || values['intermediate-cert'] || values['intermediate-key']) {
    fail('--root-cert is required with --root-key/--intermediate-cert/--intermediate-key');
  }
  return opts;
}

async function main(): Promise<void> {
  if (command === 'init') {
    const { ca, admin } = await initCa(dir, initOptions());
    process.stdout.write(JSON.stringify({ event: 'initialized', dir, trustDomain: ca.trustDomain, admin }) + '\n');
    ca.close();
    return;
  }
  if (command === 'admin-credential') {
    const ca = CertificateAuthorityService.open(dir);
    const out = (values['out'] as string | undefined) ?? join(dir, 'admin');
    const admin = await writeAdminCredential(ca, out, values['admin-name'] as string | undefined);
    process.stdout.write(JSON.stringify({ event: 'admin_credential', ...admin }) + '\n');
    ca.close();
    return;
  }
  if (command !== 'serve') fail(`unknown command ${JSON.stringify(command ?? '')}`);
  const caPort = port(values['port'] as string | undefined, '--port', 8443);
  const metricsPort = port(values['metrics-port'] as string | undefined, '--metrics-port', 0);
  const host = (values['host'] as string | undefined) ?? '127.0.0.1';
  const metricsHost = bindHost(values['metrics-host'] as string | undefined, '--metrics-host') ?? '127.0.0.1';
  let ca: CertificateAuthorityService;
  if (!existsSync(join(dir, 'state.json')) && values['init-if-missing']) {
    const made = await initCa(dir, initOptions());
    ca = made.ca;
    process.stdout.write(JSON.stringify({ event: 'initialized', dir, trustDomain: ca.trustDomain, admin: made.admin }) + '\n');
  } else {
    ca = CertificateAuthorityService.open(dir);
  }
  const registry = createProcessRegistry('amime_ca_');
  const metrics = createCaMetrics(registry, ca);
  const running = await startCaServer(ca, { host, port: caPort, metrics });
  // Metrics and health live on a plain HTTP port apart from the mTLS API, loopback
  // unless --metrics-host says otherwise (a Prometheus in another container).
  const admin = createServer(async (req, res) => {
    if (req.url === '/metrics') {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
    } else if (req.url === '/healthz' || req.url === '/ready') {
      res.end('ok\n');
    } else {
      res.statusCode = 404;
      res.end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(metricsPort, metricsHost, () => resolve());
  });
  const metricsUrl = `http://${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${(admin.address() as { port: number }).port}/metrics`;
  // Tell a local meshctl where the API is (it reads <credentials>/ca-url).
  if (existsSync(join(dir, 'admin'))) writeFileAtomicSync(join(dir, 'admin', 'ca-url'), running.url + '\n', 0o600);
  process.stdout.write(JSON.stringify({ event: 'listening', url: running.url, metricsUrl, trustDomain: ca.trustDomain, dir }) + '\n');
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(JSON.stringify({ event: 'stopping', signal }) + '\n');
    admin.close();
    await running.close();
    ca.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: Error & { code?: string }) => {
  process.stderr.write(`ca: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
  process.exit(1);
});
