// CPU seconds and memory of processes, read from /proc (Linux only).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (100 on every Linux we run, but ask). */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** utime + stime of one process, in seconds. */
export function cpuSeconds(pid: number): number {
  // utime and stime are fields 14 and 15; the command name may hold spaces, so split after the last ')'.
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export interface Mem {
  rssMiB: number;
  hwmMiB: number;
}

export function memory(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

export const sumCpu = (pids: readonly number[]): number => pids.reduce((a, p) => a + cpuSeconds(p), 0);

/**
 * Samples the RSS of each pid every `everyMs` until stopped; returns the peak
 * RSS seen per pid (VmHWM covers the whole life of a process, this only the run).
 */
export function sampleRss(pids: readonly number[], everyMs = 250): { stop(): number[] } {
  const peak = pids.map((p) => memory(p).rssMiB);
  const t = setInterval(() => {
    pids.forEach((p, i) => {
      try {
        peak[i] = Math.max(peak[i]!, memory(p).rssMiB);
      } catch {
        // the process is gone: the run fails elsewhere
      }
    });
  }, everyMs);
  t.unref();
  return {
    stop: () => {
      clearInterval(t);
      pids.forEach((p, i) => {
        try {
          peak[i] = Math.max(peak[i]!, memory(p).rssMiB);
        } catch {
          // gone
        }
      });
      return peak;
    },
  };
}
