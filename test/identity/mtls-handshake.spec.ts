// Real mutual-TLS handshakes between this process (clients) and fixture
// servers in separate Node processes (test/identity/fixtures/mtls-server.ts).
// Each server prints one JSON line per connection; cases are matched to those
// lines by the client's local port.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { bundleToPem, createTrustBundle, toSpiffeBundle, type TrustBundle, createRevocationSet, revocationSetToJson, svidTlsOptions, verifyPeer, type SvidRejectReason, type SvidVerification } from '@amime/identity';
import {
  EKU,
  createIntermediate,
  createLeaf,
  createRoot,
  createTestPki,
  toPemChain,
  type TestCert,
  type TestPki,
} from '@amime/identity/testing';
import type { MtlsServerConfig } from './fixtures/mtls-server.js';

const TD = 'amime.test';
const SERVER_ID = `spiffe://${TD}/control-plane/fixture`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;
const BANNED_ID = `spiffe://${TD}/ns/default/sa/banned`;
const HOUR = 3600_000;
const workspace = resolve(import.meta.dirname, '../..');
const fixture = join(import.meta.dirname, 'fixtures', 'mtls-server.ts');

type ServerLine = { event: string; remotePort?: number | null; reason?: SvidRejectReason; spiffeId?: string; protocol?: string; code?: string };

class FixtureServer {
  readonly lines: ServerLine[] = [];
  private wake: (() => void) | undefined;
  port = 0;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      this.lines.push(JSON.parse(l) as ServerLine);
      this.wake?.();
    });
  }

  /** The first line from `from` on that satisfies `pred`. */
  async waitFor(pred: (l: ServerLine) => boolean, from = 0, timeoutMs = 5000): Promise<ServerLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(`no matching server line; saw ${JSON.stringify(this.lines.slice(from))}`);
      }
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
  }
}

const children: ChildProcess[] = [];
let dir: string;

async function startServer(name: string, config: MtlsServerConfig): Promise<FixtureServer> {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, path], { cwd: workspace, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const server = new FixtureServer(child);
  const listening = await server.waitFor((l) => l.event === 'listening', 0, 20_000);
  server.port = (listening as unknown as { port: number }).port;
  return server;
}

interface ClientOutcome {
  localPort: number;
  secureConnected: boolean;
  serverCheck?: SvidVerification;
  data: string;
  errorCode?: string;
}

/** Connects, verifies the server's SVID, and collects what the server says. */
function connect(port: number, client: TestCert | null, bundle: TrustBundle, intermediate: TestCert | null, maxVersion?: 'TLSv1.2'): Promise<ClientOutcome> {
  const options: tls.ConnectionOptions = client
    ? svidTlsOptions({
        certChain: intermediate ? [client.der, intermediate.der] : [client.der],
        privateKey: client.key.privateKey,
        bundle,
        ...(maxVersion ? { maxVersion } : {}),
      })
    : { ca: bundleToPem(bundle), checkServerIdentity: () => undefined, minVersion: 'TLSv1.2' };
  return new Promise((done) => {
    const out: ClientOutcome = { localPort: 0, secureConnected: false, data: '' };
    const socket = tls.connect({ ...options, host: '127.0.0.1', port });
    socket.setTimeout(5000, () => socket.destroy(new Error('client timeout')));
    socket.on('connect', () => (out.localPort = socket.localPort!));
    socket.on('secureConnect', () => {
      out.secureConnected = true;
      out.serverCheck = verifyPeer(socket, { bundle });
      if (!out.serverCheck.ok) socket.destroy();
    });
    socket.on('data', (d: Buffer) => (out.data += d.toString()));
    socket.on('error', (e: NodeJS.ErrnoException) => (out.errorCode = e.code ?? e.message));
    socket.on('close', () => done(out));
  });
}

