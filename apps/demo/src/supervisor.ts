// The orchestrator's child processes: started with their output prefixed by
// name (and thinned unless --verbose), tracked by PID, stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export interface Child {
  name: string;
  process: ChildProcess;
  /** Resolves with the first stdout line that is JSON with this `event`, parsed. */
  ready: Promise<Record<string, unknown>>;
}

export interface StartOptions {
  /** The JSON `event` that says it serves (e.g. listening, serving). */
  readyEvent: string;
  env?: NodeJS.ProcessEnv;
  /** Print only lines this accepts (default: all). */
  keep?: (line: string) => boolean;
}

/** Agent log lines worth a demo user's attention: lifecycle, warnings, errors, anything not JSON. */
export function agentLineWorthShowing(line: string): boolean {
  if (!line.startsWith('{')) return line.trim() !== '';
  try {
    const l = JSON.parse(line) as { level?: string | number; event?: string; reason?: string };
    if (l.event === 'control_plane_disconnected' && l.reason === 'stopped') return false; // its own shutdown
    if (typeof l.level === 'number') return l.level >= 40;
    if (l.level === 'warn' || l.level === 'error' || l.level === 'fatal') return true;
    return l.event === 'serving' || l.event === 'draining' || l.event === 'joined';
  } catch {
    return true;
  }
}

export class Supervisor {
  readonly #children: Child[] = [];
  #stopping = false;

  constructor(
    private readonly cwd: string,
    private readonly print: (line: string) => void,
  ) {}

  get stopping(): boolean {
    return this.#stopping;
  }

  /** PIDs of every child started, alive or not. */
  pids(): number[] {
    return this.#children.map((c) => c.process.pid).filter((p): p is number => p !== undefined);
  }

  start(name: string, args: string[], opts: StartOptions): Child {
    if (this.#stopping) throw new Error(`not starting ${name}: stopping`);
    const child = spawn(process.execPath, args, { cwd: this.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const prefix = `[${name}] `;
    const keep = opts.keep ?? (() => true);
    const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes(`"${opts.readyEvent}"`)) {
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>;
            if (parsed['event'] === opts.readyEvent) resolve(parsed);
          } catch {
            // not the ready line
          }
        }
        if (keep(line)) this.print(prefix + line);
      });
      child.once('exit', (code, signal) => reject(new Error(`${name} exited (${code ?? signal}) before it was ready`)));
      child.once('error', reject);
    });
    ready.catch(() => undefined);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (keep(line)) this.print(prefix + line);
    });
    child.once('exit', (code, signal) => {
      if (!this.#stopping) this.print(`${prefix}exited unexpectedly (${code ?? signal})`);
    });
    const c = { name, process: child, ready };
    this.#children.push(c);
    return c;
  }

  /** SIGTERM to every child still running, by PID, in reverse start order; SIGKILL what is left after graceMs. */
  async stopAll(graceMs: number): Promise<void> {
    this.#stopping = true;
    const running = this.#children.filter((c) => c.process.exitCode === null && c.process.signalCode === null).reverse();
    const exits = running.map((c) => once(c.process, 'exit').catch(() => undefined));
    for (const c of running) c.process.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of running) {
        if (c.process.exitCode === null && c.process.signalCode === null) {
          this.print(`[${c.name}] did not stop within ${graceMs} ms: SIGKILL`);
          c.process.kill('SIGKILL');
        }
      }
    }, graceMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }
}
