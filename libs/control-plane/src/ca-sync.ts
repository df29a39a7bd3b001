// Keeps the control plane's copy of what the CA decides: the trust bundle,
// the revocation list and the identity assignments of every node. Polls the
// CA every intervalMs; on a change it emits an event and, for the bundle and
// the revocation list, publishes the TrustBundle / RevocationList resource
// that the push server sends to agents. A failed fetch keeps the last good
// state and is retried on the next tick; so is a failed publish.
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  bundleFingerprint,
  bundleFromPem,
  bundleToPem,
  parseRevocationSet,
  parseSpiffeBundle,
  parseTrustDomain,
  toPem,
  type Assignments,
  type CaClient,
  type RevocationSet,
  type TrustBundle,
} from '@amime/identity';
import {
  API_VERSION,
  DEFAULT_NAMESPACE,
  RESOURCE_SCHEMAS,
  validate,
  type RevocationListResource,
  type TrustBundleResource,
} from '@amime/protocol';
import { stderrLogger, type Clock, type Logger } from './credential.js';

export const DEFAULT_SYNC_INTERVAL_MS = 5000;
export const DEFAULT_SYNC_WAIT_MS = 30_000;
/** A miss in isAssigned refreshes from the CA at most this often. */
export const ASSIGNMENT_MISS_REFRESH_MS = 1000;
/** The RevocationList resource's name; there is one per mesh. */
export const REVOCATION_LIST_NAME = 'mesh';
/** After the first failure of a fetch, repeat the log line only every this many failures. */
const LOG_EVERY = 12;

export type CaSyncResource = TrustBundleResource | RevocationListResource;
/** What a sync step fetched or did; the `what` of its log lines. */
export type CaSyncSource = 'bundle' | 'revocations' | 'assignments' | 'publish';
type Source = CaSyncSource;

export interface CaSyncOptions {
  /** A client authenticated as the control plane (ControlPlaneCredential.client), or a function answering the current one. */
  client: CaClient | (() => CaClient);
  trustDomain: string;
  /** Stores a derived resource; it must be idempotent (it is called again after a failure). */
  publish(resource: CaSyncResource): Promise<void>;
  /** Default 5000. */
  intervalMs?: number;
  /** How long start() keeps trying for a first complete sync; default 30 s (plus at most one request timeout). */
  waitMs?: number;
  /** Move the client to the CA's new roots when the bundle changes (default true), so it can follow a rotation. */
  followBundle?: boolean;
  clock?: Clock;
  log?: Logger;
}

export class CaSyncError extends Error {
  readonly code: string;
  constructor(
    readonly reason: 'bad_options' | 'not_synced' | 'ca_unreachable' | 'publish_failed',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CaSyncError';
    this.code = `AMIME_ERR_CP_${reason.toUpperCase()}`;
  }
}

/** TrustBundle resource name: the trust domain as a DNS-1123 label ('.' and '_' become '-'). */
export function trustBundleName(trustDomain: string): string {
  return trustDomain.replace(/[._]/g, '-').slice(0, 63).replace(/^-+|-+$/g, '');
}

export function trustBundleResource(bundle: TrustBundle): TrustBundleResource {
  return validate(
    RESOURCE_SCHEMAS.TrustBundle,
    {
      apiVersion: API_VERSION,
      kind: 'TrustBundle',
      metadata: { name: trustBundleName(bundle.trustDomain), namespace: DEFAULT_NAMESPACE },
      spec: { trustDomain: bundle.trustDomain, roots: bundle.roots.map((r) => toPem('CERTIFICATE', r.der)) },
    },
    'TrustBundle',
  );
}

export function revocationListResource(set: RevocationSet): RevocationListResource {
  return validate(
    RESOURCE_SCHEMAS.RevocationList,
    {
      apiVersion: API_VERSION,
      kind: 'RevocationList',
      metadata: { name: REVOCATION_LIST_NAME, namespace: DEFAULT_NAMESPACE },
      // sorted, so that an equal list is an equal resource
      spec: { version: set.version, serials: [...set.serials].sort(), identities: [...set.spiffeIds].sort() },
    },
    'RevocationList',
  );
}

