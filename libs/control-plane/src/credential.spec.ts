// The control plane's own SVID against a real CA HTTPS server on 127.0.0.1:0
// (in-process, temp dir): first issue with the admin credential, reuse on
// restart, renewal with its own SVID at half life (short TTLs), backoff while
// the CA is away, crash leftovers, and following a root rotation.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificateAuthorityService, initCa, startCaServer, type RunningCaServer, type InitOptions } from '@amime/ca';
import { bundleFromPem, exportPrivateKeyPem, fromPem, generateKeyPair, importPrivateKeyPem, parseCertificate } from '@amime/identity';
import { ControlPlaneCredential, CredentialError, stderrLogger, type CredentialSnapshot, type RenewFailure } from './credential.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'cred.mesh.test';
const CP = `spiffe://${TD}/control-plane/controller`;

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Ca {
  ca: CertificateAuthorityService;
  server: RunningCaServer;
  adminDir: string;
  /** The control plane's data directory (empty at first). */
  dir: string;
  lines: Record<string, unknown>[];
  log: (f: Record<string, unknown>) => void;
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function startCa(ttl: InitOptions['ttl'] = {}): Promise<Ca> {
  const root = mkdtempSync(join(tmpdir(), 'amime-cp-credential-'));
  roots.push(root);
  const adminDir = join(root, 'admin');
  const { ca } = await initCa(join(root, 'ca'), { trustDomain: TD, ttl, adminDir });
  const lines: Record<string, unknown>[] = [];
  const c: Ca = {
    ca,
    server: await startCaServer(ca, { port: 0 }),
    adminDir,
    dir: join(root, 'cp'),
    lines,
    log: (f) => void lines.push(f),
    // same port, so clients configured with the URL find it again
    restart: async () => void (c.server = await startCaServer(ca, { port: c.server.port })),
    close: async () => {
      await c.server.close();
      ca.close();
    },
  };
  return c;
}

const leaf = (pem: string) => parseCertificate(fromPem(pem, 'CERTIFICATE')[0]!);
const mode = (path: string) => statSync(path).mode & 0o777;
const files = (dir: string) => ['cert.pem', 'key.pem', 'bundle.pem'].map((f) => join(dir, 'credential', f));

/** Revokes the admin credential's certificate, so that only the control plane's own SVID can authenticate. */
function revokeAdmin(c: Ca): void {
  c.ca.revokeSerial(leaf(readFileSync(join(c.adminDir, 'cert.pem'), 'utf8')).serialHex, 'test');
}

test('first start: obtains the controller SVID with the admin credential; files are 0600 and consistent', async () => {
  const c = await startCa();
  const cred = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
  try {
    const cur = cred.current();
    assert.equal(cur.spiffeId, CP);
    assert.equal(cred.trustDomain, TD);
    const [certPath, keyPath, bundlePath] = files(c.dir);
    for (const p of [certPath!, keyPath!, bundlePath!]) assert.equal(mode(p), 0o600, `${p} is 0600`);
    assert.equal(mode(join(c.dir, 'credential')), 0o700);
    const l = leaf(readFileSync(certPath!, 'utf8'));
    assert.deepEqual(l.uris, [CP]);
    assert.ok(importPrivateKeyPem(readFileSync(keyPath!, 'utf8')).spki.equals(l.spki), 'key.pem is the key of cert.pem');
    assert.equal(readFileSync(certPath!, 'utf8'), cur.certPem);
    assert.equal(cur.notAfter.getTime(), l.notAfter.getTime());
    assert.equal(bundleFromPem(readFileSync(bundlePath!, 'utf8'), TD).roots[0]!.der.equals(c.ca.bundle().roots[0]!.der), true);
    // the client authenticates as the control plane: it may read every node's assignments
    c.ca.assign('vm-1', `spiffe://${TD}/ns/shop/sa/api`);
    assert.deepEqual(await cred.client.assignments(), { 'vm-1': [`spiffe://${TD}/ns/shop/sa/api`] });
    assert.ok(c.lines.some((l) => l['event'] === 'credential_issued'));
  } finally {
    await cred.stop();
    await c.close();
  }
});

test('a restart reuses the stored SVID without asking the CA; near its end it renews with itself', async () => {
  const c = await startCa();
  const first = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
  const serial = leaf(first.current().certPem).serialHex;
  await first.stop();
  const issued = c.ca.issuedSinceStart;

  // no adminDir: the stored files are enough
  const again = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, log: c.log });
  assert.equal(leaf(again.current().certPem).serialHex, serial, 'same SVID');
  assert.equal(c.ca.issuedSinceStart, issued, 'the CA was not asked');
  await again.stop();

  // 95% of its life later (by our clock; the CA's is real), with the admin credential revoked:
  // only our own SVID can get the new one
  revokeAdmin(c);
  const life = first.current().notAfter.getTime() - Date.now();
  const late = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, clock: () => Date.now() + life * 0.95, log: c.log });
  try {
    assert.notEqual(leaf(late.current().certPem).serialHex, serial, 'a new SVID');
    assert.equal(c.ca.issuedSinceStart, issued + 1);
    assert.equal(readFileSync(files(c.dir)[0]!, 'utf8'), late.current().certPem);
  } finally {
    await late.stop();
    await c.close();
  }
});

