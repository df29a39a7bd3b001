// GET /v1/traffic and its WebSocket stream on a real HTTPS server
// (127.0.0.1, port 0) with test SVIDs, fed the way the control plane feeds
// them: reports go through the AnomalyService's rate limit into a
// TrafficView. The client is meshctl's ControlPlaneClient.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { bundleFromPem } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { EmbeddedStore } from '@amime/store';
import { EDGE_LATENCY_BUCKETS, type EdgeCounts, type ReportMessage } from '@amime/protocol';
import { TrafficView, sourceIndex, type TrafficSnapshot } from '@amime/traffic';
import { authenticateAdmin, createAdminHandler } from './admin-api.js';
import { AnomalyService } from './anomaly-service.js';
import { ControlPlaneClient, ControlPlaneClientError } from './client.js';
import { ResourceService } from './resource-service.js';
import { TRAFFIC_STREAM_PATH } from './traffic-api.js';
import { TrafficStream } from './traffic-stream.js';

const TD = 'amime.test';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const root = mkdtempSync(join(tmpdir(), 'amime-traffic-api-'));
let pki: TestPki;
let certs: Record<'server' | 'admin' | 'agent', TestCert>;
let n = 0;

interface Served {
  url: string;
  anomalies: AnomalyService;
  traffic: TrafficView;
  stream: TrafficStream;
  /** The view's clock, in ms past 2026-01-01. */
  clock: { ms: number };
  close(): Promise<void>;
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

async function serve(streamIntervalMs = 1000): Promise<Served> {
  const store = await EmbeddedStore.open(join(root, `store-${n++}`));
  const bundle = bundleFromPem(pki.root.pem, TD);
  const trust = () => ({ bundle });
  const clock = { ms: 0 };
  const traffic = new TrafficView({ now: () => T0 + clock.ms, resolveSource: sourceIndex([{ identity: WEB, namespace: 'shop', service: 'web' }]) });
  const anomalies = await AnomalyService.open({
    store,
    resolveSourceNode: () => 'vm-a',
    settings: { learningWindowMs: 0, reportIntervalMs: 10_000 },
    now: () => T0 + clock.ms,
    onReport: (node, r) => traffic.ingest(node, r),
  });
  const handler = createAdminHandler({ resources: new ResourceService(store), trust, trustDomain: TD, agents: () => [], status: () => ({}), anomalies, traffic });
  const server = https.createServer(
    { cert: toPemChain([certs.server, pki.intermediate]), key: certs.server.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false },
    handler,
  );
  const stream = new TrafficStream({ authenticate: (socket) => authenticateAdmin(socket, { trust, trustDomain: TD }), view: traffic, intervalMs: streamIntervalMs });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '').split('?')[0] === TRAFFIC_STREAM_PATH) stream.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    anomalies,
    traffic,
    stream,
    clock,
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
  new ControlPlaneClient({ url: s.url, bundlePem: pki.root.pem, credential: { certPem: toPemChain([as, pki.intermediate]), keyPem: as.key.privateKeyPem }, trustDomain: TD });

function request(s: Served, path: string, as: TestCert | null = certs.admin, method = 'GET'): Promise<{ status: number; body: { error?: { code: string; reason: string; message: string } } & Record<string, unknown> }> {
  const url = new URL(s.url);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: url.hostname, port: url.port, method, path, agent: false, rejectUnauthorized: false, ...(as ? { cert: toPemChain([as, pki.intermediate]), key: as.key.privateKeyPem } : {}) });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }));
    });
    req.end();
  });
}

