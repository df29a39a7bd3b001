// Parses the command line (node:util parseArgs, strict), runs one command and
// maps the outcome to an exit code. Flags are checked before any file or
// network is touched.
import { parseArgs } from 'node:util';
import { ControlPlaneClient, ControlPlaneClientError } from '@amime/control-plane';
import { CaClient, CaClientError } from '@amime/identity';
import type { Command, CommandContext, Options, Values } from './commands/command.js';
import { COMMANDS } from './commands/index.js';
import { caUrl, controlPlaneUrl, credentialsDir, readCredential, type AdminCredential } from './credentials.js';
import { formatDuration, parseDuration } from './duration.js';
import { CliError, EXIT, UsageError, toCliError } from './errors.js';
import { OUTPUT_FORMATS, render, type OutputFormat } from './output.js';
import { commandUsage, usage } from './usage.js';

export interface Io {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** For `apply -f -`; default process.stdin. */
  stdin?: NodeJS.ReadableStream;
}

const GLOBAL_OPTIONS: Options = {
  ca: { type: 'string' },
  'control-plane': { type: 'string' },
  credentials: { type: 'string' },
  output: { type: 'string', short: 'o' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

/** Warn when the admin SVID has less than this left. */
const RENEW_WARNING_MS = 3 * 86400_000;

function allOptions(): Options {
  const out: Options = { ...GLOBAL_OPTIONS };
  for (const c of COMMANDS) Object.assign(out, c.options);
  return out;
}

/** The command named by the first one or two positionals. */
function findCommand(positionals: readonly string[]): { command: Command; words: number } | undefined {
  const two = COMMANDS.find((c) => c.name === `${positionals[0]} ${positionals[1]}`);
  if (two) return { command: two, words: 2 };
  const one = COMMANDS.find((c) => c.name === positionals[0]);
  return one ? { command: one, words: 1 } : undefined;
}

function parse(argv: string[]): { command?: Command; values: Values; args: string[]; help: boolean } {
  // Pass 1 finds the command (every known flag declared, so flag values are not taken for words).
  const known = allOptions();
  const loose = parseArgs({ args: argv, options: known, strict: false, allowPositionals: true, tokens: true });
  for (const t of loose.tokens) {
    if (t.kind === 'option' && !(t.name in known)) throw new UsageError(`unknown option ${t.rawName}`);
  }
  const help = loose.values['help'] === true || loose.positionals[0] === 'help';
  const positionals = loose.positionals[0] === 'help' ? loose.positionals.slice(1) : loose.positionals;
  if (positionals.length === 0) {
    if (help) return { values: {}, args: [], help };
    throw new UsageError('no command given');
  }
  const found = findCommand(positionals);
  if (!found) {
    const near = COMMANDS.filter((c) => c.name.split(' ')[0] === positionals[0]).map((c) => `'${c.name}'`);
    throw new UsageError(`unknown command ${JSON.stringify(positionals.slice(0, 2).join(' '))}${near.length ? `; did you mean ${near.join(' or ')}?` : ''}`);
  }
  const { command, words } = found;
  if (help) return { command, values: {}, args: [], help };
  // Pass 2: strict, with only the global flags and this command's.
  let strict;
  try {
    strict = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...command.options }, strict: true, allowPositionals: true });
  } catch (err) {
    throw Object.assign(new UsageError(`${command.name}: ${(err as Error).message}`), { command });
  }
  const args = strict.positionals.slice(words);
  const p = command.positionals ?? { min: 0, max: 0, names: '' };
  if (args.length < p.min || args.length > p.max) {
    const expected = p.max === 0 ? 'no arguments' : `${p.names}`;
    throw Object.assign(new UsageError(`${command.name}: expected ${expected}, got ${args.length === 0 ? 'none' : args.map((a) => JSON.stringify(a)).join(' ')}`), { command });
  }
  return { command, values: strict.values as Values, args, help };
}

/** What an operator can do about a control plane refusal, by its reason. */
const CONTROL_PLANE_NEXT_STEP: Readonly<Record<string, string>> = {
  invalid_resource: 'fix the fields named above (document numbers count from 0) and apply again',
  derived_kind: 'Endpoint, TrustBundle and RevocationList are written by the control plane itself; change Services and agents instead',
  bad_kind: 'kinds: Service, Route, AuthorizationPolicy, MeshConfig (and, to read, Endpoint, TrustBundle, RevocationList)',
  not_found: "see what exists with 'meshctl get KIND -o table'",
  not_admin: 'the control plane takes only admin SVIDs (spiffe://<td>/admin/...): pass --credentials with the admin directory',
  peer_no_peer_certificate: 'the request needs a client certificate: pass --credentials DIR holding cert.pem and key.pem',
  peer_expired: "the admin SVID has expired: renew it ('meshctl admin renew')",
  peer_revoked: 'this credential is revoked; use another admin credential',
  body_too_large: 'the input is over 1 MiB: split it into several files',
  agent_not_connected: "see the connected agents with 'meshctl agents'; with several control-plane replicas, ask the one the agent is connected to (--control-plane)",
  bad_node: "node names are lowercase letters, digits and '-' ('meshctl agents' lists them)",
  internal: 'the control plane failed internally: its log has the request ID above',
  too_many_taps: 'wait for a running tap to end (each ends by its --duration), or stop one with Ctrl-C',
};
const CONTROL_PLANE_TRANSPORT_STEP: Readonly<Record<string, string>> = {
  unreachable: 'check that the control plane is running and the URL is right (--control-plane, AMIME_CONTROL_PLANE_URL or <credentials>/control-plane-url)',
  timeout: 'the control plane did not answer in time: check it is running, or raise --timeout',
  server_identity: "the server is not this trust domain's control plane: check --control-plane and that bundle.pem belongs to this mesh's CA",
  tls: "TLS failed: check that --control-plane points at the control plane's HTTPS port",
  bad_response: 'the server did not answer like the control plane: check --control-plane',
};

