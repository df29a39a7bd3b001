// The credential check on test SVIDs with fixed clocks: valid, close to
// expiry, expired, not yet valid, a key that is not the certificate's, and a
// bundle that does not anchor the chain.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import type { AdminCredential } from '../credentials.js';
import { judgeCredential } from './check.js';

const TD = 'check.test';
// The test PKI's intermediate is valid from an hour ago for a week: the admin SVID lives one day from now.
const START = Math.floor(Date.now() / 1000) * 1000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let pki: TestPki;
let other: TestPki;
let admin: TestCert;

before(async () => {
  pki = await createTestPki(TD);
  other = await createTestPki(TD);
  admin = await pki.leaf('/admin/operator', { notBefore: new Date(START), notAfter: new Date(START + DAY) });
});

const cred = (over: Partial<AdminCredential> = {}): AdminCredential => ({
  dir: '/creds',
  certPem: toPemChain([admin, pki.intermediate]),
  keyPem: admin.key.privateKeyPem,
  bundlePem: pki.root.pem,
  spiffeId: `spiffe://${TD}/admin/operator`,
  trustDomain: TD,
  notAfter: new Date(START + DAY),
  ...over,
});

test('a valid admin credential is ok until a third of its day is left, then warns, then fails', () => {
  assert.equal(judgeCredential(cred(), START + HOUR).status, 'ok');
  assert.equal(judgeCredential(cred(), START + 15 * HOUR).status, 'ok', '9 h of 24 left');
  const due = judgeCredential(cred(), START + 17 * HOUR);
  assert.equal(due.status, 'warn', due.detail);
  assert.match(due.next!, /meshctl admin renew/);
  const expired = judgeCredential(cred(), START + DAY + 1000);
  assert.equal(expired.status, 'fail');
  assert.match(expired.detail, new RegExp(`expired at ${new Date(START + DAY).toISOString()}`));
  const early = judgeCredential(cred(), START - 60_000);
  assert.equal(early.status, 'fail');
  assert.match(early.next!, /clock is behind/);
});

test("a key that is not the certificate's, or a bundle that does not anchor it, fails and says which file", async () => {
  const stranger = await pki.leaf('/admin/other');
  const wrongKey = judgeCredential(cred({ keyPem: stranger.key.privateKeyPem }), START + HOUR);
  assert.equal(wrongKey.status, 'fail');
  assert.match(wrongKey.detail, /key\.pem is not the key of \/creds\/cert\.pem/);
  const wrongBundle = judgeCredential(cred({ bundlePem: other.root.pem }), START + HOUR);
  assert.equal(wrongBundle.status, 'fail');
  assert.match(wrongBundle.detail, /does not chain to \/creds\/bundle\.pem/);
  const garbage = judgeCredential(cred({ bundlePem: 'not a pem' }), START + HOUR);
  assert.equal(garbage.status, 'fail');
});
