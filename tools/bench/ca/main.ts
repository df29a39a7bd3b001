// CA signing throughput: CSR in -> parsed, proof of possession verified,
// SPIFFE ID checked -> signed SVID out, through CertificateAuthority.signCsr
// exactly as the CA service calls it. CSRs (distinct keys) are made before
// the clock starts; each case runs for a fixed time and stops by itself; the
// last SVID of every case is verified so a broken engine cannot post a number.
//
//   node --import tsx tools/bench/ca/main.ts [--seconds N] [--out file.json] [--pool N] [--rsa-pool N]
//
// The reference engines come from @amime/signing/engines, an entry point of
// their own so that the CA never loads @peculiar/x509 or node-forge.
import { X509Certificate, createPrivateKey, generateKeyPair as generateKeyPairAsync, type KeyObject } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createCsr, generateKeyPair, keyPairFromPrivateKey, type KeyAlgorithm, type KeyPair } from '@amime/identity';
import { CertificateAuthority, createIntermediateCa, createRootCa, derEngine, type SvidEngineFactory } from '@amime/signing';
import { forgeEngine, peculiarEngine, peculiarPipeline } from '@amime/signing/engines';

const TD = 'amime.bench';
const TTL_SECONDS = 3600;
const TARGET_PER_SECOND = 1000;
const ENGINES: Record<string, SvidEngineFactory> = { der: derEngine, peculiar: peculiarEngine, forge: forgeEngine };

interface SignerMaterial {
  certDer: Buffer;
  keyDer: Buffer; // PKCS#8, so it can cross into workers
  chainDer: Buffer[];
}

interface Pool {
  csrs: Buffer[];
  ids: string[];
}

interface CaseResult {
  name: string;
  engine: string;
  keyAlgorithm: KeyAlgorithm;
  threads: number;
  count: number;
  seconds: number;
  perSecond: number;
  msPerSvid: number;
  ratioToReference?: number;
  note?: string;
}

// ---------------------------------------------------------------- helpers

function makeSigner(alg: KeyAlgorithm): SignerMaterial {
  const now = new Date();
  const rootKey = generateKeyPair(alg);
  const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 86400 * 365, now });
  const interKey = generateKeyPair(alg);
  const inter = createIntermediateCa({
    trustDomain: TD,
    keyPair: interKey,
    parent: { certDer: root, privateKey: rootKey.privateKey },
    ttlSeconds: 86400,
    now,
  });
  return { certDer: inter, keyDer: interKey.privateKey.export({ type: 'pkcs8', format: 'der' }), chainDer: [inter, root] };
}

function makeCa(signer: SignerMaterial, engine: SvidEngineFactory): CertificateAuthority {
  const privateKey = createPrivateKey({ key: Buffer.from(signer.keyDer), format: 'der', type: 'pkcs8' });
  return new CertificateAuthority({
    trustDomain: TD,
    signer: { certDer: Buffer.from(signer.certDer), privateKey, chainDer: signer.chainDer.map((d) => Buffer.from(d)) },
    engine,
  });
}

/** Distinct keys; RSA keygen runs on the libuv pool in parallel. */
async function makePool(alg: KeyAlgorithm, size: number): Promise<Pool> {
  const keys: KeyPair[] = await Promise.all(
    Array.from({ length: size }, () =>
      alg === 'ec-p256'
        ? Promise.resolve(generateKeyPair(alg))
        : new Promise<KeyPair>((done, fail) =>
            generateKeyPairAsync('rsa', { modulusLength: 2048 }, (err, _pub, priv: KeyObject) =>
              err ? fail(err) : done(keyPairFromPrivateKey(priv)),
            ),
          ),
    ),
  );
  const ids = keys.map((_, i) => `spiffe://${TD}/ns/bench/sa/w${i}`);
  return { csrs: keys.map((k, i) => createCsr(k, ids[i]!)), ids };
}

/** Signs round-robin from the pool until `seconds` have passed; returns count, elapsed and the last SVID. */
function runFor(ca: CertificateAuthority, pool: Pool, seconds: number): { count: number; ms: number; last: Buffer } {
  const n = pool.csrs.length;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  let count = 0;
  let last: Buffer = Buffer.alloc(0);
  do {
    const i = count % n;
    last = ca.signCsr(pool.csrs[i]!, { spiffeId: pool.ids[i]!, ttlSeconds: TTL_SECONDS }).certDer;
    count++;
  } while (performance.now() < deadline);
  return { count, ms: performance.now() - start, last };
}

