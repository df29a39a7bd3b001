// dashboard: a thin shell over @amime/dashboard. Listens first (the page
// shows "waiting" meanwhile), then waits, bounded, for the admin credential
// and the control plane, which `npm start` brings up beside it. Prints one
// JSON line when it listens; SIGINT/SIGTERM close it and exit 0.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  connectControlPlane,
  ConnectError,
  DASHBOARD_USAGE,
  DashboardUsageError,
  DEFAULT_STATIC_DIR,
  isExposed,
  MeshView,
  parseDashboardOptions,
  startDashboardServer,
  type DashboardOptions,
} from '@amime/dashboard';

const say = (line: string) => process.stdout.write(`${line}\n`);
const log = (msg: string) => say(`[dashboard] ${msg}`);
process.stdout.on('error', () => undefined); // under Nx the reader may go first on Ctrl-C
process.stderr.on('error', () => undefined);

if (process.argv[2] === '--help' || process.argv[2] === '-h') {
  say(DASHBOARD_USAGE);
  process.exit(0);
}
let opts: DashboardOptions;
try {
  opts = parseDashboardOptions(process.argv.slice(2), process.env, process.cwd());
} catch (err) {
  if (!(err instanceof DashboardUsageError)) throw err;
  process.stderr.write(`dashboard: ${err.message}\n${DASHBOARD_USAGE}\n`);
  process.exit(64);
}

// Bundled (dist/apps/dashboard/main.mjs) the page sits beside this file; from source it is the lib's.
const bundled = join(import.meta.dirname, 'static');
const staticDir = existsSync(join(bundled, 'index.html')) ? bundled : DEFAULT_STATIC_DIR;
const abort = new AbortController();
const view = new MeshView({ refreshMs: opts.refreshMs, log: (e) => say(JSON.stringify({ component: 'dashboard', ...e })) });

async function main(): Promise<void> {
  if (isExposed(opts.host)) {
    log(`WARNING: listening on ${opts.host}, not loopback: anyone who can reach this port can read the mesh's state (services, traffic, certificates, policies) through the page, which holds the admin credential. Put it behind access control.`);
  }
  const server = await startDashboardServer({ view, host: opts.host, port: opts.port, allowedHosts: opts.allowedHosts, maxClients: opts.maxClients, staticDir, log: (e) => say(JSON.stringify({ component: 'dashboard', ...e })) });
  const stop = async (signal: string) => {
    log(`${signal}: stopping`);
    abort.abort();
    view.close();
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  say(JSON.stringify({ event: 'listening', url: server.url, port: server.port }));
  log(`dashboard at ${server.url}`);
  view.waiting(`waiting for the admin credential in ${opts.credentialsDir} and the control plane`);
  const { source, url } = await connectControlPlane({ credentialsDir: opts.credentialsDir, controlPlaneUrl: opts.controlPlaneUrl, waitMs: opts.waitMs, signal: abort.signal, log });
  log(`connected to the control plane at ${url}`);
  await view.attach(source, url);
}

main().catch((err: Error) => {
  if (abort.signal.aborted) return;
  process.stderr.write(`dashboard: ${err instanceof ConnectError ? err.message : (err.stack ?? err.message)}\n`);
  process.exit(1);
});