test('renews itself at half life with its own SVID and emits renewed; the client follows', async () => {
  const c = await startCa({ agentSeconds: 4 });
  const cred = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
  try {
    revokeAdmin(c);
    const before = cred.current();
    const t0 = Date.now();
    const [snap] = (await Promise.race([once(cred, 'renewed'), sleep(6000).then(() => assert.fail('no renewal within 6 s'))])) as [CredentialSnapshot];
    const took = Date.now() - t0;
    assert.ok(took > 1200 && took < 3500, `renewed around half of a 4 s life, after ${took} ms`);
    assert.notEqual(leaf(snap.certPem).serialHex, leaf(before.certPem).serialHex);
    assert.ok(snap.notAfter > before.notAfter);
    assert.equal(snap.keyPem === before.keyPem, false, 'a new key each time');
    assert.deepEqual(cred.current(), snap);
    assert.equal(readFileSync(files(c.dir)[0]!, 'utf8'), snap.certPem);
    // the next request authenticates with the renewed SVID, after the first one lapsed
    await sleep(Math.max(0, before.notAfter.getTime() - Date.now() + 100));
    assert.equal((await cred.client.revocations()).serials.length, 1);
  } finally {
    await cred.stop();
    await c.close();
  }
});

test('while the CA is away renewal fails, emits renew_failed and backs off; it recovers when the CA is back', async () => {
  const c = await startCa({ agentSeconds: 4 });
  const cred = await ControlPlaneCredential.obtain({
    caUrl: c.server.url,
    dir: c.dir,
    adminDir: c.adminDir,
    retry: { initialMs: 100, maxMs: 400 },
    log: c.log,
  });
  const failures: RenewFailure[] = [];
  cred.on('renew_failed', (err: Error, info: RenewFailure) => {
    assert.ok(err instanceof Error);
    failures.push(info);
  });
  try {
    await c.server.close();
    const deadline = Date.now() + 5000;
    while (failures.length < 3 && Date.now() < deadline) await sleep(50);
    assert.ok(failures.length >= 3, `renew_failed ${failures.length} times`);
    assert.deepEqual(failures.slice(0, 3).map((f) => f.attempt), [1, 2, 3]);
    assert.ok(failures[2]!.retryInMs > failures[0]!.retryInMs, 'backs off');
    assert.ok(failures.every((f) => f.retryInMs <= 400 * 1.2));
    assert.ok(c.lines.some((l) => l['event'] === 'credential_renew_failed' && typeof l['error'] === 'string'));
    const renewed = once(cred, 'renewed');
    await c.restart();
    await Promise.race([renewed, sleep(3000).then(() => assert.fail('no renewal after the CA came back'))]);
  } finally {
    await cred.stop();
    await c.close();
  }
});

test('CA unreachable at start with a stored SVID near its end: starts on it and renews once the CA is back', async () => {
  const c = await startCa();
  const first = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
  const serial = leaf(first.current().certPem).serialHex;
  const life = first.current().notAfter.getTime() - Date.now();
  await first.stop();
  await c.server.close();
  const cred = await ControlPlaneCredential.obtain({
    caUrl: c.server.url,
    dir: c.dir,
    adminDir: c.adminDir,
    clock: () => Date.now() + life * 0.95,
    retry: { initialMs: 100, maxMs: 200 },
    log: c.log,
  });
  try {
    assert.equal(leaf(cred.current().certPem).serialHex, serial, 'the stored SVID, still valid');
    assert.ok(c.lines.some((l) => l['event'] === 'credential_degraded'));
    await once(cred, 'renew_failed');
    const renewed = once(cred, 'renewed');
    await c.restart();
    const [snap] = (await Promise.race([renewed, sleep(3000).then(() => assert.fail('no renewal after the CA came back'))])) as [CredentialSnapshot];
    assert.notEqual(leaf(snap.certPem).serialHex, serial);
  } finally {
    await cred.stop();
    await c.close();
  }
});

