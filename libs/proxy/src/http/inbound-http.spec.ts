// Inbound: the verified peer ID replaces any x-amime-source-identity, policy denials
// never reach the app, the app sees the normalised path, hop-by-hop headers stop
// here, and WebSocket upgrades pass through once authorised.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { SOURCE_IDENTITY_HEADER } from './headers.js';
import { createInboundHandler, type AuthorizeResult, type InboundResult } from './inbound-http.js';
import { serverOptions } from './server-options.js';
import { closeServer, listen, rawRequest, request, startBackend, type Backend } from './testing/helpers.js';

const CALLER = 'spiffe://td/ns/web/sa/frontend';
let app: Backend;
let proxy: http.Server;
let port: number;
const localAgent = new http.Agent({ keepAlive: true });
const ids = new WeakMap<Socket, string>();
const results: InboundResult[] = [];
const authorized: Array<[string, string, string]> = [];
let limited = false;
let anonymous = false;

/** A stand-in for @amime/policy: denies /admin, refuses "..", normalises "//" and "/./". */
function authorize(peerId: string, method: string, target: string): AuthorizeResult {
  authorized.push([peerId, method, target]);
  const [raw, query = ''] = target.split(/\?(.*)/s) as [string, string?];
  if (raw.includes('..')) return { allowed: false, status: 400, reason: 'dot_segment' };
  const path = raw.replace(/\/\.(?=\/|$)/g, '').replace(/\/{2,}/g, '/') || '/';
  if (path.startsWith('/admin')) return { allowed: false, status: 403, reason: 'denied_by_policy' };
  return { allowed: true, path, query };
}

before(async () => {
  app = await startBackend((req, res) => res.end(`app saw ${req.url}`));
  const handler = createInboundHandler({
    peerIdOf: (s) => (anonymous ? undefined : ids.get(s)),
    authorize,
    rateLimit: () => !limited,
    local: { host: '127.0.0.1', port: app.port, agent: localAgent },
    onResult: (r) => results.push(r),
  });
  proxy = http.createServer(serverOptions(), handler);
  proxy.on('upgrade', handler.upgrade);
  // the agent sets the verified ID when the mTLS handshake completes; here, on accept
  proxy.on('connection', (s: Socket) => ids.set(s, CALLER));
  port = await listen(proxy);
});
after(async () => {
  await closeServer(proxy);
  await app.close();
  localAgent.destroy();
});

test('any x-amime-source-identity from the peer is stripped and the verified ID set', async () => {
  const r = await request(port, {
    path: '/hello',
    headers: ['Host', 'app', 'X-Amime-Source-Identity', 'spiffe://td/ns/x/sa/forged', 'x-amime-source-identity', 'forged-2'],
  });
  assert.equal(r.status, 200);
  const seen = app.seen.at(-1)!;
  const values = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) if (seen.rawHeaders[i]!.toLowerCase() === SOURCE_IDENTITY_HEADER) values.push(seen.rawHeaders[i + 1]);
  assert.deepEqual(values, [CALLER]);
  assert.equal(authorized.at(-1)![0], CALLER, 'policy sees the verified ID');
});

test('a denied request gets 403 and the app is never called', async () => {
  const before = app.seen.length;
  const r = await request(port, { method: 'POST', path: '/admin/users', headers: { host: 'app' }, body: 'x' });
  assert.equal(r.status, 403);
  assert.equal(r.headers['x-amime-error'], 'denied_by_policy');
  assert.equal(app.seen.length, before);
  assert.equal(results.at(-1)!.status, 403);
});

test('a target the normaliser refuses gets its 400 and the app is never called', async () => {
  const before = app.seen.length;
  const r = await rawRequest(port, 'GET /a/../admin HTTP/1.1\r\nHost: app\r\n\r\n');
  assert.equal(r.status, 400);
  assert.equal(app.seen.length, before);
});

test('the app sees the normalised path and the original query', async () => {
  const r = await rawRequest(port, 'GET //x/./y?q=%2F..&a=b HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
  assert.equal(r.status, 200, r.text);
  assert.equal(app.seen.at(-1)!.url, '/x/y?q=%2F..&a=b');
  assert.equal(authorized.at(-1)![2], '//x/./y?q=%2F..&a=b', 'policy got the raw target');
});

test('hop-by-hop headers and headers named in Connection stop here; Host is kept', async () => {
  await request(port, { path: '/h', headers: ['Host', 'app.internal', 'Connection', 'X-Secret, keep-alive', 'X-Secret', 's', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'X-Keep', 'k'] });
  const h = app.seen.at(-1)!.headers;
  assert.equal(h['x-secret'], undefined);
  assert.equal(h['te'], undefined);
  assert.equal(h['x-keep'], 'k');
  assert.equal(h['host'], 'app.internal');
});

test('request and response bodies stream both ways (chunked in, chunked out)', async () => {
  const big = Buffer.alloc(300 * 1024, 'z');
  const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path: '/upload', headers: { host: 'app', 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.write(big.subarray(0, 1000));
    req.end(big.subarray(1000));
  });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'app saw /upload');
  assert.equal(app.seen.at(-1)!.body.length, big.length);
});

test('rate-limited peers get 429 and the app is never called', async () => {
  const before = app.seen.length;
  limited = true;
  try {
    const r = await request(port, { path: '/x', headers: { host: 'app' } });
    assert.equal(r.status, 429);
    assert.equal(r.headers['x-amime-error'], 'rate_limited');
  } finally {
    limited = false;
  }
  assert.equal(app.seen.length, before);
});

