// Outbound against real loopback backends; plain keep-alive http.Agents stand in for
// the pooled mTLS connections to peer agents. Each test builds its own listener.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { RouteResource } from '@amime/protocol';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { MIRROR_HEADER } from './headers.js';
import { createOutboundHandler, type EndpointLease, type OutboundDeps, type OutboundResult } from './outbound-http.js';
import { RetryBudget } from './retry-budget.js';
import { compileRoutes, type RouteTable, type ServiceRef } from './route-table.js';
import { serverOptions } from './server-options.js';
import { closedPort, closeServer, deferred, listen, rawRequest, request, startBackend, type Backend } from './testing/helpers.js';

type Rule = RouteResource['spec']['rules'][number];
const NS = 'shop';
function route(service: string, rules: Rule[]): RouteResource {
  return { apiVersion: 'amime.dev/v1', kind: 'Route', metadata: { name: `${service}-route`, namespace: NS, labels: {} }, spec: { service, rules } } as unknown as RouteResource;
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function backend(respond?: Parameters<typeof startBackend>[0]): Promise<Backend> {
  const b = await startBackend(respond);
  cleanups.push(() => b.close());
  return b;
}

interface Mesh {
  port: number;
  results: OutboundResult[];
  /** Per attempt: [endpoint key, ok, avoid passed to pickEndpoint]. */
  finished: Array<[string, boolean]>;
  picks: Array<[string, string | undefined]>;
  released: number;
  handler: ReturnType<typeof createOutboundHandler>;
  result(): Promise<OutboundResult>;
}

/** An outbound listener routing by Host (the HTTP-proxy listener); `endpoints` maps a service to its backends' ports. */
async function mesh(routes: RouteResource[], endpoints: Record<string, number[]>, extra: Partial<OutboundDeps> = {}): Promise<Mesh> {
  const agents = new Map<number, http.Agent>();
  const agentFor = (p: number): http.Agent => {
    let a = agents.get(p);
    if (!a) agents.set(p, (a = new http.Agent({ keepAlive: true })));
    return a;
  };
  const tables = new Map<string, RouteTable>();
  const m: Mesh = {
    port: 0,
    results: [],
    finished: [],
    picks: [],
    released: 0,
    handler: undefined as never,
    result: () => waitResult(m),
  };
  let waiters: Array<() => void> = [];
  const deps: OutboundDeps = {
    resolveService: (req) => {
      const name = (req.headers.host ?? '').split(':')[0]!;
      return name in endpoints ? { name, namespace: NS } : undefined;
    },
    routes: (s: ServiceRef) => {
      let t = tables.get(s.name);
      if (!t) tables.set(s.name, (t = compileRoutes(s, routes)));
      return t;
    },
    pickEndpoint: (s, _subset, _hash, avoid): EndpointLease | undefined => {
      const ports = endpoints[s.name] ?? [];
      const p = ports.find((x) => `${s.name}-${x}` !== avoid);
      m.picks.push([s.name, avoid]);
      if (p === undefined) return undefined;
      const key = `${s.name}-${p}`;
      return {
        endpoint: { key, address: '127.0.0.1', port: p, identity: `spiffe://td/ns/${NS}/sa/${s.name}` },
        agent: agentFor(p),
        sni: `${s.name}.${NS}`,
        start: () => undefined,
        finish: (ok) => m.finished.push([key, ok]),
      };
    },
    limits: () => undefined,
    budget: new RetryBudget({ percent: 100, minRetriesPerSecond: 100 }),
    retryBackoffMs: 5,
    onResult: (r) => {
      m.results.push(r);
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    },
    ...extra,
  };
  (m as { waitOne?: () => Promise<void> }).waitOne = () => new Promise<void>((r) => waiters.push(r));
  m.handler = createOutboundHandler(deps);
  const server = http.createServer(serverOptions(), m.handler);
  server.on('upgrade', m.handler.upgrade);
  m.port = await listen(server);
  cleanups.push(async () => {
    await closeServer(server);
    for (const a of agents.values()) a.destroy();
  });
  return m;
}

/** onResult runs after the response ended; wait for the next one if it has not come yet. */
async function waitResult(m: Mesh, count = 1): Promise<OutboundResult> {
  const deadline = performance.now() + 10_000;
  while (m.results.length < count) {
    if (performance.now() > deadline) throw new Error(`onResult was called ${m.results.length} times, waited for ${count}`);
    await Promise.race([(m as unknown as { waitOne: () => Promise<void> }).waitOne(), new Promise((r) => setTimeout(r, 1000))]);
  }
  return m.results[count - 1]!;
}

const ok = (text: string) => (_r: unknown, res: http.ServerResponse) => res.end(text);
const fail503 = (_r: unknown, res: http.ServerResponse) => {
  res.statusCode = 503;
  res.end('down');
};

test('weighted split between backends (injected random: exactly 80/20)', async () => {
  const a = await backend(ok('a'));
  const b = await backend(ok('b'));
  let i = 0;
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart-v1', weight: 80 }, { service: 'cart-v2', weight: 20 }] }])], { cart: [], 'cart-v1': [a.port], 'cart-v2': [b.port] }, { random: () => ((i++ * 37) % 100) / 100 });
  const counts: Record<string, number> = {};
  for (let n = 0; n < 100; n++) {
    const r = await request(m.port, { path: '/items', headers: { host: 'cart' } });
    counts[r.body] = (counts[r.body] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 80, b: 20 });
  assert.equal(a.seen[0]!.headers.host, 'cart', 'Host is preserved');
});

test('no Route: the default rule forwards to the service itself; path, query, method and body intact', async () => {
  const a = await backend((req, res) => res.end(`${req.method} ${req.url} ${req.body.toString()}`));
  const m = await mesh([], { cart: [a.port] });
  const r = await request(m.port, { method: 'PATCH', path: '/x/y?z=1&w', headers: { host: 'cart', 'content-type': 'text/plain' }, body: 'payload' });
  assert.equal(r.body, 'PATCH /x/y?z=1&w payload');
  const res = await m.result();
  assert.deepEqual([res.status, res.attempts, res.rule, res.endpoint, res.error], [200, 1, -1, `cart-${a.port}`, undefined]);
});

test('upstream connections are pooled: keep-alive survives the header rewriting', async () => {
  const a = await backend(ok('a'));
  let connections = 0;
  a.server.on('connection', () => connections++);
  const m = await mesh([], { cart: [a.port] });
  for (let n = 0; n < 20; n++) assert.equal((await request(m.port, { method: n % 2 ? 'POST' : 'GET', headers: { host: 'cart' }, body: n % 2 ? 'x' : undefined })).body, 'a');
  assert.equal(connections, 1);
});

test('absolute-form targets (HTTP proxy listener) are sent on in origin-form', async () => {
  const a = await backend((req, res) => res.end(req.url));
  const m = await mesh([], { cart: [a.port] });
  const r = await rawRequest(m.port, 'GET http://cart/p/q?r=1 HTTP/1.1\r\nHost: cart\r\nConnection: close\r\n\r\n');
  assert.equal(r.status, 200, r.text);
  assert.equal(a.seen[0]!.url, '/p/q?r=1');
});

test('hop-by-hop request and response headers are stripped', async () => {
  const a = await backend((_req, res) => {
    res.setHeader('Connection', 'X-Internal');
    res.setHeader('X-Internal', 'secret');
    res.setHeader('X-Public', 'p');
    res.end('ok');
  });
  const m = await mesh([], { cart: [a.port] });
  const r = await request(m.port, { headers: ['Host', 'cart', 'Connection', 'X-Hop', 'X-Hop', '1', 'Proxy-Authorization', 'Basic eA==', 'X-End', 'e'] });
  const h = a.seen[0]!.headers;
  assert.equal(h['x-hop'], undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.equal(h['x-end'], 'e');
  assert.equal(r.headers['x-internal'], undefined);
  assert.equal(r.headers['x-public'], 'p');
});

test('unknown service → 404 unknown_service; no matching rule → 404 no_route', async () => {
  const a = await backend();
  const m = await mesh([route('cart', [{ match: { path: { prefix: '/api' } }, backends: [{ service: 'cart', weight: 1 }] }])], { cart: [a.port] });
  const r1 = await request(m.port, { headers: { host: 'nowhere' } });
  assert.deepEqual([r1.status, r1.headers['x-amime-error']], [404, 'unknown_service']);
  const r2 = await request(m.port, { path: '/web', headers: { host: 'cart' } });
  assert.deepEqual([r2.status, r2.headers['x-amime-error']], [404, 'no_route']);
  assert.equal(a.seen.length, 0);
});

test('no endpoint → 503 no_endpoint', async () => {
  const m = await mesh([], { cart: [] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [503, 'no_endpoint']);
});

const retryRule = (extra: Partial<Rule> = {}): Rule => ({ backends: [{ service: 'cart', weight: 1 }], retries: { attempts: 2, on: ['5xx', 'connect-failure', 'reset'] }, ...extra }) as Rule;

test('a 503 from one endpoint is retried on another (avoid), and the app gets the 200', async () => {
  const bad = await backend(fail503);
  const good = await backend(ok('good'));
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.body], [200, 'good']);
  assert.deepEqual(m.picks, [['cart', undefined], ['cart', `cart-${bad.port}`]]);
  assert.deepEqual(m.finished, [[`cart-${bad.port}`, false], [`cart-${good.port}`, true]]);
  const res = await m.result();
  assert.deepEqual([res.status, res.attempts, res.endpoint], [200, 2, `cart-${good.port}`]);
});

test('a PUT body (≤ 64 KiB) is replayed whole on the retry', async () => {
  const bad = await backend(fail503);
  const good = await backend((req, res) => res.end(`got ${req.body.length}`));
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] });
  const body = Buffer.alloc(60 * 1024, 'q');
  const r = await request(m.port, { method: 'PUT', headers: { host: 'cart', 'transfer-encoding': 'chunked' }, body });
  assert.equal(r.body, `got ${body.length}`);
  assert.equal(bad.seen[0]!.body.length, body.length);
  assert.ok(good.seen[0]!.body.equals(body));
});

