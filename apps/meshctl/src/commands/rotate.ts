// Root rotation, one step at a time or all three in order:
//   prepare  — a new root and intermediate; both roots in the bundle
//   activate — sign with the new intermediate (after one bundle refresh hint,
//              so every peer holds the new root)
//   retire   — drop the old root (after every SVID signed under it expired)
// Around the steps meshctl keeps its own credential usable: it refreshes
// bundle.pem after prepare and retire, and renews the admin SVID before
// retire when it still chains to the root being retired.
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CaClientError, bundleFromPem, fromPem, verifySvid, type RotationStatus, type RotationStep } from '@amime/identity';
import { replaceFiles } from '../credentials.js';
import { formatDuration, parseDuration } from '../duration.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { keyValues, table, when } from '../output.js';
import { renewAdmin } from './admin.js';
import { str, type Command, type CommandContext } from './command.js';
import type { CommandOutput } from '../output.js';

const STEPS = ['prepare', 'activate', 'retire', 'status', 'all'] as const;
const DEFAULT_MAX_WAIT = '15m';
/** Between attempts when the CA says "too early" (clock skew) and between "still waiting" lines. */
const POLL_MS = 1_000;
const REPORT_EVERY_MS = 30_000;

/** Fetches the CA's roots; writes bundle.pem and trusts them when they changed. */
async function refreshTrust(ctx: CommandContext): Promise<boolean> {
  const cred = ctx.credential();
  const pem = await ctx.client().bundlePem();
  if (pem === cred.bundlePem) return false;
  replaceFiles(cred.dir, { 'bundle.pem': pem });
  cred.bundlePem = pem;
  ctx.client().updateTrust(pem);
  return true;
}

/** The rotation slot whose root anchors our admin SVID, if any. */
function anchorSlot(ctx: CommandContext, st: RotationStatus): string | undefined {
  const cred = ctx.credential();
  const r = verifySvid(fromPem(cred.certPem, 'CERTIFICATE'), { bundle: bundleFromPem(cred.bundlePem, cred.trustDomain) });
  if (!r.ok) return undefined;
  const fingerprint = new X509Certificate(r.path[r.path.length - 1]!.der).fingerprint256;
  return st.roots.find((x) => x.fingerprint === fingerprint)?.slot;
}

/** Before retire: an admin SVID under the old root would be locked out. */
async function keepAdminUsable(ctx: CommandContext, st: RotationStatus): Promise<void> {
  if (st.phase !== 'activated' || anchorSlot(ctx, st) !== st.oldSlot) return;
  const r = await renewAdmin(ctx);
  ctx.progress(`    renewed the admin SVID under the new root (serial ${r.serial}), so retiring the old root does not lock it out`);
}

/** The CA reports root expiry in OpenSSL's text form ("Nov 26 04:26:04 2036 GMT"). */
const isoTime = (text: string): string => {
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? text : new Date(ms).toISOString();
};

const normalized = (st: RotationStatus): RotationStatus => ({ ...st, roots: st.roots.map((r) => ({ ...r, notAfter: isoTime(r.notAfter) })) });

function describe(st: RotationStatus): string {
  const pairs: [string, string][] = [
    ['phase', st.phase],
    ['active slot', st.activeSlot],
    ['bundle sequence', String(st.bundleSequence)],
  ];
  if (st.newSlot) pairs.push(['new slot', st.newSlot], ['old slot', st.oldSlot ?? '-']);
  if (st.preparedAt) pairs.push(['prepared', when(st.preparedAt)]);
  if (st.phase === 'prepared') pairs.push(['activate from', when(st.canActivateAfter)]);
  if (st.activatedAt) pairs.push(['activated', when(st.activatedAt)]);
  if (st.phase === 'activated') pairs.push(['retire from', when(st.retireAfter)]);
  const next: Record<RotationStatus['phase'], string> = {
    steady: "next: 'meshctl rotate prepare' (or 'meshctl rotate all') starts a rotation",
    prepared: "next: 'meshctl rotate activate' once every peer has refreshed its bundle",
    activated: "next: 'meshctl rotate retire' once every SVID signed under the old root has expired",
  };
  return keyValues(pairs) + '\n' + table(['slot', 'sha-256 fingerprint', 'not after'], st.roots.map((r) => [r.slot + (r.slot === st.activeSlot ? ' (active)' : ''), r.fingerprint, isoTime(r.notAfter)])) + next[st.phase] + '\n';
}

async function runStep(ctx: CommandContext, step: RotationStep, force: boolean): Promise<RotationStatus> {
  const client = ctx.client();
  await refreshTrust(ctx);
  if (step === 'retire') await keepAdminUsable(ctx, await client.rotation());
  const st = await client.rotate(step, force);
  if (step !== 'activate') await refreshTrust(ctx);
  return st;
}

/** Sleeps until `iso` (CA time) for `what`, or fails when that is past the deadline. */
async function waitUntil(ctx: CommandContext, iso: string | undefined, what: string, step: RotationStep, phase: string, deadline: number, maxWait: string): Promise<void> {
  const until = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(until) || until <= Date.now()) return;
  if (until > deadline) {
    throw new CliError(
      `${step} is allowed from ${iso} (${formatDuration((until - Date.now()) / 1000)} from now), after ${what}; that is beyond --max-wait ${maxWait}`,
      EXIT.refused,
      `the rotation stays ${phase}: run 'meshctl rotate all' again after ${iso}, or 'meshctl rotate ${step}' then; --force skips the wait (only when every peer is ready)`,
    );
  }
  ctx.progress(`    waiting ${formatDuration((until - Date.now()) / 1000)}, until ${iso}, for ${what}`);
  let lastReport = Date.now();
  for (let left = until - Date.now(); left > 0; left = until - Date.now()) {
    await sleep(Math.min(left, POLL_MS));
    if (Date.now() - lastReport >= REPORT_EVERY_MS && until > Date.now()) {
      lastReport = Date.now();
      ctx.progress(`    still waiting, ${formatDuration((until - Date.now()) / 1000)} left`);
    }
  }
}

