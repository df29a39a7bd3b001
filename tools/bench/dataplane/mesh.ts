// The amime pair, set up once for both L4 and L7: a CA and a control plane
// (the test fixtures' processes), then two agents on loopback. The client
// agent fronts workload `web` with two upstream listeners for service
// `backend`, one `protocol: tcp` (L4) and one `protocol: http` (L7); the
// server agent fronts workload `backend`, the bench backend. An
// AuthorizationPolicy allows web → backend (deny by default). SVIDs keep the
// CA's default TTLs, so nothing rotates during the bench.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { build } from 'esbuild';
import { adminCredential, freePort, initCa, request, runAgent, serveCa, serveControlPlane, workspace, writeAgentConfig } from './fixtures.js';
import { AGENT_NODE_FLAGS } from '@amime/agent';
import { spawnReady, track } from './children.js';
import type { ChildProcess } from 'node:child_process';

const TD = 'bench.test';
const NS = 'bench';
const WEB = `spiffe://${TD}/ns/${NS}/sa/web`;
const BACKEND = `spiffe://${TD}/ns/${NS}/sa/backend`;
const CP_ID = `spiffe://${TD}/control-plane/controller`;

const RESOURCES = `apiVersion: amime.dev/v1
kind: Service
metadata: { name: web, namespace: ${NS} }
spec:
  identity: ${WEB}
  ports: [{ name: http, port: 8080, protocol: http }]
---
apiVersion: amime.dev/v1
kind: Service
metadata: { name: backend, namespace: ${NS} }
spec:
  identity: ${BACKEND}
  ports: [{ name: http, port: 8080, protocol: http }]
---
apiVersion: amime.dev/v1
kind: AuthorizationPolicy
metadata: { name: backend-from-web, namespace: ${NS} }
spec:
  action: ALLOW
  target: backend
  rules: [{ from: [{ identity: ${WEB} }] }]
`;

export type AgentRuntime = 'bundle' | 'tsx';

export interface MeshPair {
  l4Port: number;
  l7Port: number;
  clientAgent: ChildProcess;
  serverAgent: ChildProcess;
  /** The server agent's inbound mTLS port (every agent-to-agent connection ends there). */
  serverInbound: number;
  /** Admin URLs (metrics, config_dump) of the client and server agents. */
  admin: { client: string; server: string };
  runtime: AgentRuntime;
  /** How the agents were started, for the JSON. */
  command: string;
  /** sha256 of the bundle the agents ran (the sources change under a long bench; this names what was measured). */
  bundleSha256?: string;
  setupS: number;
}

