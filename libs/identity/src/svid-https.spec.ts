// SvidHttpsClient against stand-in TLS servers on 127.0.0.1:0 built from test
// certificates: nothing is written to a server that does not prove the
// expected SPIFFE ID, and timeouts, oversized answers, non-200 answers and
// stale kept-alive connections end as the caller's own errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import tls from 'node:tls';
import { parseErrorBody, SvidHttpsClient, type SvidHttpsErrors, type SvidHttpsOptions } from './svid-https.js';
import { bundleFromPem } from './trust-bundle.js';
import { createTestPki, toPemChain, type TestCert, type TestPki } from './testing/cert-factory.js';

const TD = 'svid-https.test';
const SERVER_ID = `spiffe://${TD}/control-plane/server`;

class TestError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly status = 0,
  ) {
    super(message);
  }
}

const errors: SvidHttpsErrors<TestError> = {
  transport: (reason, message) => new TestError(reason, message),
  answer: (method, path, status, text) => new TestError('answer', `${method} ${path}: ${status} ${text}`, status),
};

let pki: TestPki;
let serverCert: TestCert;
let clientCert: TestCert;
const closers: (() => Promise<void>)[] = [];

before(async () => {
  pki = await createTestPki(TD);
  serverCert = await pki.leaf('/control-plane/server');
  clientCert = await pki.leaf('/admin/operator');
});

after(async () => {
  await Promise.all(closers.map((c) => c()));
});

const tlsServerOptions = (cert: TestCert, chain: readonly TestCert[] = [pki.intermediate]): tls.TlsOptions => ({
  cert: toPemChain([cert, ...chain]),
  key: cert.key.privateKeyPem,
  ca: pki.root.pem,
  minVersion: 'TLSv1.3',
  requestCert: true,
  rejectUnauthorized: false,
});

/** Answers each request; `nth` counts requests on the same connection from 1. */
type Handler = (req: IncomingMessage, res: ServerResponse, nth: number) => void;

interface StandIn {
  url: string;
  requests: { method: string; url: string; type: string | undefined; body: string; clientId: string | undefined }[];
  connections: number;
}

async function listen(server: net.Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(async () => {
    const closed = once(server, 'close');
    server.close();
    (server as https.Server).closeAllConnections?.();
    await closed;
  });
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function serve(handler: Handler, cert: TestCert = serverCert, chain?: readonly TestCert[]): Promise<StandIn> {
  const server = https.createServer(tlsServerOptions(cert, chain));
  const stand: StandIn = { url: '', requests: [], connections: 0 };
  const perSocket = new WeakMap<object, number>();
  server.on('secureConnection', () => stand.connections++);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const nth = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, nth);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const clientId = (req.socket as tls.TLSSocket).getPeerCertificate().subjectaltname;
      stand.requests.push({ method: req.method!, url: req.url!, type: req.headers['content-type'], body: Buffer.concat(chunks).toString('utf8'), clientId });
      handler(req, res, nth);
    });
  });
  stand.url = await listen(server);
  return stand;
}

const answer =
  (status: number, body: string): Handler =>
  (_req, res) => {
    res.statusCode = status;
    res.end(body);
  };

function client(url: string, o: Partial<SvidHttpsOptions<TestError>> = {}): SvidHttpsClient<TestError> {
  const c = new SvidHttpsClient<TestError>({
    url: new URL(url),
    serverName: 'the test server',
    expectedServerId: SERVER_ID,
    bundle: bundleFromPem(pki.root.pem, TD),
    secureContext: tls.createSecureContext({ ca: pki.root.pem, cert: toPemChain([clientCert, pki.intermediate]), key: clientCert.key.privateKeyPem, minVersion: 'TLSv1.3' }),
    timeoutMs: 5_000,
    maxResponseBytes: 1024,
    errors,
    ...o,
  });
  closers.push(async () => c.close());
  return c;
}

