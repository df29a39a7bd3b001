// kill -9 the control plane (embedded store) in the middle of a burst of
// applies; after a restart every acknowledged resource is there, at the
// version it was acknowledged with or later.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminCredential, initCa, request, serveCa, stop, type CaProcess, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { serveControlPlane, type CpProcess } from './fixtures/cp-process.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'crash.test';
const SERVER = `spiffe://${TD}/control-plane/controller`;

let root: string;
let ca: CaProcess;
let admin: Credential & { bundlePem: string };
let cp: CpProcess | undefined;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-cp-crash-'));
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
});

after(async () => {
  await stop(cp?.child);
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

const call = (url: string, path: string, raw?: string): Promise<Reply> =>
  request(url, { path, trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER, ...(raw !== undefined && { raw, method: 'POST', headers: { 'content-type': 'application/json' } }) });

const route = (i: number) =>
  JSON.stringify({
    apiVersion: 'amime.dev/v1',
    kind: 'Route',
    metadata: { name: `r-${i}`, namespace: 'burst' },
    spec: { service: `svc-${i}`, rules: [{ backends: [{ service: `svc-${i}`, weight: 100 }] }] },
  });

test('every acknowledged apply survives kill -9 during a burst', { timeout: 120_000 }, async () => {
  const dir = join(root, 'cp');
  cp = await serveControlPlane(dir, ca.url, join(root, 'ca', 'admin'));
  const url = cp.url;
  const acked = new Map<string, number>();
  let next = 0;
  let killed = false;
  const TOTAL = 400;
  // Eight writers in parallel; the process dies once 60 are acknowledged.
  const writer = async () => {
    while (next < TOTAL) {
      const i = next++;
      let r: Reply;
      try {
        r = await call(url, '/v1/resources', route(i));
      } catch {
        return; // the process is gone: this apply was never acknowledged
      }
      if (r.status !== 200) {
        if (killed) return;
        assert.fail(`apply r-${i}: ${r.status} ${r.text}`);
      }
      const result = (r.json as { results: { name: string; version: string }[] }).results[0]!;
      acked.set(result.name, Number(result.version));
      if (acked.size >= 60 && !killed) {
        killed = true;
        cp!.child.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, writer));
  assert.equal(killed, true, 'the burst ran into the kill');
  await new Promise((r) => (cp!.alive() ? cp!.child.once('exit', r) : r(undefined)));

  cp = await serveControlPlane(dir, ca.url, join(root, 'ca', 'admin'));
  const list = await call(cp.url, '/v1/resources/Route/burst');
  assert.equal(list.status, 200, list.text);
  const items = (list.json as { items: { metadata: { name: string; version: string } }[] }).items;
  const stored = new Map(items.map((r) => [r.metadata.name, Number(r.metadata.version)]));
  const lost = [...acked.keys()].filter((name) => !stored.has(name));
  assert.deepEqual(lost, [], `acknowledged but lost after kill -9: ${lost.join(', ')}`);
  for (const [name, version] of acked) assert.ok(stored.get(name)! >= version, `${name} went back from version ${version}`);
  // The restarted process still takes writes.
  const again = await call(cp.url, '/v1/resources', route(TOTAL + 1));
  assert.equal(again.status, 200, again.text);
});
