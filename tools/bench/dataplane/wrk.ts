// One wrk run (Debian's wrk 4.1) against a URL, with its --latency output
// parsed into numbers. Bounded: wrk has a fixed duration and is killed (by
// its PID) if it has not exited 15 s after that.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpuSeconds } from './proc-stats.js';

export interface WrkOptions {
  url: string;
  connections: number;
  threads: number;
  durationS: number;
  /** Send `Connection: close`: every request opens a new connection. */
  close?: boolean;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Connect, read, write and timeout errors plus non-2xx/3xx responses. */
  errors: number;
  non2xx: number;
  /** CPU of wrk itself (sampled every 200 ms; the last slice may be missing). */
  wrkCpuS: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function ms(v: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v ?? '');
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
}

export function parseWrk(out: string): Omit<WrkResult, 'wrkCpuS'> {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  if (!total) throw new Error(`wrk printed no request count:\n${out}`);
  const requests = Number(total[1]);
  const seconds = ms(`${total[2]}${total[3]}`) / 1000;
  const pct = (p: string) => ms(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sockErrors = sock ? sock.slice(1, 5).reduce((a, x) => a + Number(x), 0) : 0;
  return { requests, seconds, rps: requests / seconds, p50Ms: pct('50'), p99Ms: pct('99'), errors: sockErrors + non2xx, non2xx };
}

export function runWrk(o: WrkOptions, started: (child: ChildProcess) => void = () => undefined): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', '5s', '--latency', ...(o.close ? ['-H', 'Connection: close'] : []), o.url];
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  let wrkCpuS = 0;
  const poll = setInterval(() => {
    try {
      wrkCpuS = cpuSeconds(child.pid!);
    } catch {
      // exited
    }
  }, 200);
  const kill = setTimeout(() => child.kill('SIGKILL'), (o.durationS + 15) * 1000);
  return new Promise<WrkResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearInterval(poll);
      clearTimeout(kill);
      if (code !== 0) return reject(new Error(`wrk ${args.join(' ')} exited ${code ?? signal}: ${err}${out}`));
      try {
        resolve({ ...parseWrk(out), wrkCpuS });
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
