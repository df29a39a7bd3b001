import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_REFRESH_HINT_SECONDS,
  TrustBundleError,
  bundleFingerprint,
  createTrustBundle,
  bundleFromPem,
  parseSpiffeBundle,
  bundleToPem,
  toSpiffeBundle,
  type TrustBundle,
} from './trust-bundle.js';
import { createLeaf, createRoot, type TestCert } from './testing/cert-factory.js';

const TD = 'amime.test';
let ecRoot: TestCert;
let rsaRoot: TestCert;
let leaf: TestCert;
let bundle: TrustBundle;

before(async () => {
  ecRoot = await createRoot({ subject: 'CN=ec root' });
  rsaRoot = await createRoot({ subject: 'CN=rsa root', keyKind: 'rsa' });
  leaf = await createLeaf(ecRoot, `spiffe://${TD}/ns/a/sa/b`);
  bundle = createTrustBundle({ trustDomain: TD, roots: [ecRoot.der, rsaRoot.der], sequence: 7, refreshHintSeconds: 120 });
});

/** A fresh, valid SPIFFE bundle document to mutate. */
const doc = (): { keys: Record<string, unknown>[]; spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown; [k: string]: unknown } =>
  JSON.parse(JSON.stringify(toSpiffeBundle(bundle)));

