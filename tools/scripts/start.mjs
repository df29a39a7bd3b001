// `npm start`: bring up the mesh on loopback through Nx: the certificate
// authority and the control plane (later issues add agents and demo services
// to the same run-many; the control plane waits for the CA). State lives in var/ and is reused by
// the next start. Ctrl-C stops everything: Nx signals each task's group.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const workspace = resolve(import.meta.dirname, '../..');
const nx = join(workspace, 'node_modules', '.bin', 'nx');
console.log(`amime: starting the mesh on loopback (state in ${join(workspace, 'var')})
  CA API (mTLS):   https://127.0.0.1:8443
  CA metrics:      http://127.0.0.1:9443/metrics
  control plane:   https://127.0.0.1:8444 (admin API + agent push at /v1/push)
  CP metrics:      http://127.0.0.1:9444/metrics
  admin credential: var/ca/admin (try: npm run meshctl -- status, npm run meshctl -- agents)
  Ctrl-C stops everything.
`);
const child = spawn(nx, ['run-many', '-t', 'serve', '--projects=ca,control-plane', '--outputStyle=stream', '--parallel=10'], {
  cwd: workspace,
  stdio: 'inherit',
  env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' },
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(signal ? 0 : (code ?? 0)));
