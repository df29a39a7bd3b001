// CaSync against a real CA HTTPS server on 127.0.0.1:0 (in-process, temp
// dir), authenticated as the control plane: first sync and its publishes,
// revocation and assignment changes within a couple of intervals with one
// publish per change, isAssigned's refresh-on-miss rate limit, a rotation's
// new root, the CA going away and coming back, and publish retries.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificateAuthorityService, initCa, startCaServer, type RunningCaServer } from '@amime/ca';
import { CaClient, bundleFromPem, fromPem, type RevocationSet, type TrustBundle } from '@amime/identity';
import type { RevocationListResource, TrustBundleResource } from '@amime/protocol';
import { CaSync, CaSyncError, trustBundleName, type CaSyncResource } from './ca-sync.js';
import { ControlPlaneCredential } from './credential.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'sync.mesh.test';
const API = `spiffe://${TD}/ns/shop/sa/api`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;
const INTERVAL = 150;
// Polls every INTERVAL; events are awaited far longer, since a loaded 2-core machine stalls timers.
const EVENT_WAIT_MS = 5000;

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Fixture {
  ca: CertificateAuthorityService;
  server: RunningCaServer;
  cred: ControlPlaneCredential;
  published: CaSyncResource[];
  lines: Record<string, unknown>[];
  log: (f: Record<string, unknown>) => void;
  publish: (r: CaSyncResource) => Promise<void>;
  restart(): Promise<void>;
  close(...syncs: CaSync[]): Promise<void>;
}

async function setup(): Promise<Fixture> {
  const root = mkdtempSync(join(tmpdir(), 'amime-cp-ca-sync-'));
  roots.push(root);
  const { ca } = await initCa(join(root, 'ca'), { trustDomain: TD, adminDir: join(root, 'admin') });
  const server = await startCaServer(ca, { port: 0 });
  const lines: Record<string, unknown>[] = [];
  const log = (f: Record<string, unknown>) => void lines.push(f);
  const cred = await ControlPlaneCredential.obtain({ caUrl: server.url, dir: join(root, 'cp'), adminDir: join(root, 'admin'), log });
  const published: CaSyncResource[] = [];
  const f: Fixture = {
    ca,
    server,
    cred,
    published,
    lines,
    log,
    publish: async (r) => void published.push(structuredClone(r)),
    restart: async () => void (f.server = await startCaServer(ca, { port: f.server.port })),
    close: async (...syncs) => {
      for (const s of syncs) await s.stop();
      await cred.stop();
      await f.server.close();
      ca.close();
    },
  };
  return f;
}

const ofKind = <K extends CaSyncResource['kind']>(f: Fixture, kind: K) =>
  f.published.filter((r): r is Extract<CaSyncResource, { kind: K }> => r.kind === kind);

/** Waits for `event` on `emitter` for at most `ms`. */
async function within<T extends unknown[]>(emitter: CaSync, event: string, ms: number): Promise<T> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    return (await once(emitter, event, { signal: ac.signal })) as T;
  } catch {
    return assert.fail(`no '${event}' within ${ms} ms`);
  } finally {
    clearTimeout(timer);
  }
}

