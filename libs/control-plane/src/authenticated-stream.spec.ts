// The shared ends of the admin API's WebSocket routes: how an upgrade is
// refused (authenticated-stream.ts), the broadcast streams' cap and slow
// consumer cut-off, and the client's handling of an already aborted signal
// (admin-websocket.ts). The routes themselves are tested over real mTLS in
// traffic-api.spec.ts, anomaly-api.spec.ts and test/meshctl/tap.spec.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { followAdminSocket, type AdminSocketConnection } from './admin-websocket.js';
import { refuseUpgrade, StreamClients, upgradeQuery } from './authenticated-stream.js';
import { cpError } from './errors.js';

/** What refuseUpgrade wrote to the socket, split into status line, headers and body. */
function refusal(err: unknown, busyReason = 'too_many_streams'): { statusLine: string; headers: string[]; body: string } {
  const socket = new PassThrough();
  refuseUpgrade(socket, err, busyReason);
  const text = String(socket.read());
  const [head, body] = text.split('\r\n\r\n') as [string, string];
  const [statusLine, ...headers] = head.split('\r\n') as [string, ...string[]];
  return { statusLine, headers, body };
}

describe('refuseUpgrade', () => {
  test("a ControlPlaneError is answered with its status and the API's error body", () => {
    const r = refusal(cpError('AMIME_ERR_CP_FORBIDDEN', 'spiffe://td/agent/vm1 is not an admin identity', 'not_admin'));
    assert.equal(r.statusLine, 'HTTP/1.1 403 Forbidden');
    assert.deepEqual(JSON.parse(r.body), { error: { code: 'AMIME_ERR_CP_FORBIDDEN', reason: 'not_admin', message: 'spiffe://td/agent/vm1 is not an admin identity' } });
    assert.ok(r.headers.includes(`content-length: ${Buffer.byteLength(r.body)}`));
    assert.ok(r.headers.includes('connection: close'));
  });

  test("the route's cap is a 503; another route's cap reason keeps its status", () => {
    const busy = cpError('AMIME_ERR_CP_FORBIDDEN', '2 taps are open', 'too_many_taps');
    assert.equal(refusal(busy, 'too_many_taps').statusLine, 'HTTP/1.1 503 Service Unavailable');
    assert.equal(refusal(busy, 'too_many_streams').statusLine, 'HTTP/1.1 403 Forbidden');
  });

  test('anything else is a 500 that does not tell its cause', () => {
    const r = refusal(new Error('secret path /var/lib/x'));
    assert.equal(r.statusLine, 'HTTP/1.1 500 Error');
    assert.deepEqual(JSON.parse(r.body), { error: { code: 'AMIME_ERR_CP_INTERNAL', reason: 'internal', message: 'internal error' } });
  });
});

test('upgradeQuery reads the query of the request target only', () => {
  const q = (url: string | undefined) => [...upgradeQuery({ url } as IncomingMessage)];
  assert.deepEqual(q('/v1/traffic/stream?window=30&window=60'), [
    ['window', '30'],
    ['window', '60'],
  ]);
  assert.deepEqual(q('/v1/traffic/stream'), []);
  assert.deepEqual(q(undefined), []);
});

