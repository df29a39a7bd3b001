// MuxPool over real mTLS: PeerConnector → createInboundServer serving
// amime-mux/1 with a server MuxSession per connection (test PKI as in mtls.spec.ts).
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls, { type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { createTrustBundle, svidTlsOptions, verifyPeer, type TrustBundle } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { PeerConnector } from './peer-connector.js';
import { PeerConnectError } from './errors.js';
import { createInboundServer, type InboundServer } from './inbound-server.js';
import { ALPN_MUX, serviceSni } from './sni.js';
import { MuxSession, type MuxResetReason, type MuxStream } from './mux.js';
import { MuxPool, type MuxPoolOptions, type MuxTarget } from './mux-pool.js';
import { until, within } from '../testing/wait.js';

const TD = 'td';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CATALOG = `spiffe://${TD}/ns/shop/sa/catalog`;
const ADMIN = `spiffe://${TD}/ns/shop/sa/admin`;
const CATALOG_SNI = serviceSni({ service: 'catalog', namespace: 'shop' });
const CATALOG_V2_SNI = serviceSni({ service: 'catalog-v2', namespace: 'shop' });

let pki: TestPki;
let bundle: TrustBundle;
const leaves = new Map<string, TestCert>();
const contexts = new Map<string, tls.SecureContext>();

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  for (const p of ['/ns/shop/sa/web', '/ns/shop/sa/catalog', '/ns/shop/sa/admin']) leaves.set(`spiffe://${TD}${p}`, await pki.leaf(p));
});

function contextOf(id: string): tls.SecureContext {
  let c = contexts.get(id);
  if (c === undefined) {
    const leaf = leaves.get(id)!;
    c = svidTlsOptions({ certChain: toPemChain([leaf, pki.intermediate]), privateKey: leaf.key.privateKey, bundle, deferPeerRejection: true }).secureContext;
    contexts.set(id, c);
  }
  return c;
}

const verify = (s: TLSSocket) => verifyPeer(s, { bundle });


interface ServerSession {
  session: MuxSession;
  peerId: string;
  servername: string | undefined;
  streams: MuxStream[];
  resets: MuxResetReason[];
  closed: Promise<Error | undefined>;
}

/** The catalog agent: every amime-mux/1 connection gets a server MuxSession whose streams echo. */
interface Peer {
  inbound: InboundServer;
  port: number;
  sessions: ServerSession[];
  close(): Promise<void>;
}

async function startPeer(): Promise<Peer> {
  const sessions: ServerSession[] = [];
  const inbound = createInboundServer({
    contexts: (sni) => (sni === CATALOG_SNI || sni === CATALOG_V2_SNI ? contextOf(CATALOG) : undefined),
    defaultContext: contextOf(CATALOG),
    verify,
    handshakeTimeoutMs: 5000,
    onConnection: (conn) => {
      assert.equal(conn.alpn, ALPN_MUX);
      let resolveClosed!: (e: Error | undefined) => void;
      const entry = { streams: [], resets: [], peerId: conn.peerId, servername: conn.servername, closed: new Promise<Error | undefined>((r) => (resolveClosed = r)) } as unknown as ServerSession;
      entry.session = new MuxSession(conn.socket, {
        role: 'server',
        onStream: (s) => {
          entry.streams.push(s);
          s.ondata = (d) => {
            s.consumed(d.length);
            s.write(Buffer.from(d));
          };
          s.onend = () => s.end();
          s.onreset = (r) => entry.resets.push(r);
        },
        onClose: (e) => resolveClosed(e),
      });
      sessions.push(entry);
    },
  });
  const { port } = await inbound.listen(0, '127.0.0.1');
  return { inbound, port, sessions, close: () => inbound.close() };
}

function connector(): PeerConnector {
  return new PeerConnector({ context: contextOf, verify, handshakeTimeoutMs: 5000 });
}

