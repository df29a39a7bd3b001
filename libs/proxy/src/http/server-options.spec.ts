// Request smuggling and hygiene, against a real http.createServer(serverOptions(),
// inboundHandler) over raw TCP: every malformed request is refused (400 / 408 / 431 /
// 501 / 505, or the connection closed) and the local app never sees a request.
// The first block documents what Node 20's strict llhttp refuses on its own; the
// second what checkRequest adds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { createInboundHandler } from './inbound-http.js';
import { createProxyServer, serverOptions } from './server-options.js';
import { closeServer, listen, rawRequest, startBackend, type Backend } from './testing/helpers.js';

let app: Backend;
let proxy: http.Server;
let port: number;
const localAgent = new http.Agent({ keepAlive: true });

before(async () => {
  app = await startBackend((_req, res) => res.end('app'));
  const handler = createInboundHandler({
    peerIdOf: (_s: Socket) => 'spiffe://td/ns/a/sa/caller',
    authorize: (_peer, _method, target) => ({ allowed: true, path: target.split('?')[0]!, query: target.split('?')[1] ?? '' }),
    local: { host: '127.0.0.1', port: app.port, agent: localAgent },
  });
  proxy = http.createServer(serverOptions({ headersTimeoutMs: 400, requestTimeoutMs: 2000, connectionsCheckingIntervalMs: 100 }), handler);
  port = await listen(proxy);
});
after(async () => {
  await closeServer(proxy);
  await app.close();
  localAgent.destroy();
});