let pki: TestPki;
let bundle: TrustBundle;
let serverCert: TestCert;
const clients: Record<string, TestCert | null> = {};
let observing: FixtureServer; // deferPeerRejection: every refusal gets a reason
let strict: FixtureServer; // default options: OpenSSL refuses first
let wrongDomainServer: FixtureServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'amime-mtls-'));
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der], sequence: 1, refreshHintSeconds: 60 });
  serverCert = await pki.leaf('/control-plane/fixture');
  const otherRoot = await createRoot({ subject: 'CN=other root' });
  const otherInt = await createIntermediate(otherRoot, { subject: 'CN=other intermediate' });
  Object.assign(clients, {
    good: await pki.leaf('/ns/default/sa/client'),
    goodRsa: await pki.leaf('/ns/default/sa/client', { keyKind: 'rsa' }),
    expired: await pki.leaf('/ns/default/sa/client', { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) }),
    unknownRoot: await createLeaf(otherInt, CLIENT_ID),
    wrongDomain: await createLeaf(pki.intermediate, 'spiffe://evil.test/ns/default/sa/client'),
    revokedSerial: await pki.leaf('/ns/default/sa/client', { serialHex: '7e57ed' }),
    revokedId: await pki.leaf('/ns/default/sa/banned'),
    leafCa: await pki.leaf('/ns/default/sa/client', { basicConstraints: { ca: true } }),
    serverAuthOnly: await pki.leaf('/ns/default/sa/client', { extKeyUsage: [EKU.serverAuth] }),
    none: null,
  });
  clients['unknownRootChain'] = otherInt;

  const revocations = revocationSetToJson(createRevocationSet({ version: 1, serials: ['7E57ED'], spiffeIds: [BANNED_ID] }));
  const base = {
    trustDomain: TD,
    bundle: toSpiffeBundle(bundle),
    revocations,
    certChainPem: toPemChain([serverCert, pki.intermediate]),
    keyPem: serverCert.key.privateKeyPem,
  };
  const evil = await createLeaf(pki.intermediate, 'spiffe://evil.test/control-plane/fixture');
  [observing, strict, wrongDomainServer] = await Promise.all([
    startServer('observing', { ...base, deferPeerRejection: true }),
    startServer('strict', { ...base, deferPeerRejection: false }),
    startServer('wrong-domain', { ...base, certChainPem: toPemChain([evil, pki.intermediate]), keyPem: evil.key.privateKeyPem, deferPeerRejection: true }),
  ]);
});