/** Sanity check on the output: it must be a verifiable SVID for a pool ID. */
function checkSvid(der: Buffer, signer: SignerMaterial, what: string): void {
  const leaf = new X509Certificate(der);
  if (!leaf.verify(new X509Certificate(signer.certDer).publicKey) || !leaf.subjectAltName?.startsWith(`URI:spiffe://${TD}/`)) {
    throw new Error(`${what}: the last SVID does not verify`);
  }
}

function result(name: string, engine: string, keyAlgorithm: KeyAlgorithm, threads: number, count: number, ms: number, note?: string): CaseResult {
  const perSecond = (count * 1000) / ms;
  return { name, engine, keyAlgorithm, threads, count, seconds: ms / 1000, perSecond, msPerSvid: ms / count, ...(note ? { note } : {}) };
}

// ---------------------------------------------------------------- cases

function singleCore(name: string, engine: string, alg: KeyAlgorithm, signer: SignerMaterial, pool: Pool, seconds: number): CaseResult {
  const ca = makeCa(signer, ENGINES[engine]!);
  runFor(ca, pool, Math.min(0.3, seconds / 10)); // warm up JIT and caches
  const r = runFor(ca, pool, seconds);
  checkSvid(r.last, signer, name);
  return result(name, engine, alg, 1, r.count, r.ms);
}

// Workers do not inherit the tsx loader from --import, so each one registers
// it and then loads this file.
const WORKER_BOOTSTRAP = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;

/** The same loop in one worker per core; a barrier makes them start together. */
async function allCores(name: string, signer: SignerMaterial, pool: Pool, seconds: number, threads: number): Promise<CaseResult> {
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_BOOTSTRAP, { eval: true, workerData: { signer, pool, seconds } }));
  const ready = workers.map((w) => new Promise<void>((ok, fail) => { w.once('message', () => ok()); w.once('error', fail); }));
  await Promise.all(ready);
  const t0 = performance.now();
  const done = workers.map(
    (w) => new Promise<{ count: number; last: Uint8Array }>((ok, fail) => { w.once('message', ok); w.once('error', fail); }),
  );
  for (const w of workers) w.postMessage('go');
  const results = await Promise.all(done);
  const ms = performance.now() - t0;
  await Promise.all(workers.map((w) => w.terminate()));
  for (const r of results) checkSvid(Buffer.from(r.last), signer, name);
  const count = results.reduce((s, r) => s + r.count, 0);
  return result(name, 'der', 'ec-p256', threads, count, ms, 'ms/SVID is wall time divided by SVIDs from all threads');
}

/** @peculiar/x509's own async API, one CSR at a time (informational). */
async function peculiarLibrary(name: string, signer: SignerMaterial, pool: Pool, seconds: number): Promise<CaseResult> {
  const privateKey = createPrivateKey({ key: signer.keyDer, format: 'der', type: 'pkcs8' });
  const pipeline = await peculiarPipeline({ certDer: signer.certDer, privateKey });
  const n = pool.csrs.length;
  let count = 0;
  let last: Buffer = Buffer.alloc(0);
  const start = performance.now();
  const deadline = start + seconds * 1000;
  do {
    const i = count % n;
    last = (await pipeline.signCsr(pool.csrs[i]!, pool.ids[i]!, TTL_SECONDS, new Date())).der;
    count++;
  } while (performance.now() < deadline);
  checkSvid(last, signer, name);
  return result(name, 'peculiar-async', 'ec-p256', 1, count, performance.now() - start, 'Pkcs10CertificateRequest.verify + X509CertificateGenerator.create on WebCrypto');
}

// ---------------------------------------------------------------- worker

function workerMain(): void {
  const { signer, pool, seconds } = workerData as { signer: SignerMaterial; pool: Pool; seconds: number };
  const csrPool: Pool = { csrs: pool.csrs.map((c) => Buffer.from(c)), ids: pool.ids };
  const ca = makeCa(signer, derEngine);
  runFor(ca, csrPool, Math.min(0.3, seconds / 10));
  parentPort!.postMessage('ready');
  parentPort!.once('message', () => {
    const r = runFor(ca, csrPool, seconds);
    parentPort!.postMessage({ count: r.count, last: r.last });
  });
}