/** The HTTP status a WebSocket upgrade to `path` is refused with (0: it was accepted). */
function upgradeStatus(s: Served, path: string, as: TestCert | null = certs.admin): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${new URL(s.url).port}${path}`, { rejectUnauthorized: false, ...(as ? { cert: toPemChain([as, pki.intermediate]), key: as.key.privateKeyPem } : {}) });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 0, body: '' });
    });
    ws.on('error', () => undefined);
  });
}

const latency = (counts: Record<number, number>) => {
  const h = new Array<number>(EDGE_LATENCY_BUCKETS).fill(0);
  for (const [i, c] of Object.entries(counts)) h[Number(i)] = c;
  return h;
};
const edge = (counts: Partial<EdgeCounts> = {}): EdgeCounts => ({ source: WEB, service: 'catalog', namespace: 'shop', peerAddress: '10.0.0.1', requests: 0, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0, ...counts });
const report = (seq: number, edges: EdgeCounts[]): ReportMessage => ({ type: 'report', seq, intervalMs: 10_000, edges });

before(async () => {
  pki = await createTestPki(TD);
  certs = { server: await pki.leaf('/control-plane/controller'), admin: await pki.leaf('/admin/operator'), agent: await pki.leaf('/agent/vm-a') };
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('traffic API', () => {
  test('refused without an admin credential: the route and the stream', async () => {
    const s = await serve();
    try {
      for (const path of ['/v1/traffic', '/v1/traffic?window=60']) {
        const none = await request(s, path, null);
        assert.equal(none.status, 401);
        assert.equal(none.body.error?.code, 'AMIME_ERR_CP_UNAUTHENTICATED');
        const agent = await request(s, path, certs.agent);
        assert.equal(agent.status, 403);
        assert.equal(agent.body.error?.reason, 'not_admin');
      }
      assert.equal((await upgradeStatus(s, TRAFFIC_STREAM_PATH, null)).status, 401);
      const refused = await client(s, certs.agent)
        .watchTraffic(() => undefined)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(refused instanceof ControlPlaneClientError);
      assert.equal(refused.status, 403);
      assert.equal(refused.reason, 'not_admin');
      assert.equal(s.stream.size, 0);
      const plain = await request(s, TRAFFIC_STREAM_PATH);
      assert.equal(plain.status, 400);
      assert.equal(plain.body.error?.reason, 'websocket_required');
      assert.equal((await request(s, '/v1/traffic', certs.admin, 'POST')).status, 405);
    } finally {
      await s.close();
    }
  });

  test('a bad window or an unknown parameter is a 400 that says what to give, on the route and on the stream', async () => {
    const s = await serve();
    const c = client(s);
    try {
      for (const q of ['window=9', 'window=3601', 'window=abc', 'window=', 'window=60&window=60', 'window=1e2', 'window=-10', 'window=60.5', `window=${'9'.repeat(400)}`]) {
        const r = await request(s, `/v1/traffic?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error?.reason, 'bad_query', q);
        assert.match(r.body.error!.message, /window: give it once, as whole seconds from 10 to 3600/, q);
        const up = await upgradeStatus(s, `${TRAFFIC_STREAM_PATH}?${q}`);
        assert.equal(up.status, 400, `stream ${q}`);
        assert.match(up.body, /window: give it once/);
      }
      const unknown = await request(s, '/v1/traffic?since=1h');
      assert.equal(unknown.status, 400);
      assert.match(unknown.body.error!.message, /unknown query parameter "since"/);
      assert.equal((await upgradeStatus(s, `${TRAFFIC_STREAM_PATH}?since=1h`)).status, 400);
      assert.equal(s.stream.size, 0);
      const viaClient = await c.traffic(5).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(viaClient instanceof ControlPlaneClientError);
      assert.equal(viaClient.status, 400);
      // the control plane is still up and answers
      assert.equal((await c.traffic(10)).windowSeconds, 10);
    } finally {
      c.close();
      await s.close();
    }
  });

  test('reports past the rate limit become edges with the contract field names', async () => {
    const s = await serve();
    const c = client(s);
    try {
      assert.deepEqual(await c.traffic(), { windowSeconds: 60, generatedAt: '2026-01-01T00:00:00.000Z', edges: [] });
      s.clock.ms = 10_000;
      s.anomalies.report('vm2', report(1, [edge({ requests: 100, errors: 5, denials: 2, bytesIn: 300, bytesOut: 900, latency: latency({ 2: 60, 4: 40 }) })]));
      // the same node again 1 s later, a new interval: refused by the report gate (sooner than half an interval)
      s.clock.ms = 11_000;
      s.anomalies.report('vm2', report(2, [edge({ requests: 1_000_000 })]));
      s.clock.ms = 20_000;
      const got = await c.traffic();
      // one slot from 0 to 10 s; covered 20 s: 100/20 = 5 rps. p50 rank 50 in 2..5 (60): 2 + 3 × 50/60 = 4.5;
      // p99 rank 99: past 60, in 10..25 (40): 10 + 15 × 39/40 = 24.625
      assert.deepEqual(got, {
        windowSeconds: 60,
        generatedAt: '2026-01-01T00:00:20.000Z',
        edges: [
          {
            source: { identity: WEB, namespace: 'shop', service: 'web' },
            destination: { namespace: 'shop', service: 'catalog' },
            requests: 100,
            rps: 5,
            errors: 5,
            errorRate: 0.05,
            denials: 2,
            denialRate: 0.02,
            p50Ms: 4.5,
            p99Ms: 24.625,
            bytesIn: 300,
            bytesOut: 900,
            mtls: true,
            nodes: ['vm2'],
            lastSeen: '2026-01-01T00:00:10.000Z',
          },
        ],
      });
      // a 10 s window at 20 s ends after the report at 10 s
      assert.deepEqual((await c.traffic(10)).edges, []);
    } finally {
      c.close();
      await s.close();
    }
  });

  test('the stream: a first frame at once, then one per change, at most once per interval', async () => {
    const s = await serve(300);
    const c = client(s);
    const frames: { at: number; snap: TrafficSnapshot }[] = [];
    const ac = new AbortController();
    try {
      const watching = c.watchTraffic((snap) => frames.push({ at: Date.now(), snap }), { windowSeconds: 30, signal: ac.signal });
      for (let i = 0; i < 200 && frames.length === 0; i++) await sleep(10);
      assert.equal(frames.length, 1, 'the first frame comes at once');
      assert.deepEqual([frames[0]!.snap.windowSeconds, frames[0]!.snap.edges], [30, []]);
      // nothing changes: nothing more is sent
      await sleep(700);
      assert.equal(frames.length, 1);
      // ten changes within ~200 ms
      for (let i = 0; i < 10; i++) {
        s.traffic.ingest('vm2', { seq: i, intervalMs: 10_000, edges: [edge({ requests: 1 })] });
        await sleep(20);
      }
      for (let i = 0; i < 200 && frames.at(-1)!.snap.edges[0]?.requests !== 10; i++) await sleep(10);
      assert.equal(frames.at(-1)!.snap.edges[0]!.requests, 10);
      assert.ok(frames.length <= 3, `${frames.length} frames for 10 changes in 200 ms`);
      for (let i = 1; i < frames.length; i++) assert.ok(frames[i]!.at - frames[i - 1]!.at >= 200, `frames ${frames[i]!.at - frames[i - 1]!.at} ms apart`);
      ac.abort();
      await watching;
      for (let i = 0; i < 100 && s.stream.size > 0; i++) await sleep(10);
      assert.equal(s.stream.size, 0);
    } finally {
      ac.abort();
      c.close();
      await s.close();
    }
  });

  test('a client that does not read is cut off instead of buffered for', async () => {
    const s = await serve(50);
    try {
      // ~10 000 edges: each frame is megabytes
      for (let seq = 0; seq < 5; seq++) {
        s.traffic.ingest('vm2', { seq, intervalMs: 10_000, edges: Array.from({ length: 200 }, (_, i) => edge({ source: `spiffe://${TD}/ns/shop/sa/caller-${seq}-${i}-${'x'.repeat(150)}`, requests: i })) });
      }
      const ws = new WebSocket(`wss://127.0.0.1:${new URL(s.url).port}${TRAFFIC_STREAM_PATH}`, { rejectUnauthorized: false, cert: toPemChain([certs.admin, pki.intermediate]), key: certs.admin.key.privateKeyPem, maxPayload: 64 << 20 });
      const closed = new Promise<void>((r) => ws.on('close', () => r()));
      ws.on('error', () => undefined);
      await new Promise<void>((r) => ws.on('open', () => r()));
      // stop reading: the kernel buffers fill, then the server's
      (ws as unknown as { _socket: Duplex })._socket.pause();
      for (let i = 0; i < 300 && s.stream.size > 0; i++) {
        s.traffic.ingest('vm2', { seq: 100 + i, intervalMs: 10_000, edges: [edge({ requests: 1 })] });
        await sleep(50);
      }
      assert.equal(s.stream.size, 0, 'the slow client was dropped');
      (ws as unknown as { _socket: Duplex })._socket.resume();
      await closed;
    } finally {
      await s.close();
    }
  });
});
