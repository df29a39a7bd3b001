// meshctl as a real process against real `ca serve` processes: every command
// an operator runs day to day, its JSON for scripts, its exit codes (0 ok,
// 1 refused, 2 unreachable, 64 usage), a forced root rotation after which
// meshctl's own credential still works, and an unforced `rotate all` that
// waits for the CA's gates. The two suites use separate CAs and run side by
// side (the second mostly waits).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaClient, bundleFingerprint, bundleFromPem, fromPem, parseCertificate, verifySvid } from '@amime/identity';
import { initCa, serveCa, stop, workspace, type CaProcess } from '../ca/fixtures/ca-process.js';

const TD = 'meshctl.test';
const API = `spiffe://${TD}/ns/shop/sa/api`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;
const MESHCTL = join(workspace, 'apps', 'meshctl', 'src', 'main.ts');

const RWTD = 'rotate-wait.test';
// In the waiting suite the admin SVID from init is the old root's last leaf: it sets when retire is allowed.
// 40 s: it must outlive starting the CA and the rotation up to activate on a loaded CI machine (15 s did not).
const RW_ADMIN_TTL = 40;

let root: string;
let dir: string;
let adminDir: string;
let ca: CaProcess;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment without the operator's own meshctl settings. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['AMIME_CA_URL', 'AMIME_CREDENTIALS']) if (!(k in extra)) delete env[k];
  return env;
}

