// The root-rotation proof against a real CA process with short TTLs: a peer
// holding an old-root SVID and a peer holding a new-root SVID complete a real
// mutual-TLS handshake both ways (each side in its own process, verifying the
// other with verifyPeer against the bundle it just fetched from the CA) at
// every step: before prepare, after prepare, after activate, after retire.
// After retire, a leaf that chains to the old root is refused.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleFromPem, createTrustBundle, fromPem, verifySvid } from '@amime/identity';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, workspace, type CaProcess, type Credential, type Reply, type RequestOptions } from './fixtures/ca-process.js';
import type { PeerCommand, PeerEvent } from './fixtures/svid-peer.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'rotate.test';
const TTL = 6; // agent, workload and admin SVIDs, seconds
const HALF = (TTL * 1000) / 2;
const fixture = join(import.meta.dirname, 'fixtures', 'svid-peer.ts');
const agentId = (node: string) => `spiffe://${TD}/agent/${node}`;

let root: string;
let dir: string;
let ca: CaProcess;
let admin: Credential & { notAfter: number };
/** The bundle this test process trusts for the CA's server certificate: the latest it fetched. */
let trust: string;
const children: ChildProcess[] = [];

const call = (o: Omit<RequestOptions, 'trust' | 'trustDomain'>): Promise<Reply> => request(ca.url, { trust, trustDomain: TD, ...o });

function ok(r: Reply, what: string): Reply {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
  return r;
}

interface Svid extends Credential {
  spiffeId: string;
  serial: string;
  notAfter: number;
}

/** One peer: an agent's credential here, its TLS endpoint in a fixture process. */
class Peer {
  readonly lines: PeerEvent[] = [];
  port = 0;
  svid!: Svid;
  bundlePem = '';
  #wake: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      this.lines.push(JSON.parse(l) as PeerEvent);
      this.#wake?.();
    });
  }

  send(c: PeerCommand): void {
    this.child.stdin!.write(JSON.stringify(c) + '\n');
  }

  async waitFor(pred: (e: PeerEvent) => boolean, from: number, timeoutMs = 8000): Promise<PeerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(`${this.name}: no matching event; saw ${JSON.stringify(this.lines.slice(from))}`);
      }
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 100);
      });
    }
  }

  /** Hands the fixture process this peer's current SVID and bundle. */
  async load(): Promise<void> {
    const from = this.lines.length;
    const first = this.port === 0;
    this.send({ op: 'load', certPem: this.svid.certPem, keyPem: this.svid.keyPem, bundlePem: this.bundlePem, trustDomain: TD });
    await this.waitFor((e) => e.event === 'loaded', from);
    if (first) this.port = (await this.waitFor((e) => e.event === 'listening', from)).port!;
  }

  /** Fetches the current bundle from the CA with its own SVID, as an agent does. */
  async refreshBundle(): Promise<void> {
    this.bundlePem = ok(await call({ path: '/v1/bundle?format=pem', cred: this.svid }), `${this.name} bundle`).text;
    trust = this.bundlePem;
  }

  async renew(): Promise<void> {
    const { keyPem, csr } = keyAndCsr(this.svid.spiffeId);
    const r = ok(await call({ path: '/v1/svid', cred: this.svid, body: { csr, spiffeId: this.svid.spiffeId } }), `${this.name} renew`);
    this.svid = { certPem: r.json.svid, keyPem, spiffeId: r.json.spiffeId, serial: r.json.serial, notAfter: Date.parse(r.json.notAfter) };
  }
}

async function spawnPeer(name: string): Promise<Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { cwd: workspace, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  return new Peer(name, child);
}

async function joinPeer(peer: Peer, node: string): Promise<void> {
  const { token } = ok(await call({ path: '/v1/admin/tokens', cred: admin, body: { node } }), 'token').json;
  const { keyPem, csr } = keyAndCsr(agentId(node));
  const r = ok(await call({ path: '/v1/join', body: { token, csr } }), `join ${node}`);
  peer.svid = { certPem: r.json.svid, keyPem, spiffeId: r.json.spiffeId, serial: r.json.serial, notAfter: Date.parse(r.json.notAfter) };
  peer.bundlePem = r.json.bundle;
}

