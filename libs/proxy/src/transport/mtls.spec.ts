// Real TLS in one process: PeerConnector and PeerHttpAgent against
// createInboundServer, with a test PKI (root → intermediate → leaves).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { bundleToPem, createTrustBundle, svidTlsOptions, verifyPeer, type TrustBundle } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { PeerConnector, type PeerConnectRequest } from './peer-connector.js';
import { PeerConnectError } from './errors.js';
import { PeerHttpAgent } from './peer-http-agent.js';
import { createInboundServer, type InboundConnection, type InboundServer } from './inbound-server.js';
import { ALPN_HTTP1, ALPN_TCP, serviceSni } from './sni.js';
import { splice } from './pipe.js';

const TD = 'td';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CATALOG = `spiffe://${TD}/ns/shop/sa/catalog`;
const ADMIN = `spiffe://${TD}/ns/shop/sa/admin`;
const CATALOG_SNI = serviceSni({ service: 'catalog', namespace: 'shop' });

let pki: TestPki;
let foreign: TestPki;
let bundle: TrustBundle;
const leaves = new Map<string, TestCert>();

before(async () => {
  pki = await createTestPki(TD);
  foreign = await createTestPki('other.td');
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  for (const p of ['/ns/shop/sa/web', '/ns/shop/sa/catalog', '/ns/shop/sa/admin', '/ns/shop/sa/catalog-v2']) leaves.set(`spiffe://${TD}${p}`, await pki.leaf(p));
});

function contextOf(id: string, maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): tls.SecureContext {
  const leaf = leaves.get(id)!;
  return svidTlsOptions({ certChain: toPemChain([leaf, pki.intermediate]), privateKey: leaf.key.privateKey, bundle, deferPeerRejection: true, maxVersion }).secureContext;
}

const verify = (s: TLSSocket) => verifyPeer(s, { bundle });

interface Seen {
  conn: InboundConnection;
  bytes: number;
  errors: string[];
  closed: Promise<unknown>;
}

interface Peer {
  inbound: InboundServer;
  port: number;
  seen: Seen[];
  refused: { reason: string; message: string; remote: string }[];
  /** Resolves with the next refusal with this reason (others, e.g. aborts left by earlier tests, are skipped). */
  nextRefusal(reason: string): Promise<{ reason: string; message: string; remote: string }>;
  /** Resolves with the next accepted connection. */
  nextConnection(): Promise<Seen>;
  httpServer: http.Server;
  close(): Promise<void>;
}

/** The catalog VM's agent: serves CATALOG_SNI; TCP connections echo, HTTP/1.1 ones go to an http.Server. */
async function startPeer(opts: { defaultContext?: tls.SecureContext } = {}): Promise<Peer> {
  const seen: Seen[] = [];
  const refused: Peer['refused'] = [];
  let refusalWaiters: { reason: string; resolve: (r: Peer['refused'][number]) => void }[] = [];
  let connWaiters: ((s: Seen) => void)[] = [];
  const httpServer = http.createServer({ keepAlive: true }, (req, res) => {
    const s = seen.find((x) => x.conn.socket === req.socket);
    res.setHeader('x-peer', s?.conn.peerId ?? 'unknown');
    res.setHeader('x-conn', String(s === undefined ? -1 : seen.indexOf(s)));
    res.end('ok');
  });
  const catalogCtx = contextOf(CATALOG);
  const inbound = createInboundServer({
    contexts: (sni) => (sni === CATALOG_SNI ? catalogCtx : undefined),
    defaultContext: opts.defaultContext ?? catalogCtx,
    verify,
    handshakeTimeoutMs: 5000,
    onConnection: (conn) => {
      const s: Seen = { conn, bytes: 0, errors: [], closed: new Promise((r) => conn.socket.once('close', r)) };
      conn.socket.on('error', (e: NodeJS.ErrnoException) => s.errors.push(e.code ?? e.message));
      seen.push(s);
      if (conn.alpn === ALPN_HTTP1) {
        httpServer.emit('connection', conn.socket);
      } else {
        conn.socket.on('data', (d: Buffer) => {
          s.bytes += d.length;
          conn.socket.write(d);
        });
        conn.socket.on('end', () => conn.socket.end());
      }
      const w = connWaiters;
      connWaiters = [];
      for (const f of w) f(s);
    },
    onRefused: (reason, message, remote) => {
      const r = { reason, message, remote };
      refused.push(r);
      const hit = refusalWaiters.filter((w) => w.reason === reason);
      refusalWaiters = refusalWaiters.filter((w) => w.reason !== reason);
      for (const w of hit) w.resolve(r);
    },
  });
  const { port } = await inbound.listen(0, '127.0.0.1');
  return {
    inbound,
    port,
    seen,
    refused,
    nextRefusal: (reason) => new Promise((resolve) => refusalWaiters.push({ reason, resolve })),
    nextConnection: () => new Promise((r) => connWaiters.push(r)),
    httpServer,
    close: async () => {
      httpServer.close();
      await inbound.close();
    },
  };
}

