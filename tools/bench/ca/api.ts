// End-to-end CA benchmark: SVIDs per second through the real CA process and
// its mTLS API (CSR in over HTTPS, verified, signed, journalled with fsync,
// SVID out), beside the in-process library path in the same run.
//
//   node --import tsx tools/bench/ca/api.ts [--seconds 5] [--concurrency 16] [--out dist/bench/ca-api.json]
//
// Bounded: each case runs a fixed time and stops; the CA process is ours and
// is killed by PID at the end. Traffic stays on 127.0.0.1.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createCsr, exportPrivateKeyPem, generateKeyPair, parseCertificate, toPem } from '@amime/identity';
import { CertificateAuthority, createIntermediateCa, createRootCa } from '@amime/signing';

const root = resolve(import.meta.dirname, '../../..');
const caMain = join(root, 'apps/ca/src/main.ts');
const TD = 'bench.amime';
const WORKLOAD = `spiffe://${TD}/ns/bench/sa/worker`;

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' }, out: { type: 'string', default: 'dist/bench/ca-api.json' } },
});
const seconds = Math.min(60, Math.max(1, Number(values.seconds)));
const concurrency = Math.min(256, Math.max(1, Number(values.concurrency)));

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime+stime in clock ticks (100/s)
}

async function startCa(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const init = spawnSync(process.execPath, ['--import', 'tsx', caMain, 'init', '--dir', dir, '--trust-domain', TD], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(init.stderr);
  const child = spawn(process.execPath, [...(process.env['CA_PROF'] ? ['--cpu-prof', '--cpu-prof-dir=/tmp/caprof'] : []), '--import', 'tsx', caMain, 'serve', '--dir', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((res, rej) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) res(m[1]!);
    });
    child.once('exit', (c) => rej(new Error(`CA exited ${c}`)));
  });
  return { child, url };
}

function client(url: string, bundle: string, cert?: string, key?: string) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency, ca: bundle, ...(cert ? { cert, key } : {}), checkServerIdentity: () => undefined });
  return (method: string, path: string, body?: object) =>
    new Promise<{ status: number; json: Record<string, unknown> }>((res, rej) => {
      const data = body ? JSON.stringify(body) : undefined;
      const req = https.request(`${url}${path}`, { method, agent, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => res({ status: r.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString() || '{}') }));
      });
      req.on('error', rej);
      req.end(data);
    });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'amime-bench-ca-'));
  const { child, url } = await startCa(join(dir, 'ca'));
  try {
    const adminDir = join(dir, 'ca', 'admin');
    const bundle = readFileSync(join(adminDir, 'bundle.pem'), 'utf8');
    const admin = client(url, bundle, readFileSync(join(adminDir, 'cert.pem'), 'utf8'), readFileSync(join(adminDir, 'key.pem'), 'utf8'));
    const tok = await admin('POST', '/v1/admin/tokens', { node: 'bench', ttlSeconds: 600 });
    await admin('POST', '/v1/admin/assignments', { node: 'bench', spiffeId: WORKLOAD });
    const agentKey = generateKeyPair('ec-p256');
    const joined = await client(url, bundle)('POST', '/v1/join', { token: tok.json['token'], csr: toPem('CERTIFICATE REQUEST', createCsr(agentKey, `spiffe://${TD}/agent/bench`)) });
    if (joined.status !== 200) throw new Error(`join failed: ${JSON.stringify(joined.json)}`);
    const agent = client(url, bundle, joined.json['svid'] as string, exportPrivateKeyPem(agentKey.privateKey));
    const csrs = Array.from({ length: 200 }, () => toPem('CERTIFICATE REQUEST', createCsr(generateKeyPair('ec-p256'), WORKLOAD)));

    // warm up connections and JIT
    await Promise.all(Array.from({ length: concurrency }, (_, i) => agent('POST', '/v1/svid', { csr: csrs[i % csrs.length], spiffeId: WORKLOAD })));
    const cpu0 = cpuMs(child.pid!);
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    let ok = 0;
    let failed = 0;
    let last = '';
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        for (let i = w; performance.now() < deadline; i += concurrency) {
          const r = await agent('POST', '/v1/svid', { csr: csrs[i % csrs.length], spiffeId: WORKLOAD });
          if (r.status === 200) {
            ok++;
            last = r.json['svid'] as string;
          } else failed++;
        }
      }),
    );
    const wall = performance.now() - t0;
    const cpu = cpuMs(child.pid!) - cpu0;
    const leaf = new X509Certificate(last);
    if (!leaf.subjectAltName?.includes(WORKLOAD)) throw new Error('last SVID does not carry the workload ID');

    // Reference in the same run: the library path in this process, one core.
    const rootKey = generateKeyPair('ec-p256');
    const interKey = generateKeyPair('ec-p256');
    const now = new Date();
    const rootDer = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 86400, now });
    const interDer = createIntermediateCa({ trustDomain: TD, keyPair: interKey, parent: { certDer: rootDer, cert: parseCertificate(rootDer), privateKey: rootKey.privateKey }, ttlSeconds: 86400, now });
    const lib = new CertificateAuthority({ trustDomain: TD, signer: { certDer: interDer, privateKey: interKey.privateKey, chainDer: [interDer, rootDer] } });
    const l0 = performance.now();
    let libCount = 0;
    while (performance.now() - l0 < seconds * 1000) lib.signCsr(csrs[libCount++ % csrs.length]!, { spiffeId: WORKLOAD, ttlSeconds: 3600 });
    const libMs = performance.now() - l0;

    const apiRate = (ok / wall) * 1000;
    const libRate = (libCount / libMs) * 1000;
    const rows = [
      { case: 'CA API, mTLS keep-alive, fsync journal', svids: ok, failed, perSecond: Math.round(apiRate), caCpuMsPerSvid: +(cpu / ok).toFixed(3), ratioToLibrary: +(apiRate / libRate).toFixed(2) },
      { case: 'library signCsr in-process (reference)', svids: libCount, failed: 0, perSecond: Math.round(libRate), caCpuMsPerSvid: +(libMs / libCount).toFixed(3), ratioToLibrary: 1 },
    ];
    console.log(`CA API benchmark: ${seconds}s per case, ${concurrency} concurrent requests, P-256`);
    console.log('case'.padEnd(42) + 'SVIDs'.padStart(8) + 'failed'.padStart(8) + 'SVIDs/s'.padStart(9) + 'CPU ms/SVID'.padStart(13) + 'x lib'.padStart(7));
    for (const r of rows) {
      console.log(r.case.padEnd(42) + String(r.svids).padStart(8) + String(r.failed).padStart(8) + String(r.perSecond).padStart(9) + r.caCpuMsPerSvid.toFixed(3).padStart(13) + r.ratioToLibrary.toFixed(2).padStart(7));
    }
    const out = resolve(root, values.out!);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), seconds, concurrency, rows }, null, 2) + '\n');
    console.log(`wrote ${out}`);
  } finally {
    child.kill(process.env['CA_PROF'] ? 'SIGINT' : 'SIGKILL');
    await new Promise((r) => setTimeout(r, process.env['CA_PROF'] ? 2000 : 0));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
