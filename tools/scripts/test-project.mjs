// Runs one project's specs with node's test runner (through tsx) and writes a
// TAP copy of the results that tools/scripts/test-all.mjs adds up.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const [projectRoot, name] = process.argv.slice(2);
if (!projectRoot || !name) {
  console.error('usage: test-project.mjs <projectRoot> <projectName>');
  process.exit(64);
}
const workspace = resolve(import.meta.dirname, '../..');
const root = resolve(workspace, projectRoot);

function findSpecs(dir, out = []) {
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) findSpecs(p, out);
    else if (entry.endsWith('.spec.ts')) out.push(relative(workspace, p));
  }
  return out;
}

const specs = findSpecs(root).sort();
const resultsDir = join(workspace, 'dist', 'test-results');
mkdirSync(resultsDir, { recursive: true });
const tapFile = join(resultsDir, `${name}.tap`);
if (specs.length === 0) {
  console.error(`${name}: no *.spec.ts files under ${projectRoot}`);
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  [
    '--import', 'tsx',
    '--test',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    ...specs,
  ],
  { cwd: workspace, stdio: 'inherit', env: { ...process.env, AMIME_TEST: '1' } },
);
process.exit(r.status ?? 1);
