// docker/*.Dockerfile for real, on the container engine the multi-host
// containers run on (podman here): every image builds through testcontainers
// on the local base image (NODE_IMAGE), then the compose hub runs from those
// images: the CA image initializes and serves, the control-plane image
// connects to it with the admin credential from the CA's state, meshctl's
// image talks to both, and a demo service image serves. Skips, saying why,
// when no engine answers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { workspace } from '../ca/fixtures/ca-process.js';
import { containerDriver, engineRemoveImage } from './container-driver.js';

const TD = 'images.test';
const skip = containerDriver.probe();
const dockerfiles = readdirSync(join(workspace, 'docker')).filter((f) => f.endsWith('.Dockerfile')).sort();

type Started = Awaited<ReturnType<import('testcontainers').GenericContainer['start']>>;
type StartedNet = Awaited<ReturnType<import('testcontainers').Network['start']>>;

describe('docker/*.Dockerfile on the local container engine', { concurrency: 1, timeout: 900_000 }, () => {
  let reason: string | undefined;
  let tc: typeof import('testcontainers');
  let network: StartedNet | undefined;
  const containers: Started[] = [];
  let state = '';
  let cpState = '';
  const run = Math.random().toString(16).slice(2, 8);
  const tag = (app: string) => `localhost/amime-${app}:test-${run}`;
  const built: string[] = [];
  let caIp = '';
  let cpIp = '';

  before(async () => {
    reason = await skip;
    if (reason !== undefined) {
      console.log(`# SKIP docker/*.Dockerfile on the local container engine: ${reason}`);
      return;
    }
    tc = await import('testcontainers');
    const prep = spawnSync(process.execPath, [join(workspace, 'tools', 'scripts', 'docker-context.mjs')], { cwd: workspace, encoding: 'utf8', timeout: 300_000 });
    assert.equal(prep.status, 0, `docker-context.mjs: ${prep.stderr}`);
    state = mkdtempSync(join(tmpdir(), 'amime-images-'));
    cpState = join(state, 'control-plane');
    mkdirSync(cpState);
    // The images run as 65532: the CA's state at the top (its volume), the control plane's below.
    chownSync(state, 65532, 65532);
    chownSync(cpState, 65532, 65532);
  });

  after(async () => {
    for (const c of containers.reverse()) await c.stop({ timeout: 0 }).catch(() => undefined);
    await network?.stop().catch(() => undefined);
    // The images this run built (tagged with its run id), and nothing else.
    for (const image of built) await engineRemoveImage(image);
    if (state) rmSync(state, { recursive: true, force: true });
  });

  test(`every Dockerfile builds with NODE_IMAGE set to the local base image (${dockerfiles.length} images)`, async (t) => {
    if (reason !== undefined) return t.skip(reason);
    const base = process.env['AMIME_BASE_IMAGE'] ?? `localhost/amime-base:node${process.versions.node}`;
    for (const f of dockerfiles) {
      const app = f.replace(/\.Dockerfile$/, '');
      const started = Date.now();
      await tc.GenericContainer.fromDockerfile(join(workspace, 'dist', 'docker', 'context'), `docker/${f}`).withBuildArgs({ NODE_IMAGE: base }).build(tag(app), { deleteOnExit: false });
      built.push(tag(app));
      t.diagnostic(`${f}: ${Date.now() - started} ms`);
    }
  });

  test('the CA image initializes and serves; the control-plane image joins it with the admin credential; meshctl\'s image sees both', async (t) => {
    if (reason !== undefined) return t.skip(reason);
    assert.equal(built.length, dockerfiles.length, 'the images were built (previous test)');
    network = await new tc.Network().start();
    // Each image's EXPOSEd ports are published too: testcontainers waits for every exposed port to be bound.
    const ca = await new tc.GenericContainer(tag('ca'))
      .withNetwork(network)
      .withExposedPorts(8443)
      .withBindMounts([{ source: state, target: '/var/lib/amime' }])
      .withCommand(['serve', '--dir', '/var/lib/amime/ca', '--host', '0.0.0.0', '--port', '8443', '--init-if-missing', '--trust-domain', TD])
      .withWaitStrategy(tc.Wait.forLogMessage('"listening"'))
      .withStartupTimeout(60_000)
      .start();
    containers.push(ca);
    caIp = ca.getIpAddress(network.getName());
    const cp = await new tc.GenericContainer(tag('control-plane'))
      .withNetwork(network)
      .withExposedPorts(8444, 9464)
      .withBindMounts([
        { source: state, target: '/ca' },
        { source: cpState, target: '/var/lib/amime' },
      ])
      .withCommand(['serve', '--dir', '/var/lib/amime/cp', '--ca', `https://${caIp}:8443`, '--credentials', '/ca/ca/admin', '--host', '0.0.0.0', '--port', '8444'])
      .withWaitStrategy(tc.Wait.forLogMessage('"serving"'))
      .withStartupTimeout(60_000)
      .start();
    containers.push(cp);
    cpIp = cp.getIpAddress(network.getName());
    const meshctl = await new tc.GenericContainer(tag('meshctl'))
      .withNetwork(network)
      .withBindMounts([{ source: state, target: '/ca', mode: 'ro' }])
      .withEntrypoint(['sleep', 'infinity'])
      .withWaitStrategy(tc.Wait.forSuccessfulCommand('true'))
      .start();
    containers.push(meshctl);
    const status = await meshctl.exec(['node', '/opt/amime/meshctl/main.mjs', '--credentials', '/ca/ca/admin', '--ca', `https://${caIp}:8443`, '--control-plane', `https://${cpIp}:8444`, 'status', '-o', 'json']);
    assert.equal(status.exitCode, 0, `meshctl status: ${status.stderr}${status.stdout}`);
    assert.match(status.stdout, new RegExp(TD.replace('.', '\\.')), status.stdout);
    const token = await meshctl.exec(['node', '/opt/amime/meshctl/main.mjs', '--credentials', '/ca/ca/admin', '--ca', `https://${caIp}:8443`, 'token', 'create', '--node', 'vm1', '-o', 'json']);
    assert.equal(token.exitCode, 0, token.stderr);
    assert.match((JSON.parse(token.stdout) as { token: string }).token, /^\S{16,}$/);
  });

  test('a demo service image and the agent image start', async (t) => {
    if (reason !== undefined) return t.skip(reason);
    assert.ok(network, 'the network exists (previous test)');
    const web = await new tc.GenericContainer(tag('demo-web'))
      .withNetwork(network!)
      .withExposedPorts(18080)
      .withCommand(['--port', '18080'])
      .withWaitStrategy(tc.Wait.forLogMessage('"listening"'))
      .withStartupTimeout(60_000)
      .start();
    containers.push(web);
    const health = await web.exec(['node', '-e', 'fetch("http://127.0.0.1:18080/healthz").then(async (r) => { console.log(r.status, await r.text()); process.exit(r.ok ? 0 : 1); }, () => process.exit(2))']);
    assert.equal(health.exitCode, 0, health.output);
    // The agent refuses a config that is not there with its config exit code (78), naming the file.
    const agent = await new tc.GenericContainer(tag('agent')).withNetwork(network!).withExposedPorts(15443, 15000).withEntrypoint(['sleep', 'infinity']).withWaitStrategy(tc.Wait.forSuccessfulCommand('true')).start();
    containers.push(agent);
    const bad = await agent.exec(['node', '/opt/amime/agent/main.mjs', 'run', '--config', '/etc/amime/agent.yaml']);
    assert.notEqual(bad.exitCode, 0);
    assert.match(bad.output, /\/etc\/amime\/agent\.yaml/);
  });
});
