// Data-plane benchmark: direct (wrk → backend), a HAProxy mTLS pair, the
// amime L4 pair and the amime L7 pair, side by side in one run, loopback only.
//
//   npm run bench:dataplane -- [--duration 10] [--repeats 2] [--warmup 2] [--connections 32]
//        [--threads 1] [--haproxy-threads 1] [--runtime bundle|tsx] [--out dist/bench/dataplane.json] [--quick]
//
//   --quick   3 s runs, 1 repeat, 1 s warmup (a smoke check; the ratios mean little)
//   AMIME_BENCH_PROF=dir   write a CPU profile of each agent (bundle runtime) into dir
//
// Needs Debian's wrk and haproxy (apt-get install -y wrk haproxy) and openssl.
// Load shapes, each run by wrk for a fixed duration: `keepalive` (N keep-alive
// connections), `single` (1 connection: latency) and `close` (N connections
// sending `Connection: close`: new connections per second). Repeats are
// interleaved (direct, haproxy, L4, L7, direct, ...) and medians reported.
// Around each run the proxies' CPU (utime+stime from /proc/<pid>/stat) is
// read and their VmRSS sampled; CPU per request is proxy CPU / requests.
//
// Setup in a temp dir: the backend (backend.ts, own process), openssl
// certificates and two haproxy processes (haproxy.ts), a CA, a control plane
// and two agents (mesh.ts; the agent as an esbuild bundle unless
// --runtime tsx). Every process started here is stopped by its PID and the
// temp dir removed at the end, on error and on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { spawnReady, stopAll, track } from './children.js';
import { haproxyTlsInfo, startHaproxyPair } from './haproxy.js';
import { startNodePipePair } from './node-pipe-pair.js';
import { probe, startMesh, type AgentRuntime } from './mesh.js';
import { cpuSeconds, memory, sampleRss } from './proc-stats.js';
import { PATHS, SHAPES, evaluateTargets, ratios, shapeTable, summarize, targetsTable, type PathName, type RunResult, type ShapeName, type Summary } from './report.js';
import { runWrk } from './wrk.js';

const root = resolve(import.meta.dirname, '../../..');
const USAGE =
  'usage: npm run bench:dataplane -- [--duration 10] [--repeats 2] [--warmup 2] [--connections 32] [--threads 1] [--haproxy-threads 1] [--runtime bundle|tsx] [--out dist/bench/dataplane.json] [--quick]';

interface Options {
  durationS: number;
  repeats: number;
  warmupS: number;
  connections: number;
  threads: number;
  haproxyThreads: number;
  runtime: AgentRuntime;
  out: string;
  quick: boolean;
}

function fail(message: string): never {
  process.stderr.write(`dataplane bench: ${message}\n${USAGE}\n`);
  process.exit(64);
}

function parseOptions(): Options {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      strict: true,
      options: {
        duration: { type: 'string' },
        repeats: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        threads: { type: 'string' },
        'haproxy-threads': { type: 'string' },
        runtime: { type: 'string' },
        out: { type: 'string' },
        quick: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values['help']) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values['quick'] === true;
  const int = (name: string, dflt: number, min: number, max: number): number => {
    const v = values[name];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
    return n;
  };
  const runtime = (values['runtime'] as string | undefined) ?? 'bundle';
  if (runtime !== 'bundle' && runtime !== 'tsx') fail(`--runtime must be bundle or tsx, not ${JSON.stringify(runtime)}`);
  return {
    durationS: int('duration', quick ? 3 : 10, 1, 300),
    repeats: int('repeats', quick ? 1 : 2, 1, 20),
    warmupS: int('warmup', quick ? 1 : 2, 0, 60),
    connections: int('connections', 32, 2, 1000),
    threads: int('threads', 1, 1, 8),
    haproxyThreads: int('haproxy-threads', 1, 1, 8),
    runtime,
    out: resolve(root, (values['out'] as string | undefined) ?? 'dist/bench/dataplane.json'),
    quick,
  };
}

function requireTool(cmd: string, args: string[]): void {
  if (spawnSync(cmd, args, { stdio: 'ignore' }).error) fail(`${cmd} is not installed: apt-get install -y ${cmd}`);
}

interface Target {
  port: number;
  /** Client-side and server-side proxy processes; none for direct. */
  proxies: [ChildProcess, ChildProcess] | [];
}

let interrupted = false;