test('refusals: nothing to authenticate with, an expired admin credential, a mismatched key left by a crash, a revoked identity', async () => {
  const c = await startCa();
  try {
    await assert.rejects(ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, log: c.log }), (err: CredentialError) => {
      assert.equal(err.code, 'AMIME_ERR_CP_NO_CREDENTIAL');
      assert.match(err.message, /adminDir/);
      return true;
    });
    await assert.rejects(ControlPlaneCredential.obtain({ caUrl: 'http://127.0.0.1:1', dir: c.dir, adminDir: c.adminDir, log: c.log }), /not https/);
    await assert.rejects(
      ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: join(c.dir, 'nowhere'), spiffeId: CP, log: c.log }),
      /admin credential in .*nowhere/,
    );
    const in31Days = () => Date.now() + 31 * 86400_000; // past the admin TTL (30 d)
    await assert.rejects(ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, clock: in31Days, log: c.log }), (err: CredentialError) => {
      assert.equal(err.code, 'AMIME_ERR_CP_NO_CREDENTIAL');
      assert.match(err.message, /admin credential .* expired .*meshctl admin renew/);
      return true;
    });

    const first = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
    const serial = leaf(first.current().certPem).serialHex;
    await first.stop();
    // a crash between the key's and the certificate's rename: the pair is unusable
    writeFileSync(files(c.dir)[1]!, exportPrivateKeyPem(generateKeyPair('ec-p256').privateKey), { mode: 0o600 });
    await assert.rejects(ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, log: c.log }), /key\.pem does not match cert\.pem/);
    const recovered = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
    assert.notEqual(leaf(recovered.current().certPem).serialHex, serial, 'a new SVID through the admin credential');
    await recovered.stop();

    // the CA refuses a revoked control-plane identity; the error says so
    c.ca.revokeSpiffeId(CP);
    const late = { caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, clock: () => Date.now() + 3600_000 * 0.95, log: c.log };
    await assert.rejects(ControlPlaneCredential.obtain(late), (err: CredentialError) => {
      assert.equal(err.code, 'AMIME_ERR_CP_CA_FAILED');
      assert.match(err.message, /revoked/);
      return true;
    });
  } finally {
    await c.close();
  }
});

test('setBundle: the client, bundle.pem and listeners follow a root rotation', async () => {
  const c = await startCa({ agentSeconds: 600 });
  const cred = await ControlPlaneCredential.obtain({ caUrl: c.server.url, dir: c.dir, adminDir: c.adminDir, log: c.log });
  try {
    assert.equal(cred.setBundle(c.ca.bundlePem()), false, 'same roots: nothing to do');
    c.ca.prepareRotation();
    const seen: string[] = [];
    cred.on('bundle', (pem: string) => seen.push(pem));
    assert.equal(cred.setBundle(c.ca.bundlePem()), true);
    assert.equal(seen.length, 1);
    assert.equal(bundleFromPem(readFileSync(files(c.dir)[2]!, 'utf8'), TD).roots.length, 2);
    assert.equal(bundleFromPem(cred.current().bundlePem, TD).roots.length, 2);
    assert.throws(() => cred.setBundle('not a bundle'), /pem/);
    // the CA now serves under the new root: the client trusts it
    c.ca.activateRotation(true);
    await cred.client.revocations();
    const renewed = await cred.renew();
    const newRoot = c.ca.bundle().roots.find((r) => !r.der.equals(bundleFromPem(readFileSync(join(c.adminDir, 'bundle.pem'), 'utf8'), TD).roots[0]!.der))!;
    const chain = fromPem(renewed.certPem, 'CERTIFICATE');
    assert.equal(chain.length, 2, 'leaf and intermediate');
    const intermediate = parseCertificate(chain[1]!);
    assert.ok(intermediate.authorityKeyId!.equals(newRoot.subjectKeyId!), 'the renewed SVID chains to the new root');
  } finally {
    await cred.stop();
    await c.close();
  }
});

test('the default logger writes one JSON object per line to stderr', () => {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((s: string) => ((out += s), true)) as typeof process.stderr.write;
  try {
    stderrLogger({ event: 'x', error: 'a\nb' });
  } finally {
    process.stderr.write = write;
  }
  assert.equal(out.split('\n').length, 2);
  const line = JSON.parse(out) as Record<string, unknown>;
  assert.equal(line['event'], 'x');
  assert.equal(line['component'], 'control-plane');
});