function connector(opts: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; handshakeTimeoutMs?: number; contexts?: Map<string, tls.SecureContext> } = {}): PeerConnector {
  const cache = opts.contexts ?? new Map<string, tls.SecureContext>();
  return new PeerConnector({
    context: (id) => {
      let c = cache.get(id);
      if (c === undefined) cache.set(id, (c = contextOf(id, opts.maxVersion)));
      return c;
    },
    verify,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 5000,
  });
}

function req(port: number, over: Partial<PeerConnectRequest> = {}): PeerConnectRequest {
  return { address: '127.0.0.1', port, sni: CATALOG_SNI, alpn: ALPN_TCP, sourceIdentity: WEB, expectedIdentity: CATALOG, ...over };
}

/** Writes `text` and reads the echo back. */
async function echo(socket: TLSSocket, text: string): Promise<string> {
  socket.write(text);
  let got = '';
  for (let i = 0; i < 100 && got.length < text.length; i++) {
    const [d] = (await once(socket, 'data')) as [Buffer];
    got += d.toString();
  }
  return got;
}

async function rejection(p: Promise<unknown>): Promise<PeerConnectError> {
  try {
    const s = await p;
    (s as TLSSocket).destroy();
  } catch (err) {
    assert.ok(err instanceof PeerConnectError, `not a PeerConnectError: ${String(err)}`);
    return err;
  }
  assert.fail('connect resolved, expected a rejection');
}

/** Polls a condition on the event loop, at most `tries` × 10 ms. */
async function until(cond: () => boolean, tries = 300): Promise<void> {
  for (let i = 0; i < tries && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'condition not reached');
}

