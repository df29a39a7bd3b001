import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { once } from 'node:events';
import WebSocket from 'ws';
import { createTrustBundle, svidTlsOptions, type TrustBundle } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { PushServer, type ResourceView } from './push-server.js';
import type { Resource, ResourceType } from '../resources.js';
import type { ServerMessage } from '../messages.js';

const TD = 'push.test';

/** A ResourceView over plain maps: versions `e-<n>`, deltas from any held version. */
class FakeView implements ResourceView {
  rev = 0;
  readonly types = new Map<ResourceType, { rev: number; items: Map<string, { r: Resource; rev: number }>; gone: Map<string, number> }>();
  constructor() {
    for (const t of ['Route', 'Service'] as const) this.types.set(t, { rev: 0, items: new Map(), gone: new Map() });
  }
  #t(type: ResourceType) {
    let t = this.types.get(type);
    if (!t) this.types.set(type, (t = { rev: 0, items: new Map(), gone: new Map() }));
    return t;
  }
  put(name: string): void {
    const t = this.#t('Route');
    t.rev = ++this.rev;
    const r = { apiVersion: 'amime.dev/v1', kind: 'Route', metadata: { name, namespace: 'default', version: String(t.rev) }, spec: { service: name, rules: [{ backends: [{ service: name, weight: 100 }] }] } } as Resource;
    t.items.set(`/resources/Route/default/${name}`, { r, rev: t.rev });
  }
  remove(name: string): void {
    const t = this.#t('Route');
    t.rev = ++this.rev;
    t.items.delete(`/resources/Route/default/${name}`);
    t.gone.set(`/resources/Route/default/${name}`, t.rev);
  }
  version(type: ResourceType): string {
    return `e-${this.#t(type).rev}`;
  }
  snapshot(type: ResourceType) {
    return { version: this.version(type), resources: [...this.#t(type).items.values()].map((i) => i.r) };
  }
  delta(type: ResourceType, from: string) {
    const m = /^e-(\d+)$/.exec(from);
    const t = this.#t(type);
    if (!m || Number(m[1]) > t.rev) return undefined;
    const held = Number(m[1]);
    return {
      version: this.version(type),
      upserts: [...t.items.values()].filter((i) => i.rev > held).map((i) => i.r),
      removals: [...t.gone].filter(([, rev]) => rev > held).map(([k]) => k),
    };
  }
}

let pki: TestPki;
let bundle: TrustBundle;
let serverCert: TestCert;
const agents = new Map<string, TestCert>();

async function agentCert(node: string): Promise<TestCert> {
  let c = agents.get(node);
  if (!c) agents.set(node, (c = await pki.leaf(`/agent/${node}`)));
  return c;
}

interface Harness {
  view: FakeView;
  push: PushServer;
  url: string;
  events: string[];
  close(): Promise<void>;
}

async function harness(opts: { heartbeatMs?: number; debounceMs?: number; maxDebounceMs?: number } = {}): Promise<Harness> {
  const view = new FakeView();
  const events: string[] = [];
  const server = https.createServer({ ...svidTlsOptions({ certChain: toPemChain([serverCert, pki.intermediate]), privateKey: serverCert.key.privateKey, bundle }), minVersion: 'TLSv1.3' });
  const push = new PushServer({
    view,
    trustDomain: TD,
    trust: () => ({ bundle }),
    heartbeatMs: opts.heartbeatMs ?? 60_000,
    debounceMs: opts.debounceMs ?? 10,
    maxDebounceMs: opts.maxDebounceMs ?? 50,
    hooks: {
      onConnect: (s) => events.push(`connect ${s.node}`),
      onDisconnect: (s, reason) => events.push(`disconnect ${s.node} ${reason}`),
      onNack: (s, type, version) => events.push(`nack ${s.node} ${type} ${version}`),
      onAck: (type) => events.push(`ack ${type}`),
      onHeartbeat: (s) => events.push(`alive ${s.node}`),
      onRefused: (reason) => events.push(`refused ${reason}`),
      onRegister: async (_s, instances) => (instances.some((i) => i.service === 'forbidden') ? 'not assigned' : undefined),
    },
  });
  push.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    view,
    push,
    url: `wss://127.0.0.1:${port}/v1/push`,
    events,
    close: async () => {
      push.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

interface Agent {
  ws: WebSocket;
  next(timeoutMs?: number): Promise<ServerMessage & Record<string, unknown>>;
  /** Resolves true if no frame (other than heartbeats) arrives within ms. */
  quiet(ms: number): Promise<boolean>;
  send(m: unknown): void;
  closed: Promise<number>;
}

async function connect(h: Harness, cert: TestCert | undefined, path = '/v1/push'): Promise<Agent> {
  const ws = new WebSocket(h.url.replace('/v1/push', path), {
    ca: pki.root.pem,
    ...(cert && { cert: toPemChain([cert, pki.intermediate]), key: cert.key.privateKeyPem }),
    checkServerIdentity: (() => undefined) as never,
    perMessageDeflate: false,
  });
  const queue: (ServerMessage & Record<string, unknown>)[] = [];
  const waiters: ((m: ServerMessage & Record<string, unknown>) => void)[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.type === 'heartbeat') return;
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    closed,
    send: (m) => ws.send(typeof m === 'string' ? m : JSON.stringify(m)),
    next: (timeoutMs = 2000) =>
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('no frame within timeout')), timeoutMs);
            waiters.push((m) => {
              clearTimeout(t);
              resolve(m);
            });
          }),
    quiet: (ms) =>
      new Promise((resolve) => {
        if (queue.length > 0) return resolve(false);
        const before = waiters.length;
        let got = false;
        const w = (m: ServerMessage & Record<string, unknown>) => {
          got = true;
          queue.push(m);
        };
        waiters.push(w);
        setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) waiters.splice(i, 1);
          resolve(!got && waiters.length === before);
        }, ms);
      }),
  };
}

