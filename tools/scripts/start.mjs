// `npm start`: bring up the mesh on loopback through Nx: the certificate
// authority, the control plane (which waits for the CA), the demo
// (apps/demo, which waits for both) and the dashboard (apps/dashboard, which
// waits for the control plane). The demo orchestrator, not Nx, starts
// the three agents, the demo-* services and the traffic generator: it has to
// make tokens and write agent configs before the agents start, point each
// service at its agent's upstream ports, and own every PID so that it can
// stop them all. State lives in var/ and is reused by the next start.
// Ctrl-C stops everything: Nx signals each task, the demo its children.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const workspace = resolve(import.meta.dirname, '../..');
const nx = join(workspace, 'node_modules', '.bin', 'nx');
console.log(`amime: starting the mesh on loopback (state in ${join(workspace, 'var')})
  CA API (mTLS):   https://127.0.0.1:8443
  CA metrics:      http://127.0.0.1:9443/metrics
  control plane:   https://127.0.0.1:8444 (admin API + agent push at /v1/push)
  CP metrics:      http://127.0.0.1:9444/metrics, discovery http://127.0.0.1:9444/v1/sd/prometheus
  admin credential: var/ca/admin (try: npm run meshctl -- status, npm run meshctl -- agents)
  demo:            web http://127.0.0.1:18080/ (web → catalog → inventory, web → reviews v1/v2 90/10,
                   web → inventory denied); agents vm1-vm3 admin http://127.0.0.1:15101-15103
                   (/metrics, /config_dump); state in var/demo; docs/operations/demo.md
  dashboard:       http://127.0.0.1:18090/ (service graph, certificates, anomalies, policies, routes;
                   live once the control plane answers; docs/operations/dashboard.md)
  The demo prints the full "where to look" once the mesh answers.
  Ctrl-C stops everything.
`);
const child = spawn(nx, ['run-many', '-t', 'serve', '--projects=ca,control-plane,demo,dashboard', '--outputStyle=stream', '--parallel=10'], {
  cwd: workspace,
  stdio: 'inherit',
  env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' },
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(signal ? 0 : (code ?? 0)));
