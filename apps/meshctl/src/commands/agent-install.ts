// `meshctl agent install`: sets a VM up to run the bundled agent under
// systemd. Every flag is checked, the trust bundle is read (or fetched with a
// pinned root), and agent.yaml is validated by the agent's own schema before
// anything is written; then each file is written atomically (temp file, fsync,
// rename) with its mode. --dry-run prints every file and writes nothing.
//
// Exit codes: 0 ok, 64 a bad flag (named), 78 a bad config (the field named),
// 73 a path that cannot be written (named); 1/2 when the CA refuses or cannot
// be reached while fetching the bundle.
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { bundleFromPem, fromPem, peerChain, trustDomainFromPem, verifySvid } from '@amime/identity';
import { dns1123Name, safeValidate } from '@amime/protocol';
import { CliError, EXIT, UsageError } from '../errors.js';
import { keyValues } from '../output.js';
import { str, type Command, type CommandContext } from './command.js';

/** sysexits.h: EX_CANTCREAT (a file or directory cannot be written). */
export const EX_CANTCREAT = EXIT.cantCreate;
/** sysexits.h: EX_CONFIG (the agent config, the bundle or the workloads are invalid). */
export const EX_CONFIG = EXIT.config;

/** The control plane's WebSocket push path (PUSH_PATH in @amime/protocol/server). */
const PUSH_PATH = '/v1/push';
const UNIT_NAME = 'amime-agent.service';
const MAX_INPUT_BYTES = 1024 * 1024;
const USER_PATTERN = /^[a-z_][a-z0-9_-]{0,30}$/;
const TOKEN_PATTERN = /^[\x21-\x7e]{1,1024}$/;

const configError = (message: string, hint?: string) => new CliError(message, EX_CONFIG, hint);
const cannotWrite = (path: string, err: unknown) =>
  new CliError(`cannot write ${path}: ${(err as Error).message}`, EX_CANTCREAT, 'run as root (sudo), or point --prefix/--data-dir/--install-dir/--unit-path at writable paths');

/** This workspace's root (the nearest directory up from this file holding nx.json), for the default --agent-bundle. */
function workspaceRoot(cwd: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'nx.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return cwd;
    dir = up;
  }
}

/** The agent library (its config schema and node flags), loaded only by this command. */
async function agentLib(): Promise<typeof import('@amime/agent')> {
  // meshctl writes the agent's own config, so it validates it with the agent's own schema
  // (one source of truth for the fields and their messages). Loaded only by this command.
  // eslint-disable-next-line @nx/enforce-module-boundaries
  return import('@amime/agent');
}

// ------------------------------------------------------------ flags

export interface InstallOptions {
  node: string;
  caUrl: string;
  pushUrl: string;
  token: string;
  advertise: string;
  inboundPort: number;
  adminAddress: string;
  adminPort: number;
  prefix: string;
  dataDir: string;
  installDir: string;
  unitPath: string;
  agentBundle: string;
  nodeBinary: string;
  user: string;
  dryRun: boolean;
}

function port(values: CommandContext['values'], name: string, fallback: number): number {
  const text = str(values, name);
  if (text === undefined) return fallback;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(`--${name} must be a port from 0 to 65535, not ${JSON.stringify(text)}`);
  return Number(text);
}

function absolutePath(values: CommandContext['values'], name: string, fallback: string): string {
  const p = str(values, name) ?? fallback;
  if (!isAbsolute(p)) throw new UsageError(`--${name} must be an absolute path (systemd needs one), not ${JSON.stringify(p)}`);
  return resolve(p);
}

function ip(values: CommandContext['values'], name: string, fallback: string | undefined, hint: string): string {
  const v = str(values, name) ?? fallback;
  if (v === undefined) throw new UsageError(`--${name} is required: ${hint}`);
  if (isIP(v) === 0) throw new UsageError(`--${name} must be an IP address, not ${JSON.stringify(v)}`);
  return v;
}

