// Writes docker/compose.yaml and docker/compose/* from the demo topology
// (composeFiles() in @amime/demo-topology). test/multihost/compose.spec.ts
// fails when they are stale.
//
//   node --import tsx tools/scripts/compose-files.ts --write
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { composeFiles } from '@amime/demo-topology';

if (!process.argv.includes('--write')) {
  process.stderr.write('usage: node --import tsx tools/scripts/compose-files.ts --write\n');
  process.exit(64);
}
const root = resolve(import.meta.dirname, '../..');
for (const [path, content] of Object.entries(composeFiles())) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
  process.stdout.write(`wrote ${path}\n`);
}