async function hello(h: Harness, node: string, versions: Record<string, string> = {}, subscribe: string[] = ['Route']): Promise<Agent> {
  const a = await connect(h, await agentCert(node));
  a.send({ type: 'hello', node, protocol: 1, versions, subscribe });
  return a;
}

const ack = (a: Agent, m: Record<string, unknown>) => a.send({ type: 'ack', nonce: m['nonce'], resourceType: m['resourceType'], version: m['version'] });

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  serverCert = await pki.leaf('/control-plane/controller');
});

describe('push server: snapshot, deltas, ACK', () => {
  let h: Harness;
  before(async () => (h = await harness()));
  after(() => h.close());

  test('hello gets a snapshot; ACK records the version; a change gets a delta', async () => {
    h.view.put('a');
    const a = await hello(h, 'vm1');
    const snap = await a.next();
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap['resourceType'], 'Route');
    assert.equal(snap['version'], h.view.version('Route'));
    assert.equal((snap['resources'] as unknown[]).length, 1);
    ack(a, snap);
    h.view.put('b');
    h.push.notify(['Route']);
    const d = await a.next();
    assert.equal(d.type, 'delta');
    assert.deepEqual((d['upserts'] as Resource[]).map((r) => r.metadata.name), ['b']);
    assert.deepEqual(d['removals'], []);
    ack(a, d);
    await a.quiet(50);
    assert.equal(h.push.status().find((s) => s.node === 'vm1')?.types.Route?.acked, h.view.version('Route'));
    a.ws.close();
  });

  test('a burst of changes inside the debounce window is one push', async () => {
    const a = await hello(h, 'vm2');
    ack(a, await a.next());
    for (let i = 0; i < 5; i++) {
      h.view.put(`burst-${i}`);
      h.push.notify(['Route']);
    }
    const d = await a.next();
    assert.equal((d['upserts'] as unknown[]).length, 5);
    ack(a, d);
    assert.equal(await a.quiet(100), true);
    a.ws.close();
  });

  test('a slow agent is coalesced and never holds back a fast one', async () => {
    const slow = await hello(h, 'slow');
    const fast = await hello(h, 'fast');
    const slowSnap = await slow.next();
    ack(fast, await fast.next());
    // slow does not answer its snapshot; three separate changes follow
    for (let i = 0; i < 3; i++) {
      h.view.put(`c-${i}`);
      h.push.notify(['Route']);
      const d = await fast.next();
      assert.equal(d['version'], h.view.version('Route'));
      ack(fast, d);
    }
    assert.equal(await slow.quiet(100), true, 'nothing more while a push is in flight');
    ack(slow, slowSnap);
    const catchUp = await slow.next();
    assert.equal(catchUp.type, 'delta');
    assert.equal(catchUp['version'], h.view.version('Route'));
    assert.deepEqual((catchUp['upserts'] as Resource[]).map((r) => r.metadata.name).sort(), ['c-0', 'c-1', 'c-2']);
    slow.ws.close();
    fast.ws.close();
  });

  test('a NACK keeps the agent on its version, is recorded, and is not resent until the next change', async () => {
    const a = await hello(h, 'vm3');
    const snap = await a.next();
    ack(a, snap);
    h.view.remove('a');
    h.push.notify(['Route']);
    const d = await a.next();
    assert.deepEqual(d['removals'], ['/resources/Route/default/a']);
    a.send({ type: 'nack', nonce: d['nonce'], resourceType: 'Route', version: d['version'], error: 'cannot apply' });
    assert.equal(await a.quiet(100), true);
    const st = h.push.status().find((s) => s.node === 'vm3')!.types.Route!;
    assert.equal(st.acked, snap['version']);
    assert.equal(st.nack?.error, 'cannot apply');
    assert.ok(h.events.includes(`nack vm3 Route ${String(d['version'])}`));
    h.view.put('fix');
    h.push.notify(['Route']);
    const again = await a.next();
    assert.deepEqual((again['upserts'] as Resource[]).map((r) => r.metadata.name), ['fix']);
    assert.deepEqual(again['removals'], ['/resources/Route/default/a'], 'the delta starts from the held version');
    a.ws.close();
  });

  test('an ACK with a stale nonce is refused with an error and changes nothing', async () => {
    const a = await hello(h, 'vm4');
    const snap = await a.next();
    a.send({ type: 'ack', nonce: 'zzz', resourceType: 'Route', version: snap['version'] });
    const err = await a.next();
    assert.equal(err.type, 'error');
    assert.equal(err['code'], 'stale_nonce');
    assert.equal(err['nonce'], 'zzz');
    assert.equal(h.push.status().find((s) => s.node === 'vm4')!.types.Route!.acked, undefined);
    a.ws.close();
  });

  test('resume: an agent at the current version gets nothing; an older one gets a delta', async () => {
    const current = h.view.version('Route');
    const a = await hello(h, 'vm5', { Route: current });
    assert.equal(await a.quiet(100), true);
    a.ws.close();
    const rev = Number(current.slice(2)) - 1;
    const b = await hello(h, 'vm6', { Route: `e-${rev}` });
    const d = await b.next();
    assert.equal(d.type, 'delta');
    b.ws.close();
    const c = await hello(h, 'vm7', { Route: 'other-epoch-3' });
    assert.equal((await c.next()).type, 'snapshot');
    c.ws.close();
  });

  test('bad frames get an error naming the cause and the session stays', async () => {
    const a = await connect(h, await agentCert('vm8'));
    a.send({ type: 'ack', nonce: 'n', resourceType: 'Route', version: '1' });
    assert.equal((await a.next())['code'], 'hello_required');
    a.send('{not json');
    assert.equal((await a.next())['code'], 'malformed_json');
    a.send({ type: 'subscribe' });
    assert.equal((await a.next())['code'], 'unknown_message_type');
    a.send({ type: 'hello', node: 'vm8', protocol: 1, versions: {}, extra: 1 });
    const e = await a.next();
    assert.equal(e['code'], 'invalid_message');
    assert.match(String(e['message']), /extra/);
    a.send({ type: 'hello', node: 'vm8', protocol: 1, versions: {}, subscribe: ['Route'] });
    assert.equal((await a.next()).type, 'snapshot');
    a.send({ type: 'register', instances: [{ service: 'forbidden', identity: `spiffe://${TD}/ns/default/sa/x`, address: '127.0.0.1', port: 1 }] });
    const refused = await a.next();
    assert.equal(refused['code'], 'registration_refused');
    assert.match(String(refused['message']), /not assigned/);
    a.ws.close();
  });

  test('taps: sendTap reaches the node\'s agent; tapEvents with no hook to take them are refused, the session stays', async () => {
    const a = await hello(h, 'vm10');
    assert.equal((await a.next()).type, 'snapshot', 'hello was taken');
    assert.equal(h.push.sendTap('nobody', { type: 'untap', id: 't1' }), false);
    assert.equal(h.push.sendTap('vm10', { type: 'tap', id: 't1', service: 'web', namespace: 'default', maxEventsPerSecond: 5, durationMs: 1000 }), true);
    assert.deepEqual(await a.next(), { type: 'tap', id: 't1', service: 'web', namespace: 'default', maxEventsPerSecond: 5, durationMs: 1000 });
    a.send({ type: 'tapEvents', id: 't1', events: [] });
    const refused = await a.next();
    assert.equal(refused['code'], 'tap_refused');
    assert.match(String(refused['message']), /tap t1 was never opened/);
    a.send({ type: 'tapEvents', id: 't1', events: [{ path: '/x?token=1' }] });
    assert.equal((await a.next())['code'], 'invalid_message');
    a.ws.close();
  });

  test('a frame over the size bound closes the connection with 1009', async () => {
    const a = await hello(h, 'vm9');
    await a.next();
    a.send({ type: 'heartbeat', pad: 'x'.repeat(70 * 1024) });
    assert.equal(await a.closed, 1009);
  });

  test('hello for another node than the certificate is refused and closed', async () => {
    const a = await connect(h, await agentCert('vm10'));
    a.send({ type: 'hello', node: 'vm11', protocol: 1, versions: {} });
    const e = await a.next();
    assert.equal(e['code'], 'node_mismatch');
    assert.equal(await a.closed, 1008);
  });

  test('a newer connection from the same node replaces the older one', async () => {
    const a = await hello(h, 'vm12');
    await a.next();
    const b = await hello(h, 'vm12');
    await b.next();
    assert.equal(await a.closed, 4000);
    assert.equal(h.push.status().filter((s) => s.node === 'vm12').length, 1);
    b.ws.close();
  });
});