test('start: one first sync publishes the TrustBundle and the RevocationList once; the views answer', async () => {
  const f = await setup();
  f.ca.assign('vm-1', API);
  const sync = new CaSync({ client: f.cred.client, trustDomain: TD, publish: f.publish, intervalMs: INTERVAL, log: f.log });
  assert.throws(() => sync.bundle(), CaSyncError);
  assert.throws(() => sync.revocations(), /await start/);
  try {
    await sync.start();
    assert.equal(sync.bundle().trustDomain, TD);
    assert.ok(sync.bundle().roots[0]!.der.equals(f.ca.bundle().roots[0]!.der));
    assert.equal(bundleFromPem(sync.bundlePem(), TD).roots.length, 1);
    assert.equal(sync.revocations().version, f.ca.revocations().version);
    assert.deepEqual(sync.assignments(), { 'vm-1': [API] });
    assert.equal(await sync.isAssigned('vm-1', API), true);

    const [tb] = ofKind(f, 'TrustBundle') as TrustBundleResource[];
    assert.equal(tb!.metadata.name, 'sync-mesh-test');
    assert.equal(tb!.metadata.namespace, 'default');
    assert.equal(tb!.apiVersion, 'amime.dev/v1');
    assert.equal(tb!.spec.trustDomain, TD);
    assert.equal(tb!.spec.roots.length, 1);
    assert.ok(fromPem(tb!.spec.roots[0]!, 'CERTIFICATE')[0]!.equals(f.ca.bundle().roots[0]!.der));
    const [rl] = ofKind(f, 'RevocationList') as RevocationListResource[];
    assert.equal(rl!.metadata.name, 'mesh');
    assert.deepEqual(rl!.spec, { version: f.ca.revocations().version, serials: [], identities: [] });

    await sleep(INTERVAL * 4);
    assert.deepEqual(await sync.syncNow(), [], 'a poll on demand, nothing failed');
    assert.equal(f.published.length, 2, 'nothing changed, nothing published again');
    await assert.rejects(sync.start(), /already/);
  } finally {
    await f.close(sync);
  }
});

test('a revocation and an assignment change are seen by polling; one publish per change', async () => {
  const f = await setup();
  const sync = new CaSync({ client: f.cred.client, trustDomain: TD, publish: f.publish, intervalMs: INTERVAL, log: f.log });
  try {
    await sync.start();
    const revocations = within<[RevocationSet]>(sync, 'revocations', EVENT_WAIT_MS);
    // two changes in one tick: no request can see one without the other
    f.ca.revokeSerial('0A1B2C', 'test');
    f.ca.revokeSpiffeId(DB);
    const [set] = await revocations;
    assert.ok(set.serials.has('0a1b2c'));
    assert.ok(set.spiffeIds.has(DB));
    assert.equal(sync.revocations(), set);
    await sleep(INTERVAL * 3);
    const lists = ofKind(f, 'RevocationList');
    const last = lists.at(-1)!;
    assert.deepEqual(last.spec, { version: set.version, serials: ['0a1b2c'], identities: [DB] }, 'lowercase hex serials, with the CA\'s list version');
    assert.equal(lists.length, 2, 'the first sync and the change');

    const assignments = within<[Record<string, string[]>]>(sync, 'assignments', EVENT_WAIT_MS);
    f.ca.assign('vm-2', API);
    const [a] = await assignments;
    assert.deepEqual(a, { 'vm-2': [API] });
    assert.equal(await sync.isAssigned('vm-2', API), true);
    await sleep(INTERVAL * 3);
    assert.equal(ofKind(f, 'RevocationList').length, 2, 'no publish without a change');
    assert.equal(ofKind(f, 'TrustBundle').length, 1);

    const removed = within(sync, 'assignments', EVENT_WAIT_MS);
    f.ca.unassign('vm-2', API);
    await removed;
    assert.deepEqual(sync.assignments(), {});
  } finally {
    await f.close(sync);
  }
});

