import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { createRevocationSet, createTrustBundle, svidTlsOptions, type TrustBundle } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { decodeClientMessage, type ClientMessage, type Instance } from '../messages.js';
import { resourceKey, type ServiceResource } from '../resources.js';
import { PushClient, MAX_NACK_ERROR_LENGTH, MAX_QUEUED_FRAMES, type AppliedUpdate, type DisconnectInfo, type PushClientOptions, type PushCredential } from './push-client.js';

const TD = 'amime.test';
const NODE = 'node-1';
let pki: TestPki;
let bundle: TrustBundle;
let controller: TestCert;
let impostor: TestCert;
let agent: TestCert;
let credential: PushCredential;

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  controller = await pki.leaf('/control-plane/controller');
  impostor = await pki.leaf('/control-plane/impostor');
  agent = await pki.leaf(`/agent/${NODE}`);
  credential = { certPem: toPemChain([agent, pki.intermediate]), keyPem: agent.key.privateKeyPem, bundlePem: pki.root.pem };
});

// ---------------------------------------------------------------- a stand-in control plane

interface Received {
  conn: number;
  msg: ClientMessage;
}

/** Plays the control plane over real mTLS on 127.0.0.1; the test scripts what it sends. */
class FakeControlPlane {
  readonly received: Received[] = [];
  readonly sockets: WebSocket[] = [];
  /** Called for every decoded client message. */
  onMessage: (ws: WebSocket, msg: ClientMessage, conn: number) => void = () => undefined;
  tlsConnections = 0;
  /** The agent certificate's serial, by connection. */
  readonly peerSerials: string[] = [];
  #server: https.Server;
  #wss: WebSocketServer;

