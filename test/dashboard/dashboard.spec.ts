// The dashboard in headless Chromium (Debian's, driven by playwright-core)
// against the running demo: a CA, a control plane and the demo orchestrator
// as real processes, the dashboard as a real process started before the
// control plane (so it has to wait for it). The graph shows the demo's
// services and edges; a denied call made by the test shows up as a denied
// edge without a reload; the certificates table lists the root with its
// expiry; a screenshot is saved under dist/test-artifacts/dashboard/.
// Then, in-process against a fake control plane, hostile names render as
// text: no element, no script, from mesh data.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import { MeshView, startDashboardServer } from '@amime/dashboard';
import { FakeMeshSource } from '@amime/dashboard/testing';
import { initCa, serveCa, stop, workspace, type CaProcess } from '../ca/fixtures/ca-process.js';
import { serveControlPlane, type CpProcess } from '../control-plane/fixtures/cp-process.js';
import { startDemo, type DemoProcess } from '../demo/fixtures/demo-process.js';
import { spawnReady, type ReadyProcess } from '../fixtures/spawn-ready.js';
import { until } from '../fixtures/until.js';

process.env['AMIME_CA_QUIET'] = '1';
const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const ARTIFACTS = join(workspace, 'dist', 'test-artifacts', 'dashboard');
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (Debian package chromium; .ci/run installs it)`;

let root: string;
let ca: CaProcess | undefined;
let cp: CpProcess | undefined;
let dashboard: ReadyProcess<{ url: string; port: number }> | undefined;
let demoChild: ChildProcess | undefined;
let demo: DemoProcess | undefined;
let browser: Browser | undefined;

/** The graph's edges as the page draws them. */
const edgesOf = (page: Page) =>
  page.$$eval('[data-testid=graph-edge]', (els) => els.map((e) => ({ from: e.getAttribute('data-from'), to: e.getAttribute('data-to'), denied: e.getAttribute('data-denied') === 'true', denials: Number(e.getAttribute('data-denials')), mtls: e.getAttribute('data-mtls') === 'true' })));

describe('the dashboard against the demo mesh, in Chromium', { skip, timeout: 480_000 }, () => {
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'amime-dashboard-e2e-'));
    initCa(join(root, 'ca'), 'dash.e2e');
    ca = await serveCa(join(root, 'ca'));
    // Before the control plane, as under `npm start`: it waits for control-plane-url and an answer.
    dashboard = await spawnReady('dashboard', [join(workspace, 'apps', 'dashboard', 'src', 'main.ts'), '--port', '0', '--credentials', join(root, 'ca', 'admin'), '--refresh', '1s', '--wait', '120'], 'listening', { cwd: workspace, timeoutMs: 30_000 });
    cp = await serveControlPlane(join(root, 'cp'), ca.url, join(root, 'ca', 'admin'));
    // No denied calls from the demo itself: the test makes the one that must show up.
    demo = await startDemo({ state: join(root, 'demo'), credentials: join(root, 'ca', 'admin'), rate: 4, denyEvery: 0, onSpawn: (c) => (demoChild = c) });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    await stop(demoChild); // the orchestrator stops its own children
    await stop(dashboard?.child);
    await stop(cp?.child);
    await stop(ca);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('graph, live denial, certificates; screenshot saved', async (t) => {
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1100 } });
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(dashboard!.line.url, { timeout: 30_000 });
    await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 60_000 });

    for (const s of ['web', 'catalog', 'inventory', 'reviews']) await page.waitForSelector(`[data-testid=graph-node][data-service="${s}"]`, { timeout: 60_000 });
    const want = ['web→catalog', 'catalog→inventory', 'web→reviews'];
    const edges = await until(
      `the edges ${want.join(', ')} in the page`,
      async () => {
        const e = await edgesOf(page);
        return want.every((w) => e.some((x) => `${x.from}→${x.to}` === w)) && e;
      },
      90_000,
      500,
    );
    for (const w of want) assert.ok(edges.find((x) => `${x.from}→${x.to}` === w)!.mtls, `${w} is shown as mutual TLS`);
    assert.ok(!edges.some((x) => x.denied), `no denied edge before the denied call: ${JSON.stringify(edges)}`);
    const label = await page.textContent('[data-testid=edge-label-group][data-from=web][data-to=catalog] [data-testid=edge-label]');
    assert.match(label ?? '', /^mTLS · [\d.]+ rps · [\d.]+% err · p99 (\d+ ms|–)$/, `web → catalog is labelled: ${label}`);

    // A marker that a reload would wipe: the denial has to arrive over the socket.
    await page.evaluate('window.__noReload = true');
    const inventoryFromWeb = `http://127.0.0.1:${demo!.line.ports.upstreams.webInventory}/stock`;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(inventoryFromWeb, { signal: AbortSignal.timeout(10_000) })).status);
    assert.deepEqual(statuses, [403, 403, 403], 'vm3 refuses web → inventory (no policy allows it)');
    // attached, not visible: a straight SVG path has a zero-height box, which Playwright calls hidden
    await page.waitForSelector('[data-testid=graph-edge][data-from=web][data-to=inventory][data-denied=true]', { state: 'attached', timeout: 60_000 });
    const seen: string[] = [];
    const denied = await until(
      'the denied web → inventory edge to stay drawn',
      async () => {
        const all = await edgesOf(page);
        seen.push(JSON.stringify(all));
        return all.find((x) => x.from === 'web' && x.to === 'inventory' && x.denied);
      },
      20_000,
      250,
    ).catch((err: Error) => assert.fail(`${err.message}; edges drawn: ${seen.slice(-3).join('\n')}`));
    assert.ok(denied.denials >= 1, JSON.stringify(denied));
    assert.match((await page.textContent('[data-testid=edge-label-group][data-from=web][data-to=inventory] [data-testid=edge-denials]')) ?? '', /✕ \d+ denied/);
    assert.equal(await page.evaluate('window.__noReload'), true, 'the page was not reloaded');

    const root = await page.waitForSelector('[data-testid=cert-row][data-kind=root]', { timeout: 30_000 });
    const cells = await root.$$eval('td', (tds) => tds.map((td) => td.textContent ?? ''));
    assert.match(cells[3]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, `root expiry: ${cells.join(' | ')}`);
    assert.match(cells[4]!, /^\d+d \d+h$/, 'a root has days left');
    assert.ok((await page.$$('[data-testid=policy-row]')).length >= 3, 'the demo policies are listed');
    assert.ok((await page.$$('[data-testid=route-row]')).length >= 1, 'the reviews split is listed');
    assert.equal((await page.$$('[data-testid=agent-row]')).length, 3, 'three agents');

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    console.log(`dashboard screenshot: ${shot}`);
    assert.deepEqual(problems, [], 'no script errors or CSP refusals in the page');
    await page.close();
  });
});

