import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createAgentMetrics } from './agent-metrics.js';
import { RequestRecorder, codeClass } from './request-recorder.js';

const sources = { controlPlaneConnected: () => true, versions: () => ({}), certificates: () => [] };

async function values(name: string, m = createAgentMetrics(sources)) {
  const json = await m.registry.getSingleMetric(name)!.get();
  // Histogram values also name their series (_bucket, _sum, _count).
  return json.values as (typeof json.values[number] & { metricName?: string })[];
}

describe('codeClass', () => {
  const cases: [number, string][] = [
    [100, '1xx'],
    [200, '2xx'],
    [204, '2xx'],
    [301, '3xx'],
    [404, '4xx'],
    [499, '4xx'],
    [500, '5xx'],
    [599, '5xx'],
    [0, 'other'],
    [99, 'other'],
    [600, 'other'],
    [-1, 'other'],
    [200.5, 'other'],
    [Number.NaN, 'other'],
  ];
  for (const [status, want] of cases) {
    test(`${status} → ${want}`, () => assert.equal(codeClass(status), want));
  }
});

describe('RequestRecorder', () => {
  test('counts by direction, service, source, destination, code and class; durations in seconds by service', async () => {
    const m = createAgentMetrics(sources);
    const r = new RequestRecorder(m, 'outbound');
    r.record('shop/catalog', 'spiffe://td/ns/shop/sa/web', 200, 12, 'spiffe://td/ns/shop/sa/catalog');
    r.record('shop/catalog', 'spiffe://td/ns/shop/sa/web', 200, 8, 'spiffe://td/ns/shop/sa/catalog');
    r.record('shop/catalog', 'spiffe://td/ns/shop/sa/web', 503, 1500, 'spiffe://td/ns/shop/sa/catalog');
    const counts = (await values('amime_agent_requests_total', m)).map((v) => [v.labels, v.value]);
    assert.deepEqual(counts, [
      [{ direction: 'outbound', service: 'shop/catalog', source: 'spiffe://td/ns/shop/sa/web', destination: 'spiffe://td/ns/shop/sa/catalog', code: '200', class: '2xx' }, 2],
      [{ direction: 'outbound', service: 'shop/catalog', source: 'spiffe://td/ns/shop/sa/web', destination: 'spiffe://td/ns/shop/sa/catalog', code: '503', class: '5xx' }, 1],
    ]);
    const durations = await values('amime_agent_request_duration_seconds', m);
    const count = durations.find((v) => v.metricName === 'amime_agent_request_duration_seconds_count');
    const sum = durations.find((v) => v.metricName === 'amime_agent_request_duration_seconds_sum');
    assert.deepEqual(count?.labels, { direction: 'outbound', service: 'shop/catalog' });
    assert.equal(count?.value, 3);
    assert.ok(Math.abs(sum!.value - 1.52) < 1e-9, `sum ${sum?.value}`);
    const le10ms = durations.find((v) => v.metricName === 'amime_agent_request_duration_seconds_bucket' && v.labels['le'] === 0.01);
    assert.equal(le10ms?.value, 1);
  });

  test('the destination is part of the key: two destinations of one service are two series', async () => {
    const m = createAgentMetrics(sources);
    const r = new RequestRecorder(m, 'outbound');
    r.record('shop/catalog', 'web', 200, 1, 'catalog-v1');
    r.record('shop/catalog', 'web', 200, 1, 'catalog-v2');
    r.record('shop/catalog', 'web', 200, 1, 'catalog-v1');
    const counts = (await values('amime_agent_requests_total', m)).map((v) => [v.labels['destination'], v.value]);
    assert.deepEqual(counts, [
      ['catalog-v1', 2],
      ['catalog-v2', 1],
    ]);
  });

  test('without a destination the label is empty (callers that do not know it yet)', async () => {
    const m = createAgentMetrics(sources);
    new RequestRecorder(m, 'inbound').record('shop/catalog', 'web', 403, 1);
    const [v] = await values('amime_agent_requests_total', m);
    assert.deepEqual(v?.labels, { direction: 'inbound', service: 'shop/catalog', source: 'web', destination: '', code: '403', class: '4xx' });
  });

  test('label children are resolved once per key, not per request', () => {
    let resolved = 0;
    const child = { inc: () => undefined, observe: () => undefined };
    const fake = {
      requests: { labels: () => (resolved++, child) },
      requestDuration: { labels: () => (resolved++, child) },
    } as unknown as ConstructorParameters<typeof RequestRecorder>[0];
    const r = new RequestRecorder(fake, 'inbound');
    for (let i = 0; i < 100; i++) r.record('shop/catalog', 'web', 200, 1, 'catalog');
    assert.equal(resolved, 2);
    r.record('shop/catalog', 'web', 500, 1, 'catalog');
    assert.equal(resolved, 3);
  });
});
