// IdentityManager against a stand-in CA (fake-ca.fixture.ts) on loopback,
// with a fake clock for every renewal mark: join once with a token, restart
// from disk without one, the refusals an operator must understand, renewal
// at half life with new keys, backoff on failure, cached TLS contexts, trust
// and revocation updates, and that only CSRs ever leave the agent.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createRevocationSet, fromPem, importPrivateKeyPem, parseCertificate, parseCsr, verifyPeer, verifySvid } from '@amime/identity';
import { FakeCa } from './fake-ca.fixture.js';
import { FakeClock } from './fake-clock.fixture.js';
import { IdentityError } from './errors.js';
import { IdentityManager, type CertificateInfo, type IdentityManagerOptions } from './identity-manager.js';

const TD = 'agent.test';
const NODE = 'vm-a';
const AGENT = `spiffe://${TD}/agent/${NODE}`;
const API = `spiffe://${TD}/ns/shop/sa/api`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const HOUR = 3600_000;
/** Real-time bound on waiting for an event; the fake clock drives everything else. */
const WAIT_MS = 15_000;

type LogLine = { level: string; event: string; [k: string]: unknown };

let clock: FakeClock;
let ca: FakeCa;
let base: string;
let dir: string;
let logs: LogLine[];
const managers: IdentityManager[] = [];

beforeEach(async () => {
  clock = new FakeClock();
  ca = await FakeCa.start({ clock, trustDomain: TD, ttlMs: HOUR });
  ca.assign(NODE, API);
  base = mkdtempSync(join(tmpdir(), 'amime-identity-'));
  dir = join(base, 'agent');
  logs = [];
});

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
  await ca.close();
  rmSync(base, { recursive: true, force: true });
});

function manager(o: Partial<IdentityManagerOptions> = {}): IdentityManager {
  const m = new IdentityManager({
    dir,
    caUrl: ca.url,
    bundlePem: ca.bundlePem,
    node: NODE,
    workloads: [API],
    clock,
    random: () => 0.5,
    caTimeoutMs: 5_000,
    log: (f) => logs.push(f),
    ...o,
  });
  managers.push(m);
  return m;
}

async function started(o: Partial<IdentityManagerOptions> = {}): Promise<IdentityManager> {
  const m = manager({ token: ca.createToken(NODE), ...o });
  await m.start();
  return m;
}