test('a connection without a verified peer ID is refused', async () => {
  const before = app.seen.length;
  anonymous = true;
  try {
    const r = await request(port, { path: '/x', headers: { host: 'app' } });
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-amime-error'], 'unauthenticated');
  } finally {
    anonymous = false;
  }
  assert.equal(app.seen.length, before);
});

test('the local app down: 502 local_connect_failure', async () => {
  const down = await startBackend();
  const downPort = down.port;
  await down.close();
  const h = createInboundHandler({ peerIdOf: () => CALLER, authorize, local: { host: '127.0.0.1', port: downPort, agent: new http.Agent() } });
  const s = http.createServer(serverOptions(), h);
  const p = await listen(s);
  try {
    const r = await request(p, { path: '/x', headers: { host: 'app' } });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-amime-error'], 'local_connect_failure');
  } finally {
    await closeServer(s);
  }
});

test('the app too slow to answer: 504 local_timeout after responseTimeoutMs', async () => {
  const slow = await startBackend(() => undefined);
  const h = createInboundHandler({ peerIdOf: () => CALLER, authorize, local: { host: '127.0.0.1', port: slow.port, agent: new http.Agent() }, responseTimeoutMs: 200 });
  const s = http.createServer(serverOptions(), h);
  const p = await listen(s);
  try {
    const r = await request(p, { path: '/x', headers: { host: 'app' } });
    assert.deepEqual([r.status, r.headers['x-amime-error']], [504, 'local_timeout']);
  } finally {
    await closeServer(s);
    await slow.close();
  }
});

test('onResult reports each exchange once with the verified peer and the forwarded path', async () => {
  const n = results.length;
  await request(port, { path: '/r/./s?t=1', headers: { host: 'app' } });
  const deadline = Date.now() + 5000;
  while (results.length === n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(results.length, n + 1);
  const r = results.at(-1)!;
  assert.deepEqual([r.peerId, r.method, r.path, r.status, r.error, r.upgrade], [CALLER, 'GET', '/r/s?t=1', 200, undefined, false]);
  assert.equal(r.peerAddress, '127.0.0.1', "the caller's address, for the communication-pattern monitor");
  assert.equal(r.responseBytes, 'app saw /r/s?t=1'.length);
});

test('WebSocket upgrade passes through with the identity header; a denied upgrade gets 403', async () => {
  const wsApp = http.createServer();
  const wss = new WebSocketServer({ server: wsApp });
  const upgradeHeaders: http.IncomingHttpHeaders[] = [];
  wss.on('connection', (ws, req) => {
    upgradeHeaders.push(req.headers);
    ws.on('message', (m) => ws.send(`echo:${m.toString()}`));
  });
  const wsPort = await listen(wsApp);
  const h = createInboundHandler({ peerIdOf: () => CALLER, authorize, local: { host: '127.0.0.1', port: wsPort, agent: new http.Agent({ keepAlive: true }) } });
  const s = http.createServer(serverOptions(), h);
  s.on('upgrade', h.upgrade);
  const p = await listen(s);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${p}/chat/./room?x=1`, { headers: { [SOURCE_IDENTITY_HEADER]: 'forged' } });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.on('open', () => ws.send('hi'));
      ws.on('message', (m) => resolve(m.toString()));
      ws.on('error', reject);
    });
    assert.equal(reply, 'echo:hi');
    ws.close();
    assert.equal(upgradeHeaders[0]![SOURCE_IDENTITY_HEADER], CALLER);

    const denied = new WebSocket(`ws://127.0.0.1:${p}/admin`);
    const err = await new Promise<Error>((resolve) => denied.on('error', resolve));
    assert.match(err.message, /Unexpected server response: 403/);
    assert.equal(upgradeHeaders.length, 1, 'the denied upgrade never reached the app');
  } finally {
    wss.close();
    await closeServer(s);
    await closeServer(wsApp);
  }
});

test('trace context: the caller trace is continued with a span of this hop; the request id is kept or made', async () => {
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const n = results.length;
  await request(port, { path: '/traced', headers: ['Host', 'app', 'traceparent', `00-${trace}-${parent}-01`, 'X-Request-Id', 'req-42'] });
  let seen = app.seen.at(-1)!;
  const sent = String(seen.headers.traceparent);
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(sent);
  assert.ok(m, `app got traceparent ${sent}`);
  assert.equal(m[1], trace, 'same trace');
  assert.notEqual(m[2], parent, "the app's parent is this hop's span, not the caller's");
  assert.equal(seen.headers['x-request-id'], 'req-42');
  const deadline = Date.now() + 5000;
  while (results.length === n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const r = results.at(-1)!;
  assert.deepEqual([r.trace.traceId, r.trace.parentSpanId, r.trace.spanId, r.requestId], [trace, parent, m[2], 'req-42']);

  // none given (or a forged multi-line one): a new trace and a new request id, one header each
  await request(port, { path: '/untraced', headers: ['Host', 'app', 'x-request-id', 'has space'] });
  seen = app.seen.at(-1)!;
  assert.match(String(seen.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.match(String(seen.headers['x-request-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-4/);
  const count = (name: string) => seen.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;
  assert.deepEqual([count('traceparent'), count('x-request-id')], [1, 1]);
});
