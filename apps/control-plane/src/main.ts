// control-plane: a thin CLI over @amime/control-plane.
import { existsSync, readFileSync } from 'node:fs';
import { connect, isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomicSync } from '@amime/store';
import { startControlPlane } from '@amime/control-plane';

const USAGE = `usage:
  control-plane serve --dir DIR (--ca https://HOST:PORT | --credentials ADMIN_DIR)
           [--credentials ADMIN_DIR]   operator credential (cert.pem, key.pem, bundle.pem[, ca-url]);
                                       needed on first start, and gets control-plane-url written into it
           [--host 127.0.0.1] [--port 8444] [--metrics-port 0]
           [--metrics-host 127.0.0.1]  where /metrics and the discovery listen; other replicas list
                                       this replica at it (at --host when it is 0.0.0.0 or ::)
           [--ca-metrics HOST:PORT]    the CA's /metrics, listed in the Prometheus discovery
           [--etcd http://H:2379[,http://H2:2379]] [--etcd-prefix amime/]
           [--heartbeat 5s] [--grace 60s] [--ca-sync 5s] [--wait-for-ca SECONDS]`;

function fail(message: string): never {
  process.stderr.write(`control-plane: ${message}\n${USAGE}\n`);
  process.exit(64);
}

function seconds(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const m = /^(\d{1,7})(ms|s|m)?$/.exec(v);
  if (!m) fail(`${flag} must be a duration like 500ms, 5s or 1m, not ${JSON.stringify(v)}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

function hostPort(v: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail(`--ca-metrics must be HOST:PORT (the CA's --metrics-port), not ${JSON.stringify(v)}`);
  return v;
}

function bindHost(v: string | undefined, flag: string): string | undefined {
  if (v === undefined) return undefined;
  if (isIP(v) === 0 && !(v.length <= 253 && /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(v))) {
    fail(`${flag} must be an IP address (IPv6 without brackets) or a host name, not ${JSON.stringify(v)}`);
  }
  return v;
}

function port(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${flag} must be a port number 0-65535, not ${JSON.stringify(v)}`);
  return n;
}

const [command, ...rest] = process.argv.slice(2);
if (command === '--help' || command === '-h') {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (command !== 'serve') fail(`unknown command ${JSON.stringify(command ?? '')}`);
let values: Record<string, string | undefined>;
try {
  ({ values } = parseArgs({
    args: rest,
    strict: true,
    options: Object.fromEntries(
      ['dir', 'ca', 'credentials', 'host', 'port', 'metrics-port', 'metrics-host', 'ca-metrics', 'etcd', 'etcd-prefix', 'heartbeat', 'grace', 'ca-sync', 'wait-for-ca'].map((k) => [k, { type: 'string' as const }]),
    ),
  }) as { values: Record<string, string | undefined> });
} catch (err) {
  fail((err as Error).message);
}
const dir = values['dir'] ? resolve(values['dir']) : fail('--dir is required');
const adminDir = values['credentials'] ? resolve(values['credentials']) : undefined;
const waitMs = seconds(values['wait-for-ca'], '--wait-for-ca', 0);

function caUrl(): string | undefined {
  if (values['ca']) return values['ca'];
  const file = adminDir && join(adminDir, 'ca-url');
  return file && existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

function etcdHosts(v: string): string[] {
  const hosts = v.split(',');
  for (const h of hosts) if (!/^https?:\/\/[^/\s]+$/.test(h)) fail(`--etcd must be a comma-separated list of http(s)://HOST:PORT, not ${JSON.stringify(h)}`);
  return hosts;
}

/** Waits for the CA's URL (written by `ca serve`) and its port to answer, up to --wait-for-ca. */
async function waitForCa(): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const url = caUrl();
    if (url) {
      const u = new URL(url);
      const up = await new Promise<boolean>((ok) => {
        const s = connect({ host: u.hostname, port: Number(u.port || 443) }, () => {
          s.destroy();
          ok(true);
        });
        s.on('error', () => ok(false));
      });
      if (up) return url;
    }
    if (Date.now() >= deadline) fail(url ? `the CA at ${url} does not answer` : 'no CA URL: pass --ca, or --credentials pointing at the admin directory of a running CA');
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Every flag is checked before anything waits or touches the disk.
const options = {
  dir,
  adminDir,
  host: values['host'] ?? '127.0.0.1',
  port: port(values['port'], '--port', 8444),
  metricsPort: port(values['metrics-port'], '--metrics-port', 0),
  metricsHost: bindHost(values['metrics-host'], '--metrics-host') ?? '127.0.0.1',
  ...(values['ca-metrics'] !== undefined && { caMetricsAddress: hostPort(values['ca-metrics']) }),
  etcd: values['etcd'] ? { hosts: etcdHosts(values['etcd']), namespace: values['etcd-prefix'] ?? 'amime/' } : undefined,
  heartbeatMs: seconds(values['heartbeat'], '--heartbeat', 5000),
  graceMs: seconds(values['grace'], '--grace', 60_000),
  caSyncIntervalMs: seconds(values['ca-sync'], '--ca-sync', 5000),
};
if (values['ca'] !== undefined && !/^https:\/\/[^/]+\/?$/.test(values['ca'])) fail(`--ca must be https://HOST:PORT, not ${JSON.stringify(values['ca'])}`);

const url = await waitForCa();
let running: Awaited<ReturnType<typeof startControlPlane>>;
try {
  running = await startControlPlane({ ...options, caUrl: url });
} catch (err) {
  process.stderr.write(`${JSON.stringify({ event: 'start_failed', error: (err as Error).message })}\n`);
  process.exit(70);
}
if (adminDir) writeFileAtomicSync(join(adminDir, 'control-plane-url'), `${running.url}\n`, 0o600);
process.stdout.write(JSON.stringify({ event: 'serving', url: running.url, metrics: running.metricsUrl, replica: running.replicaId, spiffeId: running.spiffeId }) + '\n');

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    void running.close().then(() => process.exit(0));
  });
}
