// The plug-in CA: an operator's own root (made here with the openssl CLI, an
// outside tool) either signs our intermediate, or signs an intermediate the
// operator hands over with the root kept offline. SVIDs then chain to the
// operator's root; material that does not fit together is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthorityService, CaError } from '@amime/ca';
import { createCsr, fromPem, generateKeyPair, verifySvid } from '@amime/identity';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'corp.example';

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeRoot(dir: string, name: string): { cert: string; key: string } {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/O=corp/CN=${name}`, '-days', '30',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash');
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

function makeIntermediate(dir: string): { cert: string; key: string } {
  writeFileSync(join(dir, 'ext.cnf'), [
    'basicConstraints=critical,CA:TRUE,pathlen:0',
    'keyUsage=critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid',
    `subjectAltName=URI:spiffe://${TD}`,
  ].join('\n'));
  openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'inter.key', '-out', 'inter.csr', '-subj', '/O=corp/CN=intermediate');
  openssl(dir, 'x509', '-req', '-in', 'inter.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-CAcreateserial',
    '-days', '20', '-extfile', 'ext.cnf', '-out', 'inter.crt');
  return { cert: readFileSync(join(dir, 'inter.crt'), 'utf8'), key: readFileSync(join(dir, 'inter.key'), 'utf8') };
}

async function issuedChainVerifies(ca: CertificateAuthorityService, rootPem: string): Promise<void> {
  const bundle = ca.bundle();
  assert.equal(bundle.roots.length, 1);
  assert.ok(bundle.roots[0]!.der.equals(new X509Certificate(rootPem).raw), 'the bundle holds the operator root');
  const key = generateKeyPair('ec-p256');
  const svid = await ca.issueAdmin(createCsr(key, `spiffe://${TD}/admin/operator`));
  const chain = fromPem(svid.chainPem, 'CERTIFICATE');
  const result = verifySvid(chain, { bundle });
  assert.equal(result.ok, true, JSON.stringify(result));
  if (result.ok) assert.equal(result.spiffeId, `spiffe://${TD}/admin/operator`);
}

test('operator root and key: the CA makes its intermediate under it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-plugin-'));
  try {
    const root = makeRoot(dir, 'root');
    const ca = CertificateAuthorityService.init(join(dir, 'ca'), { trustDomain: TD, plugIn: { rootCertPem: root.cert, rootKeyPem: root.key } });
    await issuedChainVerifies(ca, root.cert);
    ca.close();
    const reopened = CertificateAuthorityService.open(join(dir, 'ca'));
    await issuedChainVerifies(reopened, root.cert);
    reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('offline root: operator intermediate and key, root certificate only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-plugin-'));
  try {
    const root = makeRoot(dir, 'root');
    const inter = makeIntermediate(dir);
    const ca = CertificateAuthorityService.init(join(dir, 'ca'), {
      trustDomain: TD,
      plugIn: { rootCertPem: root.cert, intermediateCertPem: inter.cert, intermediateKeyPem: inter.key },
    });
    assert.equal(ca.state.slots[0]!.rootKeyFile, undefined, 'no root key is stored');
    assert.equal(ca.renewIntermediateIfDue(), false, 'cannot renew without the root key');
    await issuedChainVerifies(ca, root.cert);
    ca.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('material that does not fit together is refused, and nothing is written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-plugin-'));
  try {
    const root = makeRoot(dir, 'root');
    const other = makeRoot(dir, 'other');
    const inter = makeIntermediate(dir);
    const cases: [NonNullable<Parameters<typeof CertificateAuthorityService.init>[1]['plugIn']>, RegExp][] = [
      [{ rootCertPem: root.cert, rootKeyPem: other.key }, /root key does not match/],
      [{ rootCertPem: other.cert, intermediateCertPem: inter.cert, intermediateKeyPem: inter.key }, /not signed by the root/],
      [{ rootCertPem: root.cert, intermediateCertPem: inter.cert, intermediateKeyPem: other.key }, /intermediate key does not match/],
      [{ rootCertPem: root.cert }, /root key: required/],
      [{ rootCertPem: 'not a certificate' }, /root certificate:/],
    ];
    for (const [plugIn, message] of cases) {
      const caDir = join(dir, 'ca-bad');
      assert.throws(() => CertificateAuthorityService.init(caDir, { trustDomain: TD, plugIn }), (err: unknown) => {
        assert.ok(err instanceof CaError);
        assert.match((err as Error).message, message);
        return true;
      });
      assert.throws(() => CertificateAuthorityService.open(caDir), /holds no CA/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
