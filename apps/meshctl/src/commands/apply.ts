// `meshctl apply -f FILE|-`: send Services, Routes, AuthorizationPolicies
// and MeshConfigs (YAML documents or JSON) to the control plane; print what
// each became. The control plane validates; invalid input changes nothing.
import { readFileSync, statSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { DEFAULT_MAX_RESOURCE_BYTES } from '@amime/protocol';
import type { ControlPlaneClient } from '@amime/control-plane';
import { UsageError } from '../errors.js';
import { str, type Command, type CommandContext } from './command.js';

type ApplyOutcome = Awaited<ReturnType<ControlPlaneClient['apply']>>;

/** The input is refused above this size here, before a round trip (the server's limit too). */
const MAX_INPUT_BYTES = DEFAULT_MAX_RESOURCE_BYTES;

async function readStdin(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_INPUT_BYTES) throw new UsageError(`standard input is over ${MAX_INPUT_BYTES} bytes`, 'split the input into several files');
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readInput(ctx: CommandContext, file: string): Promise<string> | string {
  if (file === '-') return readStdin(ctx.stdin);
  const path = resolve(ctx.cwd, file);
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UsageError(`-f ${file}: not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`-f ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (size > MAX_INPUT_BYTES) throw new UsageError(`-f ${file}: ${size} bytes is over the ${MAX_INPUT_BYTES}-byte limit`, 'split the input into several files');
  return readFileSync(path, 'utf8');
}

/** JSON by extension (.json), else YAML by extension (.yaml, .yml), else by the first character. */
export function inputFormat(file: string, text: string): 'yaml' | 'json' {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return /^\s*[[{]/.test(text) ? 'json' : 'yaml';
}

export function applyLines(out: ApplyOutcome): string {
  const suffix = out.dryRun ? ' (dry run)' : '';
  return out.results.map((r) => `${r.kind} ${r.namespace}/${r.name} ${r.action}${r.version && !out.dryRun ? ` (version ${r.version})` : ''}${suffix}\n`).join('');
}

export const apply: Command = {
  name: 'apply',
  synopsis: '-f FILE|- [--dry-run]',
  summary: 'create or update Services, Routes, AuthorizationPolicies and MeshConfig from YAML or JSON (- reads stdin)',
  options: { file: { type: 'string', short: 'f' }, 'dry-run': { type: 'boolean' } },
  async run(ctx) {
    const file = str(ctx.values, 'file');
    if (file === undefined || file === '') throw new UsageError('-f FILE is required (- for standard input)');
    const text = await readInput(ctx, file);
    if (text.trim() === '') throw new UsageError(`${file === '-' ? 'standard input' : file} is empty: nothing to apply`);
    const dryRun = ctx.values['dry-run'] === true;
    const out = await ctx.controlPlane().apply(text, inputFormat(file, text), dryRun);
    for (const w of out.warnings) ctx.progress(`warning: ${w}`);
    return { data: out, human: applyLines(out) };
  },
};