async function failure(p: Promise<unknown>): Promise<TestError> {
  const err = await p.then(
    () => assert.fail('expected a TestError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TestError, `not the caller's error: ${String(err)}`);
  return err;
}

describe('SvidHttpsClient', () => {
  test('a server proving the expected ID gets the request with our certificate and body, over one kept-alive connection', async () => {
    const s = await serve(answer(200, '{"ok":true}'));
    const c = client(s.url);
    assert.deepEqual(await c.json('POST', '/v1/x', { type: 'application/json', body: Buffer.from('{"a":1}') }), { ok: true });
    assert.equal(await c.request('GET', '/v1/y'), '{"ok":true}');
    assert.deepEqual(
      s.requests.map((r) => [r.method, r.url, r.type, r.body]),
      [
        ['POST', '/v1/x', 'application/json', '{"a":1}'],
        ['GET', '/v1/y', undefined, ''],
      ],
    );
    assert.equal(s.requests[0]!.clientId, `URI:spiffe://${TD}/admin/operator`);
    assert.equal(s.connections, 1);
  });

  test('a server with another SPIFFE ID is refused before one byte of the request is written', async () => {
    const impostor = await pki.leaf('/agent/vm-evil');
    let received = 0;
    const closed: Promise<unknown>[] = [];
    const server = tls.createServer(tlsServerOptions(impostor), (socket) => {
      socket.on('data', (c: Buffer) => (received += c.length));
    });
    server.on('connection', (raw: net.Socket) => closed.push(once(raw, 'close')));
    server.on('tlsClientError', () => undefined);
    const c = client(await listen(server));
    const e = await failure(c.json('POST', '/v1/join', { type: 'application/json', body: Buffer.from('{"token":"secret"}') }));
    assert.equal(e.reason, 'server_identity');
    assert.match(e.message, /^the server at 127\.0\.0\.1:\d+ is spiffe:\/\/svid-https\.test\/agent\/vm-evil, not spiffe:\/\/svid-https\.test\/control-plane\/server$/);
    await Promise.all(closed);
    assert.equal(closed.length, 1);
    assert.equal(received, 0, 'the connection closed without a request byte');
  });

  test('a chain ending at a root outside the bundle fails with reason tls, naming the server', async () => {
    const other = await createTestPki(TD);
    const s = await serve(answer(200, '{}'), await other.leaf('/control-plane/server'), [other.intermediate]);
    const e = await failure(client(s.url).request('GET', '/'));
    assert.equal(e.reason, 'tls');
    assert.match(e.message, /^TLS with the test server failed/);
    assert.equal(s.requests.length, 0);
  });

  test('a request the server never answers times out', async () => {
    const s = await serve(() => undefined);
    const e = await failure(client(s.url, { timeoutMs: 300 }).request('GET', '/slow'));
    assert.deepEqual([e.reason, e.message], ['timeout', 'GET /slow: no answer from the test server within 300 ms']);
  });

  test('a server that never completes the TLS handshake times out', async () => {
    const silent = net.createServer((socket) => socket.on('error', () => undefined));
    const e = await failure(client(await listen(silent), { timeoutMs: 300 }).request('GET', '/'));
    assert.equal(e.reason, 'timeout');
    assert.match(e.message, /the test server within 300 ms$/);
  });

  const sizes: [string, number, string | undefined][] = [
    ['at the bound', 1024, undefined],
    ['one byte over', 1025, 'GET /big: answer over 1024 bytes'],
    ['far over', 64 * 1024, 'GET /big: answer over 1024 bytes'],
  ];
  for (const [name, size, message] of sizes) {
    test(`an answer ${name} (${size} bytes) ${message ? 'is a bad_response' : 'is read'}`, async () => {
      const s = await serve(answer(200, 'x'.repeat(size)));
      const out = client(s.url).request('GET', '/big');
      if (message === undefined) return assert.equal((await out).length, size);
      const e = await failure(out);
      assert.deepEqual([e.reason, e.message], ['bad_response', message]);
    });
  }

  test("a non-200 answer goes to the caller's answer factory; a 200 that is not JSON is a bad_response", async () => {
    const s = await serve((req, res) => answer(req.url === '/refused' ? 409 : 200, req.url === '/refused' ? '{"error":{}}' : 'not json')(req, res, 1));
    const c = client(s.url);
    const refused = await failure(c.json('DELETE', '/refused'));
    assert.deepEqual([refused.reason, refused.status, refused.message], ['answer', 409, 'DELETE /refused: 409 {"error":{}}']);
    const garbled = await failure(c.json('GET', '/garbled'));
    assert.deepEqual([garbled.reason, garbled.message], ['bad_response', 'GET /garbled: the test server answered 200 with a body that is not JSON']);
  });

  test('a kept-alive connection the server dropped is retried once, on a fresh connection', async () => {
    // The second request on the first connection finds it closed, as when the server's idle timeout won the race.
    const s = await serve((req, res, nth) => (nth === 2 ? req.socket.destroy() : answer(200, `"${req.url}"`)(req, res, nth)));
    const c = client(s.url);
    assert.equal(await c.json('GET', '/first'), '/first');
    assert.equal(await c.json('GET', '/second'), '/second');
    assert.deepEqual(
      s.requests.map((r) => r.url),
      ['/first', '/second', '/second'],
    );
    assert.equal(s.connections, 2);
  });

  test('only once: a retry that fails too is the error, and a fresh connection is never retried', async () => {
    let answered = 0;
    const s = await serve((req, res, nth) => (answered++ === 0 ? answer(200, '{}')(req, res, nth) : req.socket.destroy()));
    const c = client(s.url);
    await c.request('GET', '/first');
    const e = await failure(c.request('GET', '/second'));
    assert.equal(e.reason, 'unreachable');
    assert.match(e.message, /^cannot reach the test server \(ECONNRESET/);
    assert.deepEqual(
      s.requests.map((r) => r.url),
      ['/first', '/second', '/second'],
    );
  });
});

describe('parseErrorBody', () => {
  const cases: [string, string, ReturnType<typeof parseErrorBody>][] = [
    ['a full refusal', '{"error":{"code":"AMIME_ERR_X","reason":"r","message":"m","issues":[{"path":"a"}]}}', { code: 'AMIME_ERR_X', reason: 'r', message: 'm', issues: [{ path: 'a' }] }],
    ['no reason', '{"error":{"code":"AMIME_ERR_X","message":"m"}}', { code: 'AMIME_ERR_X', reason: 'unknown', message: 'm' }],
    ['no message', '{"error":{"code":"AMIME_ERR_X"}}', undefined],
    ['error not an object', '{"error":1}', undefined],
    ['JSON null', 'null', undefined],
    ['not JSON', 'bad gateway', undefined],
  ];
  for (const [name, text, expected] of cases) {
    test(name, () => assert.deepEqual(parseErrorBody(text), expected));
  }
});