/** The CA URL: https://HOST:PORT (a trailing slash is dropped). */
export function parseCaUrl(text: string | undefined): string {
  if (text === undefined) throw new UsageError('--ca is required: the CA this agent joins, e.g. --ca https://ca.internal:8443');
  if (!/^https:\/\/[^/\s]+\/?$/.test(text)) throw new UsageError(`--ca must be https://HOST:PORT, not ${JSON.stringify(text)}`);
  return text.replace(/\/$/, '');
}

/** The push URL from --control-plane: wss://HOST:PORT/v1/push as is, or https://HOST:PORT (or wss://HOST:PORT) with the push path added. */
export function parsePushUrl(text: string | undefined): string {
  if (text === undefined) throw new UsageError(`--control-plane is required: the control plane's push URL, e.g. --control-plane wss://cp.internal:8444${PUSH_PATH} (or https://HOST:PORT)`);
  const m = /^(https|wss):\/\/([^/\s]+?)(\/v1\/push)?\/?$/.exec(text);
  if (!m) throw new UsageError(`--control-plane must be wss://HOST:PORT${PUSH_PATH} or https://HOST:PORT, not ${JSON.stringify(text)}`);
  return `wss://${m[2]}${PUSH_PATH}`;
}

/** A SHA-256 fingerprint as `meshctl bundle show` prints it (AB:CD:...), or plain hex, optionally prefixed sha256: → lowercase hex. */
export function parseFingerprint(text: string): string {
  const hex = text.replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new UsageError(`--ca-fingerprint must be a SHA-256 fingerprint (64 hex digits, colons allowed, as 'meshctl bundle show' prints it), not ${JSON.stringify(text)}`);
  return hex;
}

