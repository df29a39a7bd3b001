import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { peerChain, svidTlsOptions, verifyPeer } from './tls.js';
import { bundleToPem, createTrustBundle, type TrustBundle } from './trust-bundle.js';
import { MAX_CHAIN_LENGTH } from './verify-svid.js';
import { createTestPki, toPemChain, type TestCert, type TestPki } from './testing/cert-factory.js';

const TD = 'amime.test';
let pki: TestPki;
let bundle: TrustBundle;
let server: TestCert;
let client: TestCert;

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der] });
  server = await pki.leaf('/control-plane/test');
  client = await pki.leaf('/ns/default/sa/client');
});

/** A stand-in for a TLSSocket, for the branches a real handshake cannot reach. */
function fakeSocket(chain: Buffer[] | (() => never), authorized = true, authorizationError?: string): tls.TLSSocket {
  let disabled = 0;
  return {
    authorized,
    authorizationError,
    disableRenegotiation: () => void disabled++,
    get disabled() {
      return disabled;
    },
    getPeerCertificate: () => {
      if (typeof chain === 'function') chain();
      const certs = (chain as Buffer[]).map((raw) => ({ raw }) as tls.DetailedPeerCertificate & { issuerCertificate?: unknown });
      certs.forEach((c, i) => (c.issuerCertificate = certs[i + 1] ?? c));
      return certs[0] ?? ({} as tls.DetailedPeerCertificate);
    },
  } as unknown as tls.TLSSocket;
}

describe('svidTlsOptions', () => {
  test('builds server and client options with one shared SecureContext', () => {
    const o = svidTlsOptions({ certChain: [server.der, pki.intermediate.der], privateKey: server.key.privateKey, bundle });
    assert.equal(o.requestCert, true);
    assert.equal(o.rejectUnauthorized, true);
    assert.equal(o.minVersion, 'TLSv1.2');
    assert.equal(o.maxVersion, 'TLSv1.3');
    assert.equal(o.ca, bundleToPem(bundle));
    assert.ok(o.secureContext instanceof Object && 'context' in o.secureContext);
    assert.equal(o.checkServerIdentity!('ignored', {} as tls.PeerCertificate), undefined);
    assert.equal((o.cert as string).match(/BEGIN CERTIFICATE/g)!.length, 2);
    assert.match(String(o.key), /BEGIN PRIVATE KEY/);
  });

  test('deferPeerRejection turns off OpenSSL rejection, nothing else', () => {
    const o = svidTlsOptions({ certChain: toPemChain([server, pki.intermediate]), privateKey: server.key.privateKeyPem, bundle, deferPeerRejection: true });
    assert.equal(o.rejectUnauthorized, false);
    assert.equal(o.requestCert, true);
  });
});

describe('verifyPeer (stand-in sockets)', () => {
  test('accepts a good chain and disables renegotiation', () => {
    const s = fakeSocket([client.der, pki.intermediate.der, pki.root.der]);
    const r = verifyPeer(s, { bundle });
    assert.ok(r.ok, r.ok ? '' : r.message);
    assert.equal(r.spiffeId, `spiffe://${TD}/ns/default/sa/client`);
    assert.equal((s as unknown as { disabled: number }).disabled, 1);
  });

  test('no certificate → no_peer_certificate', () => {
    const r = verifyPeer(fakeSocket([]), { bundle });
    assert.equal(!r.ok && r.reason, 'no_peer_certificate');
  });

  test('a throwing socket → no_peer_certificate, never an exception', () => {
    const r = verifyPeer(fakeSocket(() => { throw new Error('socket gone'); }), { bundle });
    assert.equal(!r.ok && r.reason, 'no_peer_certificate');
  });

  test('OpenSSL refused what the verifier accepts → tls_verify_failed', () => {
    const r = verifyPeer(fakeSocket([client.der, pki.intermediate.der], false, 'SOME_OPENSSL_ERROR'), { bundle });
    assert.equal(!r.ok && r.reason, 'tls_verify_failed');
    assert.match(!r.ok ? r.message : '', /SOME_OPENSSL_ERROR/);
  });

  test('the verifier reason wins when both refuse', () => {
    const r = verifyPeer(fakeSocket([client.der], false, 'UNABLE_TO_GET_ISSUER_CERT'), { bundle });
    assert.equal(!r.ok && r.reason, 'unknown_issuer');
  });

  test('peerChain stops at a self-reference and at a bound', () => {
    assert.equal(peerChain(fakeSocket([client.der, pki.intermediate.der, pki.root.der])).length, 3);
    const loop = fakeSocket([]);
    const a = { raw: client.der } as tls.DetailedPeerCertificate;
    const b = { raw: pki.intermediate.der, issuerCertificate: a } as tls.DetailedPeerCertificate;
    a.issuerCertificate = b;
    (loop as unknown as { getPeerCertificate: () => unknown }).getPeerCertificate = () => a;
    assert.equal(peerChain(loop).length, MAX_CHAIN_LENGTH + 1);
    assert.equal((verifyPeer(loop, { bundle }) as { reason?: string }).reason, 'chain_too_long');
  });
});