test('isAssigned: a miss refreshes from the CA at once, at most once a second, one fetch for many callers', async () => {
  const f = await setup();
  let now = Date.parse('2031-01-01T00:00:00Z');
  const client = f.cred.client;
  let fetches = 0;
  const fetch = client.assignments.bind(client);
  client.assignments = (node?: string) => (fetches++, fetch(node));
  // an interval far longer than the test: every fetch after start() is a miss's
  const sync = new CaSync({ client: () => client, trustDomain: TD, publish: f.publish, intervalMs: 3_600_000, clock: () => now, log: f.log });
  try {
    await sync.start();
    assert.equal(fetches, 1);
    now += 1000;
    f.ca.assign('vm-1', API);
    assert.equal(await sync.isAssigned('vm-1', API), true, 'a fresh assignment is seen at once');
    assert.equal(fetches, 2);
    assert.equal(await sync.isAssigned('vm-1', API), true);
    assert.equal(fetches, 2, 'a hit costs nothing');
    assert.equal(await sync.isAssigned('vm-1', DB), false);
    assert.equal(fetches, 2, 'a second miss within the second answers from the cache');
    f.ca.assign('vm-1', DB);
    now += 999;
    assert.equal(await sync.isAssigned('vm-1', DB), false);
    now += 1;
    const answers = await Promise.all(Array.from({ length: 20 }, () => sync.isAssigned('vm-1', DB)));
    assert.deepEqual(new Set(answers), new Set([true]));
    assert.equal(fetches, 3, 'twenty concurrent misses share one fetch');
  } finally {
    await f.close(sync);
  }
});

test('rotation prepare: a bundle event with both roots, one TrustBundle publish; the client follows through activate', async () => {
  const f = await setup();
  const client = f.cred.client;
  const sync = new CaSync({ client, trustDomain: TD, publish: f.publish, intervalMs: INTERVAL, log: f.log });
  try {
    await sync.start();
    const bundle = within<[TrustBundle, string]>(sync, 'bundle', EVENT_WAIT_MS);
    f.ca.prepareRotation();
    const [b, pem] = await bundle;
    assert.equal(b.roots.length, 2);
    assert.equal(b.sequence, 2);
    assert.equal(bundleFromPem(pem, TD).roots.length, 2);
    assert.equal(bundleFromPem(client.bundlePemInUse, TD).roots.length, 2, 'CaSync moved the client to both roots');
    await sleep(INTERVAL * 3);
    const bundles = ofKind(f, 'TrustBundle');
    assert.equal(bundles.length, 2, 'one publish for the change');
    assert.equal(bundles[1]!.spec.roots.length, 2);
    assert.equal(bundles[1]!.metadata.name, trustBundleName(TD));

    // the wiring the control plane does: its own credential follows the bundle too
    sync.on('bundle', (_b: TrustBundle, p: string) => f.cred.setBundle(p));
    f.ca.activateRotation(true); // the CA now serves under the new root
    const failures = f.lines.length;
    await sleep(INTERVAL * 3);
    assert.deepEqual(
      f.lines.slice(failures).filter((l) => l['event'] === 'ca_sync_failed'),
      [],
      'polls still succeed against the new server certificate',
    );
    // before retire the control plane holds an SVID under the new root (its half-life renewal does this)
    await f.cred.renew();
    f.ca.retireRotation(true);
    await within(sync, 'bundle', EVENT_WAIT_MS);
    assert.equal(sync.bundle().roots.length, 1);
    assert.equal(bundleFromPem(f.cred.current().bundlePem, TD).roots.length, 1);
    await sleep(INTERVAL * 2);
    assert.equal(ofKind(f, 'TrustBundle').length, 3);
  } finally {
    await f.close(sync);
  }
});

