import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectControlPlane, ConnectError } from './connect.js';
import { DashboardUsageError, isExposed, parseDashboardOptions } from './options.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestPki, toPemChain } from '@amime/identity/testing';
import { FakeMeshSource } from './testing/fake-source.js';

describe('dashboard flags', () => {
  test('defaults: loopback, 18090, var/ca/admin under the working directory', () => {
    const o = parseDashboardOptions([], {}, '/srv');
    assert.deepEqual([o.host, o.port, o.credentialsDir, o.refreshMs, o.waitMs, o.maxClients], ['127.0.0.1', 18090, '/srv/var/ca/admin', 5000, 120_000, 16]);
    assert.equal(parseDashboardOptions([], { AMIME_CREDENTIALS: '/c', AMIME_CONTROL_PLANE_URL: 'https://cp:8444/' }, '/srv').controlPlaneUrl, 'https://cp:8444');
  });

  const bad: [string[], RegExp][] = [
    [['--port', '70000'], /--port must be a whole number 0-65535/],
    [['--port', '-1'], /--port/],
    [['--host', 'a b'], /--host must be an IP address/],
    [['--allow-host', 'evil.example/x'], /--allow-host must be a host name/],
    [['--refresh', '10ms'], /--refresh must be a duration from 500ms/],
    [['--refresh', 'soon'], /--refresh/],
    [['--control-plane', 'http://cp:8444'], /--control-plane must be https:\/\/HOST:PORT/],
    [['--wait', '0'], /--wait must be a whole number 1-/],
    [['--max-clients', '1e3'], /--max-clients/],
    [['--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [argv, message] of bad) {
    test(`refuses ${argv.join(' ')}`, () => assert.throws(() => parseDashboardOptions(argv, {}, '/'), (e: Error) => e instanceof DashboardUsageError && message.test(e.message)));
  }

  test('exposed unless loopback', () => {
    assert.deepEqual(['127.0.0.1', '127.1.2.3', '::1', 'localhost', '0.0.0.0', '::', '10.0.0.5'].map(isExposed), [false, false, false, false, true, true, true]);
  });
});

describe('waiting for the control plane', () => {
  test('gives up after --wait naming the missing file, after telling so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-dash-'));
    const lines: string[] = [];
    try {
      await assert.rejects(
        connectControlPlane({ credentialsDir: dir, waitMs: 300, everyMs: 50, signal: new AbortController().signal, log: (l) => lines.push(l) }),
        (e: Error) => e instanceof ConnectError && e.message.includes(`${join(dir, 'cert.pem')} does not exist`) && /did not answer within/.test(e.message),
      );
      assert.ok(lines.length >= 1 && /waiting for the admin credential/.test(lines[0]!), lines.join('\n'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a credential that is not an SVID fails at once: waiting would not fix it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-dash-'));
    try {
      for (const f of ['cert.pem', 'key.pem', 'bundle.pem']) writeFileSync(join(dir, f), 'not a certificate');
      const started = Date.now();
      await assert.rejects(connectControlPlane({ credentialsDir: dir, waitMs: 10_000, everyMs: 50, signal: new AbortController().signal, log: () => undefined }), /cert\.pem holds no X\.509-SVID/);
      assert.ok(Date.now() - started < 2000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('retries until the credential appears and the control plane answers, reading control-plane-url each time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-dash-'));
    const made: string[] = [];
    const seen = () => [...made];
    const pki = await createTestPki('dash.test');
    const admin = await pki.leaf('/ns/amime-system/sa/admin');
    try {
      const fake = new FakeMeshSource();
      fake.down = true;
      const connecting = connectControlPlane({
        credentialsDir: dir,
        waitMs: 10_000,
        everyMs: 20,
        signal: new AbortController().signal,
        log: () => undefined,
        makeSource: (url) => {
          made.push(url);
          return fake;
        },
      });
      await sleep(100);
      assert.deepEqual(seen(), [], 'no source before the credential exists');
      writeFileSync(join(dir, 'cert.pem'), toPemChain([admin, pki.intermediate]));
      writeFileSync(join(dir, 'key.pem'), admin.key.privateKeyPem);
      writeFileSync(join(dir, 'bundle.pem'), pki.root.pem);
      await sleep(100);
      assert.deepEqual(seen(), [], 'no source before control-plane-url exists');
      writeFileSync(join(dir, 'control-plane-url'), 'https://127.0.0.1:1111\n');
      await sleep(100);
      writeFileSync(join(dir, 'control-plane-url'), 'https://127.0.0.1:2222\n'); // a restarted control plane on another port
      await sleep(100);
      fake.down = false;
      const { url, source } = await connecting;
      assert.equal(url, 'https://127.0.0.1:2222');
      assert.equal(source, fake);
      assert.ok(made.includes('https://127.0.0.1:1111') && made.at(-1) === 'https://127.0.0.1:2222', made.join(' '));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
