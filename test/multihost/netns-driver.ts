// Hosts as Linux network namespaces: one namespace per host, each with a veth
// pair into a bridge in the root namespace that holds the test's own address
// on the same private /24 (so the test reaches hosts by their addresses).
// Names carry a random prefix; cleanup removes exactly the namespaces and the
// bridge it made (also after a failure) and stops only the processes it
// started or that run inside its own namespaces.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { workspace } from '../ca/fixtures/ca-process.js';
import { tail, type Host, type HostProcess, type Hosts, type RunResult } from './hosts.js';
import type { Driver } from './scenario.js';

const HOSTS = ['hub', 'vm1', 'vm2', 'vm3'] as const;
const MAX_OUTPUT = 200_000;

function ip(args: string[]): RunResult {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.error ? r.error.message : (r.stderr ?? '') };
}

function ipOrThrow(args: string[]): void {
  const r = ip(args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Why namespaces cannot be made here, or undefined: tries to add and delete one. */
async function probe(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root: ip netns add needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)';
  const v = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (v.error) return "no 'ip' command (apt-get install iproute2)";
  const name = `amhprobe${randomBytes(3).toString('hex')}`;
  const add = ip(['netns', 'add', name]);
  if (add.code !== 0) return `ip netns add failed: ${add.stderr.trim()}`;
  ip(['netns', 'del', name]);
  return undefined;
}

/** A private /24 no route on this machine covers yet: 10.{200..249}.{0..255}. */
function pickSubnet(): string {
  const routes = ip(['-4', 'route', 'show', 'table', 'all']).stdout + ip(['-4', 'addr']).stdout;
  for (let i = 0; i < 50; i++) {
    const net = `10.${200 + randomInt(50)}.${randomInt(256)}`;
    if (!routes.includes(`${net}.`)) return net;
  }
  throw new Error('no free 10.2xx.x.0/24 found in 50 tries');
}

class NetnsProcess implements HostProcess {
  #out = '';
  constructor(
    readonly what: string,
    readonly child: ChildProcess,
  ) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      this.#out = (this.#out + d).slice(-MAX_OUTPUT);
    });
  }

  async output(): Promise<string> {
    return this.#out;
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)])) === false) {
      c.kill('SIGKILL');
      await exited;
    }
  }
}

class NetnsHost implements Host {
  readonly procs: NetnsProcess[] = [];
  constructor(
    readonly name: string,
    readonly ns: string,
    readonly address: string,
    readonly dir: string,
  ) {}

  run(argv: string[], timeoutMs = 60_000): Promise<RunResult> {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', this.ns, ...argv], { cwd: workspace, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => void (stdout.length < MAX_OUTPUT * 5 && (stdout += d)));
      child.stderr.setEncoding('utf8').on('data', (d: string) => void (stderr.length < MAX_OUTPUT && (stderr += d)));
      const timer = setTimeout(() => {
        stderr += `\n(killed after ${timeoutMs} ms)`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.once('error', (err) => {
        stderr += err.message;
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  async start(what: string, argv: string[], marker: string, timeoutMs = 60_000): Promise<{ proc: HostProcess; line: Record<string, unknown> }> {
    // `ip netns exec` execs the command itself (no fork): the child's PID is the process's.
    const child = spawn('ip', ['netns', 'exec', this.ns, ...argv], { cwd: workspace, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new NetnsProcess(`${what} on ${this.name}`, child);
    this.procs.push(proc);
    let out = '';
    child.stdout!.setEncoding('utf8');
    const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${proc.what} was not ready within ${timeoutMs} ms`)), timeoutMs);
      child.stdout!.on('data', (d: string) => {
        if (out.length > 1_000_000) return;
        out += d;
        const l = out.split('\n').find((x) => x.includes(`"${marker}"`));
        if (l) {
          clearTimeout(timer);
          resolve(JSON.parse(l) as Record<string, unknown>);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${proc.what} exited (${code ?? signal}) before it was ready`));
      });
    }).catch(async (err: Error) => {
      await proc.stop();
      throw new Error(`${err.message}: ${tail(await proc.output())}`);
    });
    return { proc, line };
  }

  async writeFile(path: string, content: string, mode = 0o644): Promise<void> {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
  }

  async readFile(path: string): Promise<string> {
    return readFileSync(path, 'utf8');
  }
}

async function provision(): Promise<Hosts> {
  const prefix = `amh${randomBytes(2).toString('hex')}`;
  const root = mkdtempSync(join(tmpdir(), `amime-multihost-${prefix}-`));
  const made: { kind: 'netns' | 'link'; name: string }[] = [];
  const hosts: NetnsHost[] = [];
  const close = async (): Promise<void> => {
    for (const h of hosts) for (const p of h.procs) await p.stop().catch(() => undefined);
    // Anything still inside our own namespaces was started there by us (a child of a child).
    for (const m of made.filter((x) => x.kind === 'netns')) {
      for (const pid of ip(['netns', 'pids', m.name]).stdout.split('\n').filter((l) => /^\d+$/.test(l))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const m of made.splice(0).reverse()) ip(m.kind === 'netns' ? ['netns', 'del', m.name] : ['link', 'del', m.name]);
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const net = pickSubnet();
    const bridge = `${prefix}br`;
    ipOrThrow(['link', 'add', bridge, 'type', 'bridge']);
    made.push({ kind: 'link', name: bridge });
    ipOrThrow(['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    ipOrThrow(['link', 'set', bridge, 'up']);
    for (const [i, name] of HOSTS.entries()) {
      const ns = `${prefix}-${name}`;
      ipOrThrow(['netns', 'add', ns]);
      made.push({ kind: 'netns', name: ns });
      const veth = `${prefix}${name}`; // ≤ 15 characters (IFNAMSIZ)
      ipOrThrow(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ipOrThrow(['link', 'set', veth, 'master', bridge, 'up']);
      const address = `${net}.${i + 1}`;
      ipOrThrow(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ipOrThrow(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ipOrThrow(['-n', ns, 'link', 'set', 'lo', 'up']);
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true });
      hosts.push(new NetnsHost(name, ns, address, dir));
    }
  } catch (err) {
    await close();
    throw err;
  }
  const [hub, vm1, vm2, vm3] = hosts as [NetnsHost, NetnsHost, NetnsHost, NetnsHost];
  return { hub, vms: { vm1, vm2, vm3 }, workspace, node: process.execPath, close };
}

export const netnsDriver: Driver = { probe, provision };
