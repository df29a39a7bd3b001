// The multi-host end-to-end scenario, written once and run by each driver
// (netns.spec.ts: Linux network namespaces; containers.spec.ts: containers
// through testcontainers). A hub host runs the CA and the control plane; each
// of three VM hosts gets its agent the way docs/operations/agent-install.md
// says: the admin creates a join token and exports the trust bundle on the
// hub, both are copied to the VM, `meshctl agent install` runs on the VM and
// then the unit's ExecStart line, exactly as written, runs there. Then the
// demo services (@amime/demo-topology) run on the VMs and the tests check,
// across the hosts' own addresses: web's page through the mesh (every caller
// identity verified by the callee's agent), the denied web → inventory call
// (403) and the agents' metrics for both.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentConfigs, appProcesses, DEFAULT_PORTS, demoResources, identity, NODES, ASSIGNMENTS, type Node } from '@amime/demo-topology';
import { workspace } from '../ca/fixtures/ca-process.js';
import { tail, type Host, type HostProcess, type Hosts } from './hosts.js';

const TD = 'multihost.test';
const CA_PORT = 8443;
const CP_PORT = 8444;
/** The install command's default ports, kept: each VM has its own address and port space. */
const INBOUND_PORT = 15443;
const ADMIN_PORT = 15000;
/** web calls inventory directly (denied) on every 2nd page. */
const DENY_EVERY = 2;

export interface Driver {
  /** Why this driver cannot run here (printed, and the suite is skipped), or undefined. */
  probe(): Promise<string | undefined>;
  provision(): Promise<Hosts>;
}

/** The web page demo-web serves (apps/demo-web/src/service.ts). */
interface Page {
  catalog: { service?: string; caller?: string; status?: number; inventory?: { stock?: Record<string, number>; caller?: string } };
  reviews: { service?: string; version?: string; caller?: string; status?: number };
  inventoryDirect?: { status: number };
}

/** The agent bundle, built with the agent project's own build command (not through nx: this spec may run under nx). */
export function buildAgentBundle(): string {
  const command = (JSON.parse(readFileSync(join(workspace, 'apps', 'agent', 'project.json'), 'utf8')) as { targets: { build: { options: { command: string } } } }).targets.build.options.command;
  const build = spawnSync(command, { cwd: workspace, shell: true, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PATH: `${join(workspace, 'node_modules', '.bin')}:${process.env['PATH'] ?? ''}` } });
  assert.equal(build.status, 0, `${command}: ${build.stdout}${build.stderr}`);
  return join(workspace, 'dist', 'apps', 'agent', 'main.mjs');
}

