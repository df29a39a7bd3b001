// The access log writes one JSON line per record; no value can forge a line or a field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAccessLog, type AccessRecord } from './access-log.js';

const base: AccessRecord = {
  protocol: 'http',
  direction: 'inbound',
  service: 'shop/catalog',
  source: 'spiffe://td/ns/shop/sa/web',
  destination: 'spiffe://td/ns/shop/sa/catalog',
  requestId: 'r-1',
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  parentSpanId: undefined,
  method: 'GET',
  path: '/items',
  status: 200,
  durationMs: 1.23456,
  bytesReceived: 10,
  bytesSent: 20,
};

test('one JSON line per record with the fields an operator greps for; hostile values stay inside their field', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-access-'));
  try {
    const file = join(dir, 'logs', 'access.log');
    const log = await openAccessLog(file);
    log.log(base);
    const forged = '/x\n{"kind":"access","status":200,"forged":true}\r\n\u2028"},"status":1,"x":"\\';
    log.log({ ...base, path: forged, requestId: 'id"\n{}', method: 'G\nET', error: 'e\u0000', status: 403 });
    log.log({ ...base, path: 'p'.repeat(10_000) });
    await log.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.at(-1), '', 'ends with a newline');
    assert.equal(lines.length, 4, 'three records, three lines');
    const [a, b, c] = lines.slice(0, 3).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      [a!['kind'], a!['direction'], a!['request_id'], a!['trace_id'], a!['span_id'], a!['source'], a!['destination'], a!['service'], a!['status'], a!['duration_ms'], a!['bytes_received'], a!['bytes_sent']],
      ['access', 'inbound', 'r-1', base.traceId, base.spanId, base.source, base.destination, 'shop/catalog', 200, 1.235, 10, 20],
    );
    assert.match(String(a!['time']), /^\d{4}-\d\d-\d\dT/);
    assert.equal(b!['path'], forged, 'the hostile path round-trips as one value');
    assert.equal(b!['forged'], undefined);
    assert.equal(b!['status'], 403);
    assert.equal(b!['request_id'], 'id"\n{}');
    assert.ok(String(c!['path']).length < 2100, 'long values are clipped');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