function readToken(values: CommandContext['values'], cwd: string): string {
  const token = str(values, 'token');
  const file = str(values, 'token-file');
  if (token !== undefined && file !== undefined) throw new UsageError('give --token or --token-file, not both');
  if (token === undefined && file === undefined) throw new UsageError("--token (or --token-file) is required: the one-time join token from 'meshctl token create --node NAME'");
  let text = token;
  if (file !== undefined) {
    try {
      text = readFileSync(resolve(cwd, file), 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  const flag = file !== undefined ? '--token-file' : '--token';
  if (!TOKEN_PATTERN.test(text!)) throw new UsageError(`${flag}: the join token must be 1-1024 printable characters without spaces`);
  return text!;
}

/** Checks every flag (nothing is read but the token file, nothing is written). */
export function installOptions(ctx: Pick<CommandContext, 'values' | 'cwd'>): InstallOptions {
  const v = ctx.values;
  const node = str(v, 'node');
  if (node === undefined) throw new UsageError('--node is required: this VM\'s node name, the one the join token was made for');
  if (!safeValidate(dns1123Name, node).ok) throw new UsageError(`--node must be a DNS-1123 label (at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit), not ${JSON.stringify(node)}`);
  const caUrl = parseCaUrl(str(v, 'ca'));
  const pushUrl = parsePushUrl(str(v, 'control-plane'));
  const token = readToken(v, ctx.cwd);
  const advertise = ip(v, 'advertise', undefined, 'the IP address other agents reach this VM on, e.g. --advertise 10.0.0.5');
  if (/^(0\.0\.0\.0|::)$/.test(advertise)) throw new UsageError(`--advertise must be an address peers can reach, not the unspecified address ${advertise}`);
  const inboundPort = port(v, 'inbound-port', 15443);
  const adminAddress = ip(v, 'admin-address', '127.0.0.1', '');
  const adminPort = port(v, 'admin-port', 15000);
  const user = str(v, 'user') ?? 'amime';
  if (!USER_PATTERN.test(user)) throw new UsageError(`--user must be a system user name (lowercase letters, digits, "_" and "-"), not ${JSON.stringify(user)}`);
  const agentBundle = resolve(ctx.cwd, str(v, 'agent-bundle') ?? join(workspaceRoot(ctx.cwd), 'dist', 'apps', 'agent', 'main.mjs'));
  if (!existsSync(agentBundle) || !statSync(agentBundle).isFile()) {
    throw new UsageError(`--agent-bundle: ${agentBundle} does not exist`, 'build the agent bundle with `npx nx run agent:build` (it writes dist/apps/agent/main.mjs), or pass --agent-bundle FILE');
  }
  const nodeBinary = absolutePath(v, 'node-binary', process.execPath);
  if (!existsSync(nodeBinary)) throw new UsageError(`--node-binary: ${nodeBinary} does not exist`);
  return {
    node,
    caUrl,
    pushUrl,
    token,
    advertise,
    inboundPort,
    adminAddress,
    adminPort,
    prefix: absolutePath(v, 'prefix', '/etc/amime'),
    dataDir: absolutePath(v, 'data-dir', '/var/lib/amime'),
    installDir: absolutePath(v, 'install-dir', '/opt/amime'),
    unitPath: absolutePath(v, 'unit-path', `/etc/systemd/system/${UNIT_NAME}`),
    agentBundle,
    nodeBinary,
    user,
    dryRun: v['dry-run'] === true,
  };
}

// ------------------------------------------------------------ the trust bundle

/** The roots in `pem` as a check that it is a SPIFFE trust bundle; its trust domain. */
function checkBundle(pem: string, from: string): string {
  let td: string | undefined;
  try {
    td = trustDomainFromPem(pem);
  } catch (err) {
    throw configError(`${from} is not a trust bundle: ${(err as Error).message}`, "use the CA's bundle: 'meshctl bundle show --format pem > bundle.pem' on an admin host");
  }
  if (!td) throw configError(`${from} is not a trust bundle: it holds no root certificate with a spiffe:// URI SAN`, "use the CA's bundle: 'meshctl bundle show --format pem > bundle.pem' on an admin host");
  try {
    bundleFromPem(pem, td);
  } catch (err) {
    throw configError(`${from} is not a usable trust bundle: ${(err as Error).message}`);
  }
  return td;
}

/** SHA-256 fingerprints (lowercase hex) of the bundle's roots. */
function rootFingerprints(pem: string): string[] {
  return fromPem(pem, 'CERTIFICATE').map((der) => createHash('sha256').update(der).digest('hex'));
}

function checkPin(pem: string, pin: string | undefined, from: string): void {
  if (pin === undefined) return;
  const have = rootFingerprints(pem);
  if (!have.includes(pin)) {
    throw configError(
      `${from}: no root matches --ca-fingerprint ${pin}; its roots are ${have.join(', ')}`,
      "check the fingerprint against 'meshctl bundle show' on an admin host; a mismatch can mean the server is not your CA",
    );
  }
}

/**
 * GET <ca>/v1/bundle?format=pem before we trust anything, then trust it only
 * if one root matches the pinned fingerprint and the server proved, under
 * those roots, that it is spiffe://<td>/control-plane/ca.
 */
export async function fetchPinnedBundle(caUrl: string, pin: string, timeoutMs: number): Promise<string> {
  const u = new URL(`${caUrl}/v1/bundle?format=pem`);
  const { status, body, chain } = await new Promise<{ status: number; body: string; chain: Buffer[] }>((done, fail) => {
    const req = https.request(
      // No trust yet: the pin and the SVID check below decide; nothing secret is sent.
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'GET', rejectUnauthorized: false, minVersion: 'TLSv1.3', agent: false, timeout: timeoutMs },
      (res) => {
        const chain = peerChain(res.socket as TLSSocket);
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
          if (body.length > MAX_INPUT_BYTES) res.destroy(new Error('the answer is over 1 MiB'));
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, body, chain }));
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', fail);
    req.end();
  }).catch((err: unknown) => {
    throw new CliError(`cannot fetch the trust bundle from ${caUrl}: ${(err as Error).message}`, 2, 'check that the CA is running and --ca is right');
  });
  const getIt = "on an admin host run 'meshctl bundle show --format pem > bundle.pem', copy it to this VM and pass --bundle bundle.pem";
  if (status === 401 || status === 403) {
    throw new CliError(`the CA at ${caUrl} serves its bundle only to mesh members (GET /v1/bundle answered ${status}), and this VM has no SVID yet`, 1, getIt);
  }
  if (status !== 200) throw new CliError(`GET ${u.href} answered HTTP ${status}`, 2, getIt);
  const from = `the bundle from ${caUrl}`;
  checkPin(body, pin, from);
  const td = checkBundle(body, from);
  const peer = verifySvid(chain, { bundle: bundleFromPem(body, td) });
  const expected = `spiffe://${td}/control-plane/ca`;
  if (!peer.ok || peer.spiffeId !== expected) {
    throw new CliError(`the server at ${caUrl} did not prove it is ${expected} under the pinned roots (${peer.ok ? peer.spiffeId : `${peer.reason}: ${peer.message}`})`, 2, 'check --ca; do not install with a bundle you cannot verify');
  }
  return body;
}

/**
 * The trust bundle, never trusted on first use: --bundle FILE; else the CA's
 * current bundle fetched with the admin credential (the CA verified under the
 * admin's local bundle) when meshctl has one; else fetched and checked
 * against --ca-fingerprint. Without any of these: refused.
 */
async function trustBundle(ctx: CommandContext, o: InstallOptions): Promise<{ pem: string; source: string }> {
  const file = str(ctx.values, 'bundle');
  const pinText = str(ctx.values, 'ca-fingerprint');
  const pin = pinText === undefined ? undefined : parseFingerprint(pinText);
  if (file !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(resolve(ctx.cwd, file), 'utf8');
    } catch (err) {
      throw new UsageError(`--bundle: cannot read ${file}: ${(err as Error).message}`);
    }
    checkBundle(pem, file);
    checkPin(pem, pin, file);
    return { pem, source: file };
  }
  if (existsSync(join(ctx.credentialsDir, 'bundle.pem')) && existsSync(join(ctx.credentialsDir, 'cert.pem'))) {
    const pem = await ctx.client().bundlePem();
    checkBundle(pem, `the bundle from ${o.caUrl}`);
    checkPin(pem, pin, `the bundle from ${o.caUrl}`);
    return { pem, source: `${o.caUrl} (verified with the admin credential in ${ctx.credentialsDir})` };
  }
  if (pin === undefined) {
    throw new UsageError(
      '--bundle is required (or --ca-fingerprint to fetch it from the CA): meshctl never trusts a CA on first use',
      "on an admin host run 'meshctl bundle show --format pem > bundle.pem' and pass --bundle bundle.pem, or pass --ca-fingerprint with a root's SHA-256 fingerprint from 'meshctl bundle show'",
    );
  }
  return { pem: await fetchPinnedBundle(o.caUrl, pin, 10_000), source: `${o.caUrl} (root pinned by --ca-fingerprint)` };
}

