// OTLP/HTTP JSON export: batches reach the collector in the OTLP shape with the
// propagated ids; a dead collector drops batches without blocking; the queue is bounded.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { OtlpExporter, spanOf } from './otlp.js';
import type { AccessRecord } from './access-log.js';

const servers: http.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function collector(): Promise<{ url: string; bodies: unknown[]; paths: string[] }> {
  const bodies: unknown[] = [];
  const paths: string[] = [];
  const s = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      paths.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      bodies.push(JSON.parse(text));
      res.end('{}');
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, bodies, paths };
}

const rec: AccessRecord = {
  protocol: 'http',
  direction: 'outbound',
  service: 'shop/catalog',
  source: 'spiffe://td/ns/shop/sa/web',
  destination: 'spiffe://td/ns/shop/sa/catalog',
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '1111111111111111',
  parentSpanId: '00f067aa0ba902b7',
  sampled: true,
  method: 'GET',
  path: '/items',
  status: 200,
  durationMs: 12.5,
  bytesReceived: 1,
  bytesSent: 2,
};

test('spans leave in OTLP JSON with the hop ids, kinds and attributes', async () => {
  const c = await collector();
  const x = new OtlpExporter({ endpoint: `${c.url}/`, resource: { 'service.name': 'amime-agent', 'host.name': 'vm1' } });
  x.add(spanOf(rec, 1_700_000_000_000)!);
  x.add(spanOf({ ...rec, direction: 'inbound', spanId: '2222222222222222', parentSpanId: '1111111111111111', status: 503 }, 1_700_000_000_000)!);
  await x.close();
  assert.deepEqual(c.paths, ['POST /v1/traces application/json']);
  const body = c.bodies[0] as { resourceSpans: { resource: { attributes: unknown[] }; scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
  assert.deepEqual(body.resourceSpans[0]!.resource.attributes, [
    { key: 'service.name', value: { stringValue: 'amime-agent' } },
    { key: 'host.name', value: { stringValue: 'vm1' } },
  ]);
  const [client, server] = body.resourceSpans[0]!.scopeSpans[0]!.spans;
  assert.deepEqual([client!['traceId'], client!['spanId'], client!['parentSpanId'], client!['kind'], client!['name']], [rec.traceId, '1111111111111111', '00f067aa0ba902b7', 3, 'GET shop/catalog']);
  assert.deepEqual([client!['startTimeUnixNano'], client!['endTimeUnixNano']], ['1699999999987500000', '1700000000000000000']);
  assert.deepEqual(client!['status'], { code: 0 });
  assert.deepEqual([server!['kind'], server!['parentSpanId'], server!['status']], [2, '1111111111111111', { code: 2 }]);
  const attrs = new Map((client!['attributes'] as { key: string; value: unknown }[]).map((a) => [a.key, a.value]));
  assert.deepEqual(attrs.get('http.response.status_code'), { intValue: '200' });
  assert.deepEqual(attrs.get('amime.source'), { stringValue: rec.source });
  assert.equal(attrs.has('amime.error'), false, 'undefined attributes are left out');
  assert.deepEqual(x.stats, { exported: 2, dropped: 0, failedBatches: 0 });
});

test('unsampled traces and TCP streams make no span', () => {
  assert.equal(spanOf({ ...rec, sampled: false }), undefined);
  assert.equal(spanOf({ ...rec, protocol: 'tcp' }), undefined);
});

test('a dead collector: batches are dropped and counted; the queue stays bounded', async () => {
  const dead = http.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const port = (dead.address() as AddressInfo).port;
  await new Promise((r) => dead.close(r));
  const x = new OtlpExporter({ endpoint: `http://127.0.0.1:${port}`, resource: {}, maxQueue: 10, batchSize: 1000, flushIntervalMs: 60_000 });
  for (let i = 0; i < 25; i++) x.add(spanOf(rec)!);
  await x.close();
  assert.deepEqual(x.stats, { exported: 0, dropped: 25, failedBatches: 1 });
  assert.throws(() => new OtlpExporter({ endpoint: 'ftp://x', resource: {} }), /http\(s\)/);
});