function fromControlPlaneError(err: ControlPlaneClientError): CliError {
  if (err.refused) {
    return new CliError(`the control plane refused: ${err.code} (${err.reason}, HTTP ${err.status}): ${err.message}`, EXIT.refused, CONTROL_PLANE_NEXT_STEP[err.reason]);
  }
  return new CliError(`${err.message} [${err.code}]`, EXIT.unreachable, CONTROL_PLANE_TRANSPORT_STEP[err.reason]);
}

export async function run(argv: string[], io: Io): Promise<number> {
  let command: Command | undefined;
  let client: CaClient | undefined;
  let controlPlane: ControlPlaneClient | undefined;
  try {
    const parsed = parse(argv);
    command = parsed.command;
    if (parsed.help) {
      io.stdout.write(command ? `usage: ${commandUsage(command)}\n  ${command.summary}\n` : usage(COMMANDS));
      return EXIT.ok;
    }
    const { values, args } = parsed;
    const format = (values['output'] ?? 'table') as OutputFormat;
    if (!OUTPUT_FORMATS.includes(format)) throw new UsageError(`-o/--output must be one of ${OUTPUT_FORMATS.join(', ')}, not ${JSON.stringify(values['output'])}`);
    const timeoutText = (values['timeout'] as string | undefined) ?? '10s';
    const timeoutSeconds = parseDuration(timeoutText);
    if (!timeoutSeconds) throw new UsageError(`--timeout must be a duration of at least 1s (e.g. 10s, 1m), not ${JSON.stringify(timeoutText)}`);

    const dir = credentialsDir(values['credentials'] as string | undefined, io.env, io.cwd);
    let cred: AdminCredential | undefined;
    let warned = false;
    const warnIfExpiring = (c: AdminCredential) => {
      const left = c.notAfter.getTime() - Date.now();
      if (warned || left >= RENEW_WARNING_MS || command?.name === 'admin renew') return;
      warned = true;
      ctx.progress(left > 0 ? `warning: the admin SVID expires in ${formatDuration(left / 1000)}: run 'meshctl admin renew'` : `warning: the admin SVID expired at ${c.notAfter.toISOString()}`);
    };
    const ctx: CommandContext = {
      values,
      args,
      format,
      env: io.env,
      cwd: io.cwd,
      credentialsDir: dir,
      progress: (line) => void io.stderr.write(`${line}\n`),
      write: (text) => void io.stdout.write(text),
      credential: () => (cred ??= readCredential(dir)),
      client: () => {
        if (client) return client;
        const c = ctx.credential();
        const url = caUrl(values['ca'] as string | undefined, io.env, dir);
        try {
          client = new CaClient({ url, bundlePem: c.bundlePem, credential: { certPem: c.certPem, keyPem: c.keyPem }, trustDomain: c.trustDomain, timeoutMs: timeoutSeconds * 1000 });
        } catch (err) {
          if (err instanceof CaClientError) throw new UsageError(err.message, `check the files in ${dir}`);
          throw err;
        }
        warnIfExpiring(c);
        return client;
      },
      controlPlane: () => {
        if (controlPlane) return controlPlane;
        const c = ctx.credential();
        const url = controlPlaneUrl(values['control-plane'] as string | undefined, io.env, dir);
        try {
          controlPlane = new ControlPlaneClient({ url, bundlePem: c.bundlePem, credential: { certPem: c.certPem, keyPem: c.keyPem }, trustDomain: c.trustDomain, timeoutMs: timeoutSeconds * 1000 });
        } catch (err) {
          if (err instanceof ControlPlaneClientError) throw new UsageError(err.message, `check the files in ${dir}`);
          throw err;
        }
        warnIfExpiring(c);
        return controlPlane;
      },
      stdin: io.stdin ?? process.stdin,
    };
    const out = await command!.run(ctx);
    io.stdout.write(render(out, format));
    return out.exitCode ?? EXIT.ok;
  } catch (err) {
    const e = err instanceof ControlPlaneClientError ? fromControlPlaneError(err) : toCliError(err);
    io.stderr.write(`meshctl: ${e.message}\n`);
    if (e.hint) io.stderr.write(`  next: ${e.hint}\n`);
    if (e instanceof UsageError) {
      const c = (err as { command?: Command }).command ?? command;
      io.stderr.write(c ? `usage: ${commandUsage(c)}\n` : `run 'meshctl --help' for the commands\n`);
    }
    return e.exitCode;
  } finally {
    client?.close();
    controlPlane?.close();
  }
}