// ------------------------------------------------------------ what gets written

/** `node <flags> agent.mjs run --config ... --token-file ...`, as argv. */
export function execStartArgs(o: Pick<InstallOptions, 'nodeBinary' | 'installDir' | 'prefix'>, nodeFlags: readonly string[]): string[] {
  return [o.nodeBinary, ...nodeFlags, join(o.installDir, 'agent.mjs'), 'run', '--config', join(o.prefix, 'agent.yaml'), '--token-file', join(o.prefix, 'token')];
}

/** One argument as systemd reads it: bare when safe, else double-quoted with \, ", % and $ escaped. */
export function systemdQuote(arg: string): string {
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(arg)) return arg;
  return `"${arg.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`;
}

export function unitFile(o: InstallOptions, nodeFlags: readonly string[]): string {
  const privileged = o.inboundPort > 0 && o.inboundPort < 1024;
  const caps = privileged ? 'CAP_NET_BIND_SERVICE' : '';
  return `# Written by 'meshctl agent install'. Re-run it to change this file.
[Unit]
Description=amime mesh agent (node ${o.node}, config ${join(o.prefix, 'agent.yaml')})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=${o.user}
ExecStart=${execStartArgs(o, nodeFlags).map(systemdQuote).join(' ')}
Restart=always
RestartSec=2
# 64 bad flags, 78 bad config: restarting cannot fix these, the journal says what to.
RestartPreventExitStatus=64 78
# The agent drains open requests for up to 10s on SIGTERM.
TimeoutStopSec=15
LimitNOFILE=65536
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
ReadWritePaths=${systemdQuote(o.dataDir)}
CapabilityBoundingSet=${caps}
AmbientCapabilities=${caps}

[Install]
WantedBy=multi-user.target
`;
}

