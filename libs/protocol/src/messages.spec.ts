import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeClientMessage,
  decodeServerMessage,
  encodeMessage,
  type ClientMessage,
  type DecodeResult,
  type ServerMessage,
} from './messages.js';

const route = {
  apiVersion: 'amime.dev/v1',
  kind: 'Route',
  metadata: { name: 'web', namespace: 'shop', version: '12' },
  spec: { service: 'web', rules: [{ backends: [{ service: 'web', weight: 100 }] }] },
} as const;

const endpoint = {
  apiVersion: 'amime.dev/v1',
  kind: 'Endpoint',
  metadata: { name: 'web-vm1', namespace: 'shop', version: '13' },
  spec: { service: 'web', node: 'vm1', address: '::1', port: 4143, identity: 'spiffe://example.org/ns/shop/sa/web', weight: 100, health: 'healthy' },
} as const;

const clientMessages: ClientMessage[] = [
  { type: 'hello', node: 'vm1', protocol: 1, versions: { Route: '12', TrustBundle: '3' } },
  { type: 'hello', node: 'vm2', protocol: 1, versions: {}, subscribe: ['Route', 'Endpoint'] },
  { type: 'hello', node: 'vm3', protocol: 1, versions: {}, metrics: '10.0.0.3:15000' },
  { type: 'hello', node: 'vm4', protocol: 1, versions: {}, metrics: '[fd00::4]:15000' },
  { type: 'ack', nonce: 'n-1', resourceType: 'Route', version: '12' },
  { type: 'nack', nonce: 'n-2', resourceType: 'AuthorizationPolicy', version: '13', error: 'spec.rules[0]: unknown service' },
  { type: 'register', instances: [{ service: 'web', namespace: 'shop', identity: 'spiffe://example.org/ns/shop/sa/web', address: '10.0.0.2', port: 8080, zone: 'z1', labels: { version: 'v2' }, health: 'unhealthy' }] },
  {
    type: 'report',
    seq: 7,
    intervalMs: 10_000,
    edges: [{ source: 'spiffe://example.org/ns/shop/sa/web', service: 'catalog', namespace: 'shop', peerAddress: '10.0.0.2', requests: 120, errors: 3, denials: 1, bytesIn: 4096, bytesOut: 81920 }],
  },
  { type: 'report', seq: 8, intervalMs: 10_000, edges: [] },
  { type: 'heartbeat' },
];

const serverMessages: ServerMessage[] = [
  { type: 'snapshot', resourceType: 'Route', version: '12', nonce: 'abc', resources: [route as never] },
  { type: 'snapshot', resourceType: 'Endpoint', version: '0', nonce: 'abd', resources: [] },
  { type: 'delta', resourceType: 'Endpoint', version: '13', nonce: 'abe', upserts: [endpoint as never], removals: ['/resources/Endpoint/shop/web-vm2'] },
  { type: 'error', code: 'unknown_message_type', message: 'type must be one of hello, ack' },
  { type: 'heartbeat' },
];

function refused<M>(r: DecodeResult<M>): { code: string; message: string } {
  assert.equal(r.ok, false, `expected refusal, got ${JSON.stringify(r)}`);
  return r as { code: string; message: string };
}

describe('every message type round-trips', () => {
  for (const m of clientMessages) {
    test(`client ${m.type} (string and Buffer)`, () => {
      const text = encodeMessage(m);
      assert.deepEqual(decodeClientMessage(text), { ok: true, message: m });
      assert.deepEqual(decodeClientMessage(Buffer.from(text)), { ok: true, message: m });
    });
  }
  for (const m of serverMessages) {
    test(`server ${m.type}`, () => {
      assert.deepEqual(decodeServerMessage(Buffer.from(encodeMessage(m))), { ok: true, message: m });
    });
  }

  test('register fills defaults for namespace and health', () => {
    const r = decodeClientMessage(JSON.stringify({ type: 'register', instances: [{ service: 'web', identity: 'spiffe://example.org/ns/default/sa/web', address: '127.0.0.1', port: 80 }] }));
    assert.ok(r.ok);
    assert.deepEqual(r.message, { type: 'register', instances: [{ service: 'web', namespace: 'default', identity: 'spiffe://example.org/ns/default/sa/web', address: '127.0.0.1', port: 80, health: 'healthy' }] });
  });
});

