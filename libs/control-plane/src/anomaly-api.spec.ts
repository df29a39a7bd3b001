// The anomaly routes of the admin API and their WebSocket stream, on a real
// HTTPS server (127.0.0.1, port 0) with test SVIDs, over an AnomalyService
// fed with agents' reports; the client is meshctl's AnomalyClient.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { bundleFromPem } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { EmbeddedStore } from '@amime/store';
import type { EdgeCounts, ReportMessage } from '@amime/protocol';
import type { Finding } from '@amime/monitor';
import { authenticateAdmin, createAdminHandler } from './admin-api.js';
import { AnomalyClient } from './anomaly-client.js';
import { ACCEPTED_EDGES_PREFIX, AnomalyService } from './anomaly-service.js';
import { ANOMALY_STREAM_PATH, AnomalyStream } from './anomaly-stream.js';
import { ControlPlaneClientError } from './client.js';
import { ResourceService } from './resource-service.js';

const TD = 'amime.test';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const root = mkdtempSync(join(tmpdir(), 'amime-anomaly-api-'));
let pki: TestPki;
let certs: Record<'server' | 'admin' | 'agent', TestCert>;
let n = 0;

interface Served {
  url: string;
  store: EmbeddedStore;
  anomalies: AnomalyService;
  stream: AnomalyStream;
  dir: string;
  close(): Promise<void>;
}

async function serve(dir = join(root, `store-${n++}`)): Promise<Served> {
  const store = await EmbeddedStore.open(dir);
  const bundle = bundleFromPem(pki.root.pem, TD);
  const trust = () => ({ bundle });
  const anomalies = await AnomalyService.open({
    store,
    resolveSourceNode: (ip) => (ip === '10.0.0.1' ? 'vm-a' : `unknown:${ip}`),
    assigned: (node, id) => node === 'vm-a' && id === WEB,
    settings: { learningWindowMs: 0, reportIntervalMs: 1000 },
  });
  const handler = createAdminHandler({
    resources: new ResourceService(store),
    trust,
    trustDomain: TD,
    agents: () => [],
    status: () => ({}),
    anomalies,
  });
  const server = https.createServer(
    { cert: toPemChain([certs.server, pki.intermediate]), key: certs.server.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false },
    handler,
  );
  const stream = new AnomalyStream({ authenticate: (socket) => authenticateAdmin(socket, { trust, trustDomain: TD }), subscribe: (fn) => anomalies.subscribe(fn) });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url === ANOMALY_STREAM_PATH) stream.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    store,
    anomalies,
    stream,
    dir,
    close: async () => {
      stream.close();
      anomalies.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await store.close();
    },
  };
}

const client = (s: Served, as: TestCert = certs.admin) =>
  new AnomalyClient({ url: s.url, bundlePem: pki.root.pem, credential: { certPem: toPemChain([as, pki.intermediate]), keyPem: as.key.privateKeyPem }, trustDomain: TD });

/** A raw request (optionally without a client certificate). */
function request(s: Served, method: string, path: string, opts: { as?: TestCert | null; body?: string; type?: string } = {}): Promise<{ status: number; body: { error?: { code: string; reason: string; message: string } } & Record<string, unknown> }> {
  const as = opts.as === undefined ? certs.admin : opts.as;
  const url = new URL(s.url);
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: url.hostname,
      port: url.port,
      method,
      path,
      agent: false,
      rejectUnauthorized: false,
      ...(as ? { cert: toPemChain([as, pki.intermediate]), key: as.key.privateKeyPem } : {}),
      headers: opts.body !== undefined ? { 'content-type': opts.type ?? 'application/json' } : {},
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }));
    });
    req.end(opts.body);
  });
}

const edge = (source: string, service: string, counts: Partial<EdgeCounts> = {}): EdgeCounts => ({
  source,
  service,
  namespace: 'shop',
  peerAddress: '10.0.0.1',
  requests: 10,
  errors: 0,
  denials: 0,
  bytesIn: 0,
  bytesOut: 0,
  ...counts,
});
const report = (seq: number, edges: EdgeCounts[]): ReportMessage => ({ type: 'report', seq, intervalMs: 1000, edges });

