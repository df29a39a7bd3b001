// Hosts as containers through testcontainers on a container network of their
// own: each host is a container of the locally built base image (Debian
// minbase + node, tools/scripts/podman-setup.sh) with the workspace mounted
// read-only at the same path, so the scenario runs the same commands as on
// network namespaces. The engine is whatever DOCKER_HOST names, else the
// podman socket podman-setup.sh starts. Cleanup stops exactly the containers
// and the network this driver made (Ryuk is off: podman has none).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { workspace } from '../ca/fixtures/ca-process.js';
import { tail, type Host, type HostProcess, type Hosts, type RunResult } from './hosts.js';
import type { Driver } from './scenario.js';

/** Where tools/scripts/podman-setup.sh serves podman's Docker-compatible API. */
const DEFAULT_SOCKET = '/run/amime-podman/podman.sock';
const NODE = '/usr/bin/node';
const HOST_DIR = '/srv/amime';
const baseImage = (): string => process.env['AMIME_BASE_IMAGE'] ?? `localhost/amime-base:node${process.versions.node}`;

let engineSocket = DEFAULT_SOCKET;

/** One request to the engine's API on its unix socket: the status code, or the error. */
function engine(socketPath: string, path: string, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, method, timeout: 10_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end();
  });
}

async function probe(): Promise<string | undefined> {
  const dockerHost = process.env['DOCKER_HOST'];
  let socket: string;
  if (dockerHost !== undefined) {
    if (!dockerHost.startsWith('unix://')) return `DOCKER_HOST=${dockerHost}: only a unix socket is supported by this test`;
    socket = dockerHost.slice('unix://'.length);
  } else if (existsSync(DEFAULT_SOCKET)) {
    socket = DEFAULT_SOCKET;
  } else {
    return `no container engine: DOCKER_HOST is unset and ${DEFAULT_SOCKET} does not exist (run tools/scripts/podman-setup.sh as root)`;
  }
  try {
    const ping = await engine(socket, '/_ping');
    if (ping !== 200) return `the container engine on ${socket} answered /_ping with ${ping}`;
  } catch (err) {
    return `the container engine on ${socket} does not answer: ${(err as Error).message} (run tools/scripts/podman-setup.sh as root)`;
  }
  const image = baseImage();
  const found = await engine(socket, `/images/${encodeURIComponent(image)}/json`).catch(() => 0);
  if (found !== 200) return `no base image ${image} in the engine on ${socket} (tools/scripts/podman-setup.sh builds it; images are built locally, there is no registry here)`;
  engineSocket = socket;
  // testcontainers reads these when it is first imported.
  process.env['DOCKER_HOST'] = `unix://${socket}`;
  process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';
  process.env['TESTCONTAINERS_HOST_OVERRIDE'] ??= '127.0.0.1';
  return undefined;
}

type Started = Awaited<ReturnType<import('testcontainers').GenericContainer['start']>>;

/** sh -c quoting for one word. */
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
/** The shell's kill: a minbase image has no /bin/kill. */
const kill = (signal: string, pid: number): string[] => ['sh', '-c', `kill ${signal} ${pid}`];
/** Running and not a zombie (PID 1 is `sleep`, which reaps nobody). */
const alive = (pid: number): string[] => ['sh', '-c', `read -r _ _ s _ </proc/${pid}/stat && [ "$s" != Z ]`];

class ContainerProcess implements HostProcess {
  constructor(
    readonly what: string,
    private readonly host: ContainerHost,
    private readonly pid: number,
    private readonly err: string,
  ) {}

  async output(): Promise<string> {
    return (await this.host.run(['tail', '-c', '20000', this.err])).stdout;
  }

  async stop(): Promise<void> {
    const running = async () => (await this.host.run(alive(this.pid))).code === 0;
    if (!(await running())) return;
    await this.host.run(kill('-TERM', this.pid));
    for (let i = 0; i < 50 && (await running()); i++) await sleep(300);
    if (await running()) await this.host.run(kill('-KILL', this.pid));
  }
}

class ContainerHost implements Host {
  #n = 0;
  constructor(
    readonly name: string,
    readonly address: string,
    readonly dir: string,
    private readonly container: Started,
  ) {}