describe('PeerConnector ↔ createInboundServer (mTLS)', { timeout: 60_000 }, () => {
  let peer: Peer;
  before(async () => {
    peer = await startPeer();
  });
  after(async () => {
    await peer.close();
  });

  test('mutual TLS: SNI, ALPN and both identities arrive; bytes flow', async () => {
    const c = connector();
    const accepted = peer.nextConnection();
    const socket = await c.connect(req(peer.port));
    const s = await accepted;
    assert.equal(s.conn.peerId, WEB);
    assert.deepEqual(s.conn.target, { service: 'catalog', namespace: 'shop' });
    assert.equal(s.conn.servername, CATALOG_SNI);
    assert.equal(s.conn.alpn, ALPN_TCP);
    assert.equal(s.conn.serialHex, leaves.get(WEB)!.serialHex.replace(/^(00)+/, ''));
    assert.equal(s.conn.resumed, false);
    assert.equal(socket.alpnProtocol, ALPN_TCP);
    assert.equal(await echo(socket, 'ping'), 'ping');
    assert.equal(c.stats.fullHandshakes, 1);
    assert.equal(c.stats.connected, 1);
    socket.end();
    await s.closed;
    assert.equal(peer.inbound.connectionCount, 0);
  });

  test('a peer that is not the expected identity is refused before any byte is written', async () => {
    const c = connector();
    const accepted = peer.nextConnection();
    const refusal = peer.nextRefusal('handshake_aborted');
    const err = await rejection(c.connect(req(peer.port, { expectedIdentity: ADMIN })));
    assert.equal(err.code, 'AMIME_ERR_PEER_IDENTITY');
    assert.equal(err.reason, 'identity_mismatch');
    assert.match(err.message, /is spiffe:\/\/td\/ns\/shop\/sa\/catalog, expected spiffe:\/\/td\/ns\/shop\/sa\/admin/);
    // the server side saw the (valid) client then only the close, or the
    // close came before it finished the handshake; never a byte either way
    const first = await Promise.race([accepted, refusal]);
    if ('conn' in first) {
      await first.closed;
      assert.equal(first.bytes, 0);
    } else {
      assert.equal(first.reason, 'handshake_aborted');
    }
    assert.equal(c.stats.failed['AMIME_ERR_PEER_IDENTITY'], 1);
    assert.equal(c.sessionCount, 0);
  });

  test('a server whose chain does not verify is refused with the verifier reason', async () => {
    const otherBundle = createTrustBundle({ trustDomain: TD, roots: [foreign.root.der] });
    const c = new PeerConnector({ context: () => contextOf(WEB), verify: (s) => verifyPeer(s, { bundle: otherBundle }) });
    const err = await rejection(c.connect(req(peer.port)));
    assert.equal(err.code, 'AMIME_ERR_PEER_VERIFY');
    assert.equal(err.reason, 'unknown_issuer');
  });

  test('a client without a certificate is refused (no_peer_certificate)', async () => {
    const noCert = tls.createSecureContext({ ca: bundleToPem(bundle), minVersion: 'TLSv1.2' });
    const c = new PeerConnector({ context: () => noCert, verify });
    const refusal = peer.nextRefusal('no_peer_certificate');
    const before = peer.seen.length;
    // TLS 1.3: the client's handshake succeeds, then the server closes
    const socket = await c.connect(req(peer.port));
    const r = await refusal;
    assert.equal(r.reason, 'no_peer_certificate');
    assert.match(r.remote, /^127\.0\.0\.1:\d+$/);
    socket.resume();
    if (!socket.closed) await once(socket, 'close');
    assert.equal(peer.seen.length, before);
  });

  test('a client from a foreign trust domain is refused with a reason', async () => {
    const stranger = await foreign.leaf('/ns/shop/sa/web');
    const ctx = svidTlsOptions({ certChain: toPemChain([stranger, foreign.intermediate]), privateKey: stranger.key.privateKey, bundle, deferPeerRejection: true }).secureContext;
    const c = new PeerConnector({ context: () => ctx, verify });
    const refusal = peer.nextRefusal('trust_domain_mismatch');
    const socket = await c.connect(req(peer.port));
    const r = await refusal;
    assert.equal(r.reason, 'trust_domain_mismatch', r.message);
    socket.resume();
    if (!socket.closed) await once(socket, 'close');
  });

  test('an unknown SNI fails the handshake (unknown_service)', async () => {
    const c = connector();
    const refusal = peer.nextRefusal('unknown_service');
    const err = await rejection(c.connect(req(peer.port, { sni: serviceSni({ service: 'nope', namespace: 'shop' }) })));
    assert.equal(err.code, 'AMIME_ERR_PEER_CONNECT');
    const r = await refusal;
    assert.equal(r.reason, 'unknown_service');
    assert.match(r.message, /nope\.shop\.svc\.amime/);
  });

  test('ALPN: a protocol the server does not speak fails; a server that negotiates none is refused', async () => {
    const c = connector();
    const failed = await rejection(c.connect(req(peer.port, { alpn: 'h2' })));
    assert.equal(failed.code, 'AMIME_ERR_PEER_CONNECT');
    assert.match(failed.reason, /no_application_protocol/);

    // a valid peer without ALPN at all
    const leaf = leaves.get(CATALOG)!;
    const plain = tls.createServer(svidTlsOptions({ certChain: toPemChain([leaf, pki.intermediate]), privateKey: leaf.key.privateKey, bundle, deferPeerRejection: true }), (s) => s.on('error', () => { /* expected */ }));
    plain.listen(0, '127.0.0.1');
    await once(plain, 'listening');
    const err = await rejection(c.connect(req((plain.address() as net.AddressInfo).port)));
    assert.equal(err.code, 'AMIME_ERR_PEER_ALPN');
    assert.equal(err.reason, 'alpn_mismatch');
    assert.match(err.message, /negotiated ALPN false, expected amime-tcp\/1/);
    plain.close();
  });

  test('connection refused and handshake timeout are typed', async () => {
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port: deadPort } = closed.address() as net.AddressInfo;
    await new Promise((r) => closed.close(r));
    const refused = await rejection(connector().connect(req(deadPort)));
    assert.equal(refused.code, 'AMIME_ERR_PEER_CONNECT');
    assert.equal(refused.reason, 'econnrefused');

    // a TCP server that never speaks TLS
    const silent = net.createServer((s) => s.on('error', () => { /* expected */ }));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const { port } = silent.address() as net.AddressInfo;
    const timedOut = await rejection(connector({ handshakeTimeoutMs: 200 }).connect(req(port)));
    assert.equal(timedOut.code, 'AMIME_ERR_PEER_TIMEOUT');
    assert.equal(timedOut.reason, 'handshake_timeout');
    silent.close();
  });

  test('a missing SVID context is a typed error, not a throw', async () => {
    const c = new PeerConnector({ context: () => { throw new Error('no SVID yet'); }, verify });
    const err = await rejection(c.connect(req(peer.port)));
    assert.equal(err.code, 'AMIME_ERR_PEER_CONTEXT');
    assert.match(err.message, /no SVID yet/);
  });

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${maxVersion}: the second connection resumes the session, on both sides`, async () => {
      const c = connector({ maxVersion });
      const first = await c.connect(req(peer.port));
      assert.equal(first.getProtocol(), maxVersion);
      assert.equal(await echo(first, 'one'), 'one'); // the ticket has arrived by now
      await until(() => c.sessionCount === 1);
      first.end();

      const accepted = peer.nextConnection();
      const second = await c.connect(req(peer.port));
      assert.equal(second.isSessionReused(), true);
      const s = await accepted;
      assert.equal(s.conn.resumed, true);
      assert.equal(s.conn.peerId, WEB);
      assert.equal(await echo(second, 'two'), 'two');
      assert.equal(c.stats.fullHandshakes, 1);
      assert.equal(c.stats.resumedHandshakes, 1);
      second.end();

      // another source identity never gets this session
      const accepted3 = peer.nextConnection();
      const third = await c.connect(req(peer.port, { sourceIdentity: ADMIN }));
      assert.equal(third.isSessionReused(), false);
      assert.equal((await accepted3).conn.peerId, ADMIN);
      third.destroy();

      // after an SVID rotation the source's sessions are gone
      assert.equal(c.forgetSessions(WEB), 1);
      const fourth = await c.connect(req(peer.port));
      assert.equal(fourth.isSessionReused(), false);
      fourth.destroy();
    });
  }

  test('sessions expire after sessionTtlMs (injected clock) and the cache is bounded', async () => {
    let now = Date.now();
    const contexts = new Map<string, tls.SecureContext>();
    const c = new PeerConnector({ context: (id) => contexts.get(id) ?? (contexts.set(id, contextOf(id)), contexts.get(id)!), verify, sessionTtlMs: 60_000, sessionCacheSize: 1, now: () => now });
    const first = await c.connect(req(peer.port));
    assert.equal(await echo(first, 'a'), 'a');
    await until(() => c.sessionCount === 1);
    first.destroy();
    now += 60_001;
    const second = await c.connect(req(peer.port));
    assert.equal(second.isSessionReused(), false, 'an expired session is not offered');
    assert.equal(await echo(second, 'b'), 'b');
    await until(() => c.sessionCount === 1);
    second.destroy();
    // a second source identity evicts the first one's session (size 1)
    const other = await c.connect(req(peer.port, { sourceIdentity: ADMIN }));
    assert.equal(await echo(other, 'c'), 'c');
    await until(() => c.stats.sessionsDropped >= 2);
    assert.equal(c.sessionCount, 1);
    other.destroy();
    const third = await c.connect(req(peer.port));
    assert.equal(third.isSessionReused(), false, 'evicted');
    third.destroy();
  });

  test('closeWhere closes live connections of a peer, and its sessions can no longer resume', async () => {
    const c = connector();
    const sockets: TLSSocket[] = [];
    for (const id of [WEB, WEB, ADMIN]) {
      const s = await c.connect(req(peer.port, { sourceIdentity: id }));
      assert.equal(await echo(s, 'x'), 'x');
      sockets.push(s);
    }
    await until(() => peer.inbound.connectionCount === 3);
    const webClosed = [once(sockets[0]!, 'close'), once(sockets[1]!, 'close')];
    const n = peer.inbound.closeWhere((peerId, serialHex) => peerId === WEB && serialHex === leaves.get(WEB)!.serialHex);
    assert.equal(n, 2);
    sockets[0]!.resume();
    sockets[1]!.resume();
    await Promise.all(webClosed);
    // the other peer's connection is untouched
    assert.equal(await echo(sockets[2]!, 'still here'), 'still here');
    assert.equal(peer.inbound.connectionCount, 1);
    assert.equal(peer.inbound.stats.closedByPredicate, 2);

    // WEB still holds a ticket; the server has forgotten the verified leaf
    await until(() => c.sessionCount >= 1);
    const refusal = peer.nextRefusal('session_not_verified');
    const resumed = await c.connect(req(peer.port));
    assert.equal(resumed.isSessionReused(), true);
    assert.equal((await refusal).reason, 'session_not_verified');
    resumed.resume();
    if (!resumed.closed) await once(resumed, 'close');
    // the client side drops sessions of a revoked peer too
    assert.ok(c.forgetPeers((id) => id === CATALOG) >= 1);
    sockets[2]!.destroy();
  });

  test('TLS 1.2 works, and renegotiation is refused by the server', async () => {
    const c = connector({ maxVersion: 'TLSv1.2' });
    const accepted = peer.nextConnection();
    const socket = await c.connect(req(peer.port));
    assert.equal(socket.getProtocol(), 'TLSv1.2');
    const s = await accepted;
    assert.equal(await echo(socket, 'tls12'), 'tls12');
    socket.on('error', () => { /* expected */ });
    socket.renegotiate({ rejectUnauthorized: false }, () => { /* expected */ });
    socket.resume();
    await s.closed;
    assert.deepEqual(s.errors, ['ERR_TLS_RENEGOTIATION_DISABLED']);
    if (!socket.closed) await once(socket, 'close');
  });
});

describe('splice over mTLS (the L4 path end to end)', { timeout: 30_000 }, () => {
  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${maxVersion}: half-close crosses the mesh in both directions`, async () => {
      // the catalog app: reads the request to EOF, then answers and closes
      const app = net.createServer({ allowHalfOpen: true }, (s) => {
        let body = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (body += d));
        s.on('end', () => s.end(`got ${body.length} bytes`));
      });
      app.listen(0, '127.0.0.1');
      await once(app, 'listening');
      const appPort = (app.address() as net.AddressInfo).port;
      const results: Promise<unknown>[] = [];
      const catalogCtx = contextOf(CATALOG, maxVersion);
      const inbound = createInboundServer({
        contexts: () => catalogCtx,
        defaultContext: catalogCtx,
        verify,
        onConnection: ({ socket }) => {
          const upstream = net.connect({ port: appPort, host: '127.0.0.1' });
          results.push(splice(socket, upstream).closed);
        },
      });
      const { port } = await inbound.listen();
      try {
        const socket = await connector({ maxVersion }).connect(req(port));
        assert.equal(socket.getProtocol(), maxVersion);
        let answer = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (answer += d));
        const ended = once(socket, 'end');
        socket.write('a'.repeat(100_000));
        socket.end(); // FIN (close_notify) after the request: the answer must still come back
        await ended;
        assert.equal(answer, 'got 100000 bytes');
        const [r] = (await Promise.all(results)) as { bytesOut: number; bytesIn: number; error?: Error }[];
        assert.equal(r!.error, undefined);
        assert.equal(r!.bytesOut, 100_000);
        assert.equal(r!.bytesIn, 'got 100000 bytes'.length);
      } finally {
        await inbound.close();
        app.close();
      }
    });
  }

  test('a client that never completes the handshake is refused (handshake_timeout)', async () => {
    const ctx = contextOf(CATALOG);
    const refused: string[] = [];
    const inbound = createInboundServer({ contexts: () => ctx, defaultContext: ctx, verify, handshakeTimeoutMs: 200, onConnection: () => assert.fail('no connection expected'), onRefused: (reason) => refused.push(reason) });
    const { port } = await inbound.listen();
    try {
      const raw = net.connect({ port, host: '127.0.0.1' });
      raw.on('error', () => { /* expected */ });
      await once(raw, 'close');
      await until(() => refused.length > 0);
      assert.deepEqual(refused, ['handshake_timeout']);
      assert.equal(inbound.stats.refused['handshake_timeout'], 1);
    } finally {
      await inbound.close();
    }
  });
});

