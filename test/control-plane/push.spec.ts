// The control plane as operators and agents meet it: a real CA process, a
// real control-plane process, and agents (PushClient, with SVIDs from the CA's
// join flow) in this process. Apply a Route and see every agent ACK it; a NACK
// leaves its agent on the previous version and shows in /v1/agents, metrics
// and meshctl; registrations are checked against the CA's assignments; a
// silent agent's endpoints turn unhealthy, then go; revoking an agent cuts
// its session.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import type { EndpointResource, Resource, ResourceType, TrustBundleResource } from '@amime/protocol';
import { PushClient, type AppliedUpdate } from '@amime/protocol/client';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, workspace, type CaProcess, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { metric, serveControlPlane, type CpProcess } from './fixtures/cp-process.js';
import { until } from '../fixtures/until.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'push.e2e';
const SERVER = `spiffe://${TD}/control-plane/controller`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;

let root: string;
let ca: CaProcess;
let cp: CpProcess;
let admin: Credential & { bundlePem: string };

const caCall = (path: string, body?: unknown): Promise<Reply> => request(ca.url, { path, trust: admin.bundlePem, trustDomain: TD, cred: admin, ...(body !== undefined && { body }) });
const cpCall = (path: string, o: { method?: string; raw?: string; type?: string } = {}): Promise<Reply> =>
  request(cp.url, {
    path,
    trust: admin.bundlePem,
    trustDomain: TD,
    cred: admin,
    serverId: SERVER,
    ...(o.method && { method: o.method }),
    ...(o.raw !== undefined && { raw: o.raw, method: o.method ?? 'POST', headers: { 'content-type': o.type ?? 'application/yaml' } }),
  });

async function ok(r: Promise<Reply>, what: string): Promise<Reply> {
  const reply = await r;
  assert.equal(reply.status, 200, `${what}: ${reply.status} ${reply.text}`);
  return reply;
}

/** Waits (bounded) until `check` returns a truthy value. */

interface Agent {
  node: string;
  client: PushClient;
  cred: Credential;
  errors: string[];
  /** Route names this agent refuses to apply. */
  poison: Set<string>;
  state(type: ResourceType): ReadonlyMap<string, Resource>;
}

const agents = new Map<string, Agent>();