interface PlannedFile {
  path: string;
  mode: number;
  /** What the file is, for progress and dry-run. */
  what: string;
  /** Owned by --user (when run as root) rather than root. */
  userOwned: boolean;
  content?: string;
  /** Copied from this file instead of `content`. */
  copyOf?: string;
  /** Never printed (the join token). */
  secret?: boolean;
}

interface PlannedDir {
  path: string;
  mode: number;
  userOwned: boolean;
  /** Created if missing; its mode and owner left alone if it exists (e.g. /etc/systemd/system). */
  shared?: boolean;
}

/** agent.yaml's text, and the config as the agent will read it (validated). */
async function agentYaml(ctx: CommandContext, o: InstallOptions): Promise<string> {
  const { parseAgentConfig } = await agentLib();
  let workloads: unknown = [];
  const file = str(ctx.values, 'workloads');
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(resolve(ctx.cwd, file), 'utf8');
    } catch (err) {
      throw new UsageError(`--workloads: cannot read ${file}: ${(err as Error).message}`);
    }
    if (text.length > MAX_INPUT_BYTES) throw configError(`--workloads: ${file} is over 1 MiB`);
    try {
      workloads = yaml().parse(text, { maxAliasCount: 0 }) ?? [];
    } catch (err) {
      throw configError(`--workloads: ${file} is not valid YAML or JSON: ${(err as Error).message}`);
    }
    if (workloads && typeof workloads === 'object' && !Array.isArray(workloads) && 'workloads' in workloads) workloads = (workloads as { workloads: unknown }).workloads;
    if (!Array.isArray(workloads)) throw configError(`--workloads: ${file} must hold a list of workloads (or an object with a workloads: list)`, 'see docs/operations/agent-install.md for an example');
  }
  const doc = {
    node: o.node,
    dataDir: o.dataDir,
    ca: { url: o.caUrl, bundle: join(o.prefix, 'bundle.pem') },
    controlPlane: { url: o.pushUrl },
    inbound: { address: '0.0.0.0', port: o.inboundPort, advertise: o.advertise },
    admin: { address: o.adminAddress, port: o.adminPort },
    workloads,
  };
  const text = `# Written by 'meshctl agent install' for node ${o.node}; the agent reads it at start.\n# Schema: libs/agent/src/config/agent-config.ts. Workloads came from ${file ?? '(none)'}.\n${yaml().stringify(doc)}`;
  try {
    await parseAgentConfig(text, o.prefix, file === undefined ? 'agent config' : `agent config (workloads from ${file})`);
  } catch (err) {
    throw configError((err as Error).message, file === undefined ? undefined : `fix the field named above in ${file} (workloads[N] is the N-th entry, from 0)`);
  }
  return text;
}

const yaml = (): typeof import('yaml') => createRequire(import.meta.url)('yaml') as typeof import('yaml');