test('CA unreachable: start rejects after waitMs; while it is away the last good state is kept and errors are logged once', async () => {
  const f = await setup();
  // a port nothing listens on
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const deadPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const dead = new CaClient({ url: `https://127.0.0.1:${deadPort}`, bundlePem: f.cred.current().bundlePem, credential: f.cred.current() });
  const lost = new CaSync({ client: dead, trustDomain: TD, publish: f.publish, intervalMs: INTERVAL, waitMs: 400, log: f.log });
  const t0 = Date.now();
  await assert.rejects(lost.start(), (err: CaSyncError) => {
    assert.equal(err.code, 'AMIME_ERR_CP_CA_UNREACHABLE');
    assert.match(err.message, /within 400 ms/);
    for (const what of ['bundle', 'revocations', 'assignments']) assert.match(err.message, new RegExp(what));
    return true;
  });
  assert.ok(Date.now() - t0 < 2000, 'bounded wait');
  assert.equal(f.published.length, 0);
  const failed = f.lines.filter((l) => l['event'] === 'ca_sync_failed');
  assert.deepEqual(new Set(failed.map((l) => l['what'])), new Set(['bundle', 'revocations', 'assignments']));
  assert.equal(failed.length, 3, 'each failing fetch is logged once, not on every retry');
  assert.ok(failed.every((l) => typeof l['error'] === 'string' && l['code'] === 'AMIME_ERR_CA_CLIENT_UNREACHABLE'));
  dead.close();

  f.lines.length = 0;
  f.ca.assign('vm-1', API);
  const sync = new CaSync({ client: f.cred.client, trustDomain: TD, publish: f.publish, intervalMs: INTERVAL, log: f.log });
  try {
    await sync.start();
    const before = { bundle: sync.bundle(), revocations: sync.revocations() };
    await f.server.close();
    await sleep(INTERVAL * 4);
    assert.equal(sync.bundle(), before.bundle, 'the last good bundle is kept');
    assert.equal(sync.revocations(), before.revocations);
    assert.equal(await sync.isAssigned('vm-1', API), true);
    assert.equal(await sync.isAssigned('vm-1', DB), false, 'a miss while the CA is away answers from the cache');
    assert.equal(f.lines.filter((l) => l['event'] === 'ca_sync_failed').length, 3, 'logged once per fetch, not per tick');
    await f.restart();
    f.ca.revokeSerial('ff');
    await within(sync, 'revocations', EVENT_WAIT_MS);
    assert.deepEqual(new Set(f.lines.filter((l) => l['event'] === 'ca_sync_recovered').map((l) => l['what'])), new Set(['bundle', 'revocations', 'assignments']));
  } finally {
    await f.close(sync);
  }
});

test('a failed publish is retried on the next tick and not repeated once it succeeded', async () => {
  const f = await setup();
  let fail = 2;
  const attempts: string[] = [];
  const publish = async (r: CaSyncResource) => {
    attempts.push(r.kind);
    if (r.kind === 'RevocationList' && fail-- > 0) throw new Error('store unavailable');
    await f.publish(r);
  };
  const sync = new CaSync({ client: f.cred.client, trustDomain: TD, publish, intervalMs: INTERVAL, waitMs: 5000, log: f.log });
  try {
    await sync.start(); // resolves only when the first publishes went through
    assert.equal(ofKind(f, 'RevocationList').length, 1);
    assert.equal(attempts.filter((k) => k === 'RevocationList').length, 3);
    assert.equal(attempts.filter((k) => k === 'TrustBundle').length, 1, 'what was published is not published again');
    assert.equal(f.lines.filter((l) => l['event'] === 'ca_sync_failed' && l['what'] === 'publish').length, 1);
    await sleep(INTERVAL * 3);
    assert.equal(f.published.length, 2);
    // a store that never accepts: start() gives up after waitMs and says why
    const broken = new CaSync({ client: f.cred.client, trustDomain: TD, publish: () => Promise.reject(new Error('store down')), intervalMs: INTERVAL, waitMs: 300, log: f.log });
    await assert.rejects(broken.start(), (err: CaSyncError) => err.code === 'AMIME_ERR_CP_PUBLISH_FAILED' && /store down/.test(err.message));
    await broken.stop();
  } finally {
    await f.close(sync);
  }
});

test('options are checked where they enter', () => {
  const client = {} as CaClient;
  const publish = async () => undefined;
  assert.throws(() => new CaSync({ client, trustDomain: 'Bad Domain', publish }), /trustDomain/);
  assert.throws(() => new CaSync({ client, trustDomain: TD, publish, intervalMs: 0 }), /intervalMs/);
  assert.throws(() => new CaSync({ client, trustDomain: TD, publish: undefined as never }), /publish/);
  assert.equal(trustBundleName('a.b_c.example'), 'a-b-c-example');
});