test('a POST with a body is not retried on 5xx: the 503 passes through', async () => {
  const bad = await backend(fail503);
  const good = await backend(ok('good'));
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] });
  const r = await request(m.port, { method: 'POST', headers: { host: 'cart' }, body: 'order=1' });
  assert.deepEqual([r.status, r.body, r.headers['x-amime-error']], [503, 'down', undefined]);
  assert.equal(bad.seen[0]!.body.toString(), 'order=1');
  assert.equal(good.seen.length, 0);
  assert.equal((await m.result()).attempts, 1);
});

test('bodies over 64 KiB stream once and are never retried, even for PUT', async () => {
  const bad = await backend(fail503);
  const good = await backend(ok('good'));
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] });
  const body = Buffer.alloc(200 * 1024, 'b');
  const r = await request(m.port, { method: 'PUT', headers: { host: 'cart' }, body });
  assert.equal(r.status, 503);
  assert.ok(bad.seen[0]!.body.equals(body));
  assert.equal(good.seen.length, 0);
  assert.equal((await m.result()).requestBytes, body.length);
});

test('a chunked body that outgrows 64 KiB while buffering switches to streaming: sent whole, not retried', async () => {
  const bad = await backend(fail503);
  const good = await backend(ok('good'));
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] });
  const body = Buffer.alloc(200 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = i % 251;
  const r = await request(m.port, { method: 'PUT', headers: { host: 'cart', 'transfer-encoding': 'chunked' }, body });
  assert.equal(r.status, 503);
  assert.ok(bad.seen[0]!.body.equals(body), 'prefix and rest arrive in order');
  assert.equal(good.seen.length, 0);
  assert.equal((await m.result()).requestBytes, body.length);
});