  private constructor(cert: TestCert) {
    this.#server = https.createServer(svidTlsOptions({ certChain: toPemChain([cert, pki.intermediate]), privateKey: cert.key.privateKeyPem, bundle }));
    this.#server.on('secureConnection', () => this.tlsConnections++);
    this.#wss = new WebSocketServer({ server: this.#server, path: '/v1/push', perMessageDeflate: false });
    this.#wss.on('connection', (ws, req) => {
      const conn = this.sockets.push(ws) - 1;
      this.peerSerials.push((req.socket as TLSSocket).getPeerCertificate().serialNumber.toLowerCase());
      ws.on('message', (data: Buffer) => {
        const decoded = decodeClientMessage(data);
        assert.ok(decoded.ok, `the client sent an invalid frame: ${decoded.ok ? '' : decoded.message}`);
        this.received.push({ conn, msg: decoded.message });
        this.onMessage(ws, decoded.message, conn);
      });
    });
  }

  static async start(cert: TestCert = controller): Promise<FakeControlPlane> {
    const cp = new FakeControlPlane(cert);
    await new Promise<void>((resolve) => cp.#server.listen(0, '127.0.0.1', resolve));
    return cp;
  }

  get url(): string {
    return `wss://127.0.0.1:${(this.#server.address() as AddressInfo).port}/v1/push`;
  }

  messages<T extends ClientMessage['type']>(type: T, conn?: number): Extract<ClientMessage, { type: T }>[] {
    return this.received.filter((r) => r.msg.type === type && (conn === undefined || r.conn === conn)).map((r) => r.msg as Extract<ClientMessage, { type: T }>);
  }

  /** The messages of one connection, heartbeats left out. */
  sequence(conn: number): string[] {
    return this.received.filter((r) => r.conn === conn && r.msg.type !== 'heartbeat').map((r) => r.msg.type);
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    this.#wss.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function service(name: string, port = 8080): ServiceResource {
  return {
    apiVersion: 'amime.dev/v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { identity: `spiffe://${TD}/ns/default/sa/${name}`, ports: [{ name: 'http', port, protocol: 'http' }] },
  };
}

const snapshot = (version: string, nonce: string, resources: ServiceResource[]) =>
  JSON.stringify({ type: 'snapshot', resourceType: 'Service', version, nonce, resources });
const delta = (version: string, nonce: string, upserts: ServiceResource[], removals: string[], resourceType = 'Service') =>
  JSON.stringify({ type: 'delta', resourceType, version, nonce, upserts, removals });

/** A client with fast reconnects whose applies and events are recorded; stopped by the caller. */
function client(cp: FakeControlPlane, opts: Partial<PushClientOptions> = {}) {
  const applied: AppliedUpdate[] = [];
  const disconnects: DisconnectInfo[] = [];
  const c = new PushClient({
    url: cp.url,
    node: NODE,
    credential: () => credential,
    apply: (u) => void applied.push(u),
    backoff: { initialMs: 10, maxMs: 40 },
    ...opts,
  });
  c.on('disconnected', (d) => disconnects.push(d));
  return { c, applied, disconnects };
}

const instance: Instance = {
  service: 'web',
  namespace: 'default',
  identity: `spiffe://${TD}/ns/default/sa/web`,
  address: '10.0.0.5',
  port: 8080,
  health: 'healthy',
};

// ---------------------------------------------------------------- tests

describe('PushClient', () => {
  let cp: FakeControlPlane;
  let stop: (() => Promise<void>) | undefined;

  before(async () => {
    cp = await FakeControlPlane.start();
  });
  after(async () => {
    await cp.close();
  });

  async function fresh(): Promise<void> {
    await stop?.();
    stop = undefined;
    await cp.close();
    cp = await FakeControlPlane.start();
  }

  function track(c: PushClient): void {
    stop = () => c.stop();
  }

  test('snapshot then delta: acks carry the nonce and version, the state follows', async () => {
    await fresh();
    const { c, applied } = client(cp, { subscribe: ['Service'] });
    track(c);
    const connected: string[] = [];
    c.on('connected', (info) => connected.push(info.serverId));
    cp.onMessage = (ws, msg) => {
      if (msg.type === 'hello') ws.send(snapshot('e-1', 'n1', [service('web'), service('api')]));
      if (msg.type === 'ack' && msg.nonce === 'n1') ws.send(delta('e-2', 'n2', [service('web', 9090), service('db')], ['/resources/Service/default/api']));
    };
    c.start();
    await waitUntil(() => cp.messages('ack').length === 2, 'two acks');

    const hello = cp.messages('hello')[0]!;
    assert.deepEqual(hello, { type: 'hello', node: NODE, protocol: 1, versions: {}, subscribe: ['Service'] });
    assert.deepEqual(connected, [`spiffe://${TD}/control-plane/controller`]);
    assert.equal(c.connected, true);
    assert.deepEqual(cp.messages('ack'), [
      { type: 'ack', nonce: 'n1', resourceType: 'Service', version: 'e-1' },
      { type: 'ack', nonce: 'n2', resourceType: 'Service', version: 'e-2' },
    ]);

    assert.equal(applied.length, 2);
    assert.equal(applied[0]!.kind, 'snapshot');
    assert.deepEqual([...applied[0]!.resources.keys()].sort(), ['/resources/Service/default/api', '/resources/Service/default/web']);
    assert.equal(applied[1]!.kind, 'delta');
    assert.equal(applied[1]!.previousVersion, 'e-1');
    assert.deepEqual(applied[1]!.removals, ['/resources/Service/default/api']);

    const held = c.state('Service')!;
    assert.equal(held.version, 'e-2');
    assert.deepEqual([...held.resources.keys()].sort(), ['/resources/Service/default/db', '/resources/Service/default/web']);
    assert.equal((held.resources.get('/resources/Service/default/web') as ServiceResource).spec.ports[0]!.port, 9090);
    // the map handed out for e-1 was not changed by the delta
    assert.equal(applied[0]!.resources.size, 2);
    assert.ok(applied[0]!.resources.has('/resources/Service/default/api'));
    assert.deepEqual(c.versions(), { Service: 'e-2' });

    // a later snapshot reports what it dropped as removals
    cp.sockets[0]!.send(snapshot('e-3', 'n3', [service('web')]));
    await waitUntil(() => applied.length === 3, 'third update');
    assert.deepEqual(applied[2]!.removals, ['/resources/Service/default/db']);
    assert.deepEqual(applied[2]!.upserts.map(resourceKey), ['/resources/Service/default/web']);
    await c.stop();
    assert.equal(c.connected, false);
  });

  test('apply throwing → nack with the error, previous state and versions kept', async () => {
    await fresh();
    let refuse = false;
    const rejected: string[] = [];
    const { c } = client(cp, {
      apply: async () => {
        await sleep(1);
        if (refuse) throw new Error('x'.repeat(10_000));
      },
    });
    track(c);
    c.on('rejected', (r) => rejected.push(r.version));
    cp.onMessage = (ws, msg) => {
      if (msg.type === 'hello') ws.send(snapshot('e-1', 'a', [service('web')]));
    };
    c.start();
    await waitUntil(() => cp.messages('ack').length === 1, 'first ack');
    const before = c.state('Service');

    refuse = true;
    cp.sockets[0]!.send(delta('e-2', 'b', [service('db')], []));
    await waitUntil(() => cp.messages('nack').length === 1, 'nack');
    const nack = cp.messages('nack')[0]!;
    assert.equal(nack.nonce, 'b');
    assert.equal(nack.version, 'e-2');
    assert.equal(nack.resourceType, 'Service');
    assert.equal(nack.error.length, MAX_NACK_ERROR_LENGTH);
    assert.deepEqual(rejected, ['e-2']);
    assert.equal(c.state('Service'), before, 'the previous state is kept as is');
    assert.deepEqual(c.versions(), { Service: 'e-1' });

    // a synchronous throw is refused the same way
    c.removeAllListeners('rejected');
    const sync = client(cp, {
      apply: () => {
        throw new Error('bad route');
      },
    });
    await c.stop();
    track(sync.c);
    sync.c.start();
    await waitUntil(() => cp.messages('nack').length === 2, 'second nack');
    assert.equal(cp.messages('nack')[1]!.error, 'bad route');
    assert.equal(sync.c.state('Service'), undefined);
    assert.deepEqual(sync.c.versions(), {});
    await sync.c.stop();
  });

  test('reconnect: hello resumes with the versions held, register is resent after it, credential is read again', async () => {
    await fresh();
    let credentialReads = 0;
    const renewed = await pki.leaf(`/agent/${NODE}`);
    const initial = { Route: { version: 'e-7', resources: [] } };
    const { c, disconnects } = client(cp, {
      // the second connect finds a renewed SVID
      credential: () =>
        ++credentialReads === 1 ? credential : { ...credential, certPem: toPemChain([renewed, pki.intermediate]), keyPem: renewed.key.privateKeyPem },
      initial,
    });
    track(c);
    c.register([instance]);
    cp.onMessage = (ws, msg, conn) => {
      if (msg.type === 'hello' && conn === 0) ws.send(snapshot('e-1', 'a', [service('web')]));
    };
    c.start();
    await waitUntil(() => cp.messages('ack').length === 1, 'ack');
    assert.deepEqual(cp.messages('hello', 0)[0]!.versions, { Route: 'e-7' });
    assert.deepEqual(cp.sequence(0), ['hello', 'register', 'ack']);

    // register() while connected sends at once
    c.register([instance, { ...instance, port: 8081 }]);
    await waitUntil(() => cp.messages('register', 0).length === 2, 'second register');

    cp.sockets[0]!.close(4000, 'replaced');
    await waitUntil(() => cp.messages('register', 1).length === 1, 'register on the new connection');
    assert.deepEqual(cp.sequence(1), ['hello', 'register']);
    assert.deepEqual(cp.messages('hello', 1)[0]!.versions, { Route: 'e-7', Service: 'e-1' });
    assert.equal(cp.messages('register', 1)[0]!.instances.length, 2, 'the latest set is resent');
    assert.equal(credentialReads, 2);
    assert.deepEqual(cp.peerSerials, [agent.serialHex, renewed.serialHex], 'the renewed SVID is used from the next connection on');
    assert.equal(disconnects.length, 1);
    assert.equal(disconnects[0]!.reason, 'closed');
    assert.equal(disconnects[0]!.wasConnected, true);
    assert.ok(disconnects[0]!.retryInMs !== undefined && disconnects[0]!.retryInMs < 10);

    await c.stop();
    const attempts = cp.sockets.length;
    await sleep(80);
    assert.equal(cp.sockets.length, attempts, 'no reconnect after stop()');
    assert.equal(disconnects.at(-1)!.reason, 'stopped');
  });

  test('reports: dropped while disconnected, sent once connected; hello says the metrics address', async () => {
    await fresh();
    let metricsAddress = 'not an address';
    const { c } = client(cp, { metrics: () => metricsAddress });
    assert.equal(c.sendReport({ seq: 0, intervalMs: 10_000, edges: [] }), false);
    c.start();
    await waitUntil(() => cp.messages('hello').length === 1, 'hello');
    assert.equal(cp.messages('hello', 0)[0]!.metrics, undefined, 'an invalid address is left out');
    await c.stop();
    metricsAddress = '10.0.0.5:9102';
    track(c);
    const edges = [{ source: `spiffe://${TD}/ns/default/sa/web`, service: 'api', namespace: 'default', peerAddress: '10.0.0.6', requests: 3, errors: 1, denials: 0, bytesIn: 10, bytesOut: 20 }];
    assert.equal(c.sendReport({ seq: 0, intervalMs: 10_000, edges }), false);
    c.start();
    await waitUntil(() => cp.messages('hello').length === 2, 'second hello');
    assert.equal(cp.messages('hello', 1)[0]!.metrics, '10.0.0.5:9102');
    assert.equal(c.sendReport({ seq: 1, intervalMs: 10_000, edges }), true);
    await waitUntil(() => cp.messages('report', 1).length === 1, 'report');
    assert.deepEqual(cp.messages('report', 1)[0], { type: 'report', seq: 1, intervalMs: 10_000, edges });
    assert.throws(() => c.sendReport({ seq: 2, intervalMs: 10, edges }), /intervalMs/);
    const long = Array.from({ length: 200 }, (_, i) => ({ ...edges[0]!, source: `spiffe://${TD}/ns/default/sa/${'w'.repeat(400)}${i}` }));
    assert.throws(() => c.sendReport({ seq: 2, intervalMs: 10_000, edges: long }), /more than the 65536/);
    await c.stop();
  });

  test('a server presenting another SPIFFE ID gets no hello, and the client keeps retrying', async () => {
    await stop?.();
    stop = undefined;
    const wrong = await FakeControlPlane.start(impostor);
    const { c, disconnects } = client(wrong);
    try {
      c.start();
      await waitUntil(() => disconnects.length >= 2, 'two refused attempts');
      assert.equal(wrong.received.length, 0, 'nothing was sent to the impostor');
      assert.ok(wrong.tlsConnections >= 2);
      for (const d of disconnects) {
        assert.equal(d.reason, 'peer_refused');
        assert.equal(d.wasConnected, false);
        assert.match(d.message, /spiffe:\/\/amime\.test\/control-plane\/impostor, not spiffe:\/\/amime\.test\/control-plane\/controller/);
      }
      assert.equal(c.connected, false);
    } finally {
      await c.stop();
    }
    // told to expect exactly that ID, the same server is accepted
    const ok = client(wrong, { expectedServerId: `spiffe://${TD}/control-plane/impostor` });
    try {
      ok.c.start();
      await waitUntil(() => wrong.messages('hello').length === 1, 'hello to the expected ID');
    } finally {
      await ok.c.stop();
      await wrong.close();
    }
  });

  test('a server chain from another trust root is refused before hello', async () => {
    await fresh();
    const otherPki = await createTestPki('other.test');
    const otherRoot = otherPki.root.pem;
    const { c, disconnects } = client(cp, { credential: () => ({ ...credential, bundlePem: otherRoot }), trustDomain: TD });
    track(c);
    c.start();
    await waitUntil(() => disconnects.length >= 1, 'a failed attempt');
    assert.equal(cp.received.length, 0);
    assert.equal(disconnects[0]!.reason, 'connect_failed');
    await c.stop();
  });

  test('a credential that cannot be read is retried with backoff', async () => {
    await fresh();
    let reads = 0;
    const { c, disconnects } = client(cp, {
      credential: () => {
        if (++reads < 3) throw new Error('svid.pem: no such file');
        return credential;
      },
    });
    track(c);
    c.start();
    await waitUntil(() => cp.messages('hello').length === 1, 'hello once the credential is there');
    assert.deepEqual(disconnects.map((d) => d.reason), ['credential_unavailable', 'credential_unavailable']);
    assert.match(disconnects[0]!.message, /no such file/);
    await c.stop();
  });

  test('malformed and invalid frames change no state; those naming a push are nacked', async () => {
    await fresh();
    const errors: { code: string; nacked: boolean }[] = [];
    const serverErrors: string[] = [];
    const { c, applied } = client(cp);
    track(c);
    c.on('protocol_error', (e) => errors.push({ code: e.code, nacked: e.nacked }));
    c.on('server_error', (e) => serverErrors.push(e.code));
    cp.onMessage = (ws, msg) => {
      if (msg.type === 'hello') ws.send(snapshot('e-1', 'a', [service('web')]));
    };
    c.start();
    await waitUntil(() => cp.messages('ack').length === 1, 'ack');
    const held = c.state('Service');

    const ws = cp.sockets[0]!;
    const badResource = { ...service('bad'), spec: { identity: 'not-an-id', ports: [] } };
    ws.send('{not json');
    ws.send(JSON.stringify({ type: 'surprise' }));
    ws.send(Buffer.from([0xff, 0xfe, 0x00]), { binary: true });
    ws.send(JSON.stringify({ type: 'snapshot', resourceType: 'Service', version: 'e-2', nonce: 'b', resources: [badResource] }));
    ws.send(JSON.stringify({ type: 'delta', resourceType: 'Service', version: 'e-3', nonce: 'c', upserts: [], removals: [], extra: 1 }));
    ws.send(JSON.stringify({ type: 'snapshot', resourceType: 'Service', version: 'e 4', nonce: 'd', resources: [] })); // bad version: cannot be nacked
    ws.send(delta('e-5', 'e', [], [], 'Route')); // delta for a type never snapshotted
    ws.send(delta('e-6', 'f', [service('web')], ['/resources/Service/default/web'])); // upsert and removal of one key
    ws.send(snapshot('e-7', 'g', [service('web'), service('web')])); // one key twice
    ws.send(JSON.stringify({ type: 'error', code: 'stale_nonce', message: 'answers no push in flight' }));
    ws.send(JSON.stringify({ type: 'heartbeat' }));

    await waitUntil(() => cp.messages('nack').length === 5 && serverErrors.length === 1, 'five nacks and the error frame');
    assert.deepEqual(cp.messages('nack').map((n) => [n.nonce, n.version, n.resourceType]), [
      ['b', 'e-2', 'Service'],
      ['c', 'e-3', 'Service'],
      ['e', 'e-5', 'Route'],
      ['f', 'e-6', 'Service'],
      ['g', 'e-7', 'Service'],
    ]);
    assert.match(cp.messages('nack')[0]!.error, /invalid snapshot: .*resources\[0\]/);
    assert.match(cp.messages('nack')[2]!.error, /no Route snapshot is held/);
    assert.deepEqual(errors.map((e) => e.code), [
      'malformed_json', 'unknown_message_type', 'malformed_json', 'invalid_message', 'invalid_message', 'invalid_message',
      'delta_before_snapshot', 'conflicting_delta', 'duplicate_key',
    ]);
    assert.deepEqual(errors.map((e) => e.nacked), [false, false, false, true, true, false, true, true, true]);
    assert.deepEqual(serverErrors, ['stale_nonce']);
    assert.equal(applied.length, 1);
    assert.equal(c.state('Service'), held);
    assert.deepEqual(c.versions(), { Service: 'e-1' });
    assert.equal(c.state('Route'), undefined);
    assert.equal(c.connected, true, 'bad frames alone do not drop the connection');
    await c.stop();
  });

  test('an oversized frame drops the connection, keeps the state, and the client resumes', async () => {
    await fresh();
    const errors: string[] = [];
    const { c, applied, disconnects } = client(cp, { maxPayload: 4096 });
    track(c);
    c.on('protocol_error', (e) => errors.push(e.code));
    cp.onMessage = (ws, msg, conn) => {
      if (msg.type === 'hello' && conn === 0) ws.send(snapshot('e-1', 'a', [service('web')]));
    };
    c.start();
    await waitUntil(() => cp.messages('ack').length === 1, 'ack');
    const big = Array.from({ length: 60 }, (_, i) => service(`svc-${i}`));
    cp.sockets[0]!.send(snapshot('e-2', 'b', big));
    await waitUntil(() => cp.messages('hello', 1).length === 1, 'hello after reconnect');
    assert.equal(disconnects[0]!.reason, 'frame_too_large');
    assert.deepEqual(errors, ['too_large']);
    assert.equal(applied.length, 1);
    assert.deepEqual(cp.messages('hello', 1)[0]!.versions, { Service: 'e-1' });
    assert.equal(cp.messages('nack').length, 0);
    await c.stop();
  });

  test('heartbeats: sent every heartbeatMs; a silent server is cut off after 3 intervals and the client reconnects', async () => {
    await fresh();
    const { c, disconnects } = client(cp, { heartbeatMs: 40 });
    track(c);
    c.start();
    await waitUntil(() => cp.messages('hello', 1).length === 1, 'hello on a second connection', 3000);
    assert.equal(disconnects[0]!.reason, 'heartbeat_timeout');
    assert.equal(disconnects[0]!.wasConnected, true);
    // At least one: under load, timers coalesce and the third interval can come before the second beat.
    assert.ok(cp.messages('heartbeat', 0).length >= 1, 'heartbeats were sent on the first connection');
    await c.stop();
  });

  test('a server that beats faster than the client follows it: the client beats at the server\'s pace', async () => {
    await fresh();
    const { c, disconnects } = client(cp, { heartbeatMs: 5000 });
    track(c);
    // The server beats after 150 ms of quiet (as PushServer does at its interval).
    const beat = setInterval(() => {
      for (const ws of cp.sockets) if (ws.readyState === ws.OPEN) ws.send('{"type":"heartbeat"}');
    }, 150);
    try {
      c.start();
      await waitUntil(() => c.connected, 'connected');
      await sleep(1500);
      assert.equal(disconnects.length, 0);
      // With its own 5 s period it would have sent none in 1.5 s.
      assert.ok(cp.messages('heartbeat').length >= 2, `client heartbeats: ${cp.messages('heartbeat').length}`);
    } finally {
      clearInterval(beat);
      await c.stop();
    }
  });

  test('a server that sends heartbeats is kept', async () => {
    await fresh();
    const { c, disconnects } = client(cp, { heartbeatMs: 50 });
    track(c);
    const beat = setInterval(() => {
      for (const ws of cp.sockets) if (ws.readyState === ws.OPEN) ws.send('{"type":"heartbeat"}');
    }, 20);
    try {
      c.start();
      await waitUntil(() => c.connected, 'connected');
      await sleep(300);
      assert.equal(disconnects.length, 0);
      assert.equal(cp.sockets.length, 1);
    } finally {
      clearInterval(beat);
      await c.stop();
    }
  });

  test('pushes are handled in order behind a slow apply, and hello waits for it', async () => {
    await fresh();
    let release: (() => void) | undefined;
    const order: string[] = [];
    const { c } = client(cp, {
      apply: async (u) => {
        order.push(`start ${u.version}`);
        if (u.version === 'e-1') await new Promise<void>((r) => (release = r));
        order.push(`end ${u.version}`);
      },
    });
    track(c);
    cp.onMessage = (ws, msg, conn) => {
      if (msg.type === 'hello' && conn === 0) {
        ws.send(snapshot('e-1', 'a', [service('web')]));
        ws.send(JSON.stringify({ type: 'snapshot', resourceType: 'Route', version: 'r-1', nonce: 'b', resources: [] }));
      }
    };
    c.start();
    await waitUntil(() => release !== undefined, 'first apply running');
    await sleep(20);
    assert.deepEqual(order, ['start e-1']);
    // the connection drops while e-1 is being applied
    cp.sockets[0]!.terminate();
    await waitUntil(() => cp.sockets.length === 2, 'second connection');
    await sleep(30);
    assert.equal(cp.messages('hello', 1).length, 0, 'hello waits for the running apply');
    release!();
    await waitUntil(() => cp.messages('hello', 1).length === 1, 'hello after the apply');
    // e-1 was applied, so it is held and resumed; the Route push of the dead connection was dropped
    assert.deepEqual(cp.messages('hello', 1)[0]!.versions, { Service: 'e-1' });
    assert.deepEqual(order, ['start e-1', 'end e-1']);
    assert.equal(cp.messages('ack').length, 0, 'no ack for a nonce of a dead connection');
    await c.stop();
  });

  test('a revoked server certificate is refused before hello', async () => {
    await fresh();
    const revocations = createRevocationSet({ version: 1, serials: [controller.serialHex] });
    const { c, disconnects } = client(cp, { revocations: () => revocations });
    track(c);
    c.start();
    await waitUntil(() => disconnects.length >= 1, 'a refused attempt');
    assert.equal(disconnects[0]!.reason, 'peer_refused');
    assert.match(disconnects[0]!.message, /revoked/);
    assert.equal(cp.received.length, 0);
    await c.stop();
  });

  test('a push for a type not subscribed to is nacked and not applied', async () => {
    await fresh();
    const { c, applied } = client(cp, { subscribe: ['Endpoint'] });
    track(c);
    cp.onMessage = (ws, msg) => {
      if (msg.type === 'hello') ws.send(snapshot('e-1', 'a', [service('web')]));
    };
    c.start();
    await waitUntil(() => cp.messages('nack').length === 1, 'nack');
    assert.match(cp.messages('nack')[0]!.error, /Service is not subscribed to/);
    assert.equal(applied.length, 0);
    assert.deepEqual(c.versions(), {});
    await c.stop();
  });

  test('a server that ignores flow control is cut off once the queue is full', async () => {
    await fresh();
    let release: (() => void) | undefined;
    const { c, disconnects } = client(cp, { apply: () => new Promise<void>((r) => (release ??= r)) });
    track(c);
    cp.onMessage = (ws, msg, conn) => {
      if (msg.type !== 'hello' || conn !== 0) return;
      // one apply running, MAX_QUEUED_FRAMES waiting, one too many
      for (let i = 0; i <= MAX_QUEUED_FRAMES + 1; i++) ws.send(snapshot(`e-${i}`, `n${i}`, []));
    };
    c.start();
    await waitUntil(() => disconnects.length === 1, 'disconnect');
    assert.equal(disconnects[0]!.reason, 'protocol_violation');
    // the dead connection's frames were dropped: the next hello waits only for the running apply
    await waitUntil(() => cp.sockets.length === 2, 'second connection');
    release!();
    await waitUntil(() => cp.messages('hello', 1).length === 1, 'hello after the apply');
    assert.deepEqual(cp.messages('hello', 1)[0]!.versions, { Service: 'e-0' });
    assert.equal(disconnects.length, 1);
    await c.stop();
  });

  test('refuses bad options with the fix', () => {
    const base: PushClientOptions = { url: 'wss://127.0.0.1:1/v1/push', node: NODE, credential: () => credential, apply: () => undefined };
    assert.throws(() => new PushClient({ ...base, url: 'ws://127.0.0.1:1/v1/push' }), /must use wss:/);
    assert.throws(() => new PushClient({ ...base, url: 'nope' }), /is not a URL/);
    assert.throws(() => new PushClient({ ...base, node: 'Node_1' }), /node .*DNS-1123/);
    assert.throws(() => new PushClient({ ...base, heartbeatMs: 0 }), /heartbeatMs must be a positive integer/);
    assert.throws(() => new PushClient({ ...base, subscribe: [] }), /subscribe/);
    assert.throws(() => new PushClient({ ...base, initial: { Service: { version: 'has space', resources: [] } } }), /versions\.Service/);
    const c = new PushClient(base);
    assert.throws(() => c.register([{ ...instance, port: 0 }]), /instances\[0\]\.port/);
    assert.throws(() => c.register(Array.from({ length: 257 }, () => instance)), /instances/);
  });
});