/** Assignments with sorted, de-duplicated IDs and nodes in order; refuses what is not Record<string, string[]>. */
function normalizeAssignments(raw: unknown): Map<string, Set<string>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('assignments: the CA answered something other than a JSON object');
  const out = new Map<string, Set<string>>();
  for (const node of Object.keys(raw).sort()) {
    const ids = (raw as Record<string, unknown>)[node];
    if (!Array.isArray(ids) || ids.some((x) => typeof x !== 'string')) throw new Error(`assignments.${node}: not an array of SPIFFE IDs`);
    if (ids.length > 0) out.set(node, new Set((ids as string[]).slice().sort()));
  }
  return out;
}

const assignmentsKey = (m: Map<string, Set<string>>): string => JSON.stringify([...m].map(([n, ids]) => [n, [...ids]]));

export class CaSync extends EventEmitter {
  readonly trustDomain: string;
  readonly intervalMs: number;
  readonly #client: () => CaClient;
  readonly #publish: (r: CaSyncResource) => Promise<void>;
  readonly #waitMs: number;
  readonly #followBundle: boolean;
  readonly #clock: Clock;
  readonly #log: Logger;

  #bundle: TrustBundle | undefined;
  #bundlePem = '';
  #revocations: RevocationSet | undefined;
  #assignments = new Map<string, Set<string>>();
  #assignmentsKey: string | undefined;
  /** JSON of the last resource publish() accepted, per kind. */
  #published = new Map<string, string>();
  #failures = new Map<Source, number>();

  #assignmentFetch: Promise<unknown> | undefined;
  #lastMissFetch = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #started = false;
  #stopped = false;

