// Test helper: `promtool check metrics` (Debian's prometheus package) over an
// exposition text on stdin. promtool exits 0 when the text parses and passes
// its lint (names, suffixes, units, help); it exits 3 with one line per
// problem otherwise. A missing promtool is a failure with the fix, never a skip.
import { spawn } from 'node:child_process';

export const PROMTOOL = process.env['AMIME_PROMTOOL'] ?? '/usr/bin/promtool';

export class PromtoolMissingError extends Error {
  readonly code = 'AMIME_ERR_TELEMETRY_PROMTOOL_MISSING';
  constructor(path: string) {
    super(`promtool not found at ${path}: install Debian's prometheus package (apt-get install -y --no-install-recommends prometheus), or point AMIME_PROMTOOL at a promtool binary`);
  }
}

export interface PromtoolResult {
  code: number | null;
  /** stdout and stderr together: the lint problems, one a line. */
  output: string;
}

/** Runs `promtool check metrics` with `text` on stdin. Rejects with PromtoolMissingError when there is no promtool. */
export function promtoolCheckMetrics(text: string, promtool = PROMTOOL): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(promtool, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' || err.code === 'EACCES' ? new PromtoolMissingError(promtool) : err));
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.on('error', () => undefined); // promtool may exit before reading everything; 'close' reports it
    child.stdin.end(text);
  });
}

/** Throws unless promtool accepts `text` with exit 0 and prints nothing. `what` names the source in the message. */
export async function assertPromtoolClean(text: string, what: string): Promise<void> {
  const r = await promtoolCheckMetrics(text);
  if (r.code !== 0 || r.output.trim() !== '') {
    throw new Error(`promtool check metrics on ${what}: exit ${r.code}\n${r.output.trim()}`);
  }
}