function plan(o: InstallOptions, yamlText: string, bundlePem: string, nodeFlags: readonly string[]): { dirs: PlannedDir[]; files: PlannedFile[] } {
  return {
    dirs: [
      { path: o.prefix, mode: 0o700, userOwned: true },
      { path: o.dataDir, mode: 0o700, userOwned: true },
      // Code, not secrets: root-owned and world-readable, so the agent cannot replace its own program.
      { path: o.installDir, mode: 0o755, userOwned: false },
      { path: dirname(o.unitPath), mode: 0o755, userOwned: false, shared: true },
    ],
    files: [
      { path: join(o.prefix, 'agent.yaml'), mode: 0o644, what: 'agent config', userOwned: true, content: yamlText },
      { path: join(o.prefix, 'bundle.pem'), mode: 0o644, what: 'trust bundle', userOwned: true, content: bundlePem },
      { path: join(o.prefix, 'token'), mode: 0o600, what: 'join token (first join only)', userOwned: true, content: `${o.token}\n`, secret: true },
      { path: join(o.installDir, 'agent.mjs'), mode: 0o644, what: 'agent bundle', userOwned: false, copyOf: o.agentBundle },
      { path: o.unitPath, mode: 0o644, what: 'systemd unit', userOwned: false, content: unitFile(o, nodeFlags) },
    ],
  };
}

// ------------------------------------------------------------ writing