/** `a` dials `b`: what the client concluded about the server. */
async function dial(a: Peer, b: Peer, tag: string): Promise<PeerEvent> {
  const from = a.lines.length;
  a.send({ op: 'dial', tag, port: b.port });
  return a.waitFor((e) => e.event === 'dialed' && e.tag === tag, from);
}

/** `a` dials `b`: what each side concluded about the other. */
async function handshake(a: Peer, b: Peer, tag: string): Promise<{ dialed: PeerEvent; inbound: PeerEvent }> {
  const fromB = b.lines.length;
  const dialed = await dial(a, b, tag);
  const inbound = await b.waitFor((e) => e.event === 'inbound' && e.remotePort === dialed.localPort, fromB);
  return { dialed, inbound };
}

async function bothWays(x: Peer, y: Peer, step: string): Promise<void> {
  for (const [a, b] of [[x, y], [y, x]] as const) {
    const { dialed, inbound } = await handshake(a, b, `${step}:${a.name}->${b.name}`);
    const what = `${step}: ${a.name} → ${b.name}`;
    assert.equal(dialed.ok, true, `${what}: the client refused the server: ${JSON.stringify(dialed)}`);
    assert.equal(dialed.spiffeId, b.svid.spiffeId, what);
    assert.equal(inbound.ok, true, `${what}: the server refused the client: ${JSON.stringify(inbound)}`);
    assert.equal(inbound.spiffeId, a.svid.spiffeId, what);
    assert.equal(dialed.reply, `hello ${a.svid.spiffeId}\n`, what);
  }
}

/** Which root (by PEM) an SVID chains to, judged with one-root bundles. */
function chainsTo(svid: Svid, rootPem: string, at = new Date()): boolean {
  const bundle = createTrustBundle({ trustDomain: TD, roots: fromPem(rootPem, 'CERTIFICATE') });
  return verifySvid(fromPem(svid.certPem, 'CERTIFICATE'), { bundle, now: at }).ok;
}

const rootsOf = (bundlePem: string): string[] => fromPem(bundlePem, 'CERTIFICATE').map((d) => d.toString('base64'));
const pemOf = (b64: string): string => `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-rotation-'));
  dir = join(root, 'ca');
  initCa(dir, TD, '--agent-ttl', String(TTL), '--workload-ttl', String(TTL), '--admin-ttl', String(TTL), '--refresh-hint', '1');
  const a = adminCredential(dir);
  admin = { ...a, notAfter: Date.parse(new X509Certificate(a.certPem).validTo) };
  trust = a.bundlePem;
  ca = await serveCa(dir);
});

after(async () => {
  for (const c of children) {
    c.stdin?.end();
    await stop(c);
  }
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

/** The operator renews its credential at half-life (or when told), like every peer. */
async function freshenAdmin(force = false): Promise<void> {
  if (!force && Date.now() < admin.notAfter - HALF) return;
  const id = `spiffe://${TD}/admin/operator`;
  const { keyPem, csr } = keyAndCsr(id);
  const r = ok(await call({ path: '/v1/svid', cred: admin, body: { csr, spiffeId: id } }), 'admin renew');
  admin = { certPem: r.json.svid, keyPem, notAfter: Date.parse(r.json.notAfter) };
}

/** A peer renews at half-life (or when told) and hands the new SVID to its process. */
async function freshen(p: Peer, force = false): Promise<void> {
  if (!force && Date.now() < p.svid.notAfter - HALF) return;
  await p.renew();
  await p.load();
}

