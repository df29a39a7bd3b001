// Output: tables and key/value lists for people, JSON or YAML for scripts.
// Progress and hints go to stderr, so stdout stays parseable.
import { createRequire } from 'node:module';

// yaml is loaded only when YAML is printed: most runs never need it.
const toYaml = (value: unknown): string => (createRequire(import.meta.url)('yaml') as typeof import('yaml')).stringify(value);

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** What a command prints: `data` for json/yaml, `human` for table; `raw` (e.g. PEM) for every format ('' prints nothing: a command that streamed its output). */
export interface CommandOutput {
  data?: unknown;
  human?: string;
  raw?: string;
  /** Exit with this code after printing (e.g. `check` when a check failed); default 0. */
  exitCode?: number;
}

export function render(out: CommandOutput, format: OutputFormat): string {
  if (out.raw !== undefined) return out.raw === '' || out.raw.endsWith('\n') ? out.raw : `${out.raw}\n`;
  if (format === 'json') return `${JSON.stringify(out.data ?? null, null, 2)}\n`;
  if (format === 'yaml') return toYaml(out.data ?? null);
  const human = out.human ?? (out.data === undefined ? '' : toYaml(out.data));
  return human === '' || human.endsWith('\n') ? human : `${human}\n`;
}

/** Columns padded to the widest cell; a header row in capitals. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n') + '\n';
}

/** "key:  value" lines, keys padded to the longest. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${v}`).join('\n') + '\n';
}

/** An ISO time with how far it is from now ("2025-01-01T00:00:00.000Z (in 9m)"). */
export function when(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const ms = Date.parse(iso) - now;
  if (Number.isNaN(ms)) return iso;
  const s = Math.round(Math.abs(ms) / 1000);
  const d = s >= 86400 ? `${Math.floor(s / 86400)}d` : s >= 3600 ? `${Math.floor(s / 3600)}h` : s >= 60 ? `${Math.floor(s / 60)}m` : `${s}s`;
  return `${iso} (${ms >= 0 ? `in ${d}` : `${d} ago`})`;
}