const H = 'Host: app\r\n';
// [name, payload, the statuses accepted as a refusal]
const byLlhttp: Array<[string, string, number[]]> = [
  ['CL + TE', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
  ['TE + CL', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, [400]],
  ['duplicate CL, same value', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, [400]],
  ['duplicate CL, different values', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, [400]],
  ['CL as a list', `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`, [400]],
  ['CL with a sign', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`, [400]],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`, [400]],
  ['obs-fold hiding TE', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, [400]],
  ['bare CR inside a value', `GET / HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n`, [400]],
  ['bare CR as a line end', `GET / HTTP/1.1\r\nHost: app\rX-A: b\r\n\r\n`, [400]],
  ['bare LF line ends', 'GET / HTTP/1.1\nHost: app\nX-A: b\n\n', [400]],
  ['one bare LF line end', `GET / HTTP/1.1\r\nHost: app\nX-A: b\r\n\r\n`, [400]],
  ['space before colon', `GET / HTTP/1.1\r\n${H}X-A : b\r\n\r\n`, [400]],
  ['space before colon on CL', `POST / HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\nhello`, [400]],
  ['tab before colon', `GET / HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`, [400]],
  ['invalid header name char', `GET / HTTP/1.1\r\n${H}X(A: b\r\n\r\n`, [400]],
  ['empty header name', `GET / HTTP/1.1\r\n${H}: b\r\n\r\n`, [400]],
  ['NUL in a value', `GET / HTTP/1.1\r\n${H}X-A: b\x00c\r\n\r\n`, [400]],
  ['control char in a value', `GET / HTTP/1.1\r\n${H}X-A: b\x01c\r\n\r\n`, [400]],
  ['DEL in a value', `GET / HTTP/1.1\r\n${H}X-A: b\x7fc\r\n\r\n`, [400]],
  ['leading whitespace on the first header', `GET / HTTP/1.1\r\n Host: app\r\n\r\n`, [400]],
  ['invalid chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, [400]],
  ['chunk size overflow', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n`, [400]],
  ['chunk size ended by bare LF', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n`, [400]],
  ['chunk data longer than its size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n`, [400]],
  ['chunked not the last coding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, [400]],
  // llhttp flags this only when it reaches the body; checkRequest answers 501 first
  ['unknown transfer coding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, [400, 501]],
  ['TE repeated', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
  ['lower-case method', `get / HTTP/1.1\r\n${H}\r\n`, [400]],
  ['unknown method', `FOO / HTTP/1.1\r\n${H}\r\n`, [400]],
  ['space inside the target', `GET /a b HTTP/1.1\r\n${H}\r\n`, [400]],
  ['no Host on HTTP/1.1 (requireHostHeader)', 'GET / HTTP/1.1\r\n\r\n', [400]],
  ['negative CL', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, [400]],
  ['CL overflow', `POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n`, [400]],
  ['headers over 16 KiB', `GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(17 * 1024)}\r\n\r\n`, [431]],
  ['many small headers over 16 KiB', `GET / HTTP/1.1\r\n${H}${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(300)}\r\n`, [431]],
];
const byCheckRequest: Array<[string, string, number[]]> = [
  ['HTTP/0.9-style request line', 'GET /\r\n\r\n', [505, 400]],
  ['HTTP/2.0 request line', `GET / HTTP/2.0\r\n${H}\r\n`, [505]],
  ['TE on HTTP/1.0', `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
  ['coding before chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, [501]],
  ['two Host fields', `GET / HTTP/1.1\r\nHost: app\r\nHost: evil\r\n\r\n`, [400]],
  ['absolute-form with another authority', `GET http://evil/x HTTP/1.1\r\n${H}\r\n`, [400]],
  ['absolute-form with userinfo', `GET http://u@app/x HTTP/1.1\r\n${H}\r\n`, [400]],
  ['asterisk-form for GET', `GET * HTTP/1.1\r\n${H}\r\n`, [400]],
];

for (const [group, cases] of [['llhttp', byLlhttp], ['checkRequest', byCheckRequest]] as const) {
  for (const [name, payload, statuses] of cases) {
    test(`${group} refuses: ${name}`, async () => {
      const before = app.seen.length;
      const r = await rawRequest(port, payload);
      assert.ok(statuses.includes(r.status), `expected ${statuses.join('/')}, got ${r.status}: ${JSON.stringify(r.text.slice(0, 200))}`);
      assert.ok(r.closed || /connection: close/i.test(r.text), 'the connection is closed after a refusal');
      assert.equal(app.seen.length, before, 'the app never sees the request');
    });
  }
}

test('control: a well-formed request (and obs-text bytes) reaches the app', async () => {
  const before = app.seen.length;
  const r = await rawRequest(port, `POST /ok HTTP/1.1\r\n${H}X-A: caf\xe9\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`);
  assert.equal(r.status, 200, r.text);
  assert.equal(app.seen.length, before + 1);
  assert.equal(app.seen.at(-1)!.body.toString(), 'hello');
});

test('control: chunked bodies and chunk extensions pass', async () => {
  const r = await rawRequest(port, `POST /c HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n`);
  assert.equal(r.status, 200, r.text);
  assert.equal(app.seen.at(-1)!.body.toString(), 'hello');
});

test('a smuggled second request after a refused one is never parsed', async () => {
  const before = app.seen.length;
  const r = await rawRequest(port, `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`);
  assert.equal(r.status, 400);
  assert.equal(r.text.match(/HTTP\/1\.1/g)!.length, 1, 'exactly one response');
  assert.equal(app.seen.length, before);
});

test('slow headers: headersTimeout answers 408 and closes', async () => {
  const before = app.seen.length;
  // half a request head, then silence; the wait is far above the 400 ms timeout + 100 ms check interval
  const r = await rawRequest(port, `GET / HTTP/1.1\r\n${H}X-Slow: `, 5000);
  assert.equal(r.status, 408, JSON.stringify(r.text));
  assert.ok(r.closed);
  assert.equal(app.seen.length, before);
});

test('the strict parser matters: with insecureHTTPParser some of the table gets through', async () => {
  const lenient = http.createServer({ ...serverOptions(), insecureHTTPParser: true }, (_req, res) => res.end('seen'));
  const p = await listen(lenient);
  try {
    const r = await rawRequest(p, `GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 200, 'obs-fold is accepted by the lenient parser');
  } finally {
    await closeServer(lenient);
  }
});

test('createProxyServer: a malformed head is answered 400 and closed; a good request reaches the handler; upgrades go to handler.upgrade', async () => {
  const seen: string[] = [];
  const handler = Object.assign((req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push(`request ${req.url}`);
    res.end('ok');
  }, {
    upgrade: (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
      seen.push(`upgrade ${req.url}`);
      socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    },
  });
  const server = createProxyServer(handler);
  const p = await listen(server);
  try {
    const bad = await rawRequest(p, `GET / HTTP/1.1\r\n${H}X-A: b\x00c\r\n\r\n`);
    assert.deepEqual([bad.status, bad.closed], [400, true]);
    const good = await rawRequest(p, `GET /fine HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    assert.equal(good.status, 200);
    const up = await rawRequest(p, `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    assert.equal(up.status, 403);
    assert.deepEqual(seen, ['request /fine', 'upgrade /ws']);
  } finally {
    await closeServer(server);
  }
});