async function joinAgent(node: string): Promise<Agent> {
  const token = (await ok(caCall('/v1/admin/tokens', { node }), 'token')).json.token as string;
  const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/${node}`);
  const joined = await ok(request(ca.url, { path: '/v1/join', trust: admin.bundlePem, trustDomain: TD, body: { token, csr } }), 'join');
  const cred = { certPem: joined.json.svid as string, keyPem };
  const poison = new Set<string>();
  const errors: string[] = [];
  const client = new PushClient({
    url: `${cp.url.replace('https:', 'wss:')}/v1/push`,
    node,
    credential: () => ({ ...cred, bundlePem: admin.bundlePem }),
    heartbeatMs: 300,
    backoff: { initialMs: 50, maxMs: 500 },
    apply: (u: AppliedUpdate) => {
      for (const r of u.upserts) if (r.kind === 'Route' && poison.has(r.metadata.name)) throw new Error(`route ${r.metadata.name}: refused by this agent`);
    },
  });
  client.on('server_error', (e: { code: string; message: string }) => errors.push(`${e.code}: ${e.message}`));
  client.start();
  const agent = { node, client, cred, errors, poison, state: (t: ResourceType) => client.state(t)?.resources ?? new Map() };
  agents.set(node, agent);
  return agent;
}

const names = (m: ReadonlyMap<string, Resource>) => [...m.values()].map((r) => r.metadata.name).sort();

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-cp-push-'));
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  cp = await serveControlPlane(join(root, 'cp'), ca.url, join(root, 'ca', 'admin'), ['--grace', '2s']);
  for (const node of ['vm1', 'vm2', 'vm3']) await joinAgent(node);
  await until('three agents connected', async () => (await cpCall('/v1/agents')).json?.agents?.length === 3);
});

after(async () => {
  for (const a of agents.values()) await a.client.stop();
  await stop(cp?.child);
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

const ROUTE = (name: string, service = 'web') => `apiVersion: amime.dev/v1
kind: Route
metadata:
  name: ${name}
  namespace: shop
spec:
  service: ${service}
  rules:
    - backends:
        - service: ${service}
          weight: 100
`;

/** The agents' status rows from the admin API, by node. */
async function agentRows(): Promise<Map<string, { types: Record<string, { acked?: string; nack?: { version: string; error: string } }> }>> {
  const r = await ok(cpCall('/v1/agents'), 'agents');
  return new Map((r.json.agents as { node: string; types: Record<string, { acked?: string }> }[]).map((a) => [a.node, a]));
}

describe('control plane push, end to end', () => {
  test('every agent gets the CA trust bundle and revocation list on connect', async () => {
    for (const a of agents.values()) {
      const tb = await until(`${a.node} trust bundle`, () => [...a.state('TrustBundle').values()][0] as TrustBundleResource | undefined);
      assert.equal(tb.spec.trustDomain, TD);
      assert.ok(admin.bundlePem.includes(tb.spec.roots[0]!.trim().split('\n')[1]!), 'the pushed root is the CA root');
      await until(`${a.node} revocation list`, () => a.state('RevocationList').size === 1);
    }
  });

  test('apply a Route: every agent ACKs the new version', async () => {
    const applied = await ok(cpCall('/v1/resources', { raw: ROUTE('web-route') }), 'apply');
    assert.equal(applied.json.results[0].action, 'created');
    await until('all agents hold web-route', () => [...agents.values()].every((a) => names(a.state('Route')).includes('web-route')));
    const status = await ok(cpCall('/v1/status'), 'status');
    const version = status.json.versions.Route as string;
    await until('all agents ACKed', async () => [...(await agentRows()).values()].every((row) => row.types['Route']?.acked === version));
    assert.ok((await metric(cp.metricsUrl, 'amime_cp_acks_total', 'type="Route"'))! >= 3);
    assert.ok((await metric(cp.metricsUrl, 'amime_cp_push_latency_seconds_count', 'type="Route"'))! >= 3);
    assert.equal(await metric(cp.metricsUrl, 'amime_cp_agents_connected'), 3);
  });

  test('a NACKed push leaves that agent on its previous version, visible in /v1/agents, metrics and meshctl', async () => {
    const vm3 = agents.get('vm3')!;
    vm3.poison.add('poison');
    const before = (await agentRows()).get('vm3')!.types['Route']!.acked;
    const nacksBefore = (await metric(cp.metricsUrl, 'amime_cp_nacks_total', 'type="Route"')) ?? 0;
    await ok(cpCall('/v1/resources', { raw: ROUTE('poison') }), 'apply poison');
    await until('vm1 and vm2 hold poison', () => ['vm1', 'vm2'].every((n) => names(agents.get(n)!.state('Route')).includes('poison')));
    const row = await until('vm3 NACK recorded', async () => (await agentRows()).get('vm3')!.types['Route']?.nack && (await agentRows()).get('vm3')!);
    assert.equal(row.types['Route']!.acked, before, 'vm3 stays on its previous version');
    assert.match(row.types['Route']!.nack!.error, /route poison: refused by this agent/);
    assert.ok(!names(vm3.state('Route')).includes('poison'));
    assert.equal(await metric(cp.metricsUrl, 'amime_cp_nacks_total', 'type="Route"'), nacksBefore + 1);
    // Asynchronously: a blocked event loop here would silence the agents' heartbeats.
    const meshctl = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(workspace, 'apps/meshctl/src/main.ts'), 'agents', '--credentials', join(root, 'ca', 'admin')], {
      cwd: workspace,
      encoding: 'utf8',
      env: { ...process.env, AMIME_CONTROL_PLANE_URL: cp.url },
    });
    assert.match(meshctl.stdout, /vm3 +Route .*nacked|NACK errors/);
    assert.match(meshctl.stdout, /vm3 Route \S+: route poison: refused by this agent/);
    // The fix arrives as the next change; vm3 takes it.
    vm3.poison.clear();
    await ok(cpCall('/v1/resources/Route/shop/poison', { method: 'DELETE' }), 'delete poison');
    await until('every agent without poison', () => [...agents.values()].every((a) => !names(a.state('Route')).includes('poison')));
    await until('vm3 ACKs again', async () => (await agentRows()).get('vm3')!.types['Route']?.nack === undefined);
  });

  test('registration: an assigned identity becomes an Endpoint on every agent; an unassigned one is refused and changes nothing', async () => {
    await ok(caCall('/v1/admin/assignments', { node: 'vm1', spiffeId: WEB }), 'assign');
    agents.get('vm1')!.client.register([{ service: 'web', namespace: 'shop', identity: WEB, address: '127.0.0.1', port: 18080, zone: 'z1', health: 'healthy' }]);
    const ep = await until('vm2 sees the web endpoint', () => [...agents.get('vm2')!.state('Endpoint').values()][0] as EndpointResource | undefined);
    assert.equal(ep.spec.node, 'vm1');
    assert.equal(ep.spec.health, 'healthy');
    assert.equal(ep.spec.zone, 'z1');
    agents.get('vm2')!.client.register([{ service: 'db', namespace: 'shop', identity: DB, address: '127.0.0.1', port: 15432, health: 'healthy' }]);
    await until('vm2 told it was refused', () => agents.get('vm2')!.errors.some((e) => /registration_refused: .*sa\/db is not assigned to node vm2/.test(e)));
    await sleep(300);
    assert.equal(agents.get('vm3')!.state('Endpoint').size, 1, 'no endpoint for the refused instance');
  });

  test('bad input is refused with a clear error; the process stays up and nothing stored changes', async () => {
    const versionBefore = (await ok(cpCall('/v1/status'), 'status')).json.versions.Route;
    const bad = await cpCall('/v1/resources', { raw: ROUTE('bad').replace('weight: 100', 'weight: 500') });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /spec\.rules\[0\]\.backends\[0\]\.weight/);
    const dry = await ok(cpCall('/v1/resources?dryRun=true', { raw: ROUTE('dry') }), 'dry run');
    assert.equal(dry.json.results[0].action, 'created');
    // Raw frames from a real agent certificate: malformed, unknown, oversized.
    const vm2 = agents.get('vm2')!;
    const ws = new WebSocket(`${cp.url.replace('https:', 'wss:')}/v1/push`, { ca: admin.bundlePem, cert: vm2.cred.certPem, key: vm2.cred.keyPem, checkServerIdentity: (() => undefined) as never });
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(String(d)));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('{nope');
    ws.send(JSON.stringify({ type: 'gossip' }));
    await until('two errors', () => frames.length >= 2);
    assert.match(frames[0]!, /malformed_json/);
    assert.match(frames[1]!, /unknown_message_type/);
    const closed = new Promise<number>((resolve) => ws.on('close', resolve));
    ws.send('x'.repeat(200 * 1024));
    assert.equal(await closed, 1009);
    assert.equal(cp.alive(), true);
    assert.equal((await ok(cpCall('/v1/status'), 'status')).json.versions.Route, versionBefore);
    assert.equal((await cpCall('/v1/resources/Route/shop/dry')).status, 404);
  });

  test('a silent agent: its endpoints turn unhealthy after the heartbeat TTL, then go after the grace period', async () => {
    const vm1 = agents.get('vm1')!;
    await vm1.client.stop();
    const vm2 = agents.get('vm2')!;
    const lapsed = await until('endpoint unhealthy', () => {
      const e = [...vm2.state('Endpoint').values()][0] as EndpointResource | undefined;
      return e?.spec.health === 'unhealthy' && e;
    });
    assert.equal(lapsed.spec.reason, 'heartbeat_lapsed');
    await until('endpoint removed after grace', () => vm2.state('Endpoint').size === 0);
  });

  test('revoking an agent cuts its push session and keeps it out', async () => {
    const vm3 = agents.get('vm3')!;
    let drops = 0;
    vm3.client.on('disconnected', () => drops++);
    await ok(caCall('/v1/admin/revocations', { node: 'vm3' }), 'evict vm3');
    await until('vm3 cut off', () => drops > 0);
    await sleep(1000);
    assert.equal(vm3.client.connected, false);
    const rows = await agentRows();
    assert.equal(rows.has('vm3'), false);
    assert.equal(rows.has('vm2'), true);
  });
});
