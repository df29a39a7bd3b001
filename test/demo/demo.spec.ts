// The demo orchestrator (apps/demo) for real: a CA and a control plane from
// the fixtures, then the orchestrator in a temp dir on free ports, which runs
// three agents, the five demo service processes and its traffic. Checks the
// page web serves through the mesh, the 90/10 reviews split, the denied
// web → inventory edge (403 and a deny in vm3's metrics), that SIGTERM stops
// every child and exits 0, and that a second start rejoins without tokens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminCredential, initCa, request, serveCa, stop, type CaProcess, type Credential } from '../ca/fixtures/ca-process.js';
import { serveControlPlane, type CpProcess } from '../control-plane/fixtures/cp-process.js';
import type { ChildProcess } from 'node:child_process';
import { startDemo as startDemoProcess, type DemoProcess } from './fixtures/demo-process.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'demo.e2e';
const id = (s: string) => `spiffe://${TD}/ns/demo/sa/${s}`;

interface Page {
  catalog: { service: string; caller: string; inventory: { stock?: Record<string, number>; caller?: string } };
  reviews: { service: string; version: string; caller: string };
  inventoryDirect?: { status: number };
}

let root: string;
let ca: CaProcess | undefined;
let cp: CpProcess | undefined;
let admin: Credential & { bundlePem: string };
type Demo = DemoProcess;
let demo: Demo | undefined;
let spawned: ChildProcess | undefined;

const caStatus = async (): Promise<{ pendingTokens: number; nodes: Record<string, { joinedAt: string }> }> => {
  const r = await request(ca!.url, { path: '/v1/admin/status', trust: admin.bundlePem, trustDomain: TD, cred: admin });
  assert.equal(r.status, 200, r.text);
  return r.json;
};

/** Starts the orchestrator (bounded: 150 s); after() stops it even when it never got ready. */
function startDemo(): Promise<Demo> {
  return startDemoProcess({ state: join(root, 'demo'), credentials: join(root, 'ca', 'admin'), rate: 2, denyEvery: 4, onSpawn: (child) => (spawned = child) });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function stopDemo(d: Demo): Promise<void> {
  const exited = once(d.child, 'exit');
  d.child.kill('SIGTERM');
  const [code, signal] = (await Promise.race([exited, sleep(30_000).then(() => ['timeout', null])])) as [number | string, string | null];
  assert.equal(code, 0, `the orchestrator exits 0 on SIGTERM (got ${code ?? signal}): ${d.stderr().slice(-2000)}`);
  for (let i = 0; i < 20 && d.line.pids.some(alive); i++) await sleep(100);
  assert.deepEqual(d.line.pids.filter(alive), [], 'every child the orchestrator started is gone');
}

async function page(web: string): Promise<{ status: number; page: Page }> {
  const r = await fetch(web, { signal: AbortSignal.timeout(10_000) });
  return { status: r.status, page: (await r.json()) as Page };
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-demo-e2e-'));
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  cp = await serveControlPlane(join(root, 'cp'), ca.url, join(root, 'ca', 'admin'));
});

after(async () => {
  await stop(spawned); // the orchestrator stops its own children
  await stop(cp?.child);
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

describe('the demo orchestrator', { timeout: 420_000 }, () => {
  test('first start: joins three agents with tokens and web answers through the mesh', async () => {
    demo = await startDemo();
    assert.deepEqual(demo.line.joined.sort(), ['vm1', 'vm2', 'vm3']);
    assert.equal(demo.line.pids.length, 8, 'five services and three agents');
    for (const node of ['vm1', 'vm2', 'vm3']) assert.ok(!existsSync(join(root, 'demo', node, 'join-token')), 'spent tokens are not left on disk');
    const { status, page: p } = await page(demo.line.web);
    assert.equal(status, 200, JSON.stringify(p));
    assert.equal(p.catalog.service, 'catalog');
    assert.equal(p.catalog.caller, id('web'), 'catalog sees web, verified by vm2');
    assert.ok(p.catalog.inventory.stock && Object.keys(p.catalog.inventory.stock).length > 0, JSON.stringify(p.catalog));
    assert.equal(p.catalog.inventory.caller, id('catalog'), 'inventory sees catalog, verified by vm3');
    assert.equal(p.reviews.service, 'reviews');
    assert.equal(p.reviews.caller, id('web'));
  });

  test('reviews splits about 90/10 between v1 and v2; the direct web → inventory call is refused and counted as a deny', async (t) => {
    const versions: Record<string, number> = {};
    const direct: Record<string, number> = {};
    let failed = 0;
    const next = { i: 0 };
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next.i++ < 200) {
          const r = await page(demo!.line.web).catch(() => undefined);
          if (r?.status !== 200) {
            failed++;
            continue;
          }
          versions[r.page.reviews.version] = (versions[r.page.reviews.version] ?? 0) + 1;
          if (r.page.inventoryDirect) direct[r.page.inventoryDirect.status] = (direct[r.page.inventoryDirect.status] ?? 0) + 1;
        }
      }),
    );
    t.diagnostic(`reviews ${JSON.stringify(versions)}, direct ${JSON.stringify(direct)}, failed ${failed}`);
    assert.ok(failed <= 5, `${failed} of 200 pages failed`);
    const v1 = versions['v1'] ?? 0;
    const v2 = versions['v2'] ?? 0;
    assert.deepEqual(Object.keys(versions).sort(), ['v1', 'v2']);
    const share = v2 / (v1 + v2);
    assert.ok(share >= 0.03 && share <= 0.22, `v2 got ${(share * 100).toFixed(1)}% (want about 10%)`);
    assert.ok((direct['403'] ?? 0) > 0 && Object.keys(direct).every((s) => s === '403'), `web → inventory direct: ${JSON.stringify(direct)}`);
    const metrics = await (await fetch(`${demo!.line.admin.vm3}/metrics`)).text();
    const deny = /^amime_agent_authorization_decisions_total\{[^}]*service="demo\/inventory"[^}]*result="deny"[^}]*\} (\d+)/m.exec(metrics);
    assert.ok(deny && Number(deny[1]) > 0, `vm3 counts denials for inventory: ${metrics.split('\n').filter((l) => l.includes('authorization_decisions')).join('\n')}`);
    assert.match(metrics, /^amime_agent_authorization_decisions_total\{[^}]*service="demo\/inventory"[^}]*result="allow"[^}]*\} [1-9]/m, 'catalog → inventory is allowed');
  });

  test('SIGTERM stops every child by PID and exits 0', async () => {
    await stopDemo(demo!);
  });

  test('a second start reuses the state: no join tokens, the agents rejoin with their SVIDs, web answers', async () => {
    const before = await caStatus();
    assert.equal(before.pendingTokens, 0);
    demo = await startDemo();
    assert.deepEqual(demo.line.joined, [], 'no agent needed a token');
    const now = await caStatus();
    assert.equal(now.pendingTokens, 0, 'no token was made');
    for (const node of ['vm1', 'vm2', 'vm3']) assert.equal(now.nodes[node]?.joinedAt, before.nodes[node]?.joinedAt, `${node} did not join again`);
    const { status, page: p } = await page(demo.line.web);
    assert.equal(status, 200, JSON.stringify(p));
    assert.equal(p.catalog.inventory.caller, id('catalog'));
    await stopDemo(demo);
  });
});