async function main(): Promise<void> {
  const o = parseOptions();
  requireTool('wrk', ['--version']);
  requireTool('haproxy', ['-v']);
  requireTool('openssl', ['version']);
  const dir = mkdtempSync(join(tmpdir(), 'amime-bench-dataplane-'));
  let cleaning = false;
  const cleanup = async () => {
    if (cleaning) return;
    cleaning = true;
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      process.stderr.write(`\ndataplane bench: ${sig}, stopping\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await bench(o, dir);
  } finally {
    await cleanup();
  }
}

async function bench(o: Options, dir: string): Promise<void> {
  const log = (m: string) => process.stderr.write(`${m}\n`);
  log(`dataplane bench: setting up in ${dir}`);
  const loadBefore = loadavg()[0];
  const backend = await spawnReady<{ port: number }>(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'backend.ts')], 'listening', { cwd: root });
  const backendPid = backend.child.pid!;
  const haproxy = await startHaproxyPair(join(dir, 'haproxy'), backend.line.port, o.haproxyThreads);
  // The naive Node pipe pair on the same certificates: the runtime's floor for this hop.
  const nodePipe = await startNodePipePair(join(dir, 'haproxy', 'certs'), backend.line.port);
  // The bare Node HTTP proxy pair: the floor for L7 on Node's HTTP parser.
  const nodeHttp = await startNodePipePair(join(dir, 'haproxy', 'certs'), backend.line.port, 'http');
  const mesh = await startMesh(join(dir, 'mesh'), backend.line.port, o.runtime);
  log(`dataplane bench: mesh ready in ${mesh.setupS.toFixed(1)} s (agents: ${mesh.runtime})`);
  const targets: Record<PathName, Target> = {
    direct: { port: backend.line.port, proxies: [] },
    haproxy: { port: haproxy.port, proxies: [haproxy.client, haproxy.server] },
    nodepipe: { port: nodePipe.port, proxies: [nodePipe.client, nodePipe.server] },
    nodehttp: { port: nodeHttp.port, proxies: [nodeHttp.client, nodeHttp.server] },
    l4: { port: mesh.l4Port, proxies: [mesh.clientAgent, mesh.serverAgent] },
    l7: { port: mesh.l7Port, proxies: [mesh.clientAgent, mesh.serverAgent] },
  };
  for (const p of PATHS) {
    const status = await probe(targets[p].port);
    if (status !== 200) throw new Error(`${p}: a probe request got ${status}, not 200`);
  }
  // Idle memory: after setup has settled, before any load.
  await sleep(3000);
  const agents = [mesh.clientAgent.pid!, mesh.serverAgent.pid!];
  const haproxies = [haproxy.client.pid!, haproxy.server.pid!];
  const idleBefore = { agents: agents.map(memory), haproxy: haproxies.map(memory) };

  const shapes: Record<ShapeName, { connections: number; close: boolean; threads: number }> = {
    keepalive: { connections: o.connections, close: false, threads: o.threads },
    single: { connections: 1, close: false, threads: 1 },
    close: { connections: o.connections, close: true, threads: o.threads },
  };
  const runOne = async (path: PathName, shape: ShapeName, repeat: number, durationS: number): Promise<RunResult> => {
    const t = targets[path];
    const pids = t.proxies.map((c) => c.pid!);
    const cpu0 = pids.map(cpuSeconds);
    const backend0 = cpuSeconds(backendPid);
    const rss = sampleRss(pids);
    const w = await runWrk({ url: `http://127.0.0.1:${t.port}/`, durationS, ...shapes[shape] }, (c) => track(c));
    const cpu1 = pids.map(cpuSeconds);
    const peak = rss.stop();
    const d = (i: number) => (pids.length ? cpu1[i]! - cpu0[i]! : 0);
    return {
      path,
      shape,
      repeat,
      requests: w.requests,
      seconds: w.seconds,
      rps: w.rps,
      p50Ms: w.p50Ms,
      p99Ms: w.p99Ms,
      errors: w.errors,
      cpuS: { proxyClient: d(0), proxyServer: d(1), backend: cpuSeconds(backendPid) - backend0, wrk: w.wrkCpuS },
      peakRssMiB: { client: peak[0] ?? 0, server: peak[1] ?? 0 },
    };
  };

  if (o.warmupS > 0) {
    log(`dataplane bench: warming up each path for ${o.warmupS} s`);
    for (const p of PATHS) await runOne(p, 'keepalive', -1, o.warmupS);
  }
  const runs: RunResult[] = [];
  const total = o.repeats * SHAPES.length * PATHS.length;
  for (let r = 0; r < o.repeats; r++) {
    for (const shape of SHAPES) {
      for (const p of PATHS) {
        const res = await runOne(p, shape, r, o.durationS);
        runs.push(res);
        log(`  [${runs.length}/${total}] ${shape.padEnd(9)} ${p.padEnd(7)} ${res.rps.toFixed(0).padStart(6)} rps  p50 ${res.p50Ms.toFixed(2)} ms  p99 ${res.p99Ms.toFixed(2)} ms  errors ${res.errors}`);
        await sleep(500);
      }
    }
  }
  await sleep(3000);
  const idleAfter = { agents: agents.map(memory), haproxy: haproxies.map(memory) };
  const haproxyTls = { client: await haproxyTlsInfo(haproxy.sockets.client), server: await haproxyTlsInfo(haproxy.sockets.server) };

  const summaries = new Map<string, Summary>();
  for (const shape of SHAPES) for (const p of PATHS) summaries.set(`${p}/${shape}`, summarize(runs, p, shape));
  const get = (p: PathName, shape: ShapeName) => {
    const s = summaries.get(`${p}/${shape}`)!;
    return { s, r: ratios(s, summaries.get(`direct/${shape}`)!, summaries.get(`haproxy/${shape}`)!) };
  };
  const agentIdle = Math.max(...idleBefore.agents.map((m) => m.rssMiB));
  const agentPeak = Math.max(...runs.filter((r) => r.path === 'l4' || r.path === 'l7').flatMap((r) => [r.peakRssMiB.client, r.peakRssMiB.server]));
  const results = evaluateTargets(get, agentIdle, agentPeak);

  const titles: Record<ShapeName, string> = {
    keepalive: `keep-alive, ${o.connections} connections (${o.threads} wrk thread${o.threads > 1 ? 's' : ''})`,
    single: 'keep-alive, 1 connection',
    close: `Connection: close, ${o.connections} connections (rps = new connections per second)`,
  };
  const out: string[] = [''];
  out.push(`dataplane bench: ${o.durationS} s runs, ${o.repeats} repeat(s), medians; ${cpus().length} cores, node ${process.version}, haproxy ${haproxy.version} (nbthread ${o.haproxyThreads}), agents: ${mesh.runtime}`);
  out.push('CPU s/10k = both proxies\' CPU seconds per 10,000 requests; cores c+s = client-side + server-side proxy CPU per wall second; backend = backend cores; RSS = peak VmRSS of the pair');
  for (const shape of SHAPES) out.push('', shapeTable(shape, titles[shape], get, results));
  out.push('', 'CPU µs per request (median): client proxy / server proxy / backend / wrk');
  for (const shape of SHAPES) {
    for (const p of PATHS) {
      const c = get(p, shape).s.cpuUsPerRequest;
      out.push(`  ${shape.padEnd(9)} ${p.padEnd(7)} ${[c.proxyClient, c.proxyServer, c.backend, c.wrk].map((x) => x.toFixed(1).padStart(7)).join(' ')}`);
    }
  }
  const mib = (m: { rssMiB: number }[]) => m.map((x) => x.rssMiB.toFixed(1)).join(' / ');
  out.push('', `RSS MiB idle before load: agents (client / server) ${mib(idleBefore.agents)}, haproxy ${mib(idleBefore.haproxy)}; after load: agents ${mib(idleAfter.agents)}, haproxy ${mib(idleAfter.haproxy)}`);
  // SslFrontendMaxKeyRate: the most full handshakes (key computations) in one second; far below the close rate = sessions were resumed.
  out.push(`haproxy TLS (show info): ${haproxyTls.server['CumSslConns'] ?? '?'} mTLS connections accepted, at most ${haproxyTls.server['SslFrontendMaxKeyRate'] ?? '?'} full handshakes/s (the rest resumed)`);
  out.push(`VmHWM MiB (peak since start, includes setup): agents ${idleAfter.agents.map((x) => x.hwmMiB.toFixed(1)).join(' / ')}`);
  out.push('', targetsTable(results), '');
  process.stdout.write(out.join('\n'));

  const json = {
    bench: 'dataplane',
    time: new Date().toISOString(),
    options: { ...o, out: undefined, shapes },
    machine: { cores: cpus().length, cpuModel: cpus()[0]?.model, memMiB: Math.round(totalmem() / 2 ** 20), node: process.version, loadAvg1m: { before: loadBefore, after: loadavg()[0] }, wrk: spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]?.trim() },
    haproxy: { version: haproxy.version, nbthread: o.haproxyThreads, mode: 'tcp, TLS 1.3, ECDSA P-256, verify required both ways', tls: haproxyTls },
    agents: { runtime: mesh.runtime, command: mesh.command, bundleSha256: mesh.bundleSha256, setupS: mesh.setupS },
    git: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim(),
    memoryMiB: { idleBefore, idleAfter },
    runs,
    summaries: [...summaries.values()].map((s) => ({ ...s, ratios: ratios(s, summaries.get(`direct/${s.shape}`)!, summaries.get(`haproxy/${s.shape}`)!) })),
    targets: results,
    passed: results.filter((t) => t.pass).length,
    failed: results.filter((t) => !t.pass).length,
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, `${JSON.stringify(json, null, 2)}\n`);
  log(`dataplane bench: wrote ${o.out}`);
}

main().catch((err: unknown) => {
  if (interrupted) return; // a run cut short by the signal, not a failure of its own
  process.stderr.write(`dataplane bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