function meshctl(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', MESHCTL, ...args], { cwd: workspace, env: cleanEnv(env), timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** meshctl with the test CA's admin credential (the CA URL comes from <credentials>/ca-url). */
const admin = (...args: string[]): Promise<Run> => meshctl(['--credentials', adminDir, ...args]);

async function ok(args: string[]): Promise<Run> {
  const r = await admin(...args);
  assert.equal(r.code, 0, `meshctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const okJson = async (...args: string[]): Promise<any> => JSON.parse((await ok([...args, '-o', 'json'])).stdout);

/** A reader of the CA for checks meshctl has no command for. */
function readerClient(): CaClient {
  const read = (f: string) => readFileSync(join(adminDir, f), 'utf8');
  return new CaClient({ url: ca.url, bundlePem: read('bundle.pem'), credential: { certPem: read('cert.pem'), keyPem: read('key.pem') } });
}

describe('meshctl', { concurrency: true }, () => {
  describe('against a running CA', { concurrency: 1 }, () => {
    before(async () => {
      root = mkdtempSync(join(tmpdir(), 'amime-meshctl-'));
      dir = join(root, 'ca');
      adminDir = join(dir, 'admin');
      initCa(dir, TD);
      ca = await serveCa(dir);
    });

    after(async () => {
      await stop(ca);
      rmSync(root, { recursive: true, force: true });
    });

    test('status finds the CA through <credentials>/ca-url, --ca or AMIME_CA_URL, for people and for scripts', async () => {
      const [table, json, yaml] = await Promise.all([
        ok(['status']),
        meshctl(['--ca', ca.url, '--credentials', adminDir, 'status', '-o', 'json']),
        meshctl(['status', '-o', 'yaml'], { AMIME_CA_URL: ca.url, AMIME_CREDENTIALS: adminDir }),
      ]);
      assert.match(table.stdout, new RegExp(`trust domain:\\s+${TD.replace('.', '\\.')}`));
      assert.match(table.stdout, /rotation:\s+steady/);
      assert.equal(json.code, 0, json.stderr);
      const s = JSON.parse(json.stdout);
      assert.equal(s.trustDomain, TD);
      assert.equal(s.url, ca.url);
      assert.equal(s.serverId, `spiffe://${TD}/control-plane/ca`);
      assert.equal(s.caller, `spiffe://${TD}/admin/operator`);
      assert.equal(s.roots.length, 1);
      assert.equal(yaml.code, 0, yaml.stderr);
      assert.match(yaml.stdout, new RegExp(`^trustDomain: ${TD}$`, 'm'));
    });

    test('token create: the JSON has the token; the table says how to use it', async () => {
      const started = Date.now();
      const [json, short, table] = await Promise.all([okJson('token', 'create', '--node', 'vm-a'), okJson('token', 'create', '--node', 'vm-b', '--ttl', '90'), ok(['token', 'create', '--node', 'vm-c', '--ttl', '1h'])]);
      assert.match(json.token, /^amime-jt\.[A-Za-z0-9_-]{20,}$/);
      assert.equal(json.node, 'vm-a');
      assert.equal(json.spiffeId, `spiffe://${TD}/agent/vm-a`);
      assert.equal(json.ttlSeconds, 600);
      const expires = Date.parse(short.expiresAt) - started;
      assert.ok(expires > 80_000 && expires < 100_000, `--ttl 90 gives about 90 s, got ${expires} ms`);
      assert.match(table.stdout, /token:\s+amime-jt\./);
      assert.match(table.stdout, /\/v1\/join/);
      assert.match(table.stdout, /meshctl bundle show --format pem/);
    });

    test('assign, assignments and unassign', async () => {
      await Promise.all([ok(['assign', 'vm-a', API]), ok(['assign', 'vm-a', DB]), ok(['assign', 'vm-b', DB])]);
      const [all, one] = await Promise.all([okJson('assignments'), ok(['assignments', '--node', 'vm-a'])]);
      for (const ids of Object.values(all) as string[][]) ids.sort();
      assert.deepEqual(all, { 'vm-a': [API, DB], 'vm-b': [DB] });
      assert.match(one.stdout, /^NODE\s+SPIFFE ID$/m);
      assert.match(one.stdout, new RegExp(`^vm-a\\s+${API}$`, 'm'));
      assert.doesNotMatch(one.stdout, /vm-b/);
      assert.deepEqual(await okJson('unassign', 'vm-a', API), { node: 'vm-a', spiffeId: API });
      const [after, again] = await Promise.all([okJson('assignments', '--node', 'vm-a'), admin('unassign', 'vm-a', API)]);
      assert.deepEqual(after, { 'vm-a': [DB] });
      assert.equal(again.code, 1, 'unassigning what is not assigned is refused');
      assert.match(again.stderr, /AMIME_ERR_CA_NOT_FOUND/);
    });

    test('revoke --spiffe-id puts the identity on the revocation list; unrevoke takes it off', async () => {
      const client = readerClient();
      try {
        const r = await okJson('revoke', '--spiffe-id', API, '--reason', 'key leaked');
        assert.ok(r.version > 1);
        assert.ok((await client.revocations()).spiffeIds.includes(API));
        const u = await okJson('unrevoke', API);
        assert.equal(u.version, r.version + 1);
        assert.ok(!(await client.revocations()).spiffeIds.includes(API));
        const twice = await admin('unrevoke', API);
        assert.equal(twice.code, 1);
        assert.match(twice.stderr, /is not revoked/);
      } finally {
        client.close();
      }
    });

    test('bundle show: PEM equals the bundle, SPIFFE is the JWKS document, the table summarises', async () => {
      const [pem, spiffe, table] = await Promise.all([ok(['bundle', 'show', '--format', 'pem']), okJson('bundle', 'show', '--format', 'spiffe'), ok(['bundle', 'show'])]);
      assert.equal(pem.stdout, readFileSync(join(adminDir, 'bundle.pem'), 'utf8'));
      assert.equal(bundleFromPem(pem.stdout, TD).roots.length, 1);
      assert.equal(spiffe.keys.length, 1);
      assert.equal(spiffe.keys[0].use, 'x509-svid');
      assert.equal(typeof spiffe.spiffe_sequence, 'number');
      assert.match(table.stdout, /SHA-256 FINGERPRINT/);
    });

    const usage: [string, string[], RegExp][] = [
      ['token create without --node', ['token', 'create'], /--node is required/],
      ['a --ttl over 7 days', ['token', 'create', '--node', 'a', '--ttl', '8d'], /--ttl must be/],
      ['an unknown flag', ['status', '--nodes', 'x'], /unknown option --nodes/],
      ['a flag of another command', ['status', '--force'], /status: Unknown option '--force'/],
      ['a bad output format', ['status', '-o', 'xml'], /--output must be one of table, json, yaml/],
      ['revoke with two targets', ['revoke', '--serial', 'ab', '--node', 'vm-a'], /exactly one of --serial, --spiffe-id or --node \(got --serial and --node\)/],
      ['assign with one argument', ['assign', 'vm-a'], /expected NODE SPIFFE_ID/],
      ['an unknown command', ['token', 'list'], /unknown command "token list"; did you mean 'token create'/],
    ];
    test('bad usage exits 64 with a message naming the flag or argument, before contacting the CA; so does missing setup', async () => {
      // an unreachable --ca proves the CA is never asked
      const runs = await Promise.all([
        ...usage.map(([, args]) => meshctl(['--ca', 'https://127.0.0.1:1', '--credentials', adminDir, ...args])),
        meshctl(['--credentials', join(root, 'nowhere'), 'status']),
      ]);
      runs.slice(0, usage.length).forEach((r, i) => {
        const [name, , message] = usage[i]!;
        assert.equal(r.code, 64, `${name}: exit ${r.code}, ${r.stderr}`);
        assert.match(r.stderr, message, name);
        assert.equal(r.stdout, '', `${name}: nothing on stdout`);
      });
      const noCred = runs[usage.length]!;
      assert.equal(noCred.code, 64);
      assert.match(noCred.stderr, /no admin credential: .*cert\.pem does not exist/);
      assert.match(noCred.stderr, /--credentials DIR/);
    });

    test('an unreachable CA exits 2', async () => {
      const closed = net.createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((r) => closed.close(() => r()));
      const r = await admin('--ca', `https://127.0.0.1:${port}`, 'status');
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /cannot reach the CA .*ECONNREFUSED/);
      assert.match(r.stderr, /next: check that the CA is running/);
    });

    test("a refused request exits 1 with the CA's code, message and a next step", async () => {
      const r = await admin('assign', 'vm-a', 'spiffe//meshctl.test/ns/x/sa/y');
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /AMIME_ERR_CA_BAD_REQUEST \(bad_spiffe_id, HTTP 400\)/);
      assert.match(r.stderr, /must start with "spiffe:\/\/"/);
      assert.match(r.stderr, /next: check the SPIFFE ID/);
      const reserved = await admin('assign', 'vm-a', `spiffe://${TD}/agent/vm-b`);
      assert.equal(reserved.code, 1);
      assert.match(reserved.stderr, /bad_workload_id/);
    });

    test('admin renew replaces key, certificate and bundle (0600), and the new credential works', async () => {
      const before = readFileSync(join(adminDir, 'cert.pem'), 'utf8');
      const beforeKey = readFileSync(join(adminDir, 'key.pem'), 'utf8');
      const r = await okJson('admin', 'renew');
      const cert = readFileSync(join(adminDir, 'cert.pem'), 'utf8');
      assert.notEqual(cert, before);
      assert.notEqual(readFileSync(join(adminDir, 'key.pem'), 'utf8'), beforeKey);
      for (const f of ['cert.pem', 'key.pem', 'bundle.pem']) assert.equal(statSync(join(adminDir, f)).mode & 0o777, 0o600, f);
      const chain = fromPem(cert, 'CERTIFICATE');
      assert.equal(parseCertificate(chain[0]!).serialHex, r.serial);
      const v = verifySvid(chain, { bundle: bundleFromPem(readFileSync(join(adminDir, 'bundle.pem'), 'utf8'), TD) });
      assert.ok(v.ok && v.spiffeId === `spiffe://${TD}/admin/operator`, JSON.stringify(v));
      await ok(['status']);
    });

    test('rotate all: bounded by --max-wait, then --force finishes; one new root, and meshctl still works', async () => {
      const original = bundleFromPem(readFileSync(join(adminDir, 'bundle.pem'), 'utf8'), TD);
      // the CA wants one refresh hint (300 s by default) between prepare and activate
      const bounded = await admin('rotate', 'all', '--max-wait', '1s');
      assert.equal(bounded.code, 1, bounded.stderr);
      assert.match(bounded.stderr, /1\/3 prepare/);
      assert.match(bounded.stderr, /activate is allowed from .* beyond --max-wait 1s/);
      assert.match(bounded.stderr, /the rotation stays prepared/);
      const prepared = await okJson('rotate', 'status');
      assert.equal(prepared.phase, 'prepared');
      assert.equal(prepared.roots.length, 2);
      assert.equal(bundleFromPem(readFileSync(join(adminDir, 'bundle.pem'), 'utf8'), TD).roots.length, 2, 'bundle.pem holds both roots after prepare');

      const forced = await ok(['rotate', 'all', '--force', '-o', 'json']);
      assert.match(forced.stderr, /continuing the rotation already prepared/);
      assert.match(forced.stderr, /2\/3 activate \(forced\)/);
      assert.match(forced.stderr, /renewed the admin SVID under the new root/);
      assert.match(forced.stderr, /3\/3 retire \(forced\)/);
      const done = JSON.parse(forced.stdout);
      assert.equal(done.phase, 'steady');
      assert.equal(done.roots.length, 1);
      assert.equal(done.retiredRoots.length, 1);

      const pem = (await ok(['bundle', 'show', '--format', 'pem'])).stdout;
      const rotated = bundleFromPem(pem, TD);
      assert.equal(rotated.roots.length, 1);
      assert.notEqual(bundleFingerprint(rotated), bundleFingerprint(original), 'the root changed');
      assert.equal(readFileSync(join(adminDir, 'bundle.pem'), 'utf8'), pem, 'bundle.pem follows the CA');
      assert.equal((await okJson('status')).rotation, 'steady', 'the admin credential still authenticates');
    });
  });

  describe('rotate all without --force', { concurrency: 1 }, () => {
    let rwRoot: string;
    let rwAdmin: string;
    let rwCa: CaProcess;

    before(async () => {
      rwRoot = mkdtempSync(join(tmpdir(), 'amime-meshctl-rotate-'));
      const rwDir = join(rwRoot, 'ca');
      rwAdmin = join(rwDir, 'admin');
      initCa(rwDir, RWTD, '--refresh-hint', '1', '--admin-ttl', String(RW_ADMIN_TTL), '--agent-ttl', '3');
      rwCa = await serveCa(rwDir);
    });

    after(async () => {
      await stop(rwCa);
      rmSync(rwRoot, { recursive: true, force: true });
    });

    test('waits for each CA gate, saying what it waits for, renews its own SVID under the new root, and finishes', async () => {
      const original = bundleFromPem(readFileSync(join(rwAdmin, 'bundle.pem'), 'utf8'), RWTD);
      const r = await meshctl(['--credentials', rwAdmin, 'rotate', 'all', '--max-wait', '90s', '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /waiting \w+, until .*, for one bundle refresh/);
      assert.match(r.stderr, /renewed the admin SVID under the new root/);
      assert.match(r.stderr, /waiting \w+, until .*, for every SVID signed under the old root to expire/);
      assert.doesNotMatch(r.stderr, /forced/);
      const done = JSON.parse(r.stdout);
      assert.equal(done.phase, 'steady');
      assert.equal(done.roots.length, 1);
      const now = bundleFromPem(readFileSync(join(rwAdmin, 'bundle.pem'), 'utf8'), RWTD);
      assert.equal(now.roots.length, 1);
      assert.notEqual(bundleFingerprint(now), bundleFingerprint(original));
    });
  });
});