test('an exhausted retry budget stops retries', async () => {
  const bad = await backend(fail503);
  const good = await backend(ok('good'));
  let t = 0;
  // 0 % of requests, and a floor of one retry per 10-second window
  const budget = new RetryBudget({ percent: 0, minRetriesPerSecond: 0.1, now: () => t });
  const m = await mesh([route('cart', [retryRule()])], { cart: [bad.port, good.port] }, { budget });
  const first = await request(m.port, { headers: { host: 'cart' } });
  assert.equal(first.status, 200, 'the first retry fits the floor');
  const second = await request(m.port, { headers: { host: 'cart' } });
  assert.equal(second.status, 503, 'the budget is spent: the 503 passes through');
  assert.equal((await waitResult(m, 2)).attempts, 1);
  t += 11_000;
  assert.equal((await request(m.port, { headers: { host: 'cart' } })).status, 200, 'the window slid');
});

test('connect failure is retried on another endpoint, even for a POST', async () => {
  const dead = await closedPort();
  const good = await backend((req, res) => res.end(`good ${req.body.toString()}`));
  const m = await mesh([route('cart', [retryRule({ retries: { attempts: 1, on: ['connect-failure'] } })])], { cart: [dead, good.port] });
  const r = await request(m.port, { method: 'POST', headers: { host: 'cart' }, body: 'once' });
  assert.deepEqual([r.status, r.body], [200, 'good once']);
  assert.deepEqual(m.finished, [[`cart-${dead}`, false], [`cart-${good.port}`, true]]);
});