describe('bad frames are refused with their code, never thrown', () => {
  const frames: { name: string; raw: string | Buffer; code: string; message?: RegExp; server?: boolean }[] = [
    { name: 'oversized string', raw: JSON.stringify({ type: 'heartbeat', pad: 'x'.repeat(200) }), code: 'too_large', message: /more than the limit of 100/ },
    { name: 'oversized multibyte string', raw: `"${'é'.repeat(60)}"`, code: 'too_large' },
    { name: 'oversized Buffer', raw: Buffer.alloc(101, 0x20), code: 'too_large' },
    { name: 'not JSON', raw: '{"type":', code: 'malformed_json' },
    { name: 'invalid UTF-8', raw: Buffer.from([0x22, 0xff, 0x22]), code: 'malformed_json', message: /UTF-8/ },
    { name: 'JSON array', raw: '[]', code: 'malformed_json' },
    { name: 'JSON null', raw: 'null', code: 'malformed_json' },
    { name: 'missing type', raw: '{}', code: 'unknown_message_type' },
    { name: 'unknown type', raw: '{"type":"subscribe"}', code: 'unknown_message_type', message: /one of hello, ack, nack, register, report, heartbeat, tapEvents, got "subscribe"/ },
    { name: 'server type sent by a client', raw: '{"type":"snapshot"}', code: 'unknown_message_type' },
    { name: 'client type sent by a server', raw: '{"type":"hello"}', code: 'unknown_message_type', server: true },
    { name: 'hello wrong protocol', raw: '{"type":"hello","node":"vm1","protocol":2,"versions":{}}', code: 'invalid_message', message: /hello message: protocol must be 1/ },
    { name: 'hello unknown resource type', raw: '{"type":"hello","node":"vm1","protocol":1,"versions":{"Gateway":"1"}}', code: 'invalid_message', message: /versions.Gateway/ },
    { name: 'hello bad node', raw: '{"type":"hello","node":"VM 1","protocol":1,"versions":{}}', code: 'invalid_message', message: /node must be a DNS-1123 label/ },
    { name: 'ack unknown field', raw: '{"type":"ack","nonce":"n","resourceType":"Route","version":"1","extra":1}', code: 'invalid_message', message: /extra is not a known field/ },
    { name: 'ack missing nonce', raw: '{"type":"ack","resourceType":"Route","version":"1"}', code: 'invalid_message', message: /nonce is required/ },
    { name: 'nack without error', raw: '{"type":"nack","nonce":"n","resourceType":"Route","version":"1"}', code: 'invalid_message', message: /error is required/ },
    { name: 'register bad identity', raw: '{"type":"register","instances":[{"service":"web","identity":"spiffe://x/agent/a","address":"10.0.0.1","port":1}]}', code: 'invalid_message', message: /instances\[0\].identity/ },
    { name: 'hello metrics not host:port', raw: '{"type":"hello","node":"vm1","protocol":1,"versions":{},"metrics":"http://x/metrics"}', code: 'invalid_message', message: /metrics must be host:port/ },
    { name: 'hello metrics port out of range', raw: '{"type":"hello","node":"vm1","protocol":1,"versions":{},"metrics":"10.0.0.1:70000"}', code: 'invalid_message', message: /port 70000 is out of range/ },
    { name: 'report negative count', raw: '{"type":"report","seq":1,"intervalMs":10000,"edges":[{"source":"spiffe://example.org/ns/shop/sa/web","service":"catalog","peerAddress":"10.0.0.2","requests":-1,"errors":0,"denials":0,"bytesIn":0,"bytesOut":0}]}', code: 'invalid_message', message: /edges\[0\].requests/ },
    { name: 'report bad source', raw: '{"type":"report","seq":1,"intervalMs":10000,"edges":[{"source":"web","service":"catalog","peerAddress":"10.0.0.2","requests":1,"errors":0,"denials":0,"bytesIn":0,"bytesOut":0}]}', code: 'invalid_message', message: /edges\[0\].source/ },
    { name: 'report bad peer address', raw: '{"type":"report","seq":1,"intervalMs":10000,"edges":[{"source":"spiffe://example.org/ns/shop/sa/web","service":"catalog","peerAddress":"vm2","requests":1,"errors":0,"denials":0,"bytesIn":0,"bytesOut":0}]}', code: 'invalid_message', message: /edges\[0\].peerAddress/ },
    { name: 'report interval too short', raw: '{"type":"report","seq":1,"intervalMs":10,"edges":[]}', code: 'invalid_message', message: /intervalMs/ },
    { name: 'report too many edges', raw: JSON.stringify({ type: 'report', seq: 1, intervalMs: 10000, edges: Array.from({ length: 201 }, () => ({ source: 'spiffe://example.org/ns/shop/sa/web', service: 'catalog', peerAddress: '10.0.0.2', requests: 1, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0 })) }), code: 'invalid_message', message: /edges/ },
    { name: 'heartbeat with payload', raw: '{"type":"heartbeat","x":1}', code: 'invalid_message', message: /x is not a known field/ },
    { name: 'snapshot of the wrong kind', raw: JSON.stringify({ type: 'snapshot', resourceType: 'Service', version: '1', nonce: 'n', resources: [route] }), code: 'invalid_message', message: /resources\[0\] is a Route, but the frame carries Service/, server: true },
    { name: 'snapshot with an invalid resource', raw: JSON.stringify({ type: 'snapshot', resourceType: 'Route', version: '1', nonce: 'n', resources: [{ ...route, spec: { ...route.spec, rules: [] } }] }), code: 'invalid_message', message: /resources\[0\].spec.rules must not be empty/, server: true },
    { name: 'delta removal of another kind', raw: JSON.stringify({ type: 'delta', resourceType: 'Route', version: '1', nonce: 'n', upserts: [], removals: ['/resources/Service/shop/web'] }), code: 'invalid_message', message: /removals\[0\] is a Service/, server: true },
    { name: 'delta malformed removal key', raw: JSON.stringify({ type: 'delta', resourceType: 'Route', version: '1', nonce: 'n', upserts: [], removals: ['/resources/Route/../x'] }), code: 'invalid_message', message: /removals\[0\] must be a resource key/, server: true },
    { name: 'error with bad code', raw: '{"type":"error","code":"Bad Code","message":"x"}', code: 'invalid_message', message: /code must be an error code/, server: true },
    { name: 'prototype pollution attempt', raw: '{"type":"heartbeat","__proto__":{"polluted":1}}', code: 'invalid_message', message: /__proto__ is not a known field/ },
  ];
  for (const f of frames) {
    test(`${f.name} → ${f.code}`, () => {
      const opts = { maxBytes: f.code === 'too_large' ? 100 : 1 << 20 };
      const r = f.server ? refused(decodeServerMessage(f.raw, opts)) : refused(decodeClientMessage(f.raw, opts));
      assert.equal(r.code, f.code, r.message);
      if (f.message) assert.match(r.message, f.message);
    });
  }

  test('schema failures carry every issue with its path', () => {
    const r = decodeClientMessage('{"type":"ack","nonce":"bad nonce!","resourceType":"Nope","version":""}');
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.issues);
    assert.deepEqual(r.issues.map((i) => i.path).sort(), ['nonce', 'resourceType', 'version']);
    assert.match(r.message, /\(and 2 more\)$/);
  });

  test('deeply nested JSON does not throw', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    assert.doesNotThrow(() => decodeClientMessage(deep, { maxBytes: 1 << 20 }));
    assert.equal(refused(decodeClientMessage(deep, { maxBytes: 1 << 20 })).code, 'malformed_json');
  });

  test('the size bound applies before parsing with the 4 MiB default', () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    assert.equal(refused(decodeServerMessage(big)).code, 'too_large');
  });
});
