// The shipped observability config against a real Prometheus and a real mesh.
//
// 1. promtool checks deploy/prometheus (config, rules, rule unit tests).
// 2. The Grafana dashboards are well-formed provisioning JSON.
// 3. A CA, a control plane, two agents ("vm1" fronting web, "vm2" fronting
//    catalog over HTTP and db over TCP) and bounded demo traffic: allowed and
//    denied calls, 5xx, retried 503s, rate-limited bursts, TCP echoes, refused
//    handshakes. Then /usr/bin/prometheus (Debian package `prometheus`) scrapes
//    every process each second with the shipped rules loaded; every panel query
//    of every dashboard (template variables resolved the way Grafana does, from
//    Prometheus) must parse and return data, and every rule must parse and
//    evaluate without error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { adminCredential, initCa, request, stop, workspace, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { serveControlPlane, type CpProcess } from '../control-plane/fixtures/cp-process.js';
import { freePort, runAgent, writeAgentConfig, type AgentProcess } from '../agent/fixtures/agent-process.js';
import { spawnReady, type ReadyProcess } from '../fixtures/spawn-ready.js';
import { until } from '../fixtures/until.js';
import { agentCommon, shopIdentities, shopYaml } from '../fixtures/shop-mesh.js';

process.env['AMIME_CA_QUIET'] = '1';
const DEPLOY = join(workspace, 'deploy');
const RULES_DIR = join(DEPLOY, 'prometheus', 'rules');
const RULE_TESTS_DIR = join(DEPLOY, 'prometheus', 'tests');
const DASHBOARDS_DIR = join(DEPLOY, 'grafana', 'dashboards');
/** What Grafana would put in for its built-in interval variables (scrapes every 1 s here). */
const BUILTINS: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '5m' };

/** A binary on PATH (or in /usr/bin); a clear failure, never a skip, when it is missing. */
function binary(name: string): string {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  const found = dirs.filter(Boolean).map((d) => join(d, name)).find((p) => existsSync(p));
  assert.ok(found, `${name} is not installed: install Debian's Prometheus package (apt-get install -y --no-install-recommends prometheus), which brings prometheus and promtool`);
  return found;
}

