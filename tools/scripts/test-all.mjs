// `npm test`: every project's test target through Nx, then one plain summary
// line over all of them, so that a run which tested nothing shows.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const workspace = resolve(import.meta.dirname, '../..');
const resultsDir = join(workspace, 'dist', 'test-results');
rmSync(resultsDir, { recursive: true, force: true });
const env = { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' };
const nx = join(workspace, 'node_modules', '.bin', 'nx');

const list = spawnSync(nx, ['show', 'projects', '--with-target', 'test', '--json'], { cwd: workspace, env, encoding: 'utf8' });
if (list.status !== 0) {
  console.error(list.stderr);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const projects = JSON.parse(list.stdout).sort();
const run = spawnSync(nx, ['run-many', '-t', 'test', '--outputStyle=stream', '--parallel=1', ...process.argv.slice(2)], {
  cwd: workspace,
  env,
  stdio: 'inherit',
});

let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
for (const p of projects) {
  const file = join(resultsDir, `${p}.tap`);
  if (!existsSync(file)) {
    rows.push(`${p}: no results (the test target did not run or crashed)`);
    failed++;
    continue;
  }
  const tap = readFileSync(file, 'utf8');
  const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
  const pp = count('pass');
  const ff = count('fail') + count('cancelled');
  const ss = count('skipped') + count('todo');
  rows.push(`${p}: ${pp} passed, ${ff} failed${ss ? `, ${ss} skipped` : ''}`);
  passed += pp;
  failed += ff;
  skipped += ss;
}
console.log('\nper project:');
for (const r of rows) console.log(`  ${r}`);
if (run.status !== 0 && failed === 0) failed++; // nx failed for a reason the counts did not show
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