describe('SPIFFE bundle JSON', () => {
  test('toSpiffeBundle emits a JWK Set with x509-svid keys, sequence and refresh hint', () => {
    const d = toSpiffeBundle(bundle);
    assert.equal(d.spiffe_sequence, 7);
    assert.equal(d.spiffe_refresh_hint, 120);
    assert.equal(d.keys.length, 2);
    const [ec, rsa] = d.keys;
    assert.equal(ec!.use, 'x509-svid');
    assert.equal(ec!.kty, 'EC');
    assert.equal(ec!.crv, 'P-256');
    assert.match(ec!.x!, /^[A-Za-z0-9_-]{43}$/);
    assert.match(ec!.y!, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(ec!.x5c.length, 1);
    assert.deepEqual(Buffer.from(ec!.x5c[0], 'base64'), ecRoot.der);
    assert.equal(rsa!.kty, 'RSA');
    assert.equal(rsa!.e, 'AQAB');
    assert.ok(rsa!.n!.length > 300);
    assert.equal('crv' in rsa!, false);
  });

  test('round-trips through JSON text', () => {
    const parsed = parseSpiffeBundle(JSON.stringify(toSpiffeBundle(bundle)), TD);
    assert.equal(parsed.trustDomain, TD);
    assert.equal(parsed.sequence, 7);
    assert.equal(parsed.refreshHintSeconds, 120);
    assert.deepEqual(parsed.roots.map((r) => r.der), [ecRoot.der, rsaRoot.der]);
    assert.equal(bundleFingerprint(parsed), bundleFingerprint(bundle));
    assert.deepEqual(toSpiffeBundle(parsed), toSpiffeBundle(bundle));
  });

  test('ignores keys of other uses (jwt-svid, future ones)', () => {
    const d = doc();
    d.keys.push({ use: 'jwt-svid', kty: 'EC', crv: 'P-256', kid: 'k1', x: 'AAAA', y: 'AAAA' });
    d.keys.push({ use: 'something-new', whatever: true });
    const parsed = parseSpiffeBundle(d, TD);
    assert.equal(parsed.roots.length, 2);
  });

  test('sequence and refresh hint are optional', () => {
    const d = doc();
    delete d.spiffe_sequence;
    delete d.spiffe_refresh_hint;
    const parsed = parseSpiffeBundle(d, TD);
    assert.equal(parsed.sequence, 0);
    assert.equal(parsed.refreshHintSeconds, DEFAULT_REFRESH_HINT_SECONDS);
  });

  const malformed: { name: string; mutate: (d: ReturnType<typeof doc>) => unknown; field: string; message?: RegExp }[] = [
    { name: 'not JSON', mutate: () => '{"keys": [', field: '$' },
    { name: 'an array', mutate: () => [], field: '$' },
    { name: 'unknown top-level field', mutate: (d) => ({ ...d, extra: 1 }), field: 'extra' },
    { name: 'keys missing', mutate: (d) => ({ ...d, keys: undefined }), field: 'keys' },
    { name: 'keys not an array', mutate: (d) => ({ ...d, keys: {} }), field: 'keys' },
    { name: 'no x509-svid key', mutate: (d) => ({ ...d, keys: [{ use: 'jwt-svid', kty: 'EC' }] }), field: 'keys', message: /no X\.509 root/ },
    { name: 'negative sequence', mutate: (d) => ({ ...d, spiffe_sequence: -1 }), field: 'spiffe_sequence' },
    { name: 'fractional sequence', mutate: (d) => ({ ...d, spiffe_sequence: 1.5 }), field: 'spiffe_sequence' },
    { name: 'string sequence', mutate: (d) => ({ ...d, spiffe_sequence: '7' }), field: 'spiffe_sequence' },
    { name: 'zero refresh hint', mutate: (d) => ({ ...d, spiffe_refresh_hint: 0 }), field: 'spiffe_refresh_hint' },
    { name: 'key not an object', mutate: (d) => ((d.keys[1] = 'x' as never), d), field: 'keys[1]' },
    { name: 'key without use', mutate: (d) => (delete d.keys[0]!['use'], d), field: 'keys[0].use' },
    { name: 'x5c missing', mutate: (d) => (delete d.keys[0]!['x5c'], d), field: 'keys[0].x5c' },
    { name: 'two certificates in x5c', mutate: (d) => ((d.keys[0]!['x5c'] = [...(d.keys[0]!['x5c'] as string[]), ...(d.keys[1]!['x5c'] as string[])]), d), field: 'keys[0].x5c' },
    { name: 'x5c in base64url', mutate: (d) => ((d.keys[0]!['x5c'] = [(d.keys[0]!['x5c'] as string[])[0]!.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') + '-_']), d), field: 'keys[0].x5c[0]' },
    { name: 'x5c not a certificate', mutate: (d) => ((d.keys[0]!['x5c'] = [Buffer.from('hello').toString('base64')]), d), field: 'keys[0].x5c[0]' },
    { name: 'x5c holds a leaf, not a CA', mutate: (d) => ((d.keys[0]!['x5c'] = [leaf.der.toString('base64')]), d), field: 'keys[0].x5c[0]', message: /not a CA/ },
    { name: 'kty absent', mutate: (d) => (delete d.keys[0]!['kty'], d), field: 'keys[0].kty' },
    { name: 'kty OKP', mutate: (d) => ((d.keys[0]!['kty'] = 'OKP'), d), field: 'keys[0].kty' },
    { name: 'kty does not match the certificate', mutate: (d) => ((d.keys[0]!['kty'] = 'RSA'), d), field: 'keys[0].kty' },
    { name: 'x of another key', mutate: (d) => ((d.keys[0]!['x'] = 'A'.repeat(43)), d), field: 'keys[0].x', message: /does not match/ },
    { name: 'JWK of the other root', mutate: (d) => ((d.keys[0]!['x5c'] = d.keys[1]!['x5c']), d), field: 'keys[0].kty' },
    { name: 'crv wrong', mutate: (d) => ((d.keys[0]!['crv'] = 'P-384'), d), field: 'keys[0].crv' },
    { name: 'y missing', mutate: (d) => (delete d.keys[0]!['y'], d), field: 'keys[0].y' },
    { name: 'RSA n padded', mutate: (d) => ((d.keys[1]!['n'] = `${d.keys[1]!['n'] as string}==`), d), field: 'keys[1].n' },
    { name: 'EC parameter on an RSA key', mutate: (d) => ((d.keys[1]!['crv'] = 'P-256'), d), field: 'keys[1].crv' },
    { name: 'private key material', mutate: (d) => ((d.keys[0]!['d'] = 'AAAA'), d), field: 'keys[0].d', message: /private key/ },
    { name: 'unknown key field', mutate: (d) => ((d.keys[0]!['x5t'] = 'AAAA'), d), field: 'keys[0].x5t' },
    { name: 'the same root twice', mutate: (d) => ((d.keys[1] = d.keys[0]!), d), field: 'keys[1]', message: /duplicates/ },
  ];
  for (const c of malformed) {
    test(`refuses ${c.name}, naming ${c.field}`, () => {
      assert.throws(
        () => parseSpiffeBundle(c.mutate(doc()), TD),
        (e: unknown) => {
          assert.ok(e instanceof TrustBundleError, String(e));
          assert.equal(e.field, c.field, e.message);
          assert.equal(e.code, 'AMIME_ERR_IDENTITY_TRUST_BUNDLE');
          if (c.message) assert.match(e.message, c.message);
          return true;
        },
      );
    });
  }

  test('refuses an invalid trust domain', () => {
    assert.throws(() => parseSpiffeBundle(doc(), 'Not A Domain'), (e: unknown) => e instanceof TrustBundleError && e.field === 'trustDomain');
  });
});

describe('createTrustBundle', () => {
  test('keeps trust domain, sequence and refresh hint; owns the root bytes', () => {
    const der = Buffer.from(ecRoot.der);
    const b = createTrustBundle({ trustDomain: TD, roots: [der], sequence: 3, refreshHintSeconds: 30 });
    der.fill(0);
    assert.deepEqual(b.roots[0]!.der, ecRoot.der);
    assert.equal(b.sequence, 3);
    assert.equal(b.refreshHintSeconds, 30);
    assert.ok(Object.isFrozen(b) && Object.isFrozen(b.roots));
  });

  const bad: { name: string; opts: () => Parameters<typeof createTrustBundle>[0]; field: string }[] = [
    { name: 'no roots', opts: () => ({ trustDomain: TD, roots: [] }), field: 'roots' },
    { name: 'a leaf as root', opts: () => ({ trustDomain: TD, roots: [leaf.der] }), field: 'roots[0]' },
    { name: 'garbage root', opts: () => ({ trustDomain: TD, roots: [ecRoot.der, Buffer.from([1, 2, 3])] }), field: 'roots[1]' },
    { name: 'duplicate root', opts: () => ({ trustDomain: TD, roots: [ecRoot.der, ecRoot.der] }), field: 'roots[1]' },
    { name: 'bad trust domain', opts: () => ({ trustDomain: 'spiffe://amime.test/path', roots: [ecRoot.der] }), field: 'trustDomain' },
    { name: 'negative sequence', opts: () => ({ trustDomain: TD, roots: [ecRoot.der], sequence: -2 }), field: 'sequence' },
    { name: 'zero refresh hint', opts: () => ({ trustDomain: TD, roots: [ecRoot.der], refreshHintSeconds: 0 }), field: 'refreshHintSeconds' },
  ];
  for (const c of bad) {
    test(`refuses ${c.name}`, () => {
      assert.throws(() => createTrustBundle(c.opts()), (e: unknown) => e instanceof TrustBundleError && e.field === c.field);
    });
  }
});

describe('PEM and fingerprint', () => {
  test('bundleToPem / bundleFromPem round-trip', () => {
    const pem = bundleToPem(bundle);
    assert.equal(pem.match(/-----BEGIN CERTIFICATE-----/g)!.length, 2);
    assert.ok(pem.split('\n').every((l) => l.length <= 64));
    const back = bundleFromPem(pem, TD, 9);
    assert.equal(back.sequence, 9);
    assert.equal(back.refreshHintSeconds, DEFAULT_REFRESH_HINT_SECONDS);
    assert.deepEqual(back.roots.map((r) => r.der), bundle.roots.map((r) => r.der));
  });

  test('bundleFromPem accepts CRLF line ends', () => {
    assert.equal(bundleFromPem(bundleToPem(bundle).replace(/\n/g, '\r\n'), TD).roots.length, 2);
  });

  const badPem: { name: string; pem: () => string; message: RegExp }[] = [
    { name: 'empty', pem: () => '', message: /no X\.509 root/ },
    { name: 'a private key block', pem: () => ecRoot.key.privateKeyPem, message: /not CERTIFICATE/ },
    { name: 'a key block among the roots', pem: () => bundleToPem(bundle) + ecRoot.key.privateKeyPem, message: /not CERTIFICATE/ },
    { name: 'text around the blocks', pem: () => `Subject: root\n${bundleToPem(bundle)}`, message: /^pem: line 1/ },
    { name: 'broken base64', pem: () => bundleToPem(bundle).replace(/^M/m, '*'), message: /^pem: line 2/ },
    { name: 'a leaf certificate', pem: () => leaf.pem, message: /not a CA/ },
  ];
  for (const c of badPem) {
    test(`bundleFromPem refuses ${c.name}`, () => {
      assert.throws(() => bundleFromPem(c.pem(), TD), (e: unknown) => e instanceof TrustBundleError && c.message.test(e.message));
    });
  }

  test('fingerprint ignores root order and changes with the root set', () => {
    const swapped = createTrustBundle({ trustDomain: TD, roots: [rsaRoot.der, ecRoot.der] });
    const one = createTrustBundle({ trustDomain: TD, roots: [ecRoot.der] });
    assert.equal(bundleFingerprint(swapped), bundleFingerprint(bundle));
    assert.notEqual(bundleFingerprint(one), bundleFingerprint(bundle));
    assert.match(bundleFingerprint(one), /^[0-9a-f]{64}$/);
  });
});
