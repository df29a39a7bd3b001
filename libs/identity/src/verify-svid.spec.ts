import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { verifySvid, SVID_REJECT_REASONS, type SvidRejectReason, type VerifySvidOptions } from './verify-svid.js';
import { createTrustBundle, type TrustBundle } from './trust-bundle.js';
import { createRevocationSet } from './revocation.js';
import { seq, tlv } from './der.js';
import { OID } from './oids.js';
import {
  EKU,
  KeyUsage,
  createIntermediate,
  createLeaf,
  createRoot,
  createTestPki,
  flipSignatureByte,
  generateKeyPair,
  type CertOptions,
  type TestCert,
  type TestKeyPair,
  type TestPki,
} from './testing/cert-factory.js';

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const HOUR = 3600_000;

let pki: TestPki;
let bundle: TrustBundle;
let leafKey: TestKeyPair;

/** A leaf under the shared intermediate, reusing one key to keep the suite fast. */
const leaf = (opts: CertOptions = {}, id = ID): Promise<TestCert> => createLeaf(pki.intermediate, id, { key: leafKey, ...opts });
const chainOf = (...certs: TestCert[]): Buffer[] => certs.map((c) => c.der);

before(async () => {
  pki = await createTestPki(TD);
  bundle = createTrustBundle({ trustDomain: TD, roots: [pki.root.der], sequence: 1, refreshHintSeconds: 60 });
  leafKey = await generateKeyPair();
});

interface Case {
  name: string;
  chain: () => Promise<Buffer[]>;
  opts?: () => Partial<VerifySvidOptions>;
  /** undefined: must be accepted */
  reason?: SvidRejectReason;
}

const unknownCritical = [{ oid: '1.3.6.1.4.1.57264.99.1', critical: true, value: Buffer.from([0x05, 0x00]) }];

/** A nameConstraints extension: subtrees as [GeneralName tag, value]. */
function nameConstraints(critical: boolean, permitted: [number, string][], excluded: [number, string][] = []) {
  const subtrees = (list: [number, string][]) => Buffer.concat(list.map(([tag, v]) => seq(tlv(tag, Buffer.from(v, 'latin1')))));
  const parts = [];
  if (permitted.length) parts.push(tlv(0xa0, subtrees(permitted)));
  if (excluded.length) parts.push(tlv(0xa1, subtrees(excluded)));
  return [{ oid: OID.nameConstraints, critical, value: seq(...parts) }];
}

/** A leaf under a fresh intermediate made with `opts`. */
async function under(opts: CertOptions): Promise<Buffer[]> {
  const int = await createIntermediate(pki.root, { subject: 'CN=constrained', ...opts });
  return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
}

const URI = 0x86;
const DNS = 0x82;

