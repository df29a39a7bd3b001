// The CA process shell: flag validation before any side effect, a clean
// start that logs where it listens, and a drain on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { assertPromtoolClean } from '@amime/telemetry/testing';

const main = join(import.meta.dirname, 'main.ts');
const run = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', env: { ...process.env, AMIME_CA_QUIET: '1' } });

test('bad flags exit 64 naming the flag and touch nothing', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'amime-ca-')), 'ca');
  const cases: [string[], RegExp][] = [
    [['init', '--dir', dir], /--trust-domain is required/],
    [['init', '--dir', dir, '--trust-domain', 'example.org', '--key-algorithm', 'dsa'], /--key-algorithm must be ec-p256 or rsa-2048/],
    [['init', '--dir', dir, '--trust-domain', 'example.org', '--agent-ttl', '1.5'], /--agent-ttl must be a whole number/],
    [['serve', '--dir', dir, '--port', '70000'], /--port must be a port number/],
    [['serve', '--dir', dir, '--metrics-host', 'http://0.0.0.0'], /--metrics-host must be an IP address/],
    [['serve'], /--dir is required/],
    [['frobnicate', '--dir', dir], /unknown command "frobnicate"/],
    [['init', '--dir', dir, '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.equal(existsSync(dir), false, 'no state written on a usage error');
});

test('a bad trust domain is refused with the rule that broke', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'amime-ca-')), 'ca');
  const r = run('init', '--dir', dir, '--trust-domain', 'Example.ORG');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /trust_domain_chars|lowercase/);
});

test('init, serve, and drain on SIGTERM; a second init refuses to overwrite', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'amime-ca-')), 'ca');
  try {
    const init = run('init', '--dir', dir, '--trust-domain', 'example.org');
    assert.equal(init.status, 0, init.stderr);
    assert.equal(JSON.parse(init.stdout.trim()).trustDomain, 'example.org');
    assert.equal(statSync(join(dir, 'state.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'admin', 'key.pem')).mode & 0o777, 0o600);
    const again = run('init', '--dir', dir, '--trust-domain', 'example.org');
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already holds a CA/);
    // an operator who lost the admin credential gets a new one from the CA's files
    const before = readFileSync(join(dir, 'admin', 'cert.pem'), 'utf8');
    const renewed = run('admin-credential', '--dir', dir);
    assert.equal(renewed.status, 0, renewed.stderr);
    assert.equal(JSON.parse(renewed.stdout.trim()).spiffeId, 'spiffe://example.org/admin/operator');
    assert.notEqual(readFileSync(join(dir, 'admin', 'cert.pem'), 'utf8'), before);
    const stranger = run('admin-credential', '--dir', dir, '--admin-name', 'mallory');
    assert.equal(stranger.status, 1);
    assert.match(stranger.stderr, /not an admin identity/);

    const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve', '--dir', dir, '--port', '0'], {
      env: { ...process.env, AMIME_CA_QUIET: '1' },
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    const listening = new Promise<{ url: string; metricsUrl: string }>((resolve, reject) => {
      child.stdout.on('data', (d: string) => {
        out += d;
        const line = out.split('\n').find((l) => l.includes('"listening"'));
        if (line) resolve(JSON.parse(line));
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}`)));
    });
    const { url, metricsUrl } = await listening;
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const metrics = await (await fetch(metricsUrl)).text();
    assert.match(metrics, /^amime_ca_bundle_sequence 1$/m);
    assert.match(metrics, /amime_ca_certificate_expiry_timestamp_seconds\{kind="root"/);
    await assertPromtoolClean(metrics, 'the CA process');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--metrics-host binds /metrics and /healthz there, and only there', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'amime-ca-')), 'ca');
  // 127.0.0.2 is loopback too, but a listener bound to 127.0.0.1 does not answer on it.
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve', '--dir', dir, '--port', '0', '--metrics-host', '127.0.0.2', '--init-if-missing', '--trust-domain', 'example.org'], {
    env: { ...process.env, AMIME_CA_QUIET: '1' },
  });
  try {
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 10_000)));
    const listening = new Promise<{ url: string; metricsUrl: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line in 30s: ${err}`)), 30_000);
      child.stdout.on('data', (d: string) => {
        out += d;
        const line = out.split('\n').find((l) => l.includes('"listening"'));
        if (line) {
          clearTimeout(timer);
          resolve(JSON.parse(line));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited ${code}: ${err}`));
      });
    });
    const { url, metricsUrl } = await listening;
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the API stays on --host');
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.2:\d+\/metrics$/);
    const res = await fetch(metricsUrl);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^amime_ca_bundle_sequence 1$/m);
    assert.equal(await (await fetch(metricsUrl.replace('/metrics', '/healthz'))).text(), 'ok\n');
    const port = new URL(metricsUrl).port;
    await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'not on the default loopback address as well');
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