after(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(child.pid!, 'SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function chainFor(name: string): TestCert | null {
  return name === 'unknownRoot' ? clients['unknownRootChain']! : pki.intermediate;
}

async function run(server: FixtureServer, name: string, maxVersion?: 'TLSv1.2'): Promise<{ out: ClientOutcome; line: ServerLine }> {
  const from = server.lines.length;
  const out = await connect(server.port, clients[name]!, bundle, chainFor(name), maxVersion);
  const line = await server.waitFor((l) => l.remotePort === out.localPort || (l.event === 'tls_error' && l.remotePort === null), from);
  return { out, line };
}

function assertServerVerified(out: ClientOutcome): void {
  assert.ok(out.serverCheck, 'client reached secureConnect');
  assert.ok(out.serverCheck.ok, out.serverCheck.ok ? '' : out.serverCheck.message);
  assert.equal(out.serverCheck.spiffeId, SERVER_ID);
}

describe('mTLS between processes, server reports every refusal (deferPeerRejection)', () => {
  const accepted: { client: string; maxVersion?: 'TLSv1.2'; protocol: string }[] = [
    { client: 'good', protocol: 'TLSv1.3' },
    { client: 'good', maxVersion: 'TLSv1.2', protocol: 'TLSv1.2' },
    { client: 'goodRsa', protocol: 'TLSv1.3' },
  ];
  for (const c of accepted) {
    test(`accepts ${c.client} over ${c.protocol}; both sides verify each other`, async () => {
      const { out, line } = await run(observing, c.client, c.maxVersion);
      assertServerVerified(out);
      assert.equal(line.event, 'accepted');
      assert.equal(line.spiffeId, CLIENT_ID);
      assert.equal(line.protocol, c.protocol);
      assert.equal(out.data, `hello ${CLIENT_ID}\n`);
      assert.equal(out.errorCode, undefined);
    });
  }

  const refused: { client: string; reason: SvidRejectReason }[] = [
    { client: 'expired', reason: 'expired' },
    { client: 'unknownRoot', reason: 'unknown_issuer' },
    { client: 'wrongDomain', reason: 'trust_domain_mismatch' },
    { client: 'revokedSerial', reason: 'revoked' },
    { client: 'revokedId', reason: 'revoked' },
    { client: 'leafCa', reason: 'leaf_is_ca' },
    { client: 'serverAuthOnly', reason: 'eku_incomplete' },
    { client: 'none', reason: 'no_peer_certificate' },
  ];
  for (const c of refused) {
    test(`refuses client ${c.client} → ${c.reason}`, async () => {
      const { out, line } = await run(observing, c.client);
      // TLS 1.3: the client's handshake completes before the server decides
      assertServerVerified(out);
      assert.equal(out.data, '', 'no reply from the server');
      assert.equal(line.event, 'refused');
      assert.equal(line.reason, c.reason);
    });
  }
});

describe('mTLS with default options: OpenSSL refuses first, verifyPeer the rest', () => {
  const cases: { client: string; by: 'verifier' | 'openssl' | 'accepted'; reason?: SvidRejectReason; code?: string }[] = [
    { client: 'good', by: 'accepted' },
    { client: 'leafCa', by: 'verifier', reason: 'leaf_is_ca' },
    { client: 'wrongDomain', by: 'verifier', reason: 'trust_domain_mismatch' },
    { client: 'revokedSerial', by: 'verifier', reason: 'revoked' },
    { client: 'expired', by: 'openssl' },
    { client: 'unknownRoot', by: 'openssl' },
    { client: 'serverAuthOnly', by: 'openssl' },
    { client: 'none', by: 'openssl', code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' },
  ];
  for (const c of cases) {
    test(`${c.client}: ${c.by}${c.reason ? ` (${c.reason})` : ''}`, async () => {
      const { out, line } = await run(strict, c.client);
      if (c.by === 'accepted') {
        assertServerVerified(out);
        assert.equal(line.event, 'accepted');
        assert.equal(out.data, `hello ${CLIENT_ID}\n`);
        return;
      }
      assert.equal(out.data, '', 'no reply from the server');
      if (c.by === 'verifier') {
        assert.equal(line.event, 'refused');
        assert.equal(line.reason, c.reason);
      } else {
        // Node destroys the socket inside the handshake: no secureConnection, no reason
        assert.equal(line.event, 'tls_error');
        if (c.code) assert.equal(line.code, c.code);
      }
    });
  }
});

describe('the client verifies the server', () => {
  test('refuses a server whose SVID is in another trust domain', async () => {
    const out = await connect(wrongDomainServer.port, clients['good']!, bundle, pki.intermediate);
    assert.equal(out.secureConnected, true, 'OpenSSL accepts the chain: it knows nothing of trust domains');
    assert.ok(out.serverCheck && !out.serverCheck.ok);
    assert.equal(out.serverCheck.reason, 'trust_domain_mismatch');
    assert.equal(out.data, '', 'the client hung up before reading');
  });

  test('refuses a server chain from a root outside its bundle (OpenSSL, before verifyPeer)', async () => {
    const foreign = createTrustBundle({ trustDomain: TD, roots: [(await createRoot({ subject: 'CN=foreign' })).der] });
    const out = await connect(observing.port, clients['good']!, foreign, pki.intermediate);
    assert.equal(out.secureConnected, false);
    assert.equal(out.errorCode, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  });
});