/** uid and gid of `user` from /etc/passwd. */
function lookupUser(user: string): { uid: number; gid: number } {
  let passwd = '';
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    // no passwd file: treated as an unknown user
  }
  const line = passwd.split('\n').find((l) => l.split(':')[0] === user);
  if (!line) throw new UsageError(`--user: there is no user ${JSON.stringify(user)} on this host`, `create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${user}`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function makeDir(d: PlannedDir, owner: { uid: number; gid: number } | undefined): void {
  try {
    const existed = existsSync(d.path);
    mkdirSync(d.path, { recursive: true, mode: d.mode });
    if (d.shared && existed) return;
    chmodSync(d.path, d.mode);
    if (owner && d.userOwned) chownSync(d.path, owner.uid, owner.gid);
  } catch (err) {
    throw cannotWrite(d.path, err);
  }
}

/** Temp file beside the target, fsync, mode and owner, rename, fsync the directory. */
function writeAtomic(f: PlannedFile, data: Buffer, owner: { uid: number; gid: number } | undefined): void {
  const tmp = join(dirname(f.path), `.${basename(f.path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', f.mode);
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, f.mode);
    if (owner && f.userOwned) chownSync(tmp, owner.uid, owner.gid);
    renameSync(tmp, f.path);
    const dfd = openSync(dirname(f.path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw cannotWrite(f.path, err);
  }
}

const octal = (mode: number) => `0${mode.toString(8)}`;

function nextSteps(o: InstallOptions): string[] {
  const admin = `http://${o.adminAddress.includes(':') ? `[${o.adminAddress}]` : o.adminAddress}:${o.adminPort}`;
  return [
    `systemctl daemon-reload && systemctl enable --now ${basename(o.unitPath)}`,
    `curl -fsS ${admin}/ready`,
    `journalctl -u ${basename(o.unitPath, '.service')} -f`,
  ];
}

export const agentInstall: Command = {
  name: 'agent install',
  synopsis:
    '--node NAME --ca https://HOST:PORT --control-plane wss://HOST:PORT/v1/push --token T|--token-file F --advertise IP [--bundle FILE | --ca-fingerprint SHA256] [--workloads FILE] [--inbound-port 15443] [--admin-address 127.0.0.1] [--admin-port 15000] [--prefix /etc/amime] [--data-dir /var/lib/amime] [--install-dir /opt/amime] [--unit-path /etc/systemd/system/amime-agent.service] [--agent-bundle FILE] [--node-binary PATH] [--user amime] [--dry-run]',
  summary: 'set this VM up to run the agent under systemd: agent config, trust bundle, join token, agent bundle and unit (--dry-run prints them)',
  options: {
    node: { type: 'string' },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    bundle: { type: 'string' },
    'ca-fingerprint': { type: 'string' },
    advertise: { type: 'string' },
    'inbound-port': { type: 'string' },
    'admin-address': { type: 'string' },
    'admin-port': { type: 'string' },
    workloads: { type: 'string' },
    prefix: { type: 'string' },
    'data-dir': { type: 'string' },
    'install-dir': { type: 'string' },
    'unit-path': { type: 'string' },
    'agent-bundle': { type: 'string' },
    'node-binary': { type: 'string' },
    user: { type: 'string' },
    'dry-run': { type: 'boolean' },
  },
  async run(ctx) {
    const o = installOptions(ctx);
    const { AGENT_NODE_FLAGS } = await agentLib();
    const bundle = await trustBundle(ctx, o);
    const yamlText = await agentYaml(ctx, o);
    const { dirs, files } = plan(o, yamlText, bundle.pem, AGENT_NODE_FLAGS);
    const execStart = execStartArgs(o, AGENT_NODE_FLAGS);
    const next = nextSteps(o);
    const roots = fromPem(bundle.pem, 'CERTIFICATE').map((der) => new X509Certificate(der).fingerprint256);

    if (o.dryRun) {
      const shown = files.map((f) => {
        if (f.copyOf !== undefined) {
          const data = readFileSync(f.copyOf);
          return { path: f.path, mode: octal(f.mode), what: f.what, content: `(a copy of ${f.copyOf}: ${data.length} bytes, sha256 ${createHash('sha256').update(data).digest('hex')})` };
        }
        return { path: f.path, mode: octal(f.mode), what: f.what, content: f.secret ? `(the join token, ${o.token.length} characters; not shown)` : f.content! };
      });
      return {
        data: { dryRun: true, node: o.node, bundleSource: bundle.source, roots, directories: dirs.map((d) => ({ path: d.path, mode: octal(d.mode) })), files: shown, execStart, next },
        human:
          `dry run: nothing written. meshctl agent install would write:\n\n` +
          dirs.map((d) => `directory ${d.path} (mode ${octal(d.mode)}${d.shared ? ', if missing' : ''})\n`).join('') +
          shown.map((f) => `\n==> ${f.path} (mode ${f.mode}, ${f.what}) <==\n${f.content.endsWith('\n') ? f.content : `${f.content}\n`}`).join('') +
          `\ntrust bundle from ${bundle.source}; roots (sha-256): ${roots.join(', ')}\n`,
      };
    }

    const root = typeof process.getuid === 'function' && process.getuid() === 0;
    const owner = root ? lookupUser(o.user) : undefined;
    if (!root) ctx.progress(`note: not running as root: files stay owned by uid ${process.getuid?.() ?? '?'}; the unit runs as ${o.user}, which must be able to read ${o.prefix} and write ${o.dataDir}`);
    for (const p of [o.nodeBinary, o.installDir, o.prefix, o.dataDir]) {
      if (/^\/(home|root)(\/|$)/.test(p)) ctx.progress(`warning: ${p} is under /home or /root, which the unit hides (ProtectHome=yes): use --node-binary /usr/bin/node and paths outside /home`);
    }
    for (const d of dirs) {
      makeDir(d, owner);
      ctx.progress(`directory ${d.path} (${octal(d.mode)}) ... ok`);
    }
    for (const f of files) {
      let data: Buffer;
      if (f.copyOf !== undefined) {
        try {
          data = readFileSync(f.copyOf);
        } catch (err) {
          throw new UsageError(`--agent-bundle: cannot read ${f.copyOf}: ${(err as Error).message}`);
        }
      } else data = Buffer.from(f.content!);
      writeAtomic(f, data, owner);
      ctx.progress(`writing ${f.path} (${f.what}, ${octal(f.mode)}) ... ok`);
    }
    const written = files.map((f) => ({ path: f.path, mode: octal(f.mode), what: f.what }));
    return {
      data: { node: o.node, bundleSource: bundle.source, roots, files: written, execStart, next },
      human:
        keyValues([
          ['node', o.node],
          ['config', join(o.prefix, 'agent.yaml')],
          ['trust bundle', `${bundle.source}; roots ${roots.join(', ')}`],
          ['unit', o.unitPath],
        ]) +
        `\nnext:\n  ${next[0]}\ncheck:\n  ${next[1]}        # 200 once it joined and has its SVIDs\n  ${next[2]}\n` +
        `the token in ${join(o.prefix, 'token')} is used once, at the first join; after that the agent renews with its SVID.\n`,
    };
  },
};
