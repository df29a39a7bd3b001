// The issued-SVID journal: group commit, a torn last line skipped on read,
// and records appended after a torn line (a crash mid-write) kept.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from './journal.js';

const dir = mkdtempSync(join(tmpdir(), 'amime-journal-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Rec {
  n: number;
}

test('appends made together resolve once durable and read back in order', async () => {
  const path = join(dir, 'a.log');
  const j = new Journal<Rec>(path);
  await Promise.all(Array.from({ length: 50 }, (_, n) => j.append({ n })));
  await j.append({ n: 50 });
  j.close();
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(Journal.read<Rec>(path).map((r) => r.n), Array.from({ length: 51 }, (_, n) => n));
  assert.deepEqual(Journal.read<Rec>(join(dir, 'missing.log')), []);
});

test('a torn last line is skipped, and records appended after it are kept', async () => {
  const path = join(dir, 'b.log');
  const j = new Journal<Rec>(path);
  await j.append({ n: 1 });
  j.close();
  appendFileSync(path, '{"n":2,"ser'); // a crash mid-write: never acknowledged
  assert.deepEqual(Journal.read<Rec>(path), [{ n: 1 }]);

  const reopened = new Journal<Rec>(path);
  await reopened.append({ n: 3 });
  await reopened.append({ n: 4 });
  reopened.close();
  assert.deepEqual(Journal.read<Rec>(path), [{ n: 1 }, { n: 3 }, { n: 4 }], readFileSync(path, 'utf8'));
});