function run(bin: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(bin, args, { cwd: workspace, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

// ---------------------------------------------------------------- dashboards

interface Target {
  refId: string;
  expr: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  regex?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  templating: { list: Variable[] };
  panels: Panel[];
}

const dashboardFiles = readdirSync(DASHBOARDS_DIR).filter((f) => f.endsWith('.json')).sort();
const dashboards = dashboardFiles.map((file) => ({ file, dash: JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as Dashboard }));
const panelsOf = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const queryVars = (d: Dashboard): Variable[] => d.templating.list.filter((v) => v.type === 'query');
const varQuery = (v: Variable): string => (typeof v.query === 'string' ? v.query : v.query.query);
/** `$name`, `${name}` and `[[name]]` references in a query. */
const referenced = (s: string): string[] => [...s.matchAll(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g)].map((m) => (m[1] ?? m[2] ?? m[3])!);

function substitute(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    return values[name] ?? BUILTINS[name] ?? whole;
  });
}

// ---------------------------------------------------------------- rules

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
const ruleFiles = readdirSync(RULES_DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const rules: (Rule & { file: string; group: string })[] = ruleFiles.flatMap((file) =>
  (parseYaml(readFileSync(join(RULES_DIR, file), 'utf8')) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules.map((r) => ({ ...r, file, group: g.name }))),
);

describe('the shipped Prometheus config', () => {
  test('promtool: the config and the rules check; the rule unit tests pass', () => {
    const promtool = binary('promtool');
    const config = run(promtool, ['check', 'config', join(DEPLOY, 'prometheus', 'prometheus.yml')]);
    assert.equal(config.status, 0, config.output);
    const checked = run(promtool, ['check', 'rules', ...ruleFiles.map((f) => join(RULES_DIR, f))]);
    assert.equal(checked.status, 0, checked.output);
    const unitTests = readdirSync(RULE_TESTS_DIR).filter((f) => f.endsWith('.test.yml')).sort();
    assert.ok(unitTests.length >= 4, `rule unit tests: ${unitTests.join(', ')}`);
    const tested = run(promtool, ['test', 'rules', ...unitTests.map((f) => join(RULE_TESTS_DIR, f))]);
    assert.equal(tested.status, 0, tested.output);
  });

  test('every alert has a severity, a summary and a unit test', () => {
    const tests = readdirSync(RULE_TESTS_DIR)
      .filter((f) => f.endsWith('.test.yml'))
      .map((f) => readFileSync(join(RULE_TESTS_DIR, f), 'utf8'))
      .join('\n');
    const alerts = rules.filter((r) => r.alert) as (Rule & { alert: string; labels?: { severity?: string }; annotations?: { summary?: string } })[];
    assert.ok(alerts.length > 10, `${alerts.length} alerts`);
    for (const a of alerts) {
      assert.match(a.labels?.severity ?? '', /^(critical|warning|info)$/, `${a.alert}: severity`);
      assert.ok(a.annotations?.summary, `${a.alert}: summary`);
      assert.match(tests, new RegExp(`alertname: ${a.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${a.alert} has a test where it fires`);
      assert.match(tests, new RegExp(`alertname: ${a.alert}\\n\\s+exp_alerts: \\[\\]`), `${a.alert} has a test where it does not fire`);
    }
  });
});

describe('the Grafana dashboards', () => {
  test('provisioning: the datasource has uid "prometheus"; the dashboards provider is a file provider', () => {
    const ds = parseYaml(readFileSync(join(DEPLOY, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as { datasources: { uid: string; type: string }[] };
    assert.deepEqual(ds.datasources.map((d) => [d.uid, d.type]), [['prometheus', 'prometheus']]);
    const dp = parseYaml(readFileSync(join(DEPLOY, 'grafana', 'provisioning', 'dashboards', 'amime.yml'), 'utf8')) as { providers: { type: string; options: { path: string } }[] };
    assert.equal(dp.providers[0]?.type, 'file');
    assert.deepEqual(dashboardFiles, ['agent.json', 'control-plane.json', 'mesh-overview.json', 'security.json', 'service-detail.json']);
  });

  for (const { file, dash } of dashboards) {
    test(`${file}: well-formed (uid, schemaVersion, unique panel ids, layout, datasource, variables)`, () => {
      assert.match(dash.uid, /^amime-[a-z-]+$/);
      assert.ok(dash.schemaVersion >= 39, `schemaVersion ${dash.schemaVersion}`);
      const ds = dash.templating.list.find((v) => v.name === 'DS_PROMETHEUS');
      assert.equal(ds?.type, 'datasource');
      const defined = new Set([...dash.templating.list.map((v) => v.name), ...Object.keys(BUILTINS)]);
      const ids = new Set<number>();
      for (const p of [...dash.panels, ...dash.panels.flatMap((x) => x.panels ?? [])]) {
        assert.ok(!ids.has(p.id), `${p.title}: duplicate panel id ${p.id}`);
        ids.add(p.id);
        assert.ok(p.gridPos.x >= 0 && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: gridPos ${JSON.stringify(p.gridPos)}`);
      }
      for (const p of panelsOf(dash)) {
        assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `${p.title}: datasource`);
        assert.ok(p.targets && p.targets.length > 0, `${p.title}: no targets`);
        for (const t of p.targets) {
          assert.ok(t.expr.trim(), `${p.title} ${t.refId}: empty expr`);
          for (const name of referenced(t.expr)) assert.ok(defined.has(name), `${p.title} ${t.refId}: $${name} is not a variable of ${file}`);
        }
      }
      for (const v of queryVars(dash)) for (const name of referenced(varQuery(v))) assert.ok(defined.has(name), `variable ${v.name}: $${name} undefined`);
    });
  }
});

// ---------------------------------------------------------------- the mesh

const TD = 'obs.e2e';
const SERVER = `spiffe://${TD}/control-plane/controller`;
const shop = shopIdentities(TD);
const { web: WEB, catalog: CATALOG, db: DB } = shop;

const SERVICES = shopYaml(shop, { services: ['web', 'catalog', 'db'], trafficPolicy: { catalog: '{ rateLimit: { requestsPerSecond: 25, burst: 10 } }' } });

const POLICIES = shopYaml(shop, {
  services: [],
  policies: ['catalog-from-web', 'catalog-no-admin', 'db-from-web'],
  extra: [
    `apiVersion: amime.dev/v1
kind: Route
metadata: { name: catalog-retries, namespace: shop }
spec:
  service: catalog
  rules:
    - match: { path: { prefix: /flaky } }
      backends: [{ service: catalog, weight: 100 }]
      retries: { attempts: 2, on: [5xx] }
    - backends: [{ service: catalog, weight: 100 }]
`,
  ],
});

describe('against a running mesh', () => {
  let root: string;
  let ca: ReadyProcess<{ url: string; metricsUrl: string }> | undefined;
  let cp: CpProcess | undefined;
  let admin: Credential & { bundlePem: string };
  let vm1: AgentProcess | undefined;
  let vm2: AgentProcess | undefined;
  let prometheus: ChildProcess | undefined;
  let promErr = '';
  let promUrl: string;
  let upstreamPort: number;
  let dbUpstreamPort: number;
  let traffic: Promise<void> | undefined;
  let stopTraffic = false;
  const trafficLog = { calls: 0, codes: new Map<number, number>(), tcp: 0, probes: 0 };
  const servers: (http.Server | net.Server)[] = [];
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });

  const caCall = (path: string, body?: unknown, anonymous = false): Promise<Reply> =>
    request(ca!.line.url, { path, trust: admin.bundlePem, trustDomain: TD, ...(!anonymous && { cred: admin }), ...(body !== undefined && { body }) });
  const apply = async (yaml: string): Promise<void> => {
    const r = await request(cp!.url, { path: '/v1/resources', trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER, raw: yaml, method: 'POST', headers: { 'content-type': 'application/yaml' } });
    assert.equal(r.status, 200, `apply: ${r.status} ${r.text}`);
  };


  /** One request from "web" to catalog through vm1's outbound listener. */
  function call(path: string): Promise<number> {
    return new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: upstreamPort, path, agent: keepAlive, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      });
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', () => resolve(0));
      req.end();
    });
  }

  /** One TCP exchange with db through vm1 (L4 over mTLS to vm2). */
  function tcpExchange(): Promise<string> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: dbUpstreamPort, allowHalfOpen: true });
      let got = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => (got += d));
      sock.on('connect', () => sock.end('ping'));
      sock.on('close', () => resolve(got));
      sock.on('error', () => undefined);
      sock.setTimeout(5_000, () => sock.destroy());
    });
  }

  /** A client without a certificate at vm2's inbound port: the handshake is refused. */
  function plaintextProbe(): Promise<void> {
    return new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: vm2!.inbound, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      s.on('data', () => undefined);
      s.setTimeout(2_000, () => s.destroy());
    });
  }

  /** Something that is not an agent asks for the push channel: refused (counted by the control plane). */
  async function roguePush(): Promise<void> {
    const key = Buffer.from('0123456789abcdef').toString('base64');
    await request(cp!.url, {
      path: '/v1/push',
      trust: admin.bundlePem,
      trustDomain: TD,
      cred: admin,
      serverId: SERVER,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': key },
      timeoutMs: 3_000,
    }).catch(() => undefined);
  }

  /** Bounded demo traffic: at most 1500 rounds and 180 s, stopped by the test when done. */
  async function demoTraffic(): Promise<void> {
    const deadline = Date.now() + 180_000;
    const count = (code: number) => trafficLog.codes.set(code, (trafficLog.codes.get(code) ?? 0) + 1);
    for (let i = 0; i < 1500 && !stopTraffic && Date.now() < deadline; i++) {
      const batch: Promise<unknown>[] = [call(`/items/${i}`), call('/items'), call(`/items/${i % 7}?page=2`)];
      if (i % 4 === 0) batch.push(call('/fail'));
      if (i % 6 === 0) batch.push(call(`/flaky/${i}`));
      if (i % 3 === 0) batch.push(call('/admin'));
      if (i % 10 === 5) for (let k = 0; k < 30; k++) batch.push(call(`/burst/${k}`));
      if (i % 5 === 0) batch.push(
          tcpExchange().then((g) => {
            if (g === 'pingbye') trafficLog.tcp++;
          }),
        );
      if (i % 40 === 0) batch.push(
          plaintextProbe().then(() => {
            trafficLog.probes++;
          }),
        );
      if (i % 50 === 0) batch.push(roguePush(), caCall('/v1/admin/tokens', { node: 'nobody' }, true).catch(() => undefined));
      for (const r of await Promise.all(batch)) {
        if (typeof r === 'number') {
          trafficLog.calls++;
          count(r);
        }
      }
      await sleep(200);
    }
  }

  async function listen(server: http.Server | net.Server): Promise<number> {
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as net.AddressInfo).port;
  }

  async function promQuery(query: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
    const r = await fetch(`${promUrl}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query }), signal: AbortSignal.timeout(10_000) });
    return (await r.json()) as never;
  }

  before(async () => {
    const prometheusBin = binary('prometheus');
    root = mkdtempSync(join(tmpdir(), 'amime-observability-'));
    initCa(join(root, 'ca'), TD);
    admin = adminCredential(join(root, 'ca'));
    ca = await spawnReady<{ url: string; metricsUrl: string }>('ca serve', [join(workspace, 'apps', 'ca', 'src', 'main.ts'), 'serve', '--dir', join(root, 'ca'), '--port', '0', '--metrics-port', '0'], 'listening', {
      cwd: workspace,
      env: { ...process.env, AMIME_CA_QUIET: '1' },
      timeoutMs: 20_000,
    });
    const cpPort = await freePort();
    cp = await serveControlPlane(join(root, 'cp'), ca.line.url, join(root, 'ca', 'admin'), ['--port', String(cpPort), '--grace', '30s']);
    for (const [node, id] of [['vm1', WEB], ['vm2', CATALOG], ['vm2', DB]] as const) {
      const r = await caCall('/v1/admin/assignments', { node, spiffeId: id });
      assert.equal(r.status, 200, r.text);
    }
    await apply(SERVICES);
    const catalogPort = await listen(
      http.createServer((req, res) => {
        const status = req.url === '/fail' ? 500 : req.url?.startsWith('/flaky') ? 503 : 200;
        res.statusCode = status;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ service: 'catalog', path: req.url }));
      }),
    );
    const webPort = await listen(http.createServer((_req, res) => res.end('web')));
    const dbPort = await listen(
      net.createServer({ allowHalfOpen: true }, (sock) => {
        sock.on('data', (d) => sock.write(d));
        sock.on('end', () => sock.end('bye'));
        sock.on('error', () => undefined);
      }),
    );
    upstreamPort = await freePort();
    dbUpstreamPort = await freePort();
    const common = agentCommon(root, ca.line, cp, admin.bundlePem);
    const vm1Config = writeAgentConfig(join(root, 'vm1'), {
      node: 'vm1',
      ...common,
      workloads: [
        {
          service: 'web',
          namespace: 'shop',
          identity: WEB,
          port: webPort,
          protocol: 'http',
          upstreams: [
            { service: 'catalog', namespace: 'shop', port: upstreamPort },
            { service: 'db', namespace: 'shop', port: dbUpstreamPort },
          ],
        },
      ],
    });
    const vm2Config = writeAgentConfig(join(root, 'vm2'), {
      node: 'vm2',
      ...common,
      workloads: [
        { service: 'catalog', namespace: 'shop', identity: CATALOG, port: catalogPort, protocol: 'http', check: { http: '/healthz' } },
        { service: 'db', namespace: 'shop', identity: DB, port: dbPort, protocol: 'tcp', check: { tcp: 'connect' } },
      ],
    });
    const token = async (node: string) => ((await caCall('/v1/admin/tokens', { node })).json as { token: string }).token;
    [vm1, vm2] = await Promise.all([runAgent('vm1', vm1Config, await token('vm1')), runAgent('vm2', vm2Config, await token('vm2'))]);
    await apply(POLICIES);
    await until('web reaches catalog through the mesh', async () => (await call('/items')) === 200 && (await tcpExchange()) === 'pingbye', 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\nvm1: ${vm1!.stderr().slice(-2000)}\nvm2: ${vm2!.stderr().slice(-2000)}`);
    });
    traffic = demoTraffic();

    // Prometheus, scraping what this test started, with the same target labels the control plane's discovery gives.
    const hostPort = (url: string) => new URL(url).host;
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const target = (job: string, url: string, node: string) => ({ job_name: job, metrics_path: new URL(url).pathname.endsWith('/metrics') ? new URL(url).pathname : '/metrics', static_configs: [{ targets: [hostPort(url)], labels: { amime_component: job, amime_node: node } }] });
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [join(RULES_DIR, '*.yml')],
      scrape_configs: [
        { job_name: 'agent', static_configs: [vm1, vm2].map((a) => ({ targets: [hostPort(a!.admin)], labels: { amime_component: 'agent', amime_node: a!.node } })) },
        target('control-plane', cp.metricsUrl, 'control-plane-1'),
        target('ca', ca.line.metricsUrl, 'ca-1'),
      ],
    };
    mkdirSync(join(root, 'prometheus', 'data'), { recursive: true });
    writeFileSync(join(root, 'prometheus', 'prometheus.yml'), JSON.stringify(config, null, 2));
    prometheus = spawn(prometheusBin, [`--config.file=${join(root, 'prometheus', 'prometheus.yml')}`, `--storage.tsdb.path=${join(root, 'prometheus', 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    prometheus.stderr!.setEncoding('utf8');
    prometheus.stderr!.on('data', (d: string) => {
      if (promErr.length < 200_000) promErr += d;
    });
    await until('Prometheus is ready', async () => prometheus!.exitCode === null && (await fetch(`${promUrl}/-/ready`)).ok, 30_000, 250).catch((err: unknown) => {
      throw new Error(`${String(err)}\nprometheus (exit ${prometheus!.exitCode}): ${promErr.slice(-3000)}`);
    });
    await until(
      'every target is up',
      async () => {
        const t = (await (await fetch(`${promUrl}/api/v1/targets`)).json()) as { data: { activeTargets: { health: string }[] } };
        return t.data.activeTargets.length === 4 && t.data.activeTargets.every((x) => x.health === 'up');
      },
      30_000,
      500,
    );
    // Enough scrapes for rate() over every series, and for the rules to have evaluated a few times.
    await sleep(12_000);
  });

  after(async () => {
    stopTraffic = true;
    await traffic?.catch(() => undefined);
    keepAlive.destroy();
    await stop(prometheus);
    await stop(vm1?.child);
    await stop(vm2?.child);
    await stop(cp?.child);
    await stop(ca?.child);
    for (const s of servers) {
      if (s instanceof http.Server) s.closeAllConnections();
      s.close();
    }
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('the demo traffic ran: 200s, 403s, 429s, 5xx, TCP echoes, refused handshakes', (t) => {
    t.diagnostic(`calls ${trafficLog.calls}, codes ${JSON.stringify([...trafficLog.codes].sort())}, tcp ${trafficLog.tcp}, probes ${trafficLog.probes}`);
    for (const code of [200, 403, 429, 500, 503]) assert.ok((trafficLog.codes.get(code) ?? 0) > 0, `no ${code} answered: ${JSON.stringify([...trafficLog.codes])}`);
    assert.ok(trafficLog.tcp > 0 && trafficLog.probes > 0);
  });

  test('every recording and alerting rule parses and evaluates without error', async () => {
    assert.ok(rules.length > 15, `${rules.length} rules`);
    const failures: string[] = [];
    for (const r of rules) {
      const q = await promQuery(r.expr);
      if (q.status !== 'success') failures.push(`${r.record ?? r.alert} (${r.group}): ${q.error}`);
    }
    const loaded = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] } };
    const live = loaded.data.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name })));
    assert.equal(live.length, rules.length, 'Prometheus loaded every rule');
    for (const r of live) if (r.health === 'err') failures.push(`${r.name} (${r.group}) evaluates with an error: ${r.lastError}`);
    assert.deepEqual(failures, []);
  });

  test('on the live mesh: the fast error-budget burn goes active for catalog (5xx on purpose); no component is reported down', async () => {
    const active = await until('ErrorBudgetBurn for shop/catalog is pending or firing', async () => {
      const a = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
      return a.data.alerts.some((x) => x.labels['alertname'] === 'ErrorBudgetBurn' && x.labels['service'] === 'shop/catalog' && x.labels['severity'] === 'critical') && a.data.alerts;
    });
    const names = active.map((a) => `${a.labels['alertname']}${a.labels['amime_node'] ? ` ${a.labels['amime_node']}` : ''}`);
    for (const down of ['AgentDown', 'AgentDisconnected', 'ControlPlaneDown', 'CaDown', 'CertificateExpiresSoon', 'SvidRenewalOverdue']) {
      assert.ok(!names.some((n) => n.startsWith(down)), `${down} is active: ${names.join(', ')}`);
    }
  });

  test('every dashboard panel query parses and returns data (variables resolved from Prometheus)', async (t) => {
    // Variables as Grafana resolves them: label_values(selector, label), in order, each seeing the ones before.
    const labelValues = async (query: string, regex: string | undefined): Promise<string[]> => {
      const m = /^label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)$/.exec(query.trim());
      assert.ok(m, `unsupported variable query ${query}`);
      const params = new URLSearchParams({ start: String(Date.now() / 1000 - 600) });
      if (m[1]) params.append('match[]', m[1]);
      const r = (await (await fetch(`${promUrl}/api/v1/label/${m[2]}/values?${params}`)).json()) as { status: string; data: string[]; error?: string };
      assert.equal(r.status, 'success', `${query}: ${r.error}`);
      let values = r.data;
      if (regex) {
        const re = new RegExp(regex.replace(/^\/(.*)\/[a-z]*$/, '$1'));
        values = values.flatMap((v) => {
          const x = re.exec(v);
          return x ? [x[1] ?? x[0]] : [];
        });
      }
      return [...new Set(values)].sort();
    };
    const assignments = async (vars: Variable[], fixed: Record<string, string> = {}): Promise<Record<string, string>[]> => {
      if (vars.length === 0) return [fixed];
      const [v, ...rest] = vars;
      const values = await labelValues(substitute(varQuery(v!), fixed), v!.regex || undefined);
      assert.ok(values.length > 0, `variable ${v!.name} (${varQuery(v!)}) has no values`);
      return (await Promise.all(values.map((x) => assignments(rest, { ...fixed, [v!.name]: x })))).flat();
    };

    const failures: string[] = [];
    const empty = new Map<string, string>();
    let targets = 0;
    for (const { file, dash } of dashboards) {
      const choices = await assignments(queryVars(dash));
      t.diagnostic(`${file}: ${panelsOf(dash).length} panels; variables ${JSON.stringify(choices)}`);
      for (const p of panelsOf(dash)) {
        for (const target of p.targets ?? []) {
          targets++;
          const key = `${file} "${p.title}" ${target.refId}`;
          let parsed = true;
          let hasData = false;
          for (const values of choices) {
            const expr = substitute(target.expr, values);
            const q = await promQuery(expr);
            if (q.status !== 'success') {
              failures.push(`${key} does not parse: ${q.error}\n  ${expr}`);
              parsed = false;
              break;
            }
            if ((q.data?.result.length ?? 0) > 0) {
              hasData = true;
              break;
            }
          }
          if (parsed && !hasData) empty.set(key, target.expr);
        }
      }
    }
    // Queries that are empty may only be early: try them again for a while.
    const deadline = Date.now() + 20_000;
    while (empty.size > 0 && Date.now() < deadline) {
      await sleep(2_000);
      for (const [key, expr] of empty) {
        const file = key.split(' ')[0]!;
        const choices = await assignments(queryVars(dashboards.find((d) => d.file === file)!.dash));
        for (const values of choices) {
          const q = await promQuery(substitute(expr, values));
          if (q.status === 'success' && (q.data?.result.length ?? 0) > 0) {
            empty.delete(key);
            break;
          }
        }
      }
    }
    t.diagnostic(`${targets} panel queries in ${dashboards.length} dashboards; ${empty.size} without data`);
    for (const [key, expr] of empty) failures.push(`${key} returns no data for any value of its variables:\n  ${expr.replace(/\n/g, '\n  ')}`);
    assert.deepEqual(failures, []);
  });
});
