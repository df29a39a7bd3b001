// The dashboard process shell: a bad flag exits 64 with the usage before it
// listens; without a control plane it listens, says what it waits for, and
// exits 1 naming the missing file when --wait runs out; SIGTERM exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const main = join(import.meta.dirname, 'main.ts');

test('bad flags exit 64 naming the flag, --help exits 0', () => {
  for (const [args, message] of [
    [['--port', 'x'], /--port must be a whole number 0-65535/],
    [['--host', 'not a host'], /--host must be an IP address/],
    [['--nope'], /Unknown option '--nope'/],
  ] as [string[], RegExp][]) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /usage: dashboard/);
  }
  const help = spawnSync(process.execPath, ['--import', 'tsx', main, '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--allow-host/);
});

test('listens at once, waits for the credential, gives up after --wait with the reason; an exposed --host warns', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-dashboard-'));
  try {
    // 0.0.0.0 for the warning; harmless for its 2 s: with no credential it serves nothing of a mesh.
    const child = spawn(process.execPath, ['--import', 'tsx', main, '--host', '0.0.0.0', '--port', '0', '--credentials', dir, '--wait', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 1, err);
    assert.match(out, /WARNING: listening on 0\.0\.0\.0, not loopback/);
    assert.match(out, /\{"event":"listening","url":"http:\/\/127\.0\.0\.1:\d+\/","port":\d+\}/);
    assert.match(out, /waiting for the admin credential and the control plane/);
    assert.match(err, new RegExp(`did not answer within 2 s: no admin credential: ${join(dir, 'cert.pem')} does not exist`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM while waiting exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-dashboard-'));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--credentials', dir, '--wait', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const deadline = Date.now() + 60_000;
    while (!out.includes('"event":"listening"') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /"event":"listening"/);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exited) as [number];
    assert.equal(code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
