// meshctl anomalies (list, -o json, --watch) and anomalies accept, run
// in-process (cli.ts `run`) against the real admin API handler and anomaly
// stream on 127.0.0.1 with test SVIDs, fed by an AnomalyService.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ACCEPTED_EDGES_PREFIX, ANOMALY_STREAM_PATH, AnomalyService, AnomalyStream, ResourceService, authenticateAdmin, createAdminHandler } from '@amime/control-plane';
import { bundleFromPem } from '@amime/identity';
import { createTestPki, toPemChain, type TestPki } from '@amime/identity/testing';
import type { EdgeCounts } from '@amime/protocol';
import { EmbeddedStore } from '@amime/store';
import { run } from '../cli.js';
import { parseService, sinceOf } from './anomalies.js';

const TD = 'meshctl-anomalies.test';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
let pki: TestPki;
let root: string;
let creds: string;
let store: EmbeddedStore;
let server: https.Server;
let service: AnomalyService;
let stream: AnomalyStream;
let seq = 0;

async function meshctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(['--credentials', creds, ...args], {
    env: {},
    cwd: root,
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Readable.from([]),
  });
  return { code, stdout, stderr };
}

const edge = (service: string, counts: Partial<EdgeCounts> = {}): EdgeCounts => ({
  source: WEB,
  service,
  namespace: 'shop',
  peerAddress: '10.0.0.1',
  requests: 20,
  errors: 0,
  denials: 0,
  bytesIn: 0,
  bytesOut: 0,
  ...counts,
});
/** One report per node: the rate limit allows one per half interval, so each uses its own node. */
const report = (edges: EdgeCounts[]) => service.report(`vm-${seq}`, { type: 'report', seq: seq++, intervalMs: 1000, edges });

before(async () => {
  pki = await createTestPki(TD);
  root = mkdtempSync(join(tmpdir(), 'amime-meshctl-anomalies-'));
  const [serverCert, admin] = await Promise.all([pki.leaf('/control-plane/controller'), pki.leaf('/admin/operator', { notAfter: new Date(Date.now() + 5 * 86400_000) })]);
  store = await EmbeddedStore.open(join(root, 'store'));
  const bundle = bundleFromPem(pki.root.pem, TD);
  const trust = () => ({ bundle });
  service = await AnomalyService.open({ store, resolveSourceNode: () => 'vm-a', assigned: () => true, settings: { learningWindowMs: 0, reportIntervalMs: 1000 } });
  stream = new AnomalyStream({ authenticate: (s) => authenticateAdmin(s, { trust, trustDomain: TD }), subscribe: (fn) => service.subscribe(fn) });
  server = https.createServer(
    { cert: toPemChain([serverCert, pki.intermediate]), key: serverCert.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false },
    createAdminHandler({ resources: new ResourceService(store), trust, trustDomain: TD, agents: () => [], status: () => ({}), anomalies: service }),
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => (req.url === ANOMALY_STREAM_PATH ? stream.handleUpgrade(req, socket, head) : socket.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  creds = join(root, 'admin');
  mkdirSync(creds);
  writeFileSync(join(creds, 'cert.pem'), toPemChain([admin, pki.intermediate]));
  writeFileSync(join(creds, 'key.pem'), admin.key.privateKeyPem);
  writeFileSync(join(creds, 'bundle.pem'), pki.root.pem);
  writeFileSync(join(creds, 'control-plane-url'), `https://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});

after(async () => {
  stream.close();
  service.close();
  await new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('meshctl anomalies', { concurrency: 1 }, () => {
  test('an empty list, then a table of findings newest first, and JSON', async () => {
    const empty = await meshctl(['anomalies']);
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, 'no anomalies\n');

    report([edge('api')]);
    report([edge('payments')]);
    const listed = await meshctl(['anomalies']);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^TIME\s+KIND\s+SERVICE\s+SOURCE\s+FROM NODE\s+OBSERVED\s+BASELINE\s+THRESHOLD$/);
    assert.match(lines[1]!, new RegExp(`\\snew_edge\\s+shop/payments\\s+${WEB}\\s+vm-a\\s+20/s\\s+0/s\\s+-$`));
    assert.match(lines[2]!, /shop\/api/);

    const json = JSON.parse((await meshctl(['anomalies', '-o', 'json', '--limit', '1'])).stdout);
    assert.equal(json.length, 1);
    assert.equal(json[0].edge.service, 'payments');
    assert.deepEqual(JSON.parse((await meshctl(['anomalies', '-o', 'json', '--since', '2099-01-01T00:00:00Z'])).stdout), []);
  });

  test('--watch prints each new finding as it happens (--count stops after that many)', async () => {
    const watching = meshctl(['anomalies', '--watch', '--count', '1', '-o', 'json']);
    for (let i = 0; i < 200 && stream.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stream.size, 1, 'the stream is open');
    report([edge('ledger')]);
    const out = await watching;
    assert.equal(out.code, 0, out.stderr);
    const finding = JSON.parse(out.stdout.trim());
    assert.equal(finding.kind, 'new_edge');
    assert.equal(finding.edge.service, 'ledger');
    assert.match(out.stderr, /watching for anomalies/);
  });

  test('accept stores the edge; accepting again says so; bad arguments are usage errors', async () => {
    const ok = await meshctl(['anomalies', 'accept', WEB, 'shop/search']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `accepted shop/search <- ${WEB}: it is no longer flagged as new\n`);
    assert.equal((await store.list(ACCEPTED_EDGES_PREFIX)).length, 1);
    assert.equal((await meshctl(['anomalies', 'accept', WEB, 'shop/search'])).stdout, `shop/search <- ${WEB} was already accepted\n`);
    report([edge('search')]);
    assert.equal(service.list().filter((f) => f.edge.service === 'search').length, 0);

    for (const args of [
      ['anomalies', 'accept', 'web', 'shop/search'],
      ['anomalies', 'accept', WEB, 'search'],
      ['anomalies', 'accept', WEB],
      ['anomalies', '--since', 'yesterday'],
      ['anomalies', '--count', '2'],
    ]) {
      const r = await meshctl(args);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: meshctl anomalies/);
    }
  });

  test('helpers: --since and NAMESPACE/SERVICE', () => {
    assert.equal(sinceOf('1h', 10_000_000), String(10_000_000 - 3_600_000));
    assert.equal(sinceOf('2026-01-01T00:00:00Z'), String(Date.parse('2026-01-01T00:00:00Z')));
    assert.equal(sinceOf(undefined), undefined);
    assert.deepEqual(parseService('shop/api'), { namespace: 'shop', service: 'api' });
    assert.throws(() => parseService('shop/api/x'), /NAMESPACE\/SERVICE/);
  });
});