const cases: Case[] = [
  // ---- compliant variants
  { name: 'compliant leaf + intermediate', chain: async () => chainOf(await leaf(), pki.intermediate) },
  { name: 'compliant, root appended by the peer', chain: async () => chainOf(await leaf(), pki.intermediate, pki.root) },
  { name: 'compliant, leaf issued by the root directly', chain: async () => chainOf(await createLeaf(pki.root, ID, { key: leafKey })) },
  { name: 'compliant, DNS SANs besides the one URI', chain: async () => chainOf(await leaf({ dnsNames: ['web.default'] }), pki.intermediate) },
  { name: 'compliant, no extKeyUsage at all', chain: async () => chainOf(await leaf({ extKeyUsage: null }), pki.intermediate) },
  { name: 'compliant, non-critical unknown extension', chain: async () => chainOf(await leaf({ extraExtensions: [{ ...unknownCritical[0]!, critical: false }] }), pki.intermediate) },
  {
    name: 'compliant, intermediate pathLen 1 above a sub-intermediate',
    chain: async () => {
      const i1 = await createIntermediate(pki.root, { subject: 'CN=i1', basicConstraints: { ca: true, pathLen: 1 } });
      const i2 = await createIntermediate(i1, { subject: 'CN=i2' });
      return chainOf(await createLeaf(i2, ID, { key: leafKey }), i2, i1);
    },
  },
  {
    name: 'compliant, intermediates presented out of order',
    chain: async () => {
      const i1 = await createIntermediate(pki.root, { subject: 'CN=i1' });
      const i2 = await createIntermediate(i1, { subject: 'CN=i2' });
      return chainOf(await createLeaf(i2, ID, { key: leafKey }), i1, i2);
    },
  },
  {
    name: 'compliant RSA-2048 chain',
    chain: async () => {
      const rsa = await createIntermediate(pki.root, { subject: 'CN=rsa intermediate', keyKind: 'rsa' });
      return chainOf(await createLeaf(rsa, ID, { keyKind: 'rsa' }), rsa);
    },
  },

  // ---- structure
  { name: 'empty chain', chain: async () => [], reason: 'empty_chain' },
  { name: 'garbage bytes', chain: async () => [Buffer.from('not a certificate')], reason: 'malformed' },
  { name: 'truncated leaf', chain: async () => [(await leaf()).der.subarray(0, 100)], reason: 'malformed' },
  { name: 'malformed intermediate', chain: async () => [(await leaf()).der, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])], reason: 'malformed' },
  { name: 'non-Buffer element', chain: async () => [null as unknown as Buffer], reason: 'malformed' },
  { name: 'six certificates presented', chain: async () => chainOf(await leaf(), ...Array(5).fill(pki.intermediate)), reason: 'chain_too_long' },
  {
    name: 'path longer than five certificates',
    chain: async () => {
      let issuer = pki.root;
      const ints: TestCert[] = [];
      for (let i = 1; i <= 4; i++) ints.unshift((issuer = await createIntermediate(issuer, { subject: `CN=deep${i}` })));
      return chainOf(await createLeaf(issuer, ID, { key: leafKey }), ...ints);
    },
    reason: 'chain_too_long',
  },
  { name: 'root-only chain', chain: async () => chainOf(pki.root), reason: 'root_only' },
  { name: 'self-signed CA not in the bundle', chain: async () => chainOf(await createRoot({ subject: 'CN=stranger' })), reason: 'root_only' },

  // ---- leaf profile (SPIFFE X.509-SVID §4, §5)
  { name: 'leaf with CA=true', chain: async () => chainOf(await leaf({ basicConstraints: { ca: true } }), pki.intermediate), reason: 'leaf_is_ca' },
  { name: 'leaf without basicConstraints', chain: async () => chainOf(await leaf({ basicConstraints: null }), pki.intermediate), reason: 'leaf_missing_basic_constraints' },
  { name: 'two URI SANs', chain: async () => chainOf(await leaf({ uris: [ID, `spiffe://${TD}/ns/x/sa/y`] }), pki.intermediate), reason: 'san_count' },
  { name: 'no URI SAN', chain: async () => chainOf(await leaf({ uris: [], dnsNames: ['web'] }), pki.intermediate), reason: 'san_count' },
  { name: 'URI SAN not a SPIFFE ID', chain: async () => chainOf(await leaf({ uris: ['https://amime.test/web'] }), pki.intermediate), reason: 'bad_spiffe_id' },
  { name: 'SPIFFE ID with uppercase trust domain', chain: async () => chainOf(await leaf({ uris: ['spiffe://Amime.test/web'] }), pki.intermediate), reason: 'bad_spiffe_id' },
  { name: 'SPIFFE ID without a path', chain: async () => chainOf(await leaf({ uris: [`spiffe://${TD}`] }), pki.intermediate), reason: 'bad_spiffe_id' },
  { name: 'wrong trust domain', chain: async () => chainOf(await leaf({ uris: ['spiffe://evil.test/ns/default/sa/web'] }), pki.intermediate), reason: 'trust_domain_mismatch' },
  { name: 'expected trust domain given explicitly', chain: async () => chainOf(await leaf(), pki.intermediate), opts: () => ({ trustDomain: 'other.test' }), reason: 'trust_domain_mismatch' },
  { name: 'keyUsage missing', chain: async () => chainOf(await leaf({ keyUsage: null }), pki.intermediate), reason: 'key_usage_missing' },
  { name: 'keyUsage not critical', chain: async () => chainOf(await leaf({ keyUsage: { flags: KeyUsage.digitalSignature, critical: false } }), pki.intermediate), reason: 'key_usage_not_critical' },
  { name: 'keyUsage without digitalSignature', chain: async () => chainOf(await leaf({ keyUsage: { flags: KeyUsage.keyEncipherment } }), pki.intermediate), reason: 'key_usage_no_digital_signature' },
  { name: 'keyUsage keyCertSign on a leaf', chain: async () => chainOf(await leaf({ keyUsage: { flags: KeyUsage.digitalSignature | KeyUsage.keyCertSign } }), pki.intermediate), reason: 'key_usage_cert_sign' },
  { name: 'keyUsage cRLSign on a leaf', chain: async () => chainOf(await leaf({ keyUsage: { flags: KeyUsage.digitalSignature | KeyUsage.cRLSign } }), pki.intermediate), reason: 'key_usage_cert_sign' },
  { name: 'EKU serverAuth only', chain: async () => chainOf(await leaf({ extKeyUsage: [EKU.serverAuth] }), pki.intermediate), reason: 'eku_incomplete' },
  { name: 'EKU clientAuth only', chain: async () => chainOf(await leaf({ extKeyUsage: [EKU.clientAuth] }), pki.intermediate), reason: 'eku_incomplete' },
  { name: 'unknown critical extension on the leaf', chain: async () => chainOf(await leaf({ extraExtensions: unknownCritical }), pki.intermediate), reason: 'unknown_critical_extension' },

  // ---- path (RFC 5280 §6)
  { name: 'leaf without its intermediate', chain: async () => chainOf(await leaf()), reason: 'unknown_issuer' },
  {
    name: 'leaf from an unknown root',
    chain: async () => {
      const other = await createRoot({ subject: 'CN=other root' });
      const int = await createIntermediate(other, { subject: 'CN=other intermediate' });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'unknown_issuer',
  },
  {
    name: 'impostor root with the same name (key identifiers differ)',
    chain: async () => {
      const fake = await createRoot({ subject: `CN=${TD} root,O=amime` });
      const int = await createIntermediate(fake, { subject: `CN=${TD} intermediate,O=amime` });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'unknown_issuer',
  },
  {
    name: 'impostor root with the same name and no key identifiers',
    chain: async () => {
      const fake = await createRoot({ subject: `CN=${TD} root,O=amime`, keyIds: false });
      const int = await createIntermediate(fake, { subject: 'CN=impostor intermediate', keyIds: false });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'bad_signature',
  },
  { name: 'flipped byte in the leaf signature', chain: async () => [flipSignatureByte((await leaf()).der), pki.intermediate.der], reason: 'bad_signature' },
  { name: 'flipped byte in the intermediate signature', chain: async () => [(await leaf()).der, flipSignatureByte(pki.intermediate.der)], reason: 'bad_signature' },
  {
    name: 'intermediate with CA=false',
    chain: async () => {
      const int = await createIntermediate(pki.root, { subject: 'CN=not a ca', basicConstraints: { ca: false } });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'issuer_not_ca',
  },
  {
    name: 'intermediate without basicConstraints',
    chain: async () => {
      const int = await createIntermediate(pki.root, { subject: 'CN=no bc', basicConstraints: null });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'issuer_not_ca',
  },
  {
    name: 'intermediate keyUsage without keyCertSign',
    chain: async () => {
      const int = await createIntermediate(pki.root, { subject: 'CN=no certsign', keyUsage: { flags: KeyUsage.digitalSignature | KeyUsage.cRLSign } });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'issuer_key_usage',
  },
  {
    name: 'pathLen 0 intermediate above a sub-intermediate',
    chain: async () => {
      const i1 = await createIntermediate(pki.root, { subject: 'CN=i1', basicConstraints: { ca: true, pathLen: 0 } });
      const i2 = await createIntermediate(i1, { subject: 'CN=i2' });
      return chainOf(await createLeaf(i2, ID, { key: leafKey }), i2, i1);
    },
    reason: 'path_len_exceeded',
  },
  {
    name: 'unknown critical extension on the intermediate',
    chain: async () => {
      const int = await createIntermediate(pki.root, { subject: 'CN=odd', extraExtensions: unknownCritical });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'unknown_critical_extension',
  },
  { name: 'leaf signed with ecdsa-with-SHA1', chain: async () => chainOf(await leaf({ signatureHash: 'SHA-1' }), pki.intermediate), reason: 'unsupported_algorithm' },
  { name: 'leaf signed with ecdsa-with-SHA384', chain: async () => chainOf(await leaf({ signatureHash: 'SHA-384' }), pki.intermediate) },

  // ---- name constraints (URI form)
  { name: 'intermediate permitting URIs in the trust domain', chain: () => under({ extraExtensions: nameConstraints(true, [[URI, TD]]) }) },
  { name: 'intermediate permitting subdomains only', chain: () => under({ extraExtensions: nameConstraints(true, [[URI, `.${TD}`]]) }), reason: 'name_constraints_violation' },
  { name: 'intermediate excluding the trust domain (non-critical, still enforced)', chain: () => under({ extraExtensions: nameConstraints(false, [], [[URI, TD]]) }), reason: 'name_constraints_violation' },
  { name: 'intermediate permitting another domain', chain: () => under({ extraExtensions: nameConstraints(true, [[URI, 'other.test']]) }), reason: 'name_constraints_violation' },
  { name: 'intermediate constraining DNS names', chain: () => under({ extraExtensions: nameConstraints(true, [[DNS, TD]]) }), reason: 'unsupported_name_constraints' },

  // ---- validity
  { name: 'expired leaf', chain: async () => chainOf(await leaf({ notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) }), pki.intermediate), reason: 'expired' },
  { name: 'leaf not yet valid', chain: async () => chainOf(await leaf({ notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 2 * HOUR) }), pki.intermediate), reason: 'not_yet_valid' },
  {
    name: 'expired intermediate',
    chain: async () => {
      const int = await createIntermediate(pki.root, { subject: 'CN=old', notBefore: new Date(Date.now() - 48 * HOUR), notAfter: new Date(Date.now() - 24 * HOUR) });
      return chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    },
    reason: 'expired',
  },
  { name: 'injected clock past the leaf lifetime', chain: async () => chainOf(await leaf(), pki.intermediate), opts: () => ({ now: new Date(Date.now() + 2 * HOUR) }), reason: 'expired' },

  // ---- revocation
  {
    name: 'revoked leaf serial',
    chain: async () => chainOf(await leaf({ serialHex: '00c0ffee' }), pki.intermediate),
    opts: () => ({ revocations: createRevocationSet({ version: 1, serials: ['C0FFEE'] }) }),
    reason: 'revoked',
  },
  {
    name: 'revoked intermediate serial',
    chain: async () => chainOf(await leaf(), pki.intermediate),
    opts: () => ({ revocations: createRevocationSet({ version: 1, serials: [pki.intermediate.serialHex] }) }),
    reason: 'revoked',
  },
  {
    name: 'revoked SPIFFE ID',
    chain: async () => chainOf(await leaf(), pki.intermediate),
    opts: () => ({ revocations: createRevocationSet({ version: 1, spiffeIds: [ID] }) }),
    reason: 'revoked',
  },
  {
    name: 'revocation list naming others',
    chain: async () => chainOf(await leaf(), pki.intermediate),
    opts: () => ({ revocations: createRevocationSet({ version: 1, serials: ['01'], spiffeIds: [`spiffe://${TD}/ns/x/sa/y`] }) }),
  },
];

describe('verifySvid', () => {
  for (const c of cases) {
    test(c.reason ? `refuses: ${c.name} → ${c.reason}` : `accepts: ${c.name}`, async () => {
      const chain = await c.chain();
      const result = verifySvid(chain, { bundle, ...c.opts?.() });
      if (c.reason === undefined) {
        assert.equal(result.ok, true, result.ok ? '' : `${result.reason}: ${result.message}`);
        assert.ok(result.ok);
        assert.equal(result.spiffeId, ID);
        assert.equal(result.leaf.der, chain[0]);
        assert.ok(result.path.length >= 2);
        assert.ok(result.path.at(-1)!.der.equals(pki.root.der), 'path ends at the bundle root');
      } else {
        assert.equal(result.ok, false, `expected ${c.reason}, got accepted`);
        assert.ok(!result.ok);
        assert.equal(result.reason, c.reason, result.message);
        assert.ok(SVID_REJECT_REASONS.includes(result.reason));
        assert.ok(result.message.length > 0);
      }
    });
  }

  test('reason codes are unique snake_case label values', () => {
    assert.equal(new Set(SVID_REJECT_REASONS).size, SVID_REJECT_REASONS.length);
    for (const r of SVID_REJECT_REASONS) assert.match(r, /^[a-z][a-z_]*[a-z]$/);
  });

  test('a cached intermediate is still checked: validity, revocation, and its issuer', async () => {
    const good = chainOf(await leaf(), pki.intermediate);
    assert.ok(verifySvid(good, { bundle }).ok);
    assert.ok(verifySvid(good, { bundle }).ok, 'second pass uses the cache');
    const late = verifySvid(good, { bundle, now: new Date(Date.now() + 30 * 24 * HOUR) });
    assert.equal(!late.ok && late.reason, 'expired');
    const revoked = verifySvid(good, { bundle, revocations: createRevocationSet({ version: 2, serials: [pki.intermediate.serialHex] }) });
    assert.equal(!revoked.ok && revoked.reason, 'revoked');
    assert.equal((verifySvid([flipSignatureByte(good[0]!), good[1]!], { bundle }) as { reason?: string }).reason, 'bad_signature');
    // the same intermediate under another bundle has no cached facts there
    const otherRoot = await createRoot({ subject: `CN=${TD} root,O=amime`, keyIds: false });
    const other = createTrustBundle({ trustDomain: TD, roots: [otherRoot.der] });
    const r = verifySvid(good, { bundle: other });
    assert.equal(!r.ok && r.reason, 'bad_signature');
  });

  test('a cached signature check is tied to the issuer that passed it', async () => {
    // two roots with the same name and no key identifiers: only the real one signed the intermediate
    const real = await createRoot({ subject: 'CN=twin root', keyIds: false });
    const twin = await createRoot({ subject: 'CN=twin root', keyIds: false });
    const int = await createIntermediate(real, { subject: 'CN=twin intermediate', keyIds: false });
    const chain = chainOf(await createLeaf(int, ID, { key: leafKey }), int);
    const both = createTrustBundle({ trustDomain: TD, roots: [twin.der, real.der] });
    for (let pass = 0; pass < 2; pass++) {
      const r = verifySvid(chain, { bundle: both });
      assert.ok(r.ok, r.ok ? '' : r.message);
      assert.ok(r.path.at(-1)!.der.equals(real.der), `pass ${pass}: anchored at the root that signed`);
    }
  });

  test('the caller may reuse its buffers after a call', async () => {
    const l = await leaf();
    const intCopy = Buffer.from(pki.intermediate.der);
    assert.ok(verifySvid([l.der, intCopy], { bundle }).ok);
    intCopy.fill(0);
    assert.ok(verifySvid([l.der, pki.intermediate.der], { bundle }).ok);
  });

  test('a bundle with two roots anchors chains of either', async () => {
    const second = await createTestPki(TD);
    const both = createTrustBundle({ trustDomain: TD, roots: [pki.root.der, second.root.der] });
    assert.ok(verifySvid(chainOf(await leaf(), pki.intermediate), { bundle: both }).ok);
    assert.ok(verifySvid(chainOf(await second.leaf('/ns/default/sa/web'), second.intermediate), { bundle: both }).ok);
  });
});