test('connect failure with no retries left → 503 connect_failure', async () => {
  const dead = await closedPort();
  const m = await mesh([], { cart: [dead] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [503, 'connect_failure']);
});

test('a connection reset before the response → 502 upstream_reset', async () => {
  const reset = await backend((_req, res) => res.socket!.destroy());
  const m = await mesh([], { cart: [reset.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [502, 'upstream_reset']);
});

test('per-try timeout: a hanging endpoint is abandoned and the retry answers', async () => {
  const hang = await backend(() => undefined);
  const good = await backend(ok('good'));
  const m = await mesh([route('cart', [retryRule({ retries: { attempts: 1, perTryTimeout: '200ms', on: ['gateway-error'] } })])], { cart: [hang.port, good.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.body], [200, 'good']);
  assert.equal(hang.seen.length, 1);
});

test('per-try timeout with no retry left → 504', async () => {
  const hang = await backend(() => undefined);
  const m = await mesh([route('cart', [retryRule({ retries: { attempts: 0, perTryTimeout: '150ms' } })])], { cart: [hang.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [504, 'timeout']);
});

test('route timeout covers all attempts → 504', async () => {
  const hang1 = await backend(() => undefined);
  const hang2 = await backend(() => undefined);
  const m = await mesh([route('cart', [retryRule({ timeout: '300ms', retries: { attempts: 5, perTryTimeout: '200ms', on: ['gateway-error'] } })])], { cart: [hang1.port, hang2.port] });
  const started = performance.now();
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [504, 'timeout']);
  assert.ok(performance.now() - started < 5000, 'the route timeout bounds the whole exchange');
  const res = await m.result();
  assert.equal(res.status, 504);
  assert.ok(res.attempts >= 1 && res.attempts <= 3, `attempts ${res.attempts}`);
});

test('fault abort answers with its status and the backend is never called', async () => {
  const a = await backend();
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart', weight: 1 }], fault: { abort: { status: 418, percent: 100 } } }])], { cart: [a.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [418, 'fault_abort']);
  assert.equal(a.seen.length, 0);
});

test('fault delay holds the request, then it continues', async () => {
  const a = await backend(ok('late'));
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart', weight: 1 }], fault: { delay: { fixed: '300ms', percent: 100 } } }])], { cart: [a.port] });
  const started = performance.now();
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.equal(r.body, 'late');
  assert.ok(performance.now() - started >= 280, 'delayed by about the fixed delay');
});

test('mirror: a copy goes to the mirror service, its failure never touches the response', async () => {
  const main = await backend(ok('main'));
  const got = deferred<void>();
  const shadow = await backend((_req, res) => {
    got.resolve();
    res.statusCode = 500;
    res.end('shadow broke');
  });
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart', weight: 1 }], mirror: { service: 'cart-shadow', percent: 100 } }])], { cart: [main.port], 'cart-shadow': [shadow.port] });
  const r = await request(m.port, { method: 'POST', path: '/m?x=1', headers: { host: 'cart' }, body: 'copy me' });
  assert.deepEqual([r.status, r.body], [200, 'main']);
  await got.promise;
  const copy = shadow.seen[0]!;
  assert.deepEqual([copy.method, copy.url, copy.body.toString(), copy.headers[MIRROR_HEADER], copy.headers.host], ['POST', '/m?x=1', 'copy me', '1', 'cart']);
  assert.equal(main.seen[0]!.headers[MIRROR_HEADER], undefined);
});

test('mirror concurrency is bounded: copies beyond the limit are dropped', async () => {
  const main = await backend(ok('main'));
  const shadow = await backend(() => undefined); // never answers
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart', weight: 1 }], mirror: { service: 'cart-shadow', percent: 100 } }])], { cart: [main.port], 'cart-shadow': [shadow.port] }, { maxMirrorsInFlight: 2 });
  for (let n = 0; n < 4; n++) assert.equal((await request(m.port, { headers: { host: 'cart' } })).body, 'main');
  assert.deepEqual(m.handler.mirrorStats(), { inFlight: 2, dropped: 2, sent: 2 });
});

test('circuit limit: the limiter refusing → 503 overloaded; every granted request is released', async () => {
  const a = await backend();
  let inFlight = 0;
  let released = 0;
  const limiter = {
    tryRequest: () => (inFlight < 1 ? (inFlight++, true) : false),
    releaseRequest: () => {
      inFlight--;
      released++;
    },
  };
  const m = await mesh([], { cart: [a.port] }, { limits: () => limiter });
  assert.equal((await request(m.port, { headers: { host: 'cart' } })).status, 200);
  await m.result();
  inFlight = 1; // at the limit
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.deepEqual([r.status, r.headers['x-amime-error']], [503, 'overloaded']);
  assert.equal(released, 1);
  assert.equal(a.seen.length, 1);
});

test('a large response streams through intact', async () => {
  const big = Buffer.alloc(4 * 1024 * 1024, 'r');
  const a = await backend((_req, res) => res.end(big));
  const m = await mesh([], { cart: [a.port] });
  const r = await request(m.port, { headers: { host: 'cart' } });
  assert.equal(r.body.length, big.length);
  assert.equal((await m.result()).responseBytes, big.length);
});

test('the app hanging up mid-request is reported as 499 and the upstream request is abandoned', async () => {
  const arrived = deferred<void>();
  const upstreamClosed = deferred<void>();
  const hang = await backend(() => arrived.resolve());
  hang.server.on('request', (_req, res: http.ServerResponse) => res.on('close', () => upstreamClosed.resolve()));
  const m = await mesh([], { cart: [hang.port] });
  const client = net.connect(m.port, '127.0.0.1');
  client.on('error', () => undefined);
  client.write('GET / HTTP/1.1\r\nHost: cart\r\n\r\n');
  await arrived.promise;
  client.destroy();
  const res = await m.result();
  assert.deepEqual([res.status, res.error], [499, 'client_closed']);
  await upstreamClosed.promise;
  assert.deepEqual(m.finished, [[`cart-${hang.port}`, false]]);
});

test('a peer-pool style agent: requestOptions reach createConnection, and its connect error is a connect failure', async () => {
  const good = await backend(ok('via pool'));
  const seenPeers: unknown[] = [];
  // like the transport's PeerHttpAgent: callback-form createConnection driven by options.peer
  class PoolAgent extends http.Agent {
    override createConnection(options: http.ClientRequestArgs, cb?: (err: Error | null, s: Duplex) => void): undefined {
      const peer = (options as { peer?: { port: number } }).peer;
      seenPeers.push(peer);
      if (!peer || peer.port === 1) {
        setImmediate(() => cb!(new Error('handshake refused'), undefined as unknown as Duplex));
        return undefined;
      }
      const s = net.connect(peer.port, '127.0.0.1');
      s.once('connect', () => cb!(null, s));
      s.once('error', (e) => cb!(e, undefined as unknown as Duplex));
      return undefined;
    }
  }
  const agent = new PoolAgent({ keepAlive: true });
  cleanups.push(() => agent.destroy());
  const ports = [1, good.port];
  const finished: Array<[number, boolean]> = [];
  const m = await mesh([route('cart', [retryRule({ retries: { attempts: 1, on: ['connect-failure'] } })])], { cart: ports }, {
    pickEndpoint: (_s, _subset, _hash, avoid) => {
      const p = ports.find((x) => `k${x}` !== avoid)!;
      return {
        endpoint: { key: `k${p}`, address: '127.0.0.1', port: p, identity: 'spiffe://td/ns/shop/sa/cart' },
        agent,
        sni: 'cart.shop',
        requestOptions: { peer: { port: p, sni: 'cart.shop' } },
        start: () => undefined,
        finish: (okay) => finished.push([p, okay]),
      };
    },
  });
  const r = await request(m.port, { method: 'POST', headers: { host: 'cart' }, body: 'b' });
  assert.deepEqual([r.status, r.body], [200, 'via pool']);
  assert.deepEqual(seenPeers, [{ port: 1, sni: 'cart.shop' }, { port: good.port, sni: 'cart.shop' }]);
  assert.deepEqual(finished, [[1, false], [good.port, true]]);
});

test('WebSocket upgrade passes through to the peer', async () => {
  const peer = http.createServer();
  const wss = new WebSocketServer({ server: peer });
  wss.on('connection', (ws, req) => ws.on('message', (msg) => ws.send(`${req.headers.host} ${req.url} ${msg.toString()}`)));
  const peerPort = await listen(peer);
  cleanups.push(async () => {
    wss.close();
    await closeServer(peer);
  });
  const m = await mesh([], { chat: [peerPort] });
  const ws = new WebSocket(`ws://127.0.0.1:${m.port}/room/1`, { headers: { host: 'chat' } });
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hello'));
    ws.on('message', (msg) => resolve(msg.toString()));
    ws.on('error', reject);
  });
  assert.equal(reply, 'chat /room/1 hello');
  const closed = m.result();
  ws.close();
  const res = await closed;
  assert.deepEqual([res.upgrade, res.status], [true, 101]);
});

test('a refused upgrade: the peer answer (403) reaches the client and the connection closes', async () => {
  const peer = await backend((_req, res) => {
    res.statusCode = 403;
    res.end('no');
  });
  const m = await mesh([], { chat: [peer.port] });
  const ws = new WebSocket(`ws://127.0.0.1:${m.port}/room`, { headers: { host: 'chat' } });
  const err = await new Promise<Error>((resolve) => ws.on('error', resolve));
  assert.match(err.message, /Unexpected server response: 403/);
  const res = await m.result();
  assert.deepEqual([res.upgrade, res.status], [true, 403]);
  assert.equal(peer.seen[0]!.headers.upgrade, 'websocket', 'the Upgrade header was sent on');
});

test('an upstream that breaks mid-body: the app sees a truncated response, reported as upstream_aborted', async () => {
  const broken = await backend((_req, res) => {
    res.writeHead(200, { 'content-length': '1000' });
    res.write('x'.repeat(10), () => setTimeout(() => res.socket!.destroy(), 20));
  });
  const m = await mesh([], { cart: [broken.port] });
  await assert.rejects(request(m.port, { headers: { host: 'cart' } }));
  const res = await m.result();
  assert.deepEqual([res.status, res.error], [200, 'upstream_aborted']);
  assert.deepEqual(m.finished, [[`cart-${broken.port}`, false]]);
});

test('a route timeout while the body streams cuts the response and reports timeout', async () => {
  const dribble = await backend((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first');
  });
  const m = await mesh([route('cart', [{ backends: [{ service: 'cart', weight: 1 }], timeout: '300ms' }])], { cart: [dribble.port] });
  await assert.rejects(request(m.port, { headers: { host: 'cart' } }));
  const res = await m.result();
  assert.deepEqual([res.status, res.error], [200, 'timeout']);
});

test('the route timeout also bounds a slow request body being buffered for retries → 504', async () => {
  const a = await backend();
  const m = await mesh([route('cart', [retryRule({ timeout: '300ms' })])], { cart: [a.port] });
  const r = await rawRequest(m.port, 'PUT / HTTP/1.1\r\nHost: cart\r\nContent-Length: 10\r\n\r\nabc', 5000);
  assert.equal(r.status, 504, r.text);
  assert.ok(r.closed, 'the half-read request closes the connection');
  assert.equal(a.seen.length, 0);
});

test("trace context: the app's trace is continued with this hop's span (kept across retries); one is started when absent", async () => {
  const a = await backend(fail503);
  const b = await backend(ok('b'));
  const m = await mesh([route('shop', [{ backends: [{ service: 'shop', weight: 1 }], retries: { attempts: 2, on: ['5xx'] } }])], { shop: [a.port, b.port] });
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const r = await request(m.port, { path: '/t?q=1', headers: ['Host', 'shop', 'traceparent', `00-${trace}-${parent}-01`, 'x-request-id', 'app-7'] });
  assert.equal(r.status, 200);
  const sent = [a.seen.at(-1)!, b.seen.at(-1)!].map((s) => String(s.headers.traceparent));
  const m0 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(sent[0]!);
  assert.ok(m0, sent[0]);
  assert.equal(m0[1], trace);
  assert.notEqual(m0[2], parent);
  assert.equal(sent[1], sent[0], 'a retry is the same span of this hop');
  assert.equal(b.seen.at(-1)!.headers['x-request-id'], 'app-7');
  const res = await m.result();
  assert.deepEqual([res.trace.traceId, res.trace.spanId, res.trace.parentSpanId, res.requestId, res.path, res.destination], [trace, m0[2], parent, 'app-7', '/t', 'spiffe://td/ns/shop/sa/shop']);

  await request(m.port, { path: '/n', headers: { host: 'shop' } });
  const seen = b.seen.at(-1)!;
  assert.match(String(seen.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.match(String(seen.headers['x-request-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-4/);
  const second = await waitResult(m, 2);
  assert.equal(second.trace.parentSpanId, undefined);
  assert.equal(String(seen.headers.traceparent).slice(3, 35), second.trace.traceId);
});
