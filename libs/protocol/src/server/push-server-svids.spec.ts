// The push server hands the control plane what it needs to show certificates:
// each session's verified peer chain (its SVID as presented in the mTLS
// handshake, up to the root) and the SVIDs an agent reports in `register`.
// A malformed SVID list is refused like any invalid frame.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { once } from 'node:events';
import WebSocket from 'ws';
import { createTrustBundle, svidTlsOptions, type TrustBundle } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { PushServer, type PushSession } from './push-server.js';
import { decodeClientMessage, MAX_HELD_SVIDS, type HeldSvid } from '../messages.js';

const TD = 'svids.test';
let pki: TestPki;
let bundle: TrustBundle;
let server: https.Server;
let push: PushServer;
let url: string;
let agent: TestCert;
const registered: { session: PushSession; svids: HeldSvid[] | undefined }[] = [];

const svid = (over: Partial<HeldSvid> = {}): HeldSvid => ({ spiffeId: `spiffe://${TD}/ns/shop/sa/web`, serial: '0a1b', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T01:00:00.000Z', ...over });

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  const serverCert = await pki.leaf('/control-plane/controller');
  agent = await pki.leaf('/agent/vm-a');
  server = https.createServer({ ...svidTlsOptions({ certChain: toPemChain([serverCert, pki.intermediate]), privateKey: serverCert.key.privateKey, bundle }), minVersion: 'TLSv1.3' });
  push = new PushServer({
    view: { version: () => 'e-0', snapshot: () => ({ version: 'e-0', resources: [] }), delta: () => undefined },
    trustDomain: TD,
    trust: () => ({ bundle }),
    heartbeatMs: 60_000,
    hooks: {
      onRegister: async (session, _instances, svids) => {
        registered.push({ session, svids });
        return undefined;
      },
    },
  });
  push.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `wss://127.0.0.1:${(server.address() as { port: number }).port}/v1/push`;
});

after(async () => {
  push.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function connect(): Promise<{ ws: WebSocket; errors: { code: string; message: string }[] }> {
  const ws = new WebSocket(url, { ca: pki.root.pem, cert: toPemChain([agent, pki.intermediate]), key: agent.key.privateKeyPem, checkServerIdentity: (() => undefined) as never, perMessageDeflate: false });
  const errors: { code: string; message: string }[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.type === 'error') errors.push(m);
  });
  await once(ws, 'open');
  ws.send(JSON.stringify({ type: 'hello', node: 'vm-a', protocol: 1, versions: {}, subscribe: ['Route'] }));
  return { ws, errors };
}

const waitFor = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(check(), what);
};

test('a session carries its verified chain; register hands over the reported SVIDs', async () => {
  const { ws } = await connect();
  try {
    const instance = { service: 'web', identity: `spiffe://${TD}/ns/shop/sa/web`, address: '127.0.0.1', port: 1 };
    ws.send(JSON.stringify({ type: 'register', instances: [instance], svids: [svid(), svid({ spiffeId: `spiffe://${TD}/agent/vm-a`, serial: 'ff' })] }));
    ws.send(JSON.stringify({ type: 'register', instances: [instance] }));
    await waitFor('two registrations', () => registered.length === 2);
    const [first, second] = registered;
    assert.deepEqual(first!.svids?.map((s) => s.serial), ['0a1b', 'ff']);
    assert.equal(second!.svids, undefined, 'svids are optional');
    const chain = first!.session.certificates;
    assert.equal(chain.length, 3, 'SVID, intermediate, root');
    assert.equal(chain[0]!.der.equals(agent.der), true, 'the SVID the agent presented');
    assert.equal(chain[2]!.der.equals(pki.root.der), true);
    assert.equal(push.session('vm-a')?.certificates[0]?.uris[0], `spiffe://${TD}/agent/vm-a`);
  } finally {
    ws.close();
  }
});

test('a malformed SVID list is refused, naming the field, and nothing is registered', async () => {
  const before = registered.length;
  const { ws, errors } = await connect();
  try {
    const instance = { service: 'web', identity: `spiffe://${TD}/ns/shop/sa/web`, address: '127.0.0.1', port: 1 };
    ws.send(JSON.stringify({ type: 'register', instances: [instance], svids: [svid({ serial: 'XYZ' })] }));
    ws.send(JSON.stringify({ type: 'register', instances: [instance], svids: [svid({ notAfter: 'tomorrow' })] }));
    ws.send(JSON.stringify({ type: 'register', instances: [instance], svids: [{ ...svid(), key: 'secret' }] }));
    await waitFor('three errors', () => errors.length === 3);
    assert.ok(errors.every((e) => e.code === 'invalid_message'));
    assert.match(errors[0]!.message, /svids\[0\]\.serial/);
    assert.match(errors[1]!.message, /svids\[0\]\.notAfter/);
    assert.match(errors[2]!.message, /svids\[0\]/);
    assert.equal(registered.length, before);
  } finally {
    ws.close();
  }
});

test('the SVID list is bounded', () => {
  const many = Array.from({ length: MAX_HELD_SVIDS + 1 }, (_, i) => svid({ serial: i.toString(16) }));
  const r = decodeClientMessage(JSON.stringify({ type: 'register', instances: [], svids: many }), { maxBytes: 1 << 20 });
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.message, /svids/);
  assert.equal(decodeClientMessage(JSON.stringify({ type: 'register', instances: [], svids: many.slice(1) }), { maxBytes: 1 << 20 }).ok, true);
});