before(async () => {
  pki = await createTestPki(TD);
  certs = { server: await pki.leaf('/control-plane/controller'), admin: await pki.leaf('/admin/operator'), agent: await pki.leaf('/agent/vm-a') };
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('anomaly API', () => {
  test('refused without an admin credential: routes and stream', async () => {
    const s = await serve();
    try {
      for (const [method, path] of [
        ['GET', '/v1/anomalies'],
        ['POST', '/v1/anomalies/accept'],
      ] as const) {
        const none = await request(s, method, path, { as: null });
        assert.equal(none.status, 401);
        assert.equal(none.body.error?.code, 'AMIME_ERR_CP_UNAUTHENTICATED');
        const agent = await request(s, method, path, { as: certs.agent });
        assert.equal(agent.status, 403);
        assert.equal(agent.body.error?.reason, 'not_admin');
      }
      const refused = await client(s, certs.agent)
        .watch(() => undefined)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(refused instanceof ControlPlaneClientError);
      assert.equal(refused.status, 403);
      assert.equal(refused.reason, 'not_admin');
      // no client certificate at all
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(`wss://127.0.0.1:${new URL(s.url).port}${ANOMALY_STREAM_PATH}`, { rejectUnauthorized: false });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => undefined);
      });
      assert.equal(status, 401);
      assert.equal(s.stream.size, 0);
      const plain = await request(s, 'GET', ANOMALY_STREAM_PATH);
      assert.equal(plain.body.error?.reason, 'websocket_required');
    } finally {
      await s.close();
    }
  });

  test('a report that departs from the pattern becomes a finding on the stream and in the list', async () => {
    const s = await serve();
    const c = client(s);
    try {
      const received: Finding[] = [];
      const ac = new AbortController();
      let got!: () => void;
      const first = new Promise<void>((r) => (got = r));
      const watching = c.watch((f) => {
        received.push(f);
        got();
      }, ac.signal);
      // wait for the stream to be open
      for (let i = 0; i < 100 && s.stream.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.stream.size, 1);
      const before = Date.now();
      s.anomalies.report('vm-b', report(1, [edge(WEB, 'api')]));
      await first;
      ac.abort();
      await watching;
      assert.equal(received.length, 1);
      assert.equal(received[0]!.kind, 'new_edge');
      assert.deepEqual(received[0]!.edge, { source: WEB, service: 'api', namespace: 'shop', sourceNode: 'vm-a' });

      const list = await c.list();
      assert.deepEqual(list.items.map((f) => f.id), [received[0]!.id]);
      assert.equal(list.monitor['edges'], 1);
      assert.deepEqual((await c.list({ since: new Date(before + 60_000).toISOString() })).items, []);
      assert.equal((await c.list({ since: String(before - 1000), limit: 1 })).items.length, 1);
      const bad = await request(s, 'GET', '/v1/anomalies?since=yesterday');
      assert.equal(bad.body.error?.reason, 'bad_query');
      const unknown = await request(s, 'GET', '/v1/anomalies?kind=new_edge');
      assert.equal(unknown.body.error?.reason, 'bad_query');

      // a second report inside half an interval is dropped by the rate limit
      s.anomalies.report('vm-b', report(2, [edge(WEB, 'payments')]));
      assert.equal((await c.list()).items.length, 1);
    } finally {
      c.close();
      await s.close();
    }
  });

  test('accepting an edge is stored, survives a restart, and stops new_edge for it', async () => {
    const s = await serve();
    const c = client(s);
    const key = { source: WEB, service: 'api', namespace: 'shop' };
    try {
      const r = await c.accept(key);
      assert.deepEqual(r, { edge: key, changed: true });
      assert.equal((await c.accept(key)).changed, false);
      const stored = await s.store.list(ACCEPTED_EDGES_PREFIX);
      assert.equal(stored.length, 1);
      assert.equal(stored[0]!.value['acceptedBy'], `spiffe://${TD}/admin/operator`);
      const invalid = await request(s, 'POST', '/v1/anomalies/accept', { body: JSON.stringify({ source: 'web', service: 'API', namespace: 'shop' }) });
      assert.equal(invalid.status, 400);
      assert.match(invalid.body.error!.message, /source/);
      assert.match(invalid.body.error!.message, /service/);
      const yaml = await request(s, 'POST', '/v1/anomalies/accept', { body: 'source: x', type: 'application/yaml' });
      assert.equal(yaml.status, 415);
    } finally {
      c.close();
      await s.close();
    }
    const again = await serve(s.dir);
    try {
      assert.equal(again.anomalies.monitor.isAccepted(key), true);
      again.anomalies.report('vm-b', report(1, [edge(WEB, 'api')]));
      assert.deepEqual(again.anomalies.list(), []);
    } finally {
      await again.close();
    }
  });
});