describe('InboundServer.setDefaultContext', { timeout: 30_000 }, () => {
  test('swaps the served certificate for new connections without dropping open ones', async () => {
    const peer = await startPeer();
    try {
      // no SNI (an IP as servername): the default context serves
      const connectNoSni = async (): Promise<TLSSocket> => {
        const s = tls.connect({ host: '127.0.0.1', port: peer.port, secureContext: contextOf(WEB), rejectUnauthorized: false, checkServerIdentity: () => undefined, ALPNProtocols: [ALPN_TCP] });
        await once(s, 'secureConnect');
        return s;
      };
      const served = (s: TLSSocket): string => {
        const r = verify(s);
        assert.ok(r.ok, r.ok ? '' : r.message);
        return r.spiffeId;
      };
      const accepted = peer.nextConnection();
      const old = await connectNoSni();
      assert.equal(served(old), CATALOG);
      assert.equal((await accepted).conn.target, undefined);
      assert.equal(await echo(old, 'before'), 'before');

      peer.inbound.setDefaultContext(contextOf(`spiffe://${TD}/ns/shop/sa/catalog-v2`));
      const fresh = await connectNoSni();
      assert.equal(served(fresh), `spiffe://${TD}/ns/shop/sa/catalog-v2`);
      assert.equal(await echo(fresh, 'new'), 'new');
      // the connection opened before the swap is still up
      assert.equal(await echo(old, 'after'), 'after');
      old.destroy();
      fresh.destroy();
    } finally {
      await peer.close();
    }
  });
});

