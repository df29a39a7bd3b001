// Crash safety of a real CA process: a burst of admin writes (join tokens and
// assignments) and SVID issuances, several in flight, is cut short with
// SIGKILL at three different moments. After each restart on the same
// directory the CA starts cleanly and everything it acknowledged with a 200
// is still there: assignments, tokens (they still join) and the issued.log
// records of every acknowledged serial.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, type CaProcess, type Credential, type Reply, type RequestOptions } from './fixtures/ca-process.js';

const TD = 'crash.test';
const BURST = 200;
const IN_FLIGHT = 8;
/** Acknowledgements after which the process is killed, one per round. */
const KILL_AFTER = [7, 60, 140];

let root: string;
let dir: string;
let ca: CaProcess | undefined;
let admin: Credential;
let trust: string;
let agent: Credential & { spiffeId: string };

const call = (o: Omit<RequestOptions, 'trust' | 'trustDomain'>): Promise<Reply> => request(ca!.url, { trust, trustDomain: TD, ...o });

/** Everything the CA acknowledged with a 200, across all rounds. */
const acked = {
  tokens: [] as { token: string; node: string }[],
  assignments: [] as { node: string; spiffeId: string }[],
  serials: new Set<string>(),
};

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-crash-'));
  dir = join(root, 'ca');
  initCa(dir, TD);
  const a = adminCredential(dir);
  admin = a;
  trust = a.bundlePem;
  ca = await serveCa(dir);
  const { token } = (await call({ path: '/v1/admin/tokens', cred: admin, body: { node: 'burst-agent' } })).json;
  const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/burst-agent`);
  const r = await call({ path: '/v1/join', body: { token, csr } });
  assert.equal(r.status, 200, r.text);
  agent = { certPem: r.json.svid, keyPem, spiffeId: r.json.spiffeId };
  acked.serials.add(r.json.serial);
});

after(async () => {
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

/** Request i of round r: a token, an assignment, or an SVID for the agent. */
async function op(round: number, i: number): Promise<() => void> {
  const node = `r${round}-n${i}`;
  switch (i % 3) {
    case 0: {
      const r = await call({ path: '/v1/admin/tokens', cred: admin, body: { node } });
      assert.equal(r.status, 200, r.text);
      return () => acked.tokens.push({ token: r.json.token, node });
    }
    case 1: {
      const spiffeId = `spiffe://${TD}/ns/r${round}/sa/s${i}`;
      const r = await call({ path: '/v1/admin/assignments', cred: admin, body: { node, spiffeId } });
      assert.equal(r.status, 200, r.text);
      return () => acked.assignments.push({ node, spiffeId });
    }
    default: {
      const r = await call({ path: '/v1/svid', cred: agent, body: { csr: keyAndCsr(agent.spiffeId).csr, spiffeId: agent.spiffeId } });
      assert.equal(r.status, 200, r.text);
      return () => acked.serials.add(r.json.serial);
    }
  }
}

/** Fires the burst with IN_FLIGHT workers and SIGKILLs the CA after `killAfter` acknowledgements. */
async function burstAndKill(round: number, killAfter: number): Promise<number> {
  const proc = ca!;
  const exited = new Promise<NodeJS.Signals | null>((r) => proc.child.once('exit', (_code, signal) => r(signal)));
  let next = 0;
  let acks = 0;
  let killed = false;
  const failures: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (!killed && next < BURST) {
      const i = next++;
      try {
        const record = await op(round, i);
        record(); // a 200 that reached us is an acknowledgement, even one that lands after the kill
        if (++acks >= killAfter && !killed) {
          killed = true;
          proc.child.kill('SIGKILL');
        }
      } catch (err) {
        if (!killed) failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  assert.deepEqual(failures, [], 'no request failed before the kill');
  assert.ok(killed, `the burst finished before ${killAfter} acknowledgements`);
  assert.equal(await exited, 'SIGKILL');
  return acks;
}

function journalSerials(): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync(join(dir, 'issued.log'), 'utf8').split('\n')) {
    try {
      out.add((JSON.parse(line) as { serial: string }).serial);
    } catch {
      // a torn line: never acknowledged
    }
  }
  return out;
}

async function restartAndCheck(round: number): Promise<void> {
  // no half-written state: state.json parses and names only key files that exist
  const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  for (const slot of state.slots) {
    for (const f of [slot.rootKeyFile, slot.intermediateKeyFile]) assert.ok(existsSync(join(dir, f)), `key file ${f} exists`);
  }
  // the CA starts cleanly on the same directory (keys load, journal reads)
  ca = await serveCa(dir);
  const status = await call({ path: '/v1/admin/status', cred: admin });
  assert.equal(status.status, 200, status.text);

  const assignments = (await call({ path: '/v1/admin/assignments', cred: admin })).json as Record<string, string[]>;
  for (const a of acked.assignments) assert.ok(assignments[a.node]?.includes(a.spiffeId), `round ${round}: acknowledged assignment ${a.node} → ${a.spiffeId} survived`);

  const hashes = new Set((state.tokens as { hash: string }[]).map((t) => t.hash));
  const pending = acked.tokens.splice(0);
  for (const t of pending) assert.ok(hashes.has(createHash('sha256').update(t.token).digest('hex')), `round ${round}: acknowledged token for ${t.node} is stored`);
  // every acknowledged token still joins (which spends it: later rounds check their own)
  let next = 0;
  const joinWorker = async (): Promise<void> => {
    while (next < pending.length) {
      const t = pending[next++]!;
      const r = await call({ path: '/v1/join', body: { token: t.token, csr: keyAndCsr(`spiffe://${TD}/agent/${t.node}`).csr } });
      assert.equal(r.status, 200, `round ${round}: acknowledged token for ${t.node} joins: ${r.text}`);
      acked.serials.add(r.json.serial);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, joinWorker));

  const journal = journalSerials();
  const missing = [...acked.serials].filter((s) => !journal.has(s));
  assert.deepEqual(missing, [], `round ${round}: acknowledged serials missing from issued.log`);
}

test('SIGKILL mid-burst at three moments loses nothing that was acknowledged', { timeout: 80_000 }, async (t) => {
  for (const [round, killAfter] of KILL_AFTER.entries()) {
    await t.test(`kill after ${killAfter} acknowledgements`, async () => {
      const before = { tokens: acked.tokens.length, assignments: acked.assignments.length, serials: acked.serials.size };
      const acks = await burstAndKill(round, killAfter);
      assert.ok(acks >= killAfter);
      assert.ok(acked.tokens.length > before.tokens && acked.assignments.length > before.assignments && acked.serials.size > before.serials, 'every kind of write was acknowledged');
      if (round === 1) {
        // as if the crash had torn the journal's last write (power loss)
        appendFileSync(join(dir, 'issued.log'), '{"serial":"0dead","spiffeId":"spiffe://crash.te');
      }
      await restartAndCheck(round);
    });
  }
  // and a last clean stop leaves a CA that opens again
  await stop(ca);
  ca = await serveCa(dir);
  assert.equal((await call({ path: '/v1/admin/status', cred: admin })).status, 200);
  const journal = journalSerials();
  assert.deepEqual([...acked.serials].filter((s) => !journal.has(s)), []);
});