/** Resolves with the info of the next rotation of `id`. */
function nextRotation(m: IdentityManager, id: string): Promise<CertificateInfo> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no rotation of ${id} within ${WAIT_MS} ms`)), WAIT_MS);
    const on = (rotated: string, info: CertificateInfo) => {
      if (rotated !== id) return;
      clearTimeout(timer);
      m.off('rotated', on);
      resolve(info);
    };
    m.on('rotated', on);
  });
}

/** Resolves with the next 'error' event. */
async function nextError(m: IdentityManager): Promise<IdentityError> {
  const [err] = (await once(m, 'error', { signal: AbortSignal.timeout(WAIT_MS) })) as [IdentityError];
  return err;
}

async function refusal(p: Promise<unknown>): Promise<IdentityError> {
  const err = await p.then(
    () => assert.fail('expected an IdentityError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof IdentityError, `not an IdentityError: ${String(err)}`);
  return err;
}

const info = (m: IdentityManager, id: string): CertificateInfo => m.list().find((i) => i.spiffeId === id)!;
const mode = (p: string): number => statSync(p).mode & 0o777;
const idDir = () => join(dir, 'identity');

describe('joining and restarting', () => {
  test('joins with the token, stores the agent SVID (key 0600, dir 0700), and gets the workload SVIDs', async () => {
    const m = await started();
    assert.equal(ca.count('POST', '/v1/join'), 1);
    assert.equal(mode(idDir()), 0o700);
    assert.equal(mode(join(idDir(), 'agent.key')), 0o600);
    assert.deepEqual(readdirSync(idDir()).sort(), ['agent.crt', 'agent.key', 'bundle.crt'], 'no temporary files left behind');
    const agent = m.credential(AGENT);
    assert.equal(readFileSync(join(idDir(), 'agent.crt'), 'utf8'), agent.certPem);
    assert.equal(fromPem(agent.certPem, 'CERTIFICATE').length, 2, 'leaf and intermediate, as the CA returned them');
    assert.deepEqual(
      m.list().map((i) => [i.spiffeId, i.kind, i.state]),
      [
        [AGENT, 'agent', 'ready'],
        [API, 'workload', 'ready'],
      ],
    );
    // workload SVIDs were asked for with the agent SVID
    assert.deepEqual(
      ca.requests.filter((r) => r.path === '/v1/svid').map((r) => r.clientId),
      [AGENT],
    );
  });

  test('a restart uses the stored SVID without a token; workload keys are new', async () => {
    const first = await started();
    const agentSerial = first.credential(AGENT).serialHex;
    const apiKey = first.credential(API).keyPem;
    await first.stop();

    const again = manager(); // no token
    await again.start();
    assert.equal(again.credential(AGENT).serialHex, agentSerial);
    assert.equal(ca.count('POST', '/v1/join'), 1);
    assert.notEqual(again.credential(API).keyPem, apiKey, 'workload keys live in memory only');
    assert.ok(logs.some((l) => l.event === 'agent_svid_loaded'));
  });

  test('a token passed again with a valid stored SVID is left unspent', async () => {
    await (await started()).stop();
    const token = ca.createToken(NODE);
    await manager({ token }).start();
    assert.equal(ca.count('POST', '/v1/join'), 1);
    // still usable elsewhere: it was never sent
    assert.ok(!ca.requests.some((r) => r.body.includes(token)));
    assert.ok(logs.some((l) => l.event === 'join_token_unused'));
  });

  test('without a stored SVID or a token, start says how to get a token', async () => {
    const err = await refusal(manager().start());
    assert.equal(err.code, 'AMIME_ERR_AGENT_IDENTITY_NO_TOKEN');
    assert.equal(err.message, `no stored agent SVID in ${idDir()}; start the agent with a join token (meshctl token create --node ${NODE})`);
    assert.equal(ca.requests.length, 0);
  });

  test('an expired stored SVID without a token is refused with its expiry and the fix', async () => {
    const first = await started();
    const notAfter = first.credential(AGENT).notAfter;
    await first.stop();
    clock.advance(2 * HOUR);
    const err = await refusal(manager().start());
    assert.equal(err.code, 'AMIME_ERR_AGENT_IDENTITY_AGENT_EXPIRED');
    assert.equal(
      err.message,
      `the agent SVID expired at ${notAfter.toISOString()}; create a new join token with \`meshctl token create --node ${NODE}\` and restart with --token`,
    );
  });

  test('an expired stored SVID with a new token joins again', async () => {
    const first = await started();
    const old = first.credential(AGENT).serialHex;
    await first.stop();
    clock.advance(2 * HOUR);
    const again = await started();
    assert.equal(ca.count('POST', '/v1/join'), 2);
    assert.notEqual(again.credential(AGENT).serialHex, old);
  });

  test('a stored SVID whose key does not match is not used', async () => {
    await (await started()).stop();
    const other = await started({ dir: join(base, 'other') });
    await other.stop();
    writeFileSync(join(idDir(), 'agent.key'), readFileSync(join(base, 'other', 'identity', 'agent.key')), { mode: 0o600 });
    const err = await refusal(manager().start());
    assert.equal(err.reason, 'no_token');
    assert.match(err.message, /unusable \(agent\.key does not hold the key of agent\.crt\); start the agent with a join token/);
  });

  test('with a stored SVID, start succeeds while the CA is down; workload SVIDs stay pending and are retried', async () => {
    await (await started()).stop();
    await ca.close();
    const m = manager();
    m.on('error', () => undefined);
    await m.start();
    assert.equal(info(m, AGENT).state, 'ready');
    assert.equal(info(m, API).state, 'pending');
    assert.match(info(m, API).lastError!, /cannot reach the CA/);
    assert.ok(info(m, API).renewsAt, 'a retry is armed');
    assert.ok(logs.some((l) => l.event === 'ca_refresh_failed'));
    assert.ok(logs.some((l) => l.event === 'svid_renew_failed' && l.spiffeId === API));
  });

  test('RSA-2048 keys when asked for', async () => {
    const m = await started({ keyAlgorithm: 'rsa-2048' });
    assert.equal(importPrivateKeyPem(m.credential(AGENT).keyPem).algorithm, 'rsa-2048');
    assert.equal(importPrivateKeyPem(m.credential(API).keyPem).algorithm, 'rsa-2048');
  });

  const refused: [string, () => Promise<string>, RegExp][] = [
    ['an unknown token', async () => 'amime-jt.never-made', /join token unknown.*\(token_unknown\); create a new one with `meshctl token create --node vm-a`$/],
    [
      'a token already used',
      async () => {
        const t = ca.createToken(NODE);
        await started({ token: t, dir: join(base, 'first') }); // another VM got there first
        return t;
      },
      /already used; join tokens are one-time \(token_reused\)/,
    ],
    [
      'an expired token',
      async () => {
        const t = ca.createToken(NODE, 1000);
        clock.advance(2000);
        return t;
      },
      /expired at .* \(token_expired\)/,
    ],
    ['a token made for another node', async () => ca.createToken('vm-b'), /names spiffe:\/\/agent\.test\/agent\/vm-a, not spiffe:\/\/agent\.test\/agent\/vm-b \(csr_spiffe_id_mismatch\)$/],
  ];
  for (const [name, token, message] of refused) {
    test(`${name} is refused with the CA's message, and nothing is stored`, async () => {
      const t = await token();
      const err = await refusal(manager({ token: t }).start());
      assert.equal(err.code, 'AMIME_ERR_AGENT_IDENTITY_JOIN_REFUSED');
      assert.match(err.message, /^the CA refused to join node vm-a: /);
      assert.match(err.message, message);
      assert.ok(!existsSync(join(idDir(), 'agent.key')));
    });
  }

  const badOptions: [string, Partial<IdentityManagerOptions>, RegExp][] = [
    ['a node name with capitals', { node: 'VM_A' }, /^node: /],
    ['a plain-HTTP CA URL', { caUrl: 'http://127.0.0.1:1' }, /^caUrl: /],
    ['a bundle that is not PEM', { bundlePem: 'nonsense' }, /^trustDomain: |^bundlePem: /],
    ['a workload of another trust domain', { workloads: ['spiffe://other.test/ns/a/sa/b'] }, /trust domain other\.test, not agent\.test/],
    ['an agent ID as workload', { workloads: [`spiffe://${TD}/agent/vm-b`] }, /not a workload identity/],
    ['renewAt of 1', { renewAt: 1 }, /^renewAt: /],
    ['jitter past the lifetime', { renewAt: 0.5, jitter: 0.6 }, /^jitter: /],
    ['an unknown key algorithm', { keyAlgorithm: 'dsa' as never }, /^keyAlgorithm: /],
  ];
  for (const [name, o, message] of badOptions) {
    test(`refuses ${name} in the constructor`, () => {
      assert.throws(
        () => manager(o),
        (err: unknown) => err instanceof IdentityError && err.reason === 'bad_options' && message.test(err.message),
      );
    });
  }
});