  async run(argv: string[], timeoutMs = 60_000): Promise<RunResult> {
    // An exec cannot be killed through the API; the bound fails the test instead of hanging it.
    const r = await Promise.race([
      this.container.exec(argv, { workingDir: workspace }),
      sleep(timeoutMs).then(() => ({ exitCode: -1, stdout: '', stderr: `(no answer within ${timeoutMs} ms)`, output: '' })),
    ]);
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  async start(what: string, argv: string[], marker: string, timeoutMs = 60_000): Promise<{ proc: HostProcess; line: Record<string, unknown> }> {
    const base = posix.join(this.dir, 'proc', `${++this.#n}`);
    const out = `${base}.out`;
    const err = `${base}.err`;
    // Backgrounded inside the container, its output in files the test reads back.
    const r = await this.run(['sh', '-c', `mkdir -p ${q(posix.dirname(base))} && cd ${q(workspace)} && { ${argv.map(q).join(' ')} >${q(out)} 2>${q(err)} </dev/null & echo $!; }`]);
    const pid = Number(r.stdout.trim());
    if (r.code !== 0 || !Number.isInteger(pid) || pid <= 0) throw new Error(`starting ${what} on ${this.name}: ${r.stderr}`);
    const proc = new ContainerProcess(`${what} on ${this.name}`, this, pid, err);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = (await this.run(['cat', out])).stdout;
      const l = text.split('\n').find((x) => x.includes(`"${marker}"`));
      if (l) return { proc, line: JSON.parse(l) as Record<string, unknown> };
      const gone = (await this.run(alive(pid))).code !== 0;
      if (gone || Date.now() > deadline) {
        const why = gone ? 'exited before it was ready' : `was not ready within ${timeoutMs} ms`;
        await proc.stop();
        throw new Error(`${proc.what} ${why}: ${tail(await proc.output())}`);
      }
      await sleep(300);
    }
  }

  async writeFile(path: string, content: string, mode = 0o644): Promise<void> {
    await this.container.copyContentToContainer([{ content, target: path, mode }]);
  }

  async readFile(path: string): Promise<string> {
    const r = await this.run(['cat', path]);
    if (r.code !== 0) throw new Error(`reading ${path} on ${this.name}: ${r.stderr}`);
    return r.stdout;
  }
}

async function provision(): Promise<Hosts> {
  const { GenericContainer, Network } = await import('testcontainers');
  const network = await new Network().start();
  const started: Started[] = [];
  /** Names of containers created, started or not (one that failed to start stays "created"). */
  const names: string[] = [];
  const close = async (): Promise<void> => {
    // PID 1 (sleep) ignores SIGTERM, and the scenario stopped what ran inside: no grace period.
    for (const c of started.splice(0)) await c.stop({ timeout: 0 }).catch(() => undefined);
    for (const n of names.splice(0)) await engine(engineSocket, `/containers/${n}?force=true`, 'DELETE').catch(() => undefined);
    await network.stop().catch(() => undefined);
  };
  try {
    const run = randomBytes(3).toString('hex');
    const hosts: ContainerHost[] = [];
    for (const name of ['hub', 'vm1', 'vm2', 'vm3']) {
      names.push(`amime-multihost-${run}-${name}`);
      const c = await new GenericContainer(baseImage())
        .withName(names.at(-1)!)
        .withHostname(name)
        .withNetwork(network)
        .withBindMounts([{ source: workspace, target: workspace, mode: 'ro' }])
        .withCommand(['sleep', 'infinity'])
        .withPullPolicy({ shouldPull: () => false })
        .withStartupTimeout(60_000)
        .start();
      started.push(c);
      const host = new ContainerHost(name, c.getIpAddress(network.getName()), HOST_DIR, c);
      const mk = await host.run(['mkdir', '-p', HOST_DIR]);
      if (mk.code !== 0) throw new Error(`mkdir ${HOST_DIR} on ${name}: ${mk.stderr}`);
      hosts.push(host);
    }
    const [hub, vm1, vm2, vm3] = hosts as [ContainerHost, ContainerHost, ContainerHost, ContainerHost];
    return { hub, vms: { vm1, vm2, vm3 }, workspace, node: NODE, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Removes one image by name from the engine probe() found (for images a test built). */
export async function engineRemoveImage(image: string): Promise<void> {
  await engine(engineSocket, `/images/${encodeURIComponent(image)}?force=true`, 'DELETE').catch(() => undefined);
}

export const containerDriver: Driver = { probe, provision };