describe('push server: who may connect', () => {
  let h: Harness;
  before(async () => (h = await harness()));
  after(() => h.close());

  test('no client certificate: refused in the TLS handshake', async () => {
    await assert.rejects(connect(h, undefined));
  });

  test('a certificate from another trust domain: refused in the TLS handshake', async () => {
    const other = await createTestPki('other.test');
    const leaf = await other.leaf('/agent/vm1');
    const ws = new WebSocket(h.url, { ca: pki.root.pem, cert: toPemChain([leaf, other.intermediate]), key: leaf.key.privateKeyPem, checkServerIdentity: (() => undefined) as never });
    await assert.rejects(
      new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }),
    );
  });

  test('a workload identity (not an agent) gets 403', async () => {
    const leaf = await pki.leaf('/ns/default/sa/web');
    await assert.rejects(connect(h, leaf), /403/);
  });

  test('another path gets 404', async () => {
    await assert.rejects(connect(h, await agentCert('vm1'), '/v1/other'), /404/);
  });
});

describe('push server: heartbeats', () => {
  test('a silent agent is cut after three heartbeat intervals; a talking one stays', async () => {
    const h = await harness({ heartbeatMs: 100 });
    try {
      const silent = await hello(h, 'quiet');
      const talker = await hello(h, 'talker');
      const beat = setInterval(() => talker.send({ type: 'heartbeat' }), 50);
      const code = await silent.closed;
      clearInterval(beat);
      assert.equal(code, 1006);
      assert.ok(h.events.includes('disconnect quiet heartbeat_lapsed'), h.events.join(','));
      assert.equal(talker.ws.readyState, WebSocket.OPEN);
      talker.ws.close();
    } finally {
      await h.close();
    }
  });

  test('the server beats only idle sessions; any valid frame from an agent counts as its heartbeat', async () => {
    const h = await harness({ heartbeatMs: 200 });
    try {
      const a = await hello(h, 'busy');
      let beats = 0;
      a.ws.on('message', (d) => {
        if (String(d) === '{"type":"heartbeat"}') beats++;
      });
      ack(a, await a.next());
      // Busy: a push every 50 ms for 1 s, each ACKed. A fixed-interval beat would add ~5 heartbeats.
      const aliveBefore = h.events.filter((e) => e === 'alive busy').length;
      for (let i = 0; i < 20; i++) {
        h.view.put(`busy-${i}`);
        h.push.notify(['Route']);
        ack(a, await a.next());
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(beats <= 1, `heartbeats while busy: ${beats}`);
      // The ACKs (no heartbeat frames sent) kept the agent alive for the registry hook.
      assert.ok(h.events.filter((e) => e === 'alive busy').length - aliveBefore >= 20, h.events.join(','));
      // Idle: heartbeats resume.
      const until = Date.now() + 5000;
      while (beats < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.ok(beats >= 2, `heartbeats once idle: ${beats}`);
      a.ws.close();
    } finally {
      await h.close();
    }
  });
});