function target(port: number, over: Partial<MuxTarget> = {}): MuxTarget {
  return { address: '127.0.0.1', port, sni: CATALOG_SNI, sourceIdentity: WEB, expectedIdentity: CATALOG, ...over };
}

/** Sends `text` on the stream, ends it, and resolves with the echo once the server ends. */
function echo(s: MuxStream, text: string | Buffer): Promise<Buffer> {
  return within(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      s.ondata = (d) => {
        chunks.push(Buffer.from(d));
        s.consumed(d.length);
      };
      s.onend = () => resolve(Buffer.concat(chunks));
      s.onreset = (r) => reject(new Error(`stream ${s.id} reset: ${r}`));
      s.write(Buffer.from(text));
      s.end();
    }),
    `the echo on stream ${s.id}`,
  );
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail('open() resolved, expected a rejection');
}

describe('MuxPool over mTLS', { timeout: 120_000 }, () => {
  let peer: Peer;
  const pools: MuxPool[] = [];
  function pool(opts: Omit<MuxPoolOptions, 'connector'> & { connector?: PeerConnector } = {}): { pool: MuxPool; connector: PeerConnector; connections: TLSSocket[] } {
    const c = opts.connector ?? connector();
    const connections: TLSSocket[] = [];
    const p = new MuxPool({
      ...opts,
      connector: c,
      onConnection: (socket, req) => {
        connections.push(socket);
        opts.onConnection?.(socket, req);
      },
    });
    pools.push(p);
    return { pool: p, connector: c, connections };
  }

  before(async () => {
    peer = await startPeer();
  });
  /** The server side of the n-th connection (TLS 1.3: the server may see it after the client does). */
  async function serverSession(n: number): Promise<ServerSession> {
    await until(() => peer.sessions.length > n, `server session ${n}`);
    return peer.sessions[n]!;
  }
  afterEach(() => {
    for (const p of pools.splice(0)) p.close();
  });
  after(async () => {
    await peer.close();
  });

  test('20 concurrent open() calls share one handshake and one session; data flows on every stream', async () => {
    const seenReqs: MuxTarget[] = [];
    const { pool: p, connector: c, connections } = pool({ onConnection: (_s, req) => seenReqs.push(req) });
    const before = peer.sessions.length;
    const accepted = peer.inbound.stats.accepted;
    const streams = await within(Promise.all(Array.from({ length: 20 }, () => p.open(target(peer.port)))), '20 opens');
    assert.equal(c.stats.fullHandshakes + c.stats.resumedHandshakes, 1, 'one TLS handshake');
    assert.equal(c.stats.connected, 1);
    assert.equal(connections.length, 1, 'onConnection once');
    assert.equal(connections[0]!.alpnProtocol, ALPN_MUX);
    assert.equal(p.sessionCount, 1);
    assert.deepEqual(streams.map((s) => s.id).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
    const payloads = streams.map((s) => randomBytes(1000 + s.id * 100));
    const echoes = await Promise.all(streams.map((s, i) => echo(s, payloads[i]!)));
    for (let i = 0; i < 20; i++) assert.ok(echoes[i]!.equals(payloads[i]!), `stream ${streams[i]!.id}`);
    assert.equal(peer.inbound.stats.accepted - accepted, 1, 'one inbound connection');
    assert.equal(peer.sessions.length - before, 1);
    const srv = await serverSession(before);
    assert.equal(srv.peerId, WEB);
    assert.equal(srv.streams.length, 20);
    // a later open reuses the open session
    const again = await p.open(target(peer.port));
    assert.equal(again.id, 21);
    assert.equal(c.stats.connected, 1);
    assert.deepEqual(seenReqs, [target(peer.port)]);
  });

  test('another source identity or another SNI gets its own session', async () => {
    const { pool: p, connector: c, connections } = pool();
    const n = peer.sessions.length;
    const a = await p.open(target(peer.port));
    const b = await p.open(target(peer.port, { sourceIdentity: ADMIN }));
    const d = await p.open(target(peer.port, { sni: CATALOG_V2_SNI }));
    const a2 = await p.open(target(peer.port));
    assert.deepEqual([a.id, b.id, d.id, a2.id], [1, 1, 1, 2]);
    assert.equal(p.sessionCount, 3);
    assert.equal(c.stats.connected, 3);
    assert.equal(connections.length, 3);
    for (const s of [a, b, d, a2]) assert.equal((await echo(s, `s${s.id}`)).toString(), `s${s.id}`);
    // (TLS 1.3: the server may see the connection after the client does; the echoes above prove it has)
    const mine = peer.sessions.slice(n);
    assert.deepEqual(mine.map((s) => `${s.peerId} ${s.servername}`).sort(), [`${ADMIN} ${CATALOG_SNI}`, `${WEB} ${CATALOG_SNI}`, `${WEB} ${CATALOG_V2_SNI}`].sort());
  });

  test('a failed handshake rejects every waiter with the PeerConnectError; a later open() tries again', async () => {
    const { pool: p, connector: c, connections } = pool();
    const wrong = target(peer.port, { expectedIdentity: ADMIN });
    const errs = await Promise.all(Array.from({ length: 5 }, () => rejection(p.open(wrong))));
    for (const e of errs) {
      assert.ok(e instanceof PeerConnectError, `not a PeerConnectError: ${String(e)}`);
      assert.equal(e.code, 'AMIME_ERR_PEER_IDENTITY');
    }
    assert.equal(c.stats.failed['AMIME_ERR_PEER_IDENTITY'], 1, 'one attempt shared by the five waiters');
    assert.equal(p.sessionCount, 0);
    assert.equal(connections.length, 0);
    const again = await rejection(p.open(wrong));
    assert.ok(again instanceof PeerConnectError);
    assert.equal(c.stats.failed['AMIME_ERR_PEER_IDENTITY'], 2, 'the failure is not cached');
    // the right target on the same pool works
    const s = await p.open(target(peer.port));
    assert.equal((await echo(s, 'ok')).toString(), 'ok');
  });

  test('a refused connection rejects with a PeerConnectError and leaves no session', async () => {
    const { pool: p, connector: c } = pool();
    const other = await startPeer();
    const port = other.port;
    await other.close();
    const err = await rejection(p.open(target(port)));
    assert.ok(err instanceof PeerConnectError);
    assert.equal(err.code, 'AMIME_ERR_PEER_CONNECT');
    assert.equal(p.sessionCount, 0);
    assert.equal(c.stats.connected, 0);
  });

  test('an idle session closes after idleTimeoutMs; the next open() makes a new connection', async () => {
    const { pool: p, connector: c, connections } = pool({ idleTimeoutMs: 200 });
    const n = peer.sessions.length;
    const s = await p.open(target(peer.port));
    const srv = await serverSession(n);
    assert.equal((await echo(s, 'one')).toString(), 'one');
    // the server session sees the client close the idle connection
    assert.equal(await within(srv.closed, 'the idle close'), undefined);
    await until(() => p.sessionCount === 0, 'the pool to drop the session');
    const s2 = await p.open(target(peer.port));
    assert.equal(s2.id, 1, 'a new session');
    assert.equal(c.stats.connected, 2);
    assert.equal(connections.length, 2);
    assert.notEqual(connections[1], connections[0]);
    assert.equal((await echo(s2, 'two')).toString(), 'two');
  });

  test('maxStreamsPerSession: the third concurrent stream opens a second session', async () => {
    const { pool: p, connector: c, connections } = pool({ maxStreamsPerSession: 2 });
    const n = peer.sessions.length;
    const streams = await within(Promise.all([p.open(target(peer.port)), p.open(target(peer.port)), p.open(target(peer.port))]), 'three opens');
    assert.deepEqual(streams.map((s) => s.id), [1, 2, 1]);
    assert.equal(p.sessionCount, 2);
    assert.equal(c.stats.connected, 2);
    assert.equal(connections.length, 2, 'onConnection once per connection');
    // a fourth goes on the second session (room for one more)
    const fourth = await p.open(target(peer.port));
    assert.equal(fourth.id, 2);
    assert.equal(c.stats.connected, 2);
    for (const s of [...streams, fourth]) assert.equal((await echo(s, 'x')).toString(), 'x');
    assert.deepEqual(peer.sessions.slice(n).map((s) => s.streams.length), [2, 2]);
  });

  test('maxStreamsPerSession: 1 with 6 concurrent opens: six sessions, every open succeeds', async () => {
    const { pool: p, connector: c } = pool({ maxStreamsPerSession: 1 });
    const streams = await within(Promise.all(Array.from({ length: 6 }, () => p.open(target(peer.port)))), 'six opens');
    assert.deepEqual(streams.map((s) => s.id), [1, 1, 1, 1, 1, 1]);
    assert.equal(p.sessionCount, 6);
    assert.equal(c.stats.connected, 6, 'one connection per stream, none wasted');
    for (const s of streams) assert.equal((await echo(s, 'y')).toString(), 'y');
  });

  test('a server goAway sends the next open() to a new connection; the old one closes after its stream', async () => {
    const { pool: p, connector: c } = pool();
    const n = peer.sessions.length;
    const a = await p.open(target(peer.port));
    const srv = await serverSession(n);
    const aGot: Buffer[] = [];
    a.ondata = (d) => {
      aGot.push(Buffer.from(d));
      a.consumed(d.length);
    };
    a.write(Buffer.from('held open'));
    await until(() => aGot.length > 0, 'the first echo');
    srv.session.goAway();
    const b = await (async () => {
      for (let i = 0; ; i++) {
        const s = await p.open(target(peer.port));
        if (c.stats.connected === 2 || i > 1000) return s;
        s.reset(); // landed on the old session before the GOAWAY arrived: try again
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    assert.equal(c.stats.connected, 2);
    assert.equal(b.id, 1);
    assert.equal((await echo(b, 'new')).toString(), 'new');
    assert.equal(Buffer.concat([...aGot, await echo(a, ' and done')]).toString(), 'held open and done');
    assert.equal(await within(srv.closed, 'the old session to close'), undefined);
    await until(() => p.sessionCount === 1, 'the pool to drop the old session');
  });

  test('a connection the peer drops leaves the pool; the next open() reconnects', async () => {
    const { pool: p, connector: c } = pool();
    const n = peer.sessions.length;
    const a = await p.open(target(peer.port));
    const resets: MuxResetReason[] = [];
    a.onreset = (r) => resets.push(r);
    const srv = await serverSession(n);
    srv.session.destroy();
    await until(() => p.sessionCount === 0, 'the pool to drop the session');
    assert.deepEqual(resets, ['connection_lost']);
    const b = await p.open(target(peer.port));
    assert.equal(c.stats.connected, 2);
    assert.equal((await echo(b, 'back')).toString(), 'back');
  });

  test('close() resets open streams; open() afterwards rejects', async () => {
    const { pool: p } = pool();
    const n = peer.sessions.length;
    const a = await p.open(target(peer.port));
    const b = await p.open(target(peer.port));
    const srv = await serverSession(n);
    const resets: MuxResetReason[] = [];
    a.onreset = (r) => resets.push(r);
    b.onreset = (r) => resets.push(r);
    a.write(Buffer.from('x'));
    await until(() => srv.streams.length === 2, 'server streams');
    p.close();
    assert.deepEqual(resets, ['connection_lost', 'connection_lost']);
    assert.equal(p.sessionCount, 0);
    await within(srv.closed, 'server session close');
    assert.deepEqual(srv.resets, ['connection_lost', 'connection_lost']);
    await rejection(p.open(target(peer.port)));
  });

  test('close() while a handshake runs: the waiters reject and no session is left', async () => {
    const { pool: p } = pool();
    const opening = p.open(target(peer.port));
    p.close();
    await rejection(opening);
    assert.equal(p.sessionCount, 0);
  });
});