test('old-root and new-root peers handshake both ways at every step of a root rotation', { timeout: 60_000 }, async (t) => {
  const [oldPeer, newPeer] = await Promise.all([spawnPeer('OLD'), spawnPeer('NEW')]);
  let oldRoot = '';
  let newRoot = '';
  let kept: Svid; // OLD's first SVID, under the old root: kept to prove it is refused at the end
  let startSequence = 0;
  let bundleAfterPrepare = '';

  await t.test('before prepare: both peers hold old-root SVIDs', async () => {
    await freshenAdmin();
    await joinPeer(oldPeer, 'node-old');
    await joinPeer(newPeer, 'node-new');
    kept = oldPeer.svid;
    for (const p of [oldPeer, newPeer]) {
      await p.refreshBundle();
      await p.load();
    }
    assert.equal(rootsOf(oldPeer.bundlePem).length, 1);
    oldRoot = oldPeer.bundlePem;
    startSequence = ok(await call({ path: '/v1/bundle', cred: oldPeer.svid }), 'bundle').json.spiffe_sequence;
    await bothWays(oldPeer, newPeer, 'before prepare');
  });

  await t.test('after prepare: two roots, signing unchanged, activation refused until one refresh', async () => {
    await freshenAdmin();
    ok(await call({ path: '/v1/admin/rotation/prepare', cred: admin, body: {} }), 'prepare');
    const early = await call({ path: '/v1/admin/rotation/activate', cred: admin, body: {} });
    assert.equal(early.status, 409, early.text);
    assert.equal(early.json.error.reason, 'rotation_too_early');
    for (const p of [oldPeer, newPeer]) {
      await freshen(p);
      await p.refreshBundle();
      await p.load();
    }
    bundleAfterPrepare = newPeer.bundlePem;
    const roots = rootsOf(bundleAfterPrepare);
    assert.equal(roots.length, 2);
    assert.ok(roots.includes(rootsOf(oldRoot)[0]!), 'the old root stays');
    newRoot = pemOf(roots.find((r) => r !== rootsOf(oldRoot)[0])!);
    const json = ok(await call({ path: '/v1/bundle', cred: newPeer.svid }), 'bundle').json;
    assert.equal(json.spiffe_sequence, startSequence + 1);
    // the old root still signs
    await freshen(newPeer, true);
    assert.ok(chainsTo(newPeer.svid, oldRoot), 'SVIDs issued while prepared chain to the old root');
    await bothWays(oldPeer, newPeer, 'after prepare');
  });

  await t.test('after activate: NEW holds a new-root SVID, OLD still an old-root one', async () => {
    await freshenAdmin();
    const status = ok(await call({ path: '/v1/admin/rotation', cred: admin }), 'rotation status').json;
    const wait = Date.parse(status.canActivateAfter) - Date.now() + 50;
    if (wait > 0) await sleep(wait);
    // OLD's last renewal before the switch: a full lifetime under the old root
    await freshen(oldPeer, true);
    assert.ok(chainsTo(oldPeer.svid, oldRoot));
    ok(await call({ path: '/v1/admin/rotation/activate', cred: admin, body: {} }), 'activate');
    const early = await call({ path: '/v1/admin/rotation/retire', cred: admin, body: {} });
    assert.equal(early.status, 409, `retire must wait for the old leaves: ${early.text}`);
    assert.equal(early.json.error.reason, 'rotation_too_early');
    await freshenAdmin(true); // the operator moves to the new root too

    await freshen(newPeer, true);
    assert.ok(chainsTo(newPeer.svid, newRoot), 'NEW chains to the new root');
    assert.ok(!chainsTo(newPeer.svid, oldRoot), 'NEW does not chain to the old root');
    assert.ok(chainsTo(oldPeer.svid, oldRoot), 'OLD still chains to the old root');
    for (const p of [oldPeer, newPeer]) {
      await p.refreshBundle();
      assert.equal(rootsOf(p.bundlePem).length, 2, 'both roots until retire');
      await p.load();
    }
    await bothWays(oldPeer, newPeer, 'after activate');
  });

  await t.test('after retire: the old root is gone; both peers renewed and still handshake', async () => {
    // OLD renews at half its lifetime, as an agent would, now under the new root
    const half = oldPeer.svid.notAfter - HALF;
    if (half > Date.now()) await sleep(half - Date.now());
    await freshen(oldPeer, true);
    assert.ok(chainsTo(oldPeer.svid, newRoot), 'OLD renewed under the new root');
    await oldPeer.refreshBundle();
    await oldPeer.load();
    await freshen(newPeer);
    await bothWays(oldPeer, newPeer, 'after activate, OLD renewed');

    // retire: refused until the longest-lived old-root leaf has expired, bounded by the TTLs
    await freshenAdmin();
    const status = ok(await call({ path: '/v1/admin/rotation', cred: admin }), 'rotation status').json;
    const retireAfter = Date.parse(status.retireAfter);
    assert.ok(retireAfter >= kept.notAfter, `retireAfter ${status.retireAfter} covers the kept old-root leaf`);
    const deadline = Date.now() + (TTL + 4) * 1000;
    let retired: Reply | undefined;
    while (Date.now() < deadline) {
      // meanwhile everyone renews at half-life
      await freshenAdmin();
      for (const p of [oldPeer, newPeer]) await freshen(p);
      const r = await call({ path: '/v1/admin/rotation/retire', cred: admin, body: {} });
      if (r.status === 200) {
        retired = r;
        break;
      }
      assert.equal(r.json?.error?.reason, 'rotation_too_early', r.text);
      assert.ok(Date.now() < retireAfter + 1000, `refused after retireAfter: ${r.text}`);
      await sleep(250);
    }
    assert.ok(retired, 'retire succeeded once the old leaves expired');
    assert.ok(Date.now() >= kept.notAfter, 'not before the kept old-root leaf expired');

    for (const p of [oldPeer, newPeer]) {
      await freshen(p);
      await p.refreshBundle();
      assert.deepEqual(rootsOf(p.bundlePem), rootsOf(newRoot), 'only the new root');
      await p.load();
    }
    const json = ok(await call({ path: '/v1/bundle', cred: newPeer.svid }), 'bundle').json;
    assert.equal(json.spiffe_sequence, startSequence + 2);
    assert.equal(json.keys.length, 1);
    await bothWays(oldPeer, newPeer, 'after retire');
  });

  await t.test('after retire: a leaf that chains to the old root is refused both ways', async () => {
    // independent of expiry: judged at a moment it was still valid, it has no issuer in the bundle
    const bundle = bundleFromPem(newPeer.bundlePem, TD);
    const r = verifySvid(fromPem(kept.certPem, 'CERTIFICATE'), { bundle, now: new Date(kept.notAfter - 1000) });
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.reason, 'unknown_issuer');

    // a peer that took the two-root bundle after prepare but kept its old-root
    // leaf (it trusts NEW, so every refusal below is NEW's own)
    const stale = await spawnPeer('STALE');
    stale.svid = kept;
    stale.bundlePem = bundleAfterPrepare;
    await stale.load();
    await freshen(newPeer);
    const refusal = /^(unknown_issuer|expired|tls_verify_failed)$/;
    const asServer = await handshake(stale, newPeer, 'stale->new');
    assert.equal(asServer.inbound.ok, false, `NEW accepted an old-root client: ${JSON.stringify(asServer.inbound)}`);
    assert.match(asServer.inbound.reason!, refusal);
    assert.equal(asServer.dialed.reply, '', 'NEW sent nothing to the refused client');
    const asClient = await dial(newPeer, stale, 'new->stale');
    assert.equal(asClient.ok, false, `NEW accepted an old-root server: ${JSON.stringify(asClient)}`);
    assert.match(asClient.reason!, refusal);
    assert.equal(asClient.reply, '', 'no application data from a refused server');
    // and the stale peer cannot reach the CA either
    const toCa = await call({ path: '/v1/bundle', cred: kept });
    assert.equal(toCa.status, 401, toCa.text);
    assert.match(toCa.json.error.reason, /^peer_(unknown_issuer|expired|tls_verify_failed)$/);
    // while the rotated peers carry on
    await freshen(oldPeer);
    await bothWays(oldPeer, newPeer, 'after retire, again');
    assert.ok(ca.alive(), ca.stderr());
  });
});