describe('StreamClients', () => {
  const CALLER = 'spiffe://amime.test/admin/operator';

  /** A plain HTTP server whose upgrades go to `clients` (authentication is stubbed: no TLS here). */
  async function serve(clients: StreamClients<{ caller: string }>, admit = (caller: string) => ({ caller })): Promise<{ port: number; close(): Promise<void> }> {
    const server = http.createServer();
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => clients.handleUpgrade(req, socket, head, admit, (ws) => ws.send('hello')));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
  }

  /** Opens a client; resolves with its first frame, or with the HTTP status it was refused with. */
  function connect(port: number): Promise<{ ws: WebSocket; first?: string; status?: number; body?: string }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/test/stream`);
      ws.once('message', (d) => resolve({ ws, first: String(d) }));
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += String(c)));
        res.on('end', () => resolve({ ws, status: res.statusCode ?? 0, body }));
      });
      ws.on('error', reject);
    });
  }

  test('at the cap an upgrade is refused with 503 too_many_streams naming the stream; below it, accepted', async () => {
    const clients = new StreamClients<{ caller: string }>({ name: 'test', authenticate: () => CALLER, maxClients: 1, maxBufferedBytes: 1 << 20, pingMs: 60_000 });
    const s = await serve(clients);
    try {
      const a = await connect(s.port);
      assert.equal(a.first, 'hello');
      assert.equal(clients.size, 1);
      const b = await connect(s.port);
      assert.equal(b.status, 503);
      assert.deepEqual(JSON.parse(b.body!), { error: { code: 'AMIME_ERR_CP_FORBIDDEN', reason: 'too_many_streams', message: 'too many test streams open; close one' } });
      assert.deepEqual([...clients.open()].map(([, c]) => c.caller), [CALLER]);
      a.ws.close();
    } finally {
      clients.close();
      await s.close();
    }
  });

  test('an authentication failure refuses the upgrade before admit runs', async () => {
    let admitted = 0;
    const clients = new StreamClients<{ caller: string }>({
      name: 'test',
      authenticate: () => {
        throw cpError('AMIME_ERR_CP_UNAUTHENTICATED', 'client certificate refused: none', 'peer_no_certificate');
      },
      maxClients: 4,
      maxBufferedBytes: 1 << 20,
      pingMs: 60_000,
    });
    const s = await serve(clients, (caller) => {
      admitted++;
      return { caller };
    });
    try {
      const r = await connect(s.port);
      assert.equal(r.status, 401);
      assert.equal(JSON.parse(r.body!).error.reason, 'peer_no_certificate');
      assert.equal(admitted, 0);
      assert.equal(clients.size, 0);
    } finally {
      clients.close();
      await s.close();
    }
  });

  test('a client with more than maxBufferedBytes waiting is cut off and logged, not sent to', () => {
    const events: Record<string, unknown>[] = [];
    const clients = new StreamClients<{ caller: string }>({ name: 'test', authenticate: () => CALLER, maxClients: 4, maxBufferedBytes: 100, pingMs: 60_000, log: (e) => events.push(e) });
    try {
      const sent: string[] = [];
      let terminated = 0;
      const ws = (bufferedAmount: number) => ({ bufferedAmount, send: (t: string) => sent.push(t), terminate: () => terminated++ }) as unknown as WebSocket;
      assert.equal(clients.send(ws(100), { caller: CALLER }, 'a'), true);
      assert.equal(clients.send(ws(101), { caller: CALLER }, 'b'), false);
      assert.deepEqual(sent, ['a']);
      assert.equal(terminated, 1);
      assert.deepEqual(events, [{ event: 'test_stream_dropped', caller: CALLER, reason: 'slow_consumer' }]);
    } finally {
      clients.close();
    }
  });
});

describe('followAdminSocket', () => {
  test('an already aborted signal resolves without connecting', async () => {
    // a port nothing listens on: a connection attempt would reject with unreachable
    const server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const fail = (what: string) => () => new Error(`${what} was called`);
    const conn = {
      url: new URL(`https://127.0.0.1:${port}`),
      bundlePem: '',
      bundle: undefined,
      credential: { certPem: '', keyPem: '' },
      expectedServerId: 'spiffe://amime.test/control-plane/controller',
      timeoutMs: 1000,
      transport: fail('transport'),
      answer: fail('answer'),
    } as unknown as AdminSocketConnection;
    const frames: unknown[] = [];
    const ac = new AbortController();
    ac.abort();
    const stream = { url: new URL('/v1/test/stream', conn.url), name: 'test stream', maxPayload: 1024, onFrame: (v: unknown) => frames.push(v) };
    await followAdminSocket(conn, { ...stream, signal: ac.signal });
    // without the signal the same connection is attempted and fails
    await assert.rejects(followAdminSocket(conn, stream), /transport was called/);
    assert.deepEqual(frames, []);
  });
});
