// CaClient against stand-in HTTPS servers built from test certificates: the
// server's SPIFFE ID gates every request (nothing is sent to an impostor),
// the CA's error JSON becomes a CaClientError, and transport failures get
// their reason. The client against the real CA: test/meshctl/ca-client.spec.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { CaClient, CaClientError, classifyTransportError, errorFromBody, trustDomainFromPem, type CaClientOptions } from './ca-client.js';
import { createRoot, createTestPki, toPemChain, type TestCert, type TestPki } from './testing/cert-factory.js';

const TD = 'client.test';
const CA_ID = `spiffe://${TD}/control-plane/ca`;

interface Seen {
  method: string;
  url: string;
  body: string;
  clientId: string | undefined;
}

interface StandIn {
  url: string;
  seen: Seen[];
  connections: number;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

async function standIn(serverCert: TestCert, chain: readonly TestCert[], handler: Handler): Promise<StandIn> {
  const seen: Seen[] = [];
  const state = { connections: 0 };
  const server = https.createServer({
    cert: toPemChain([serverCert, ...chain]),
    key: serverCert.key.privateKeyPem,
    ca: pki.root.pem,
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: false,
  });
  server.on('secureConnection', () => state.connections++);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push({ method: req.method!, url: req.url!, body, clientId: peer.subjectaltname });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const json = (status: number, body: unknown): Handler => (_req, res) => {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
};

let pki: TestPki;
let caCert: TestCert;
let admin: TestCert;
const servers: StandIn[] = [];

before(async () => {
  pki = await createTestPki(TD);
  caCert = await pki.leaf('/control-plane/ca');
  admin = await pki.leaf('/admin/operator');
});

after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(handler: Handler, cert: TestCert = caCert, chain: readonly TestCert[] = [pki.intermediate]): Promise<StandIn> {
  const s = await standIn(cert, chain, handler);
  servers.push(s);
  return s;
}

function client(url: string, o: Partial<CaClientOptions> = {}): CaClient {
  return new CaClient({
    url,
    bundlePem: pki.root.pem,
    credential: { certPem: toPemChain([admin, pki.intermediate]), keyPem: admin.key.privateKeyPem },
    timeoutMs: 5_000,
    ...o,
  });
}

async function refusal(p: Promise<unknown>): Promise<CaClientError> {
  const err = await p.then(
    () => assert.fail('expected a CaClientError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CaClientError, `not a CaClientError: ${String(err)}`);
  return err;
}

describe('CaClient options', () => {
  test('the trust domain comes from the credential, the server ID defaults to its control-plane/ca', () => {
    const c = client('https://127.0.0.1:1');
    assert.equal(c.trustDomain, TD);
    assert.equal(c.expectedServerId, CA_ID);
  });

  test('an explicit expectedServerId also sets the trust domain', () => {
    const c = client('https://127.0.0.1:1', { credential: undefined, expectedServerId: `spiffe://${TD}/control-plane/other` });
    assert.equal(c.trustDomain, TD);
  });

  const bad: [string, Partial<CaClientOptions>, RegExp][] = [
    ['a plain-HTTP URL', { url: 'http://127.0.0.1:1' }, /HTTPS only/],
    ['not a URL', { url: 'ca:8443' }, /https:/],
    ['a bundle that is not PEM', { bundlePem: 'nonsense' }, /bundlePem/],
    ['no trust domain anywhere (test roots carry no URI SAN)', { credential: undefined }, /pass trustDomain/],
    ['a bad expected server ID', { expectedServerId: 'https://x' }, /expectedServerId|trust domain/],
    ['a zero timeout', { timeoutMs: 0 }, /timeoutMs/],
  ];
  for (const [name, o, message] of bad) {
    test(`refuses ${name} with a message naming the option`, () => {
      assert.throws(
        () => client(o.url ?? 'https://127.0.0.1:1', o),
        (e: unknown) => e instanceof CaClientError && e.reason === 'bad_options' && message.test(e.message),
      );
    });
  }

  test('trustDomainFromPem reads the first spiffe:// URI SAN, or gives undefined', async () => {
    assert.equal(trustDomainFromPem(admin.pem), TD);
    assert.equal(trustDomainFromPem(pki.root.pem), undefined);
    const namedRoot = await createRoot({ uris: ['spiffe://roots.test'] });
    assert.equal(trustDomainFromPem(namedRoot.pem), 'roots.test');
  });
});

describe('CaClient requests', () => {
  test('a request reaches a server that proves the CA ID, with our client certificate, over one kept-alive connection', async () => {
    const s = await serve(json(200, { trustDomain: TD, rotation: 'steady' }));
    const c = client(s.url);
    const status = await c.status();
    assert.equal(status.trustDomain, TD);
    await c.status();
    assert.equal(s.seen.length, 2);
    assert.equal(s.seen[0]!.method, 'GET');
    assert.equal(s.seen[0]!.url, '/v1/admin/status');
    assert.equal(s.seen[0]!.clientId, `URI:spiffe://${TD}/admin/operator`);
    assert.equal(s.connections, 1, 'the second request reused the connection');
    c.close();
  });

  test('bodies are JSON with the wire field names; a DER CSR is sent as PEM', async () => {
    const s = await serve(json(200, { ok: true }));
    const c = client(s.url, { credential: undefined, trustDomain: TD });
    await c.join('amime-jt.x', Buffer.from([0x30, 0x00]));
    await c.rotate('activate', true);
    await c.revoke({ node: 'vm-a', reason: 'gone' });
    await c.assignments('vm a');
    assert.deepEqual(JSON.parse(s.seen[0]!.body), { token: 'amime-jt.x', csr: '-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n' });
    assert.equal(s.seen[0]!.clientId, undefined, 'no client certificate without a credential');
    assert.equal(s.seen[1]!.url, '/v1/admin/rotation/activate');
    assert.deepEqual(JSON.parse(s.seen[1]!.body), { force: true });
    assert.deepEqual(JSON.parse(s.seen[2]!.body), { node: 'vm-a', reason: 'gone' });
    assert.equal(s.seen[3]!.url, '/v1/assignments?node=vm%20a');
    c.close();
  });

  test("the CA's error JSON becomes a CaClientError with code, reason, message and status", async () => {
    const s = await serve(json(409, { error: { code: 'AMIME_ERR_CA_CONFLICT', reason: 'rotation_too_early', message: 'activate after T' } }));
    const c = client(s.url);
    const e = await refusal(c.rotate('activate'));
    assert.deepEqual([e.code, e.reason, e.message, e.status, e.refused], ['AMIME_ERR_CA_CONFLICT', 'rotation_too_early', 'activate after T', 409, true]);
    c.close();
  });

  test('a server with another SPIFFE ID is refused before any request is written', async () => {
    const impostor = await pki.leaf('/agent/vm-evil');
    const s = await serve(json(200, {}), impostor);
    const c = client(s.url);
    const e = await refusal(c.createToken('vm-a'));
    assert.equal(e.reason, 'server_identity');
    assert.equal(e.refused, false);
    assert.match(e.message, /agent\/vm-evil.*not spiffe:\/\/client\.test\/control-plane\/ca/);
    await sleep(100); // time for a wrongly written request to arrive
    assert.equal(s.seen.length, 0, 'the token request never reached the server');
    c.close();
  });

  test('the expected server ID can be set, and the real CA is then refused', async () => {
    const s = await serve(json(200, {}));
    const c = client(s.url, { expectedServerId: `spiffe://${TD}/control-plane/not-ca` });
    assert.equal((await refusal(c.status())).reason, 'server_identity');
    assert.equal(s.seen.length, 0);
    c.close();
  });

  test('a server whose chain ends at a root outside the bundle fails with reason tls', async () => {
    const other = await createTestPki(TD);
    const s = await serve(json(200, {}), await other.leaf('/control-plane/ca'), [other.intermediate]);
    const c = client(s.url);
    assert.equal((await refusal(c.status())).reason, 'tls');
    assert.equal(s.seen.length, 0);
    c.close();
  });

  test('a closed port is unreachable', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    const e = await refusal(client(`https://127.0.0.1:${port}`).status());
    assert.equal(e.reason, 'unreachable');
    assert.equal(e.status, 0);
  });

  test('a server that never answers times out', async () => {
    const s = await serve(() => undefined);
    const c = client(s.url, { timeoutMs: 300 });
    const started = Date.now();
    assert.equal((await refusal(c.status())).reason, 'timeout');
    assert.ok(Date.now() - started < 3_000);
    c.close();
  });

  test('a non-JSON error answer is a bad_response, not a refusal', async () => {
    const s = await serve((_req, res) => {
      res.statusCode = 502;
      res.end('bad gateway');
    });
    const c = client(s.url);
    const e = await refusal(c.status());
    assert.deepEqual([e.reason, e.status, e.refused], ['bad_response', 502, false]);
    c.close();
  });

  test('updateTrust swaps the roots and drops the open connections', async () => {
    const s = await serve(json(200, {}));
    const c = client(s.url);
    await c.status();
    const other = await createTestPki(TD);
    c.updateTrust(other.root.pem);
    assert.equal((await refusal(c.status())).reason, 'tls');
    assert.throws(() => c.updateTrust('nonsense'), /bundlePem/);
    assert.equal(c.bundlePemInUse, other.root.pem, 'a refused update keeps the previous roots');
    c.close();
  });
});

describe('error mapping', () => {
  const cases: [string, Error & { code?: string }, string][] = [
    ['refused', Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 'unreachable'],
    ['no such host', Object.assign(new Error('x'), { code: 'ENOTFOUND' }), 'unreachable'],
    ['timed out', Object.assign(new Error('x'), { code: 'ETIMEDOUT' }), 'timeout'],
    ['unknown issuer', Object.assign(new Error('x'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), 'tls'],
    ['plain HTTP on the port', Object.assign(new Error('x'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }), 'tls'],
  ];
  for (const [name, err, reason] of cases) {
    test(`${name} → ${reason}`, () => assert.equal(classifyTransportError(err).reason, reason));
  }

  test('errorFromBody keeps the server fields and tolerates a missing reason', () => {
    const e = errorFromBody('GET', '/x', 403, JSON.stringify({ error: { code: 'AMIME_ERR_CA_FORBIDDEN', message: 'no' } }));
    assert.deepEqual([e.code, e.reason, e.status], ['AMIME_ERR_CA_FORBIDDEN', 'unknown', 403]);
    assert.equal(errorFromBody('GET', '/x', 500, '{"error":1}').reason, 'bad_response');
  });
});