describe('hostile names from the mesh render as text, in Chromium', { skip, timeout: 60_000 }, () => {
  test('service names, identities, policy paths and findings never become markup', async () => {
    const evil = '<img src=x onerror="window.__xss=1">';
    const source = new FakeMeshSource();
    source.data.services = [{ kind: 'Service', metadata: { name: evil, namespace: 'demo' }, spec: { identity: 'spiffe://t/ns/demo/sa/x' } }];
    source.data.traffic.edges = [
      { source: { identity: 'spiffe://t/ns/a/sa/<svg onload="window.__xss=2">' }, destination: { namespace: 'demo', service: evil }, requests: 3, rps: 1, errors: 0, errorRate: 0, denials: 3, denialRate: 1, p50Ms: 1, p99Ms: 2, bytesIn: 0, bytesOut: 0, mtls: true, nodes: ['<b>n</b>'], lastSeen: new Date().toISOString() },
    ];
    source.data.policies = [{ kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'demo' }, spec: { action: 'ALLOW', target: evil, rules: [{ from: [{ identity: 'spiffe://t/ns/a/sa/a' }], to: { paths: ['/<script>window.__xss=3</script>'] } }] } }];
    const finding = { id: 'f1', kind: 'new_edge', at: new Date().toISOString(), edge: { source: 's', namespace: 'demo', service: 'x', sourceNode: 'vm1' }, node: 'vm1', baseline: 0, observed: 1, threshold: 0, unit: 'requests/s', message: '<b id="boom">bold</b>' } as const;
    const view = new MeshView({ refreshMs: 60_000 });
    const server = await startDashboardServer({ view, port: 0 });
    const own = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
    try {
      await view.attach(source);
      const page = await own.newPage();
      let dialogs = 0;
      page.on('dialog', (d) => (dialogs++, void d.dismiss()));
      await page.goto(server.url, { timeout: 30_000 });
      await page.waitForSelector('[data-testid=graph-node][data-kind=identity]', { timeout: 20_000 });
      source.pushFinding(finding); // arrives over the socket
      await page.waitForSelector('[data-testid=anomaly]', { timeout: 20_000 });
      const nodeText = await page.$$eval('[data-testid=graph-node]', (els) => els.map((e) => e.getAttribute('data-service')));
      assert.ok(nodeText.includes(evil), `the hostile name is an attribute value as it is: ${JSON.stringify(nodeText)}`);
      assert.match((await page.textContent('[data-testid=anomaly]')) ?? '', /<b id="boom">bold<\/b>/, 'the finding shows as text');
      assert.match((await page.textContent('#policies')) ?? '', /<script>window.__xss=3<\/script>/);
      // A string, evaluated in the page (this project's TypeScript has no DOM types).
      const found = await page.evaluate(`({
        img: document.querySelectorAll('img').length,
        svgInjected: document.querySelectorAll('svg svg').length,
        boom: document.getElementById('boom') !== null,
        scripts: [...document.scripts].map((s) => s.src),
        xss: window.__xss ?? null,
      })`);
      assert.deepEqual(found, { img: 0, svgInjected: 0, boom: false, scripts: [`${server.url}dashboard.mjs`], xss: null });
      assert.equal(dialogs, 0);
    } finally {
      await own.close();
      await server.close();
      view.close();
    }
  });
});