/** ExecStart's value split as systemd does for the lines install writes: words, "double quotes" with \-escapes, %% and $$. */
export function splitExecStart(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push((m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!).replace(/%%/g, '%').replace(/\$\$/g, '$'));
  return out;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition → samples (enough for our own exporters' output). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of `name` whose labels include `want`. */
export const sum = (samples: Sample[], name: string, want: Record<string, string>): number =>
  samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

/** The VM whose agent fronts an app: the node whose workloads listen on the app's --port. */
function nodeOfApp(args: string[], configs: Record<Node, Record<string, unknown>>): Node {
  const port = Number(args[args.indexOf('--port') + 1]);
  const node = NODES.find((n) => (configs[n]['workloads'] as { port: number }[]).some((w) => w.port === port));
  assert.ok(node, `no VM runs a workload on port ${port}`);
  return node;
}

/** Registers the scenario as one suite: probes the driver, skips with its reason printed, else runs. */
export function multiHostSuite(driverName: string, driver: Driver): void {
  // Probing starts now and is awaited in before(): a driver that cannot run here
  // makes every test a skip carrying its reason, and the reason is printed once.
  const skip = driver.probe();
  describe(`multi-host scenario on ${driverName}`, { concurrency: 1, timeout: 900_000 }, () => {
    let hosts: Hosts | undefined;
    let reason: string | undefined;
    const procs: HostProcess[] = [];
    const agents: Partial<Record<Node, HostProcess>> = {};
    let caUrl = '';
    let cpUrl = '';
    let adminDir = '';
    let agentBundle = '';
    let webUp = false;

    const meshctl = (host: Host, args: string[]) => host.run([hosts!.node, '--import', 'tsx', join(hosts!.workspace, 'apps', 'meshctl', 'src', 'main.ts'), ...args], 120_000);
    const start = async (host: Host, what: string, argv: string[], marker: string, timeoutMs = 60_000) => {
      const { proc, line } = await host.start(what, argv, marker, timeoutMs);
      procs.push(proc);
      return { proc, line };
    };
    const needHosts = (t: { skip(m: string): void }): boolean => {
      if (hosts) return true;
      t.skip(reason ?? 'the driver did not provision hosts');
      return false;
    };

    before(async () => {
      reason = await skip;
      if (reason !== undefined) {
        console.log(`# SKIP multi-host scenario on ${driverName}: ${reason}`);
        return;
      }
      agentBundle = buildAgentBundle();
      hosts = await driver.provision();
    });

    after(async () => {
      // In parallel: each stop is bounded (SIGTERM, then SIGKILL after 15 s).
      await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
      await hosts?.close();
    });

    test('the hub runs the CA and the control plane on its own address', async (t) => {
      if (!needHosts(t)) return;
      const { hub, node, workspace: ws } = hosts!;
      const caDir = join(hub.dir, 'ca');
      adminDir = join(caDir, 'admin');
      const init = await hub.run([node, '--import', 'tsx', join(ws, 'apps', 'ca', 'src', 'main.ts'), 'init', '--dir', caDir, '--trust-domain', TD]);
      assert.equal(init.code, 0, `ca init: ${init.stderr}`);
      const ca = await start(hub, 'ca', [node, '--import', 'tsx', join(ws, 'apps', 'ca', 'src', 'main.ts'), 'serve', '--dir', caDir, '--host', hub.address, '--port', String(CA_PORT)], 'listening');
      caUrl = String(ca.line['url']);
      assert.equal(caUrl, `https://${hub.address}:${CA_PORT}`);
      const cp = await start(
        hub,
        'control-plane',
        [node, '--import', 'tsx', join(ws, 'apps', 'control-plane', 'src', 'main.ts'), 'serve', '--dir', join(hub.dir, 'cp'), '--ca', caUrl, '--credentials', adminDir, '--host', hub.address, '--port', String(CP_PORT), '--heartbeat', '500ms', '--ca-sync', '500ms'],
        'serving',
      );
      cpUrl = String(cp.line['url']);
      assert.equal(new URL(cpUrl).hostname, hub.address);
      const status = await meshctl(hub, ['--credentials', adminDir, 'status', '-o', 'json']);
      assert.equal(status.code, 0, `meshctl status on the hub: ${status.stderr}`);
    });

    test('each VM: token and bundle from the hub, meshctl agent install on the VM, then the unit\'s ExecStart line there', async (t) => {
      if (!needHosts(t)) return;
      assert.ok(cpUrl, 'the hub is up (previous test)');
      const { hub, vms } = hosts!;
      const bundle = await meshctl(hub, ['--credentials', adminDir, 'bundle', 'show', '--format', 'pem']);
      assert.equal(bundle.code, 0, bundle.stderr);
      assert.match(bundle.stdout, /-----BEGIN CERTIFICATE-----/);
      const configs = agentConfigs('/unused', DEFAULT_PORTS, { trustDomain: TD, caUrl, pushUrl: cpUrl, bundleFile: '/unused' });
      for (const node of NODES) {
        const vm = vms[node];
        for (const service of ASSIGNMENTS[node]) {
          const a = await meshctl(hub, ['--credentials', adminDir, 'assign', node, identity(TD, service)]);
          assert.equal(a.code, 0, `meshctl assign ${node}: ${a.stderr}`);
        }
        const tok = await meshctl(hub, ['--credentials', adminDir, 'token', 'create', '--node', node, '--ttl', '10m', '-o', 'json']);
        assert.equal(tok.code, 0, tok.stderr);
        const token = (JSON.parse(tok.stdout) as { token: string }).token;
        // What the admin copies to the VM: the bundle, the token (as a file), the workloads.
        await vm.writeFile(join(vm.dir, 'bundle.pem'), bundle.stdout);
        await vm.writeFile(join(vm.dir, 'join-token'), `${token}\n`, 0o600);
        await vm.writeFile(join(vm.dir, 'workloads.yaml'), JSON.stringify(configs[node]['workloads'], null, 2));
        const root = join(vm.dir, 'root');
        const unitPath = join(root, 'etc', 'systemd', 'system', 'amime-agent.service');
        const install = await meshctl(vm, [
          'agent', 'install',
          '--credentials', join(vm.dir, 'no-admin-credential-on-a-vm'),
          '--node', node,
          '--ca', caUrl,
          '--control-plane', cpUrl,
          '--token-file', join(vm.dir, 'join-token'),
          '--bundle', join(vm.dir, 'bundle.pem'),
          '--advertise', vm.address,
          '--admin-address', vm.address, // so that the test scrapes /metrics from outside the VM
          '--workloads', join(vm.dir, 'workloads.yaml'),
          '--prefix', join(root, 'etc', 'amime'),
          '--data-dir', join(root, 'var', 'lib', 'amime'),
          '--install-dir', join(root, 'opt', 'amime'),
          '--unit-path', unitPath,
          '--agent-bundle', agentBundle.replace(workspace, hosts!.workspace),
          '--user', 'root',
        ]);
        assert.equal(install.code, 0, `meshctl agent install on ${node}: ${install.stderr}`);
        const unit = await vm.readFile(unitPath);
        const exec = /^ExecStart=(.*)$/m.exec(unit);
        assert.ok(exec, `no ExecStart in ${unitPath}:\n${unit}`);
        const argv = splitExecStart(exec[1]!);
        assert.deepEqual(argv.slice(-6), [join(root, 'opt', 'amime', 'agent.mjs'), 'run', '--config', join(root, 'etc', 'amime', 'agent.yaml'), '--token-file', join(root, 'etc', 'amime', 'token')]);
        const config = await vm.readFile(join(root, 'etc', 'amime', 'agent.yaml'));
        assert.match(config, new RegExp(`inbound:\\s+address: 0\\.0\\.0\\.0\\s+port: ${INBOUND_PORT}\\s+advertise: ${vm.address.replace(/\./g, '\\.')}`), config);
        const agent = await start(vm, `agent ${node}`, argv, 'serving', 90_000);
        agents[node] = agent.proc;
        assert.equal(agent.line['admin'], `http://${vm.address}:${ADMIN_PORT}`);
      }
      for (const node of NODES) {
        const vm = vms[node];
        await until(`${node}'s agent is ready`, async () => (await fetch(`http://${vm.address}:${ADMIN_PORT}/ready`, { signal: AbortSignal.timeout(5000) })).status === 200, agents[node]!);
      }
      const list = await meshctl(hub, ['--credentials', adminDir, 'status', '-o', 'json']);
      assert.equal(list.code, 0, list.stderr);
      for (const node of NODES) assert.match(list.stdout, new RegExp(`"${node}"`), `the control plane lists ${node}: ${list.stdout}`);
    });

    test('demo services on the VMs: web\'s page through the mesh shows catalog, inventory via catalog and reviews, callers verified', async (t) => {
      if (!needHosts(t)) return;
      assert.ok(agents.vm1 && agents.vm2 && agents.vm3, 'the agents run (previous test)');
      const { hub, vms, node, workspace: ws } = hosts!;
      await hub.writeFile(join(hub.dir, 'demo.yaml'), demoResources(TD, { learningWindow: '1m', reportInterval: '5s' }));
      const applied = await meshctl(hub, ['--credentials', adminDir, 'apply', '-f', join(hub.dir, 'demo.yaml')]);
      assert.equal(applied.code, 0, `meshctl apply: ${applied.stderr}`);
      const configs = agentConfigs('/unused', DEFAULT_PORTS, { trustDomain: TD, caUrl, pushUrl: cpUrl, bundleFile: '/unused' });
      for (const app of appProcesses(DEFAULT_PORTS, DENY_EVERY)) {
        await start(vms[nodeOfApp(app.args, configs)], app.name, [node, '--import', 'tsx', join(ws, app.main), ...app.args], 'listening');
      }
      const pages = await until('web answers 200 through the mesh', async () => {
        const got = await fetchPages(vms.vm1, hosts!.node, `http://127.0.0.1:${DEFAULT_PORTS.apps.web}/`, 1);
        return got[0]?.status === 200 ? got : undefined;
      }, agents.vm1);
      const p = pages[0]!.page!;
      t.diagnostic(JSON.stringify(p));
      assert.equal(p.catalog.service, 'catalog');
      assert.equal(p.catalog.caller, identity(TD, 'web'), 'vm2\'s agent verified web\'s SVID');
      assert.ok(p.catalog.inventory?.stock && Object.keys(p.catalog.inventory.stock).length > 0, JSON.stringify(p.catalog));
      assert.equal(p.catalog.inventory?.caller, identity(TD, 'catalog'), 'vm3\'s agent verified catalog\'s SVID');
      assert.equal(p.reviews.service, 'reviews');
      assert.equal(p.reviews.caller, identity(TD, 'web'));
      assert.ok(p.reviews.version === 'v1' || p.reviews.version === 'v2', JSON.stringify(p.reviews));
      webUp = true;
    });

    test('web → inventory directly is denied (403); the agents\' metrics count the allowed requests and the denial', async (t) => {
      if (!needHosts(t)) return;
      assert.ok(webUp, 'web answers through the mesh (previous test)');
      const { vms } = hosts!;
      const pages = await fetchPages(vms.vm1, hosts!.node, `http://127.0.0.1:${DEFAULT_PORTS.apps.web}/`, 2 * DENY_EVERY);
      assert.ok(pages.every((p) => p.status === 200), JSON.stringify(pages));
      const direct = pages.map((p) => p.page?.inventoryDirect?.status).filter((s) => s !== undefined);
      assert.ok(direct.length >= 2 && direct.every((s) => s === 403), `web → inventory direct: ${JSON.stringify(direct)}`);

      const scrape = async (node: Node) => parseMetrics(await (await fetch(`http://${vms[node].address}:${ADMIN_PORT}/metrics`, { signal: AbortSignal.timeout(10_000) })).text());
      const [m1, m2, m3] = await Promise.all([scrape('vm1'), scrape('vm2'), scrape('vm3')]);
      const web = identity(TD, 'web');
      const catalog = identity(TD, 'catalog');
      const okIn = (m: Sample[], service: string, source: string) => sum(m, 'amime_agent_requests_total', { direction: 'inbound', service: `demo/${service}`, source, code: '200' });
      assert.ok(okIn(m2, 'catalog', web) > 0, `vm2 counts web → catalog: ${show(m2, 'amime_agent_requests_total')}`);
      assert.ok(okIn(m3, 'inventory', catalog) > 0, `vm3 counts catalog → inventory: ${show(m3, 'amime_agent_requests_total')}`);
      assert.ok(okIn(m2, 'reviews', web) + okIn(m3, 'reviews', web) > 0, 'vm2 or vm3 counts web → reviews');
      assert.ok(sum(m1, 'amime_agent_requests_total', { direction: 'outbound', service: 'demo/catalog', code: '200' }) > 0, `vm1 counts its outbound calls: ${show(m1, 'amime_agent_requests_total')}`);
      const authz = 'amime_agent_authorization_decisions_total';
      assert.ok(sum(m3, authz, { service: 'demo/inventory', result: 'deny' }) >= direct.length, `vm3 counts each denial: ${show(m3, authz)}`);
      assert.ok(sum(m3, authz, { service: 'demo/inventory', result: 'allow' }) > 0, `vm3 counts catalog → inventory as allowed: ${show(m3, authz)}`);
      assert.ok(sum(m1, 'amime_agent_requests_total', { direction: 'outbound', service: 'demo/inventory', code: '403' }) >= direct.length, `vm1 sees the 403s: ${show(m1, 'amime_agent_requests_total')}`);
    });
  });
}

const show = (m: Sample[], name: string): string =>
  m
    .filter((s) => s.name === name)
    .map((s) => `${JSON.stringify(s.labels)} ${s.value}`)
    .join('\n');

/** GETs `url` n times from inside `host` (web listens on the VM's loopback only), one node process, sequentially. */
async function fetchPages(host: Host, node: string, url: string, n: number): Promise<{ status: number; page?: Page; error?: string }[]> {
  const script = `const out = [];
for (let i = 0; i < ${n}; i++) {
  try {
    const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(10000) });
    const text = await r.text();
    let page; try { page = JSON.parse(text); } catch { page = undefined; }
    out.push({ status: r.status, page, ...(page ? {} : { error: text.slice(0, 300) }) });
  } catch (e) { out.push({ status: 0, error: String(e) }); }
}
process.stdout.write(JSON.stringify(out));`;
  const r = await host.run([node, '--input-type=module', '-e', script], 60_000);
  if (r.code !== 0) throw new Error(`fetching ${url} in ${host.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status: number; page?: Page; error?: string }[];
}

/** Bounded poll (60 s): a thrown error counts as "not yet"; the failure names the agent's log tail. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>, agent: HostProcess, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}\n${agent.what}: ${tail(await agent.output())}`);
    await sleep(300);
  }
}