describe('renewal', () => {
  test('agent and workload SVIDs renew at half their life with new keys, long after the token is spent', async () => {
    const t0 = clock.now();
    const m = await started();
    const before = { agent: m.credential(AGENT), api: m.credential(API) };
    const due = info(m, AGENT).renewsAt!.getTime();
    const life = before.agent.notAfter.getTime() - t0;
    assert.ok(Math.abs(due - (t0 + life / 2)) <= 1000, `renews at ${due - t0} ms, expected about ${life / 2}`);

    clock.advance(due - t0 - 5000);
    assert.equal(m.credential(AGENT).serialHex, before.agent.serialHex, 'nothing renews before the mark');
    const svidRequests = ca.count('POST', '/v1/svid');

    const rotations = Promise.all([nextRotation(m, AGENT), nextRotation(m, API)]);
    clock.advance(10_000);
    await rotations;
    assert.equal(ca.count('POST', '/v1/svid'), svidRequests + 2);
    const agent = m.credential(AGENT);
    const api = m.credential(API);
    assert.notEqual(agent.serialHex, before.agent.serialHex);
    assert.notEqual(api.serialHex, before.api.serialHex);
    assert.ok(!importPrivateKeyPem(agent.keyPem).spki.equals(importPrivateKeyPem(before.agent.keyPem).spki), 'new agent key');
    assert.ok(!importPrivateKeyPem(api.keyPem).spki.equals(importPrivateKeyPem(before.api.keyPem).spki), 'new workload key');
    assert.equal(readFileSync(join(idDir(), 'agent.crt'), 'utf8'), agent.certPem, 'the renewed SVID is stored');
    assert.equal(readFileSync(join(idDir(), 'agent.key'), 'utf8'), agent.keyPem);

    // Again, now past the first SVID's expiry: the renewed SVID authenticates the next renewal.
    const second = nextRotation(m, AGENT);
    clock.advance(info(m, AGENT).renewsAt!.getTime() - clock.now());
    await second;
    assert.ok(clock.now() > before.agent.notAfter.getTime());
    assert.equal(ca.count('POST', '/v1/join'), 1);
    const renewals = ca.requests.filter((r) => r.path === '/v1/svid' && r.body.includes('/agent/'));
    assert.deepEqual(renewals.map((r) => r.clientId), [AGENT, AGENT]);
  });

  test('a failed renewal is retried with exponential backoff until it succeeds', async () => {
    const m = await started({ workloads: [] });
    const errors: IdentityError[] = [];
    m.on('error', (e) => errors.push(e));
    const serial = m.credential(AGENT).serialHex;
    ca.failSvid = 3;

    clock.advance(info(m, AGENT).renewsAt!.getTime() - clock.now());
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      await nextError(m);
      assert.equal(info(m, AGENT).failures, attempt);
      const pending = clock.pending();
      assert.equal(pending.length, 1, 'one retry armed');
      delays.push(pending[0]!);
      if (attempt < 3) clock.advanceToNext();
    }
    // random 0.5 puts the ±20% jitter in the middle: 1 s, 2 s, 4 s
    assert.deepEqual(delays, [1000, 2000, 4000]);
    assert.equal(m.credential(AGENT).serialHex, serial, 'the current SVID stays in use meanwhile');
    assert.match(info(m, AGENT).lastError!, /injected failure/);
    const rotated = nextRotation(m, AGENT);
    clock.advanceToNext();
    await rotated;
    assert.notEqual(m.credential(AGENT).serialHex, serial);
    assert.equal(info(m, AGENT).failures, 0);
    assert.equal(errors.length, 3);
    assert.deepEqual(
      logs.filter((l) => l.event === 'svid_renew_failed').map((l) => [l.level, l.attempt]),
      [
        ['warn', 1],
        ['warn', 2],
        ['warn', 3],
      ],
    );
  });

  test('retries never wait past expiry silently: the last ones are brought forward and logged as errors', async () => {
    const m = await started({ workloads: [], retry: { initialMs: 60_000, maxMs: 600_000 } });
    m.on('error', () => undefined);
    const notAfter = m.credential(AGENT).notAfter.getTime();
    ca.failSvid = Number.MAX_SAFE_INTEGER;
    clock.advance(info(m, AGENT).renewsAt!.getTime() - clock.now());
    for (let i = 0; i < 40 && clock.now() < notAfter; i++) {
      await nextError(m);
      const next = clock.now() + clock.pending()[0]!;
      assert.ok(next <= notAfter || clock.now() >= notAfter, `retry at ${next} passes expiry ${notAfter}`);
      clock.advanceToNext();
    }
    await nextError(m);
    assert.ok(clock.now() >= notAfter);
    const expiring = logs.filter((l) => l.event === 'svid_expiring');
    assert.ok(expiring.length >= 1 && expiring.every((l) => l.level === 'error'));
    const expired = logs.find((l) => l.event === 'svid_expired');
    assert.equal(expired?.level, 'error');
    assert.match(String(expired?.hint), /meshctl token create --node vm-a/);
    assert.equal(info(m, AGENT).state, 'expired');
    assert.ok(clock.pending().length === 1, 'still retrying');
  });

  test('stop clears every timer', async () => {
    const m = await started({ workloads: [API, WEB] });
    ca.assign(NODE, WEB);
    assert.ok(clock.pending().length >= 2);
    await m.stop();
    assert.deepEqual(clock.pending(), []);
  });
});