/** One step; a "too early" answer (our clock ahead of the CA's) is retried until the deadline. */
async function stepWhenAllowed(ctx: CommandContext, step: RotationStep, force: boolean, deadline: number): Promise<RotationStatus> {
  for (;;) {
    try {
      return await runStep(ctx, step, force);
    } catch (err) {
      if (!(err instanceof CaClientError) || err.reason !== 'rotation_too_early' || Date.now() + POLL_MS > deadline) throw err;
      await sleep(POLL_MS);
    }
  }
}

async function rotateAll(ctx: CommandContext, force: boolean): Promise<CommandOutput> {
  const maxWait = str(ctx.values, 'max-wait') ?? DEFAULT_MAX_WAIT;
  const maxWaitSeconds = parseDuration(maxWait);
  if (maxWaitSeconds === undefined) throw new UsageError(`--max-wait must be a duration (e.g. 15m, 1h, 90), not ${JSON.stringify(maxWait)}`);
  const deadline = Date.now() + maxWaitSeconds * 1000;
  const client = ctx.client();
  await refreshTrust(ctx);
  let st = await client.rotation();
  const before = st.roots.map((r) => r.fingerprint);
  if (st.phase === 'steady') {
    ctx.progress('1/3 prepare: a new root and intermediate; both roots go into the bundle');
    st = await runStep(ctx, 'prepare', false);
    ctx.progress(`    prepared slot ${st.newSlot}; the bundle holds ${st.roots.length} roots (sequence ${st.bundleSequence}); bundle.pem updated`);
  } else {
    ctx.progress(`continuing the rotation already ${st.phase} (new slot ${st.newSlot})`);
  }
  if (st.phase === 'prepared') {
    if (!force) await waitUntil(ctx, st.canActivateAfter, 'one bundle refresh, so every peer holds the new root', 'activate', st.phase, deadline, maxWait);
    ctx.progress(`2/3 activate${force ? ' (forced)' : ''}: new SVIDs are signed by the new intermediate`);
    st = await stepWhenAllowed(ctx, 'activate', force, deadline);
    ctx.progress(`    active slot ${st.activeSlot}`);
  }
  if (st.phase === 'activated') {
    await keepAdminUsable(ctx, st);
    if (!force) await waitUntil(ctx, st.retireAfter, 'every SVID signed under the old root to expire', 'retire', st.phase, deadline, maxWait);
    ctx.progress(`3/3 retire${force ? ' (forced)' : ''}: the old root leaves the bundle`);
    st = await stepWhenAllowed(ctx, 'retire', force, deadline);
    ctx.progress(`    the bundle holds ${st.roots.length} root(s) (sequence ${st.bundleSequence}); bundle.pem updated`);
  }
  const retired = before.filter((f) => !st.roots.some((r) => r.fingerprint === f));
  return {
    data: { ...normalized(st), retiredRoots: retired },
    human: `rotation complete${force ? ' (forced: peers that had not refreshed their bundle, or still hold SVIDs under the old root, must re-fetch them)' : ''}\n\n` + describe(st),
  };
}

/** What each single step does, said before it runs (rotate all says the same per step). */
const STEP_PROGRESS: Readonly<Record<RotationStep, string>> = {
  prepare: 'a new root and intermediate; both roots go into the bundle',
  activate: 'new SVIDs are signed by the new intermediate',
  retire: 'the old root leaves the bundle',
};

export const rotate: Command = {
  name: 'rotate',
  synopsis: 'prepare|activate|retire|status|all [--force] [--max-wait 15m]',
  summary: "rotate the CA's root: one step, its status, or all three steps with waits (bounded by --max-wait) for the CA's gates",
  options: { force: { type: 'boolean' }, 'max-wait': { type: 'string' } },
  positionals: { min: 1, max: 1, names: 'STEP' },
  async run(ctx) {
    const step = ctx.args[0]!;
    if (!(STEPS as readonly string[]).includes(step)) throw new UsageError(`rotate: STEP must be one of ${STEPS.join(', ')}, not ${JSON.stringify(step)}`);
    const force = ctx.values['force'] === true;
    if (ctx.values['max-wait'] !== undefined && step !== 'all') throw new UsageError('--max-wait applies to rotate all only');
    if (force && (step === 'status' || step === 'prepare')) throw new UsageError(`--force does not apply to rotate ${step}`);
    if (step === 'status') {
      const st = await ctx.client().rotation();
      return { data: normalized(st), human: describe(st) };
    }
    if (step === 'all') return rotateAll(ctx, force);
    ctx.progress(`${step}${force ? ' (forced)' : ''}: ${STEP_PROGRESS[step as RotationStep]}`);
    const st = await runStep(ctx, step as RotationStep, force);
    ctx.progress(`    done: phase ${st.phase}, active slot ${st.activeSlot}, ${st.roots.length} root(s) in the bundle (sequence ${st.bundleSequence})${step === 'activate' ? '' : '; bundle.pem updated'}`);
    return { data: normalized(st), human: `${step}${force ? ' (forced)' : ''}: done\n\n` + describe(st) };
  },
};

/** `meshctl ca rotate STEP`: the same rotation under the name the CA's other commands would have. */
export const caRotate: Command = { ...rotate, name: 'ca rotate', summary: "the same as 'meshctl rotate': rotate the CA's root, one step at a time or all three with progress" };
