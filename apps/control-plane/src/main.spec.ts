// The control-plane process shell: flags are checked before anything waits
// or touches the disk; usage errors exit 64 naming the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const main = join(import.meta.dirname, 'main.ts');
const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', timeout: 30_000 });

test('bad flags exit 64 naming the flag and write nothing', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'amime-cp-')), 'cp');
  const cases: [string[], RegExp][] = [
    [['serve'], /--dir is required/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--port', '70000'], /--port must be a port number/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--heartbeat', '5x'], /--heartbeat must be a duration/],
    [['serve', '--dir', dir, '--ca', 'http://127.0.0.1:1'], /--ca must be https:\/\/HOST:PORT/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--etcd', 'localhost:2379'], /--etcd must be a comma-separated list/],
    [['serve', '--dir', dir, '--bogus'], /Unknown option '--bogus'/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--ca-metrics', 'http://127.0.0.1:9465/metrics'], /--ca-metrics must be HOST:PORT/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--ca-metrics', '127.0.0.1:0'], /--ca-metrics must be HOST:PORT/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--metrics-host', '[::1]'], /--metrics-host must be an IP address/],
    [['serve', '--dir', dir, '--ca', 'https://127.0.0.1:1', '--metrics-host', 'http://10.0.0.1'], /--metrics-host must be an IP address/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['serve', '--dir', dir], /no CA URL/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /usage:/);
  }
  assert.equal(existsSync(dir), false, 'nothing written on a usage error');
});

test('--help prints the usage and exits 0', () => {
  const r = run('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /control-plane serve --dir DIR/);
});
