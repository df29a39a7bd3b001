// Every process the bench starts is registered here and stopped by its own
// PID at the end, on error and on SIGINT/SIGTERM: SIGTERM, then SIGKILL after
// a grace period.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';

const started = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/** Stops one process this bench started; resolves once it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 4000): Promise<void> {
  if (!alive(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const t = setTimeout(() => alive(child) && child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((c) => stopChild(c)));
}

/**
 * Spawns a process that prints one JSON line with `"event":"<event>"` when
 * ready; resolves with that line. Rejects if it exits first or takes too long.
 */
export async function spawnReady<T>(cmd: string, args: string[], event: string, opts: SpawnOptions = {}, timeoutMs = 40_000): Promise<{ child: ChildProcess; line: T; stderr: () => string }> {
  const child = track(spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (err.length < 200_000) err += d;
  });
  const line = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')}: not ready within ${timeoutMs} ms: ${err.slice(-3000)}`)), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (out.length > 1_000_000) return;
      out += d;
      const l = out.split('\n').find((x) => x.includes(`"event":"${event}"`));
      if (l) {
        clearTimeout(timer);
        resolve(JSON.parse(l) as T);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(' ')} exited (${code ?? signal}) before it was ready: ${err.slice(-3000)}`));
    });
  });
  return { child, line, stderr: () => err };
}

/** Spawns a long-running process with its output drained (kept: the last 64 KiB of stderr, on `child.stderrTail`). */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess & { stderrTail: () => string } {
  const child = track(spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })) as ChildProcess & { stderrTail: () => string };
  let err = '';
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-65_536)));
  child.stderrTail = () => err;
  return child;
}