/** The agent as one esbuild bundle, built like `nx run agent:build` but under dist/bench. */
async function buildAgentBundle(): Promise<string> {
  const outfile = join(workspace, 'dist', 'bench', 'dataplane-agent', 'main.mjs');
  await build({
    entryPoints: [join(workspace, 'apps', 'agent', 'src', 'main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    outfile,
    // dependencies bundled in, as apps/agent's build does (Node 20 importing CommonJS from ESM costs ~10 MB RSS)
    banner: { js: "import { createRequire as __amimeRequire } from 'node:module'; const require = __amimeRequire(import.meta.url);" },
    tsconfig: join(workspace, 'tsconfig.base.json'),
    logLevel: 'error',
  });
  return outfile;
}

interface StartedAgent {
  child: ChildProcess;
  admin: string;
  inbound: number;
}

async function startAgent(runtime: AgentRuntime, bundle: string | undefined, node: string, config: string, token: string): Promise<StartedAgent> {
  if (runtime === 'tsx') {
    const a = await runAgent(node, config, token);
    track(a.child);
    return { child: a.child, admin: a.admin, inbound: a.inbound };
  }
  // AMIME_BENCH_PROF=dir: a CPU profile per agent, written when it exits.
  const prof = process.env['AMIME_BENCH_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['AMIME_BENCH_PROF']}`, `--cpu-prof-name=agent-${node}.cpuprofile`] : [];
  // The agent's own node flags, as every launcher uses them; AMIME_BENCH_AGENT_FLAGS='--flag ...'
  // replaces them (to compare V8 settings).
  const override = process.env['AMIME_BENCH_AGENT_FLAGS'];
  const flags = override !== undefined ? override.split(/\s+/).filter(Boolean) : [...AGENT_NODE_FLAGS];
  const { child, line } = await spawnReady<{ admin: string; inbound: number }>(process.execPath, [...flags, ...prof, bundle!, 'run', '--config', config, '--token', token, '--drain', '2s'], 'serving', { cwd: workspace });
  return { child, admin: line.admin, inbound: line.inbound };
}

/** One GET through a listener; the status code (0 when the connection failed). */
export function probe(port: number, path = '/probe'): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 3000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

export async function startMesh(dir: string, backendPort: number, want: AgentRuntime): Promise<MeshPair> {
  const t0 = performance.now();
  process.env['AMIME_CA_QUIET'] = '1';
  let runtime = want;
  let bundle: string | undefined;
  if (runtime === 'bundle') {
    try {
      bundle = await buildAgentBundle();
    } catch (err) {
      process.stderr.write(`dataplane bench: agent bundle failed (${String(err)}); using tsx\n`);
      runtime = 'tsx';
    }
  }
  const caDir = join(dir, 'ca');
  initCa(caDir, TD);
  const admin = adminCredential(caDir);
  const ca = await serveCa(caDir);
  track(ca.child);
  const cpPort = await freePort();
  // The fixture's 300 ms intervals are for tests; the bench uses the defaults (the last flag wins).
  const cp = await serveControlPlane(join(dir, 'cp'), ca.url, join(caDir, 'admin'), ['--port', String(cpPort), '--heartbeat', '5s', '--ca-sync', '5s']);
  track(cp.child);
  const caCall = async (path: string, body: unknown) => {
    const r = await request(ca.url, { path, body, trust: admin.bundlePem, trustDomain: TD, cred: admin });
    if (r.status !== 200) throw new Error(`CA ${path}: ${r.status} ${r.text}`);
    return r.json as Record<string, unknown>;
  };
  for (const [node, id] of [['client', WEB], ['server', BACKEND]] as const) await caCall('/v1/admin/assignments', { node, spiffeId: id });
  const applied = await request(cp.url, { path: '/v1/resources', method: 'POST', raw: RESOURCES, headers: { 'content-type': 'application/yaml' }, trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: CP_ID });
  if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${applied.text}`);

  mkdirSync(dir, { recursive: true });
  const bundlePem = join(dir, 'bundle.pem');
  writeFileSync(bundlePem, admin.bundlePem);
  const common = { dataDir: 'state', ca: { url: ca.url, bundle: bundlePem }, controlPlane: { url: `wss://127.0.0.1:${cpPort}/v1/push` }, inbound: { address: '127.0.0.1', port: 0, advertise: '127.0.0.1' }, admin: { port: 0 } };
  const [l4Port, l7Port, webPort] = [await freePort(), await freePort(), await freePort()];
  const clientCfg = writeAgentConfig(join(dir, 'client'), {
    node: 'client',
    ...common,
    workloads: [
      {
        service: 'web',
        namespace: NS,
        identity: WEB,
        port: webPort,
        protocol: 'http',
        upstreams: [
          { service: 'backend', namespace: NS, port: l4Port, protocol: 'tcp' },
          { service: 'backend', namespace: NS, port: l7Port, protocol: 'http' },
        ],
      },
    ],
  });
  const serverCfg = writeAgentConfig(join(dir, 'server'), { node: 'server', ...common, workloads: [{ service: 'backend', namespace: NS, identity: BACKEND, port: backendPort, protocol: 'http' }] });
  const tokens = [(await caCall('/v1/admin/tokens', { node: 'client' }))['token'] as string, (await caCall('/v1/admin/tokens', { node: 'server' }))['token'] as string];
  const [clientAgent, serverAgent] = await Promise.all([startAgent(runtime, bundle, 'client', clientCfg, tokens[0]!), startAgent(runtime, bundle, 'server', serverCfg, tokens[1]!)]);
  // Both paths must answer 200 before the bench starts (endpoint and policy pushed).
  const deadline = Date.now() + 30_000;
  for (const port of [l7Port, l4Port]) {
    let status = 0;
    while ((status = await probe(port)) !== 200) {
      if (Date.now() > deadline) throw new Error(`the mesh path on ${port} answers ${status}, not 200, after 30 s`);
      await sleep(200);
    }
  }
  const bundleSha256 = bundle ? createHash('sha256').update(readFileSync(bundle)).digest('hex') : undefined;
  const command = runtime === 'bundle' ? `node ${bundle} run --config FILE --token T` : 'node --import tsx apps/agent/src/main.ts run --config FILE --token T';
  return { l4Port, l7Port, clientAgent: clientAgent.child, serverAgent: serverAgent.child, serverInbound: serverAgent.inbound, admin: { client: clientAgent.admin, server: serverAgent.admin }, runtime, command, ...(bundleSha256 && { bundleSha256 }), setupS: (performance.now() - t0) / 1000 };
}
