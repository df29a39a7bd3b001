// Conformance: OpenSSL, an independent X.509 implementation, accepts the
// DER engine's certificates under RFC 5280 strict checking for both TLS
// purposes, reads our CSRs, and its CSRs are accepted (or refused) by ours.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CertificateAuthority, createIntermediateCa, createRootCa } from '@amime/signing';
import {
  CsrError,
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  toPem,
  type KeyAlgorithm,
} from '@amime/identity';

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const DAY = 86400;
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'amime-openssl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function openssl(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

function makeCa(alg: KeyAlgorithm, tag: string) {
  const now = new Date();
  const rootKey = generateKeyPair(alg);
  const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 365 * DAY, now, commonName: `amime root ${tag}` });
  const interKey = generateKeyPair(alg);
  const inter = createIntermediateCa({
    trustDomain: TD,
    keyPair: interKey,
    parent: { certDer: root, privateKey: rootKey.privateKey },
    ttlSeconds: 7 * DAY,
    now,
  });
  const ca = new CertificateAuthority({
    trustDomain: TD,
    signer: { certDer: inter, privateKey: interKey.privateKey, chainDer: [inter, root] },
  });
  return {
    ca,
    rootPath: write(`${tag}-root.pem`, toPem('CERTIFICATE', root)),
    interPath: write(`${tag}-inter.pem`, toPem('CERTIFICATE', inter)),
  };
}

for (const alg of ['ec-p256', 'rsa-2048'] as const) {
  describe(`openssl verify -x509_strict, ${alg}`, { skip: !hasOpenssl && 'openssl not installed' }, () => {
    const { ca, rootPath, interPath } = makeCa(alg, alg);
    const other = makeCa(alg, `${alg}-other`);
    const svid = ca.signCsr(createCsr(generateKeyPair(alg), ID), { spiffeId: ID, ttlSeconds: 3600 });
    const leafPath = write(`${alg}-leaf.pem`, toPem('CERTIFICATE', svid.certDer));

    for (const purpose of ['sslclient', 'sslserver']) {
      it(`accepts the SVID for -purpose ${purpose}`, () => {
        const out = execFileSync(
          'openssl',
          ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootPath, '-untrusted', interPath, leafPath],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
        );
        assert.equal(out.trim(), `${leafPath}: OK`);
      });
    }

    it('accepts the intermediate under the root (strict CA profile)', () => {
      const r = openssl(['verify', '-x509_strict', '-CAfile', rootPath, interPath]);
      assert.equal(r.status, 0, r.output);
    });

    it('control: refuses the SVID under another root', () => {
      const r = openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', other.rootPath, '-untrusted', interPath, leafPath]);
      assert.notEqual(r.status, 0);
      assert.match(r.output, /unable to get local issuer certificate|certificate signature failure/);
    });
  });
}

describe('openssl and CSRs', { skip: !hasOpenssl && 'openssl not installed' }, () => {
  const { ca, rootPath, interPath } = makeCa('ec-p256', 'csr');
  const key = generateKeyPair('ec-p256');
  const keyPath = write('csr-key.pem', exportPrivateKeyPem(key.privateKey));

  it('openssl verifies the self-signature of our CSRs', () => {
    const csrPath = write('ours.csr', toPem('CERTIFICATE REQUEST', createCsr(key, ID)));
    const r = openssl(['req', '-in', csrPath, '-noout', '-verify']);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /verify OK/);
  });

  it('an openssl CSR with one URI SAN is signed, and the SVID verifies', () => {
    const csrPath = join(dir, 'openssl.csr');
    const r = openssl(['req', '-new', '-key', keyPath, '-subj', '/O=amime', '-addext', `subjectAltName=URI:${ID}`, '-out', csrPath]);
    assert.equal(r.status, 0, r.output);
    const svid = ca.signCsr(readFileSync(csrPath, 'utf8'), { spiffeId: ID, ttlSeconds: 3600 });
    const leafPath = write('openssl-leaf.pem', toPem('CERTIFICATE', svid.certDer));
    const v = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', rootPath, '-untrusted', interPath, leafPath]);
    assert.equal(v.status, 0, v.output);
  });

  it('an openssl CSR with a DNS SAN next to the URI is refused', () => {
    const csrPath = join(dir, 'openssl-dns.csr');
    const r = openssl(['req', '-new', '-key', keyPath, '-subj', '/O=amime', '-addext', `subjectAltName=URI:${ID},DNS:web.amime.test`, '-out', csrPath]);
    assert.equal(r.status, 0, r.output);
    assert.throws(
      () => ca.signCsr(readFileSync(csrPath), { spiffeId: ID, ttlSeconds: 3600 }),
      (e: unknown) => e instanceof CsrError && e.reason === 'san_count',
    );
  });
});