describe('TLS material', () => {
  test('contextFor is cached until the SVID rotates', async () => {
    const m = await started();
    const api = m.contextFor(API);
    const agent = m.agentContext();
    assert.equal(m.contextFor(API), api);
    assert.equal(m.contextFor(AGENT), agent);
    const rotated = nextRotation(m, API);
    await m.renewNow(API);
    await rotated;
    assert.notEqual(m.contextFor(API), api);
    assert.equal(m.agentContext(), agent, 'other identities keep their context');
  });

  test('the contexts carry chain, key and roots: an agent client and a workload server complete mTLS', async () => {
    const m = await started();
    const server = tls.createServer(m.tlsOptionsFor(API));
    const serverSide = new Promise<string>((resolve) =>
      server.once('secureConnection', (s: tls.TLSSocket) => {
        const v = verifyPeer(s, { bundle: m.bundle() });
        resolve(v.ok ? v.spiffeId : v.reason);
        s.end();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const socket = tls.connect({ ...m.tlsOptionsFor(AGENT), host: '127.0.0.1', port: (server.address() as AddressInfo).port });
      socket.on('error', () => undefined);
      await once(socket, 'secureConnect');
      const v = verifyPeer(socket, { bundle: m.bundle() });
      assert.ok(v.ok, v.ok ? '' : v.message);
      assert.equal(v.spiffeId, API);
      assert.equal(await serverSide, AGENT, 'the server verified the agent SVID');
      socket.destroy();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('unknown and not-yet-issued identities are refused by name', async () => {
    const m = await started();
    assert.throws(() => m.contextFor(WEB), (e: unknown) => e instanceof IdentityError && e.reason === 'unknown_identity' && e.message.includes(`meshctl assign ${NODE} ${WEB}`));
    m.on('error', () => undefined);
    m.addWorkload(WEB); // not assigned at the CA
    await nextError(m);
    assert.throws(() => m.contextFor(WEB), (e: unknown) => e instanceof IdentityError && e.reason === 'not_ready' && /not_assigned/.test(e.message));
  });
});

describe('trust and revocations', () => {
  test('start fetches the bundle and the revocation list from the CA', async () => {
    ca.revocationList = { version: 3, serials: ['0a0b'], spiffeIds: [] };
    const m = await started();
    assert.equal(m.revocations().version, 3);
    assert.ok(m.revocations().serials.has('0a0b'));
    assert.equal(ca.count('GET', '/v1/bundle'), 1);
  });

  test('a new bundle emits trust, rebuilds contexts and is stored; the same one changes nothing', async () => {
    const m = await started();
    const ctx = m.contextFor(API);
    const svidRequests = ca.count('POST', '/v1/svid');
    const events: number[] = [];
    m.on('trust', (b) => events.push(b.roots.length));
    await ca.addRoot();
    assert.equal(m.setTrustBundle(ca.bundlePem), true);
    assert.deepEqual(events, [2]);
    assert.equal(m.bundle().roots.length, 2);
    assert.notEqual(m.contextFor(API), ctx);
    assert.equal(fromPem(readFileSync(join(idDir(), 'bundle.crt'), 'utf8'), 'CERTIFICATE').length, 2);
    const rebuilt = m.contextFor(API);
    assert.equal(m.setTrustBundle(ca.bundlePem), false);
    assert.deepEqual(events, [2]);
    assert.equal(m.contextFor(API), rebuilt);
    assert.throws(() => m.setTrustBundle('not pem'));
    assert.equal(m.bundle().roots.length, 2);
    assert.equal(ca.count('POST', '/v1/svid'), svidRequests, 'SVIDs that still chain to a trusted root are kept');
  });

  test('when the roots no longer anchor an SVID (old root retired), it renews at once under the new root', async () => {
    const m = await started();
    const before = m.credential(AGENT).serialHex;
    await ca.rotate();
    const rotations = Promise.all([nextRotation(m, AGENT), nextRotation(m, API)]);
    assert.equal(m.setTrustBundle(ca.newestRootPem), true);
    await rotations;
    assert.notEqual(m.credential(AGENT).serialHex, before);
    for (const id of [AGENT, API]) {
      const v = verifySvid(fromPem(m.credential(id).certPem, 'CERTIFICATE'), { bundle: m.bundle(), now: new Date(clock.now()) });
      assert.ok(v.ok, `${id}: ${v.ok ? '' : v.message}`);
    }
    assert.ok(logs.some((l) => l.event === 'svid_untrusted' && l.spiffeId === AGENT));
  });

  test('refresh picks up the CA\'s new roots', async () => {
    const m = await started();
    await ca.addRoot();
    const trust = once(m, 'trust');
    await m.refresh();
    await trust;
    assert.equal(m.bundle().roots.length, 2);
  });

  test('older revocation lists are ignored; one naming our serial renews that SVID at once', async () => {
    const m = await started();
    const { serialHex } = m.credential(API);
    assert.equal(m.setRevocations(createRevocationSet({ version: 2 })), true);
    assert.equal(m.setRevocations(createRevocationSet({ version: 1, serials: [serialHex] })), false);
    const rotated = nextRotation(m, API);
    assert.equal(m.setRevocations(createRevocationSet({ version: 3, serials: [serialHex] })), true);
    await rotated;
    assert.notEqual(m.credential(API).serialHex, serialHex);
    // the JSON form of a pushed RevocationList is taken too
    assert.equal(m.setRevocations({ version: 4, serials: [], spiffeIds: [WEB] }), true);
    assert.ok(m.revocations().spiffeIds.has(WEB));
    assert.throws(() => m.setRevocations({ version: 5, serials: ['zz'], spiffeIds: [] }), /not hexadecimal/);
    assert.equal(m.revocations().version, 4);
  });
});

describe('workloads', () => {
  test('added, listed and removed at runtime', async () => {
    const m = await started();
    ca.assign(NODE, WEB);
    const issued = nextRotation(m, WEB);
    assert.equal(m.addWorkload(WEB), true);
    assert.equal(m.addWorkload(WEB), false);
    await issued;
    assert.deepEqual(
      m.list().map((i) => [i.spiffeId, i.kind]),
      [
        [AGENT, 'agent'],
        [API, 'workload'],
        [WEB, 'workload'],
      ],
    );
    for (const i of m.list()) {
      assert.ok(i.serialHex && i.notBefore && i.notAfter && i.renewsAt, `${i.spiffeId} has serial and times`);
      assert.ok(i.renewsAt.getTime() < i.notAfter.getTime());
    }
    const timers = clock.pending().length;
    assert.equal(m.removeWorkload(API), true);
    assert.equal(clock.pending().length, timers - 1);
    assert.throws(() => m.contextFor(API), (e: unknown) => e instanceof IdentityError && e.reason === 'unknown_identity');
    assert.deepEqual(m.setWorkloads([WEB, API]), { added: [API], removed: [] });
  });

  test('an identity not assigned to the node stays pending and is retried until assigned', async () => {
    const m = await started();
    m.on('error', () => undefined);
    m.addWorkload(WEB);
    const err = await nextError(m);
    assert.match(err.message, /not_assigned/);
    assert.equal(info(m, WEB).state, 'pending');
    ca.assign(NODE, WEB);
    const issued = nextRotation(m, WEB);
    clock.advance(info(m, WEB).renewsAt!.getTime() - clock.now());
    await issued;
    assert.equal(info(m, WEB).state, 'ready');
  });
});

describe('keys never leave the agent', () => {
  test('the CA receives CSRs for our keys and nothing else', async () => {
    const m = await started();
    await m.renewNow(AGENT);
    await m.renewNow(API);
    const keys = [m.credential(AGENT).keyPem, m.credential(API).keyPem, readFileSync(join(idDir(), 'agent.key'), 'utf8')];
    const keyBodies = keys.map((k) => k.split('\n').filter((l) => l && !l.startsWith('-----')).join(''));
    let csrs = 0;
    for (const r of ca.requests) {
      assert.ok(!/PRIVATE KEY/.test(r.body), `${r.path} carries a private key`);
      for (const k of keyBodies) assert.ok(!r.body.replace(/\\n/g, '').includes(k.slice(0, 40)));
      if (r.method !== 'POST') continue;
      const body = JSON.parse(r.body) as Record<string, string>;
      assert.deepEqual(Object.keys(body).sort(), r.path === '/v1/join' ? ['csr', 'token'] : ['csr', 'spiffeId']);
      parseCsr(body['csr']!); // a well-formed, self-signed request
      csrs++;
    }
    assert.equal(csrs, 4, 'the join, the workload, and one renewal of each');
    // the last agent CSR is for the key in use
    const last = ca.requests.filter((r) => r.path === '/v1/svid' && r.body.includes('/agent/')).at(-1)!;
    const spki = parseCsr((JSON.parse(last.body) as { csr: string }).csr).spki;
    assert.ok(spki.equals(parseCertificate(fromPem(m.credential(AGENT).certPem, 'CERTIFICATE')[0]!).spki));
    assert.equal(statSync(join(idDir(), 'agent.key')).mode & 0o777, 0o600);
  });
});
