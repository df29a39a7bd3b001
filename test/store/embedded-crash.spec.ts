// Crash safety of the embedded store in a real process: a burst of
// concurrent puts is cut short with SIGKILL at several moments. After each
// kill the store reopens cleanly on the same directory, every put the child
// acknowledged is there with its value, and the next round's writes land.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddedStore } from '@amime/store';
import { burstValue } from './fixtures/burst-value.js';

const here = dirname(fileURLToPath(import.meta.url));
const workspace = resolve(here, '../..');
const child = join(here, 'fixtures/put-burst.ts');

const BURST = 5_000;
const IN_FLIGHT = 32;
/** [acknowledgements before the kill, compactAfterRecords for the child] */
const ROUNDS: [number, number | undefined][] = [
  [5, undefined],
  [400, undefined],
  [900, 250],
  [1500, 100],
];

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'amime-store-crash-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Runs a child round; resolves with the keys it acknowledged before being killed. */
async function burstAndKill(dir: string, round: number, killAfter: number, compact: number | undefined): Promise<{ acked: string[]; killed: boolean }> {
  const args = ['--import', 'tsx', child, dir, String(round), String(BURST), String(IN_FLIGHT), ...(compact ? [String(compact)] : [])];
  const proc = spawn(process.execPath, args, { cwd: workspace, stdio: ['ignore', 'pipe', 'pipe'] });
  const acked: string[] = [];
  let partial = '';
  let err = '';
  let killed = false;
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line === 'ready') continue;
      acked.push(line);
      if (acked.length >= killAfter && !killed) {
        killed = proc.kill('SIGKILL');
      }
    }
  });
  const [code, signal] = (await once(proc, 'exit')) as [number | null, string | null];
  if (!killed) assert.fail(`child ended (code ${code}, signal ${signal}) before ${killAfter} acknowledgements: ${err}`);
  assert.equal(signal, 'SIGKILL');
  return { acked, killed };
}

test('embedded store: every acknowledged put survives SIGKILL mid-burst', async () => {
  const dir = join(root, 'store');
  const all: string[] = [];
  for (const [round, [killAfter, compact]] of ROUNDS.entries()) {
    const { acked } = await burstAndKill(dir, round, killAfter, compact);
    assert.ok(acked.length >= killAfter);
    assert.ok(acked.length < BURST, `round ${round}: the kill came after the burst finished; raise BURST`);
    all.push(...acked);

    const store = await EmbeddedStore.open(dir);
    try {
      for (const key of all) {
        const got = await store.get(key);
        assert.ok(got, `round ${round}: acknowledged ${key} is missing after the crash`);
        assert.deepEqual(got.value, burstValue(key));
      }
      // Revisions stay dense: nothing half-applied, nothing counted twice.
      const entries = await store.list('/burst/');
      assert.equal(await store.revision(), entries.length + round, 'one marker put per earlier round');
      await store.put(`/marker/${round}`, { round }, { expectRevision: 0 });
    } finally {
      await store.close();
    }
  }
});