describe('PeerHttpAgent', { timeout: 30_000 }, () => {
  test('two requests share one pooled, verified connection', async () => {
    const peer = await startPeer();
    const agent = new PeerHttpAgent({ connector: connector(), maxSockets: 4 });
    try {
      const get = () =>
        new Promise<{ status: number; peer: string; conn: string; reused: boolean }>((resolve, reject) => {
          const r = http.request(
            {
              agent,
              peer: { address: '127.0.0.1', port: peer.port, sni: CATALOG_SNI, sourceIdentity: WEB, expectedIdentity: CATALOG },
              path: '/items',
              headers: { host: 'catalog.shop' },
            } as http.RequestOptions,
            (res) => {
              res.resume();
              res.on('end', () => resolve({ status: res.statusCode!, peer: String(res.headers['x-peer']), conn: String(res.headers['x-conn']), reused: r.reusedSocket }));
            },
          );
          r.on('error', reject);
          r.end();
        });
      const a = await get();
      const b = await get();
      assert.deepEqual([a.status, b.status], [200, 200]);
      assert.equal(a.peer, WEB);
      assert.equal(peer.seen.length, 1, 'one inbound connection for both requests');
      assert.equal(a.conn, b.conn);
      assert.equal(b.reused, true);
      assert.equal(peer.seen[0]!.conn.alpn, ALPN_HTTP1);
      assert.equal(agent.closeIdle(), 1);
      await peer.seen[0]!.closed;

      // a request expecting another identity is refused, with the typed error
      const refused = await new Promise<Error>((resolve) => {
        const r = http.request({ agent, peer: { address: '127.0.0.1', port: peer.port, sni: CATALOG_SNI, sourceIdentity: WEB, expectedIdentity: ADMIN }, path: '/' } as http.RequestOptions);
        r.on('error', resolve);
        r.end();
      });
      assert.ok(refused instanceof PeerConnectError);
      assert.equal(refused.code, 'AMIME_ERR_PEER_IDENTITY');
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  test('pools are keyed by endpoint, SNI, source and expected identity', () => {
    const agent = new PeerHttpAgent({ connector: connector() });
    const base = { address: '10.0.0.2', port: 15443, sni: CATALOG_SNI, sourceIdentity: WEB, expectedIdentity: CATALOG };
    const name = (p: object) => agent.getName({ peer: { ...base, ...p } } as http.ClientRequestArgs);
    const names = new Set([name({}), name({ address: '10.0.0.3' }), name({ port: 1 }), name({ sni: 'x.shop.svc.amime' }), name({ sourceIdentity: ADMIN }), name({ expectedIdentity: ADMIN })]);
    assert.equal(names.size, 6);
    assert.equal(name({}), name({}));
    agent.destroy();
  });
});