// ---------------------------------------------------------------- main

const USAGE = 'usage: node --import tsx tools/bench/ca/main.ts [--seconds N] [--out file.json] [--pool N] [--rsa-pool N]';

function positiveInt(value: string | undefined, fallback: number, flag: string, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    console.error(`${flag} must be an integer from 1 to ${max}, got ${JSON.stringify(value)}\n${USAGE}`);
    process.exit(64);
  }
  return n;
}

function table(rows: CaseResult[]): string {
  const head = ['case', 'SVIDs', 'SVIDs/s', 'ms/SVID', 'x ref'];
  const body = rows.map((r) => [
    r.name,
    String(r.count),
    r.perSecond.toFixed(0),
    r.msPerSvid.toFixed(3),
    r.ratioToReference === undefined ? '' : `${r.ratioToReference.toFixed(2)}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: { seconds: { type: 'string' }, out: { type: 'string' }, pool: { type: 'string' }, 'rsa-pool': { type: 'string' }, help: { type: 'boolean' } },
      strict: true,
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(64);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const seconds = positiveInt(args.seconds, 3, '--seconds', 600);
  const poolSize = positiveInt(args.pool, 200, '--pool', 10_000);
  const rsaPoolSize = positiveInt(args['rsa-pool'], 50, '--rsa-pool', 1_000);
  const out = resolve(args.out ?? 'dist/bench/ca.json');
  const threads = availableParallelism();

  console.log(`setting up: CAs, ${poolSize} P-256 and ${rsaPoolSize} RSA-2048 CSRs with distinct keys...`);
  const ecSigner = makeSigner('ec-p256');
  const rsaSigner = makeSigner('rsa-2048');
  const ecPool = await makePool('ec-p256', poolSize);
  const rsaPool = await makePool('rsa-2048', rsaPoolSize);
  console.log(`running each case for ${seconds} s on ${threads} core(s) (${cpus()[0]?.model ?? 'unknown CPU'})\n`);

  const rows: CaseResult[] = [];
  const run = async (row: CaseResult | Promise<CaseResult>) => {
    const r = await row;
    rows.push(r);
    console.log(`  ${r.name}: ${r.perSecond.toFixed(0)} SVIDs/s`);
  };
  await run(singleCore('der P-256 (1 core)', 'der', 'ec-p256', ecSigner, ecPool, seconds));
  await run(allCores(`der P-256 (${threads} worker threads)`, ecSigner, ecPool, seconds, threads));
  await run(singleCore('der RSA-2048 (1 core)', 'der', 'rsa-2048', rsaSigner, rsaPool, seconds));
  await run(singleCore('peculiar P-256 (reference, 1 core)', 'peculiar', 'ec-p256', ecSigner, ecPool, seconds));
  await run(peculiarLibrary('peculiar P-256 async library API (1 core)', ecSigner, ecPool, seconds));
  await run(singleCore('forge RSA-2048 (reference, 1 core)', 'forge', 'rsa-2048', rsaSigner, rsaPool, seconds));

  const reference = rows.find((r) => r.engine === 'peculiar')!.perSecond;
  for (const r of rows) r.ratioToReference = r.perSecond / reference;
  const best = Math.max(...rows.filter((r) => r.engine === 'der' && r.keyAlgorithm === 'ec-p256').map((r) => r.perSecond));

  console.log(`\n${table(rows)}\n`);
  console.log(`x ref = throughput relative to "peculiar P-256 (reference, 1 core)"`);
  console.log(`target >= ${TARGET_PER_SECOND} P-256 SVIDs/s: ${best >= TARGET_PER_SECOND ? 'met' : 'NOT met'} (${best.toFixed(0)}/s)`);

  const report = {
    generatedAt: new Date().toISOString(),
    node: process.version,
    cpu: { model: cpus()[0]?.model ?? 'unknown', cores: threads },
    secondsPerCase: seconds,
    pools: { 'ec-p256': poolSize, 'rsa-2048': rsaPoolSize },
    ttlSeconds: TTL_SECONDS,
    reference: 'peculiar P-256 (reference, 1 core)',
    target: { svidsPerSecond: TARGET_PER_SECOND, met: best >= TARGET_PER_SECOND },
    cases: rows,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  workerMain();
}
