// The agent process shell: flags and config are checked before anything binds
// or touches the disk; usage errors exit 64, a bad config 78, naming the cause.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const main = join(import.meta.dirname, 'main.ts');
const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', timeout: 30_000 });

test('bad flags exit 64 with the usage; a bad config exits 78 naming the field; nothing is written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amime-agent-main-'));
  const file = join(dir, 'agent.yaml');
  writeFileSync(
    file,
    `node: vm1\ndataDir: state\nca: { url: "https://127.0.0.1:1", bundle: bundle.pem }\ncontrolPlane: { url: "wss://127.0.0.1:1/v1/push" }\nworkloads:\n  - { service: web, identity: "spiffe://td/ns/default/sa/web", port: 8080, protocol: http, upstreams: [{ service: db, port: 70000 }] }\n`,
  );
  const usage: [string[], RegExp][] = [
    [['run'], /--config is required/],
    [['run', '--config', file, '--bogus'], /Unknown option '--bogus'/],
    [['run', '--config', file, '--token', 'a', '--token-file', 'b'], /--token or --token-file, not both/],
    [['run', '--config', file, '--drain', 'soon'], /--drain must be a duration/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ];
  for (const [args, message] of usage) {
    const r = run(...args);
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /usage:/);
  }
  const bad = run('run', '--config', file);
  assert.equal(bad.status, 78, bad.stderr);
  assert.match(bad.stderr, /workloads\[0\]\.upstreams\[0\]\.port/);
  const missing = run('run', '--config', join(dir, 'nope.yaml'));
  assert.equal(missing.status, 78, missing.stderr);
  assert.match(missing.stderr, /cannot read the agent config/);
  assert.equal(existsSync(join(dir, 'state')), false, 'nothing written on a config error');
});

test('--help prints the usage and exits 0', () => {
  const r = run('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /agent run --config FILE/);
});