describe('verifyPeer on real sockets', () => {
  let srv: tls.Server;
  const serverEvents: string[] = [];

  before(async () => {
    const opts = svidTlsOptions({ certChain: [server.der, pki.intermediate.der], privateKey: server.key.privateKey, bundle, maxVersion: 'TLSv1.2' });
    srv = tls.createServer(opts, (socket) => {
      const r = verifyPeer(socket, { bundle });
      serverEvents.push(r.ok ? `accepted ${r.spiffeId} ${socket.getProtocol()}` : `refused ${r.reason}`);
      // Node reports a refused renegotiation as an error but leaves the socket open
      socket.on('error', (e: NodeJS.ErrnoException) => {
        serverEvents.push(`error ${e.code}`);
        socket.destroy();
      });
      socket.on('data', () => socket.write('pong'));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  });
  after(() => new Promise<void>((r) => srv.close(() => r())));

  test('TLS 1.2: identities verified both ways, renegotiation refused afterwards', { timeout: 10_000 }, async () => {
    const opts = svidTlsOptions({ certChain: [client.der, pki.intermediate.der], privateKey: client.key.privateKey, bundle, maxVersion: 'TLSv1.2' });
    const socket = tls.connect({ ...opts, host: '127.0.0.1', port: (srv.address() as AddressInfo).port });
    await new Promise<void>((r) => socket.once('secureConnect', r));
    const mine = verifyPeer(socket, { bundle });
    assert.ok(mine.ok);
    assert.equal(mine.spiffeId, `spiffe://${TD}/control-plane/test`);
    // verified again (e.g. per request): same answer, the chain is not fetched twice
    const fetch = socket.getPeerCertificate.bind(socket);
    let fetches = 0;
    socket.getPeerCertificate = ((d: boolean) => (fetches++, fetch(d))) as typeof socket.getPeerCertificate;
    const again = verifyPeer(socket, { bundle });
    assert.ok(again.ok && again.spiffeId === mine.spiffeId);
    assert.equal(fetches, 0);
    const later = verifyPeer(socket, { bundle, now: new Date(Date.now() + 2 * 3600_000) });
    assert.equal(!later.ok && later.reason, 'expired', 'time and revocation are still checked on every call');
    socket.write('ping');
    await new Promise<void>((r) => socket.once('data', () => r()));
    assert.deepEqual(serverEvents, [`accepted spiffe://${TD}/ns/default/sa/client TLSv1.2`]);
    // the client asks to renegotiate; the server (renegotiation disabled by verifyPeer) refuses
    socket.on('error', () => undefined);
    socket.renegotiate({}, () => undefined);
    await new Promise<void>((r) => socket.once('close', () => r()));
    assert.ok(serverEvents.includes('error ERR_TLS_RENEGOTIATION_DISABLED'), serverEvents.join(', '));
  });
});