  constructor(opts: CaSyncOptions) {
    super();
    const client = opts.client;
    if (typeof client !== 'function' && (typeof client !== 'object' || client === null)) throw new CaSyncError('bad_options', 'client: a CaClient or a function answering one is required');
    this.#client = typeof client === 'function' ? client : () => client;
    if (typeof opts.publish !== 'function') throw new CaSyncError('bad_options', 'publish: a function storing TrustBundle / RevocationList resources is required');
    try {
      this.trustDomain = parseTrustDomain(opts.trustDomain);
    } catch (err) {
      throw new CaSyncError('bad_options', `trustDomain: ${(err as Error).message}`);
    }
    this.intervalMs = opts.intervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    this.#waitMs = opts.waitMs ?? DEFAULT_SYNC_WAIT_MS;
    for (const [name, v] of [['intervalMs', this.intervalMs], ['waitMs', this.#waitMs]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new CaSyncError('bad_options', `${name}: must be a positive whole number of milliseconds`);
    }
    this.#publish = opts.publish;
    this.#followBundle = opts.followBundle ?? true;
    this.#clock = opts.clock ?? Date.now;
    this.#log = opts.log ?? stderrLogger;
  }

  // ------------------------------------------------------------ views

  /** The CA's trust bundle as last fetched. Throws before start() resolved. */
  bundle(): TrustBundle {
    if (!this.#bundle) throw new CaSyncError('not_synced', 'no trust bundle yet: await start() first');
    return this.#bundle;
  }

  /** The bundle's roots as PEM (node:tls `ca`). */
  bundlePem(): string {
    this.bundle();
    return this.#bundlePem;
  }

  /** The CA's revocation list as last fetched. Throws before start() resolved: there is no safe default. */
  revocations(): RevocationSet {
    if (!this.#revocations) throw new CaSyncError('not_synced', 'no revocation list yet: await start() first');
    return this.#revocations;
  }

  /** Every node's assigned workload IDs (a copy). */
  assignments(): Assignments {
    const out: Assignments = {};
    for (const [node, ids] of this.#assignments) out[node] = [...ids];
    return out;
  }

  /**
   * Whether `spiffeId` is assigned to `node` at the CA. Answers from the
   * cache; on a miss it first refreshes from the CA, at most once per second
   * (a refresh already under way is shared), so a fresh assignment is seen
   * at once and a flood of unknown IDs costs at most one request a second.
   */
  async isAssigned(node: string, spiffeId: string): Promise<boolean> {
    if (this.#assignments.get(node)?.has(spiffeId)) return true;
    if (this.#stopped) return false;
    if (this.#assignmentFetch) await this.#assignmentFetch;
    if (this.#assignments.get(node)?.has(spiffeId)) return true;
    // Periodic polls do not count against the miss budget: an assignment made
    // just before the agent registers is found at once, not a poll later.
    if (this.#clock() - this.#lastMissFetch >= ASSIGNMENT_MISS_REFRESH_MS) {
      this.#lastMissFetch = this.#clock();
      await this.#refreshAssignments();
    }
    return this.#assignments.get(node)?.has(spiffeId) ?? false;
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * The first complete sync (bundle, revocations, assignments, publishes),
   * retried until waitMs; rejects with CaSyncError ca_unreachable after
   * that. Then polls every intervalMs until stop().
   */
  async start(): Promise<void> {
    if (this.#started) throw new CaSyncError('bad_options', 'start() was already called');
    this.#started = true;
    const deadline = this.#clock() + this.#waitMs;
    const retryMs = Math.min(this.intervalMs, 500);
    for (;;) {
      const run = this.#syncOnce();
      this.#running = run;
      const failed = await run;
      this.#running = undefined;
      if (this.#stopped) throw new CaSyncError('not_synced', 'stopped before the first sync completed');
      if (failed.length === 0) break;
      const left = deadline - this.#clock();
      if (left <= 0) {
        this.#stopped = true;
        const [what, err] = failed[0]!;
        throw new CaSyncError(
          failed.every(([w]) => w === 'publish') ? 'publish_failed' : 'ca_unreachable',
          `no complete sync with the CA within ${this.#waitMs} ms (${failed.map(([w]) => w).join(', ')} failed; ${what}: ${(err as Error).message})`,
          { cause: err },
        );
      }
      await sleep(Math.min(retryMs, left));
    }
    this.#arm();
  }

  /** Stops polling and waits for a poll in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
    await this.#assignmentFetch;
  }

  /** One poll now, outside the timer (also what the timer does). Resolves to the sources that failed. */
  async syncNow(): Promise<CaSyncSource[]> {
    return (await this.#syncOnce()).map(([what]) => what);
  }

  #arm(): void {
    if (this.#stopped) return;
    // Unref'd: the servers keep the process alive, not the poll.
    this.#timer = setTimeout(() => {
      this.#running = this.#syncOnce().finally(() => {
        this.#running = undefined;
        this.#arm();
      });
    }, this.intervalMs).unref();
  }

  // ------------------------------------------------------------ sync

  async #syncOnce(): Promise<[Source, unknown][]> {
    const client = this.#client();
    const failed: [Source, unknown][] = [];
    const [bundle, revocations, assignmentsError] = await Promise.all([
      client.bundle().then(ok, ko),
      client.revocations().then(ok, ko),
      this.#refreshAssignments(),
    ]);
    if (this.#stopped) return failed;
    if (assignmentsError !== undefined) failed.push(['assignments', assignmentsError]);
    this.#settle('revocations', failed, revocations, (v) => this.#applyRevocations(v));
    // The bundle last: following it rebuilds the client, dropping its connections.
    this.#settle('bundle', failed, bundle, (v) => this.#applyBundle(v, client));
    for (const r of this.#desired()) {
      const json = JSON.stringify(r);
      if (this.#published.get(r.kind) === json) continue;
      try {
        await this.#publish(r);
        this.#published.set(r.kind, json);
        this.#ok('publish');
      } catch (err) {
        failed.push(['publish', err]);
        this.#failed('publish', err, { kind: r.kind });
      }
    }
    return failed;
  }

  #settle<T>(what: Source, failed: [Source, unknown][], r: Settled<T>, apply: (v: T) => void): void {
    try {
      if (!r.ok) throw r.error;
      apply(r.value);
      this.#ok(what);
    } catch (err) {
      failed.push([what, err]);
      this.#failed(what, err);
    }
  }

  #desired(): CaSyncResource[] {
    const out: CaSyncResource[] = [];
    if (this.#bundle) out.push(trustBundleResource(this.#bundle));
    if (this.#revocations) out.push(revocationListResource(this.#revocations));
    return out;
  }

  #applyBundle(doc: unknown, client: CaClient): void {
    const bundle = parseSpiffeBundle(doc, this.trustDomain);
    trustBundleResource(bundle); // refuse, before keeping it, what could not be published
    const prev = this.#bundle;
    if (prev && prev.sequence === bundle.sequence && bundleFingerprint(prev) === bundleFingerprint(bundle)) return;
    const pem = bundleToPem(bundle);
    this.#bundle = bundle;
    this.#bundlePem = pem;
    if (this.#followBundle && bundleFingerprint(bundleFromPem(client.bundlePemInUse, this.trustDomain)) !== bundleFingerprint(bundle)) {
      client.updateTrust(pem);
    }
    this.#log({ event: 'ca_bundle_changed', sequence: bundle.sequence, roots: bundle.roots.length });
    this.emit('bundle', bundle, pem);
  }

  #applyRevocations(list: unknown): void {
    // strict: a list with a field missing must not read as "nothing revoked"
    const set = parseRevocationSet(list);
    revocationListResource(set);
    const prev = this.#revocations;
    if (prev && prev.version === set.version && sameSet(prev.serials, set.serials) && sameSet(prev.spiffeIds, set.spiffeIds)) return;
    this.#revocations = set;
    this.#log({ event: 'ca_revocations_changed', version: set.version, serials: set.serials.size, spiffeIds: set.spiffeIds.size });
    this.emit('revocations', set);
  }

  /**
   * Fetches every node's assignments; the poll and isAssigned misses share a
   * fetch under way. Never rejects: resolves to the error, if any.
   */
  #refreshAssignments(): Promise<unknown> {
    if (this.#assignmentFetch) return this.#assignmentFetch;
    this.#assignmentFetch = (async () => {
      try {
        const raw = await this.#client().assignments();
        if (this.#stopped) return undefined;
        const next = normalizeAssignments(raw);
        const key = assignmentsKey(next);
        this.#ok('assignments');
        if (key === this.#assignmentsKey) return undefined;
        this.#assignments = next;
        this.#assignmentsKey = key;
        this.emit('assignments', this.assignments());
        return undefined;
      } catch (err) {
        this.#failed('assignments', err);
        return err ?? new Error('assignments: fetch failed');
      }
    })().finally(() => (this.#assignmentFetch = undefined));
    return this.#assignmentFetch;
  }

  #failed(what: Source, err: unknown, extra: Record<string, unknown> = {}): void {
    const n = (this.#failures.get(what) ?? 0) + 1;
    this.#failures.set(what, n);
    if (n === 1 || n % LOG_EVERY === 0) {
      const e = err as Error & { code?: string };
      this.#log({ event: 'ca_sync_failed', what, failures: n, code: e?.code, error: e?.message ?? String(err), ...extra });
    }
  }

  #ok(what: Source): void {
    const n = this.#failures.get(what) ?? 0;
    if (n === 0) return;
    this.#failures.set(what, 0);
    this.#log({ event: 'ca_sync_recovered', what, failures: n });
  }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
const ok = <T>(value: T): Settled<T> => ({ ok: true, value });
const ko = (error: unknown): Settled<never> => ({ ok: false, error });

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
