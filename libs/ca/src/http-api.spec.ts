// The CA server keeps its own serving SVID fresh: with an agent TTL far
// shorter than the default, the certificate it presents must be renewed
// before it lapses, not on a fixed 30-second timer.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { verifyPeer, type SvidVerification } from '@amime/identity';
import { CertificateAuthorityService } from './authority.js';
import { startCaServer } from './http-api.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'serve.test';
const dir = mkdtempSync(join(tmpdir(), 'amime-http-api-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Connects without a client certificate and verifies the server's SVID. */
function servedSvid(port: number, ca: CertificateAuthorityService): Promise<SvidVerification> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.bundlePem(), checkServerIdentity: () => undefined, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      const r = verifyPeer(socket, { bundle: ca.bundle() });
      socket.destroy();
      resolve(r);
    });
    socket.once('error', reject);
  });
}

test('with a 2-second agent TTL the served SVID is renewed before it expires', async () => {
  const ca = CertificateAuthorityService.init(join(dir, 'ca'), { trustDomain: TD, ttl: { agentSeconds: 2 } });
  const server = await startCaServer(ca, { port: 0 });
  try {
    const first = await servedSvid(server.port, ca);
    assert.equal(first.ok, true, JSON.stringify(first));
    if (!first.ok) return;
    assert.equal(first.spiffeId, `spiffe://${TD}/control-plane/ca`);
    await sleep(2600);
    const later = await servedSvid(server.port, ca);
    assert.equal(later.ok, true, `the served SVID lapsed: ${JSON.stringify(later)}`);
    if (later.ok) assert.notEqual(later.leaf.serialHex, first.leaf.serialHex, 'a fresh SVID is served');
  } finally {
    await server.close();
    ca.close();
  }
});
