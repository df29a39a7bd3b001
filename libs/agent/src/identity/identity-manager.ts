// The node agent's identities: its own X.509-SVID spiffe://<td>/agent/<node>
// and one SVID per workload identity assigned to the node, each renewed at
// renewAt × its lifetime (± jitter) with a fresh key, plus the trust roots
// and the revocation list peers are checked against.
//
// - The agent SVID and its key persist in <dir>/identity/ (svid-files.ts), so
//   a restarted VM comes back with its SVID and needs no join token; the
//   one-time token is used only when no usable SVID is stored, and is
//   dropped as soon as the join is done. Renewals authenticate with the
//   current agent SVID over mTLS.
// - Workload keys live in memory only: they are made anew at every start
//   and renewal, and a restart costs one CA request per workload, while no
//   workload key ever touches the disk.
// - Keys are generated here; only CSRs go to the CA.
// - Every CA request goes through one queue: CaClient drops its open
//   connections when its credential or trust changes, which would break a
//   request running in parallel.
// - TLS material is built once per rotation or trust change (contextFor).
import { EventEmitter } from 'node:events';
import { X509Certificate, generateKeyPair as generateKeyPairCb, type KeyObject } from 'node:crypto';
import type tls from 'node:tls';
import {
  CaClient,
  CaClientError,
  EMPTY_REVOCATIONS,
  bundleFingerprint,
  bundleFromPem,
  bundleToPem,
  createCsr,
  createRevocationSet,
  createTrustBundle,
  exportPrivateKeyPem,
  formatSpiffeId,
  fromPem,
  keyPairFromPrivateKey,
  parseCertificate,
  parseSpiffeId,
  parseTrustDomain,
  svidTlsOptions,
  trustDomainFromPem,
  verifySvid,
  type KeyAlgorithm,
  type KeyPair,
  type ParsedCertificate,
  type RevocationSet,
  type RevocationSetJson,
  type SvidTlsOptions,
  type TrustBundle,
} from '@amime/identity';
import { systemClock, type Clock } from './clock.js';
import { IdentityError } from './errors.js';
import { DEFAULT_RENEWAL_POLICY, checkRenewalPolicy, renewalTime, retryAfterFailure, type RenewalPolicy } from './renewal-schedule.js';
import { ensurePrivateDir, identityPaths, readStoredAgent, readStoredBundle, writeStoredAgent, writeStoredBundle, type IdentityPaths } from './svid-files.js';

export type IdentityLogLevel = 'info' | 'warn' | 'error';
/** One structured log line; never carries a key or a token. */
export type IdentityLogger = (fields: { level: IdentityLogLevel; event: string; [field: string]: unknown }) => void;

/** JSON lines on stderr. */
export const stderrIdentityLogger: IdentityLogger = (fields) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), component: 'agent-identity', ...fields }) + '\n');
};

export interface IdentityManagerOptions {
  /** The agent's state directory; the agent SVID lives in <dir>/identity/. */
  dir: string;
  /** https://host:port of the CA API. */
  caUrl: string;
  /** Trust roots from the install (PEM); the CA's current roots replace them once fetched. */
  bundlePem: string;
  /** This VM's node name (what the join token was made for). */
  node: string;
  /** One-time join token; used only when no usable agent SVID is stored. */
  token?: string;
  /** Workload SPIFFE IDs assigned to this node, spiffe://<td>/ns/<ns>/sa/<sa>. */
  workloads: readonly string[];
  /** Default: the trust domain named by the bundle roots' URI SAN. */
  trustDomain?: string;
  /** Key type of every SVID; default 'ec-p256' ('ecdsa-p256' is the same). */
  keyAlgorithm?: KeyAlgorithm | 'ecdsa-p256';
  clock?: Clock;
  /** Fraction of the lifetime after which an SVID renews; default 0.5. */
  renewAt?: number;
  /** ± fraction of the lifetime around renewAt; default 0.1. */
  jitter?: number;
  /** Backoff after a failed renewal: first delay (default 1 s), doubling up to maxMs (default 60 s). */
  retry?: { initialMs?: number; maxMs?: number };
  /** Source of jitter in [0, 1); default Math.random. */
  random?: () => number;
  /** Per CA request; default 10 s. */
  caTimeoutMs?: number;
  log?: IdentityLogger;
}

export type IdentityKind = 'agent' | 'workload';

/** One row of the admin "certificates" endpoint. Dates serialize as ISO 8601. */
export interface CertificateInfo {
  spiffeId: string;
  kind: IdentityKind;
  /** pending: no SVID obtained yet; expired: the SVID held has expired (renewals failing). */
  state: 'ready' | 'pending' | 'expired';
  serialHex?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** When the next renewal (or retry) is due. */
  renewsAt?: Date;
  /** Renewals failed in a row. */
  failures: number;
  lastError?: string;
}

/** When a certificate the agent holds or trusts expires: an SVID, an intermediate of an SVID's chain, a trust root. */
export interface CertificateExpiry {
  /** The SPIFFE ID of an SVID; the subject of an intermediate or root (bounded by the CA's slots). */
  identity: string;
  kind: IdentityKind | 'intermediate' | 'root';
  notAfter: Date;
}

export interface SvidCredential {
  spiffeId: string;
  /** Leaf then intermediate, as the CA returned them. */
  certPem: string;
  /** PKCS#8. */
  keyPem: string;
  notAfter: Date;
  serialHex: string;
}

export interface IdentityEvents {
  /** A new SVID is in use (the first one included); contexts have been rebuilt. */
  rotated: [spiffeId: string, info: CertificateInfo];
  /** The trust roots changed; contexts have been rebuilt. */
  trust: [bundle: TrustBundle];
  /** A newer revocation list is in use. */
  revocations: [set: RevocationSet];
  /** A renewal or CA refresh failed (it is retried). Emitted only when someone listens. */
  error: [err: IdentityError];
}

// Node names as the CA accepts them (docs/api/ca.md, POST /v1/admin/tokens).
const NODE_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;
const WORKLOAD_PATH = /^\/ns\/[^/]+\/sa\/[^/]+$/;
const TOKEN_REASONS = new Set(['token_unknown', 'token_reused', 'token_expired']);

interface Svid {
  certPem: string;
  keyPem: string;
  key: KeyPair;
  leaf: ParsedCertificate;
  /** DER, leaf first. */
  chain: Buffer[];
  /** Start of life for the schedule: when we received it, not notBefore (the CA backdates by 60 s). */
  start: number;
}

interface Slot {
  readonly id: string;
  readonly kind: IdentityKind;
  svid: Svid | undefined;
  /** Built on first use after each rotation or trust change. */
  tls: SvidTlsOptions | undefined;
  timer: unknown;
  dueAt: number | undefined;
  failures: number;
  lastError: string | undefined;
  inFlight: Promise<void> | undefined;
  removed: boolean;
}

interface Trust {
  bundle: TrustBundle;
  pem: string;
  fingerprint: string;
}

function newSlot(id: string, kind: IdentityKind): Slot {
  return { id, kind, svid: undefined, tls: undefined, timer: undefined, dueAt: undefined, failures: 0, lastError: undefined, inFlight: undefined, removed: false };
}

function newKeyPair(algorithm: KeyAlgorithm): Promise<KeyPair> {
  // Off the event loop: an RSA key takes long enough to stall the proxies.
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _pub: KeyObject, privateKey: KeyObject) => {
      if (err) reject(err);
      else resolve(keyPairFromPrivateKey(privateKey));
    };
    if (algorithm === 'ec-p256') generateKeyPairCb('ec', { namedCurve: 'prime256v1' }, done);
    else generateKeyPairCb('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, done);
  });
}

/** Subject and expiry of a CA certificate by its DER (the same Buffers live as long as the chain or bundle holding them). */
const caCertInfo = new WeakMap<Buffer, { subject: string; notAfter: Date; selfSigned: boolean }>();
function caCertificate(der: Buffer): { subject: string; notAfter: Date; selfSigned: boolean } {
  let info = caCertInfo.get(der);
  if (!info) {
    const x = new X509Certificate(der);
    info = { subject: x.subject.split('\n').join(', ') || `serial ${x.serialNumber.toLowerCase()}`, notAfter: new Date(x.validTo), selfSigned: x.issuer === x.subject };
    caCertInfo.set(der, info);
  }
  return info;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const iso = (ms: number): string => new Date(ms).toISOString();

export class IdentityManager extends EventEmitter<IdentityEvents> {
  readonly node: string;
  readonly trustDomain: string;
  /** spiffe://<td>/agent/<node> */
  readonly agentId: string;
  readonly #caUrl: string;
  readonly #paths: IdentityPaths;
  readonly #algorithm: KeyAlgorithm;
  readonly #clock: Clock;
  readonly #policy: RenewalPolicy;
  readonly #random: () => number;
  readonly #timeoutMs: number;
  readonly #log: IdentityLogger;
  #token: string | undefined;
  #trust: Trust;
  #revocations: RevocationSet = EMPTY_REVOCATIONS;
  readonly #agent: Slot;
  readonly #workloads = new Map<string, Slot>();
  #client: CaClient | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  /** Validates every option; throws IdentityError('bad_options') naming the one to fix. */
  constructor(opts: IdentityManagerOptions) {
    super();
    const bad = (message: string) => new IdentityError('bad_options', message);
    if (typeof opts.dir !== 'string' || opts.dir === '') throw bad('dir: the agent state directory is required');
    if (typeof opts.caUrl !== 'string' || !/^https:\/\/[^/]+\/?$/.test(opts.caUrl)) throw bad(`caUrl: ${JSON.stringify(opts.caUrl)} is not https://HOST:PORT`);
    if (typeof opts.node !== 'string' || !NODE_NAME.test(opts.node)) {
      throw bad(`node: ${JSON.stringify(opts.node)} is not a node name (1-63 of a-z 0-9 . _ -, starting and ending with a letter or digit)`);
    }
    if (opts.token !== undefined && (typeof opts.token !== 'string' || opts.token === '')) throw bad('token: must be a non-empty string when given');
    if (!Array.isArray(opts.workloads)) throw bad('workloads: must be an array of SPIFFE IDs (empty when none is assigned)');
    const algorithm = opts.keyAlgorithm === 'ecdsa-p256' || opts.keyAlgorithm === undefined ? 'ec-p256' : opts.keyAlgorithm;
    if (algorithm !== 'ec-p256' && algorithm !== 'rsa-2048') throw bad(`keyAlgorithm: ${JSON.stringify(opts.keyAlgorithm)} is not ecdsa-p256 or rsa-2048`);
    const policy: RenewalPolicy = {
      renewAt: opts.renewAt ?? DEFAULT_RENEWAL_POLICY.renewAt,
      jitter: opts.jitter ?? DEFAULT_RENEWAL_POLICY.jitter,
      retryInitialMs: opts.retry?.initialMs ?? DEFAULT_RENEWAL_POLICY.retryInitialMs,
      retryMaxMs: opts.retry?.maxMs ?? DEFAULT_RENEWAL_POLICY.retryMaxMs,
    };
    const policyProblem = checkRenewalPolicy(policy);
    if (policyProblem) throw bad(policyProblem);
    let td: string | undefined;
    try {
      td = opts.trustDomain !== undefined ? parseTrustDomain(opts.trustDomain) : trustDomainFromPem(opts.bundlePem);
    } catch (err) {
      throw bad(`trustDomain: ${errorText(err)}`);
    }
    if (td === undefined) throw bad('trustDomain: the bundle roots name no trust domain (no spiffe:// URI SAN); pass trustDomain');
    let bundle: TrustBundle;
    try {
      bundle = bundleFromPem(opts.bundlePem, td);
    } catch (err) {
      throw bad(`bundlePem: ${errorText(err)}; pass the CA's roots (meshctl bundle show --format pem)`);
    }
    this.node = opts.node;
    this.trustDomain = td;
    this.agentId = formatSpiffeId(td, 'agent', opts.node).toString();
    this.#caUrl = opts.caUrl;
    this.#paths = identityPaths(opts.dir);
    this.#token = opts.token;
    this.#algorithm = algorithm;
    this.#clock = opts.clock ?? systemClock;
    this.#policy = policy;
    this.#random = opts.random ?? Math.random;
    this.#timeoutMs = opts.caTimeoutMs ?? 10_000;
    this.#log = opts.log ?? stderrIdentityLogger;
    this.#trust = { bundle, pem: bundleToPem(bundle), fingerprint: bundleFingerprint(bundle) };
    this.#agent = newSlot(this.agentId, 'agent');
    for (const id of opts.workloads) {
      const checked = this.#checkWorkloadId(id);
      if (!this.#workloads.has(checked)) this.#workloads.set(checked, newSlot(checked, 'workload'));
    }
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * Loads the stored agent SVID (or joins with the token when none is
   * usable), fetches the CA's roots and revocation list, then obtains every
   * workload SVID. Rejects only when the agent SVID cannot be had; a
   * workload SVID or a CA refresh that fails is retried with backoff (see
   * list() and the 'error' event).
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new IdentityError('not_running', `start(): the identity manager was already ${this.#state === 'stopped' ? 'stopped' : 'started'}`);
    this.#state = 'starting';
    try {
      ensurePrivateDir(this.#paths.dir);
      this.#trust = this.#startTrust();
      this.#client = new CaClient({ url: this.#caUrl, bundlePem: this.#trust.pem, trustDomain: this.trustDomain, timeoutMs: this.#timeoutMs });
      let agent: Svid;
      try {
        agent = await this.#loadOrJoin();
      } finally {
        this.#token = undefined; // one-time: never kept, never used for renewal
      }
      if (this.#state !== 'starting') throw new IdentityError('not_running', 'stop() was called while the identity manager was starting');
      this.#client.updateCredential({ certPem: agent.certPem, keyPem: agent.keyPem });
      this.#install(this.#agent, agent);
    } catch (err) {
      this.#state = 'stopped';
      this.#client?.close();
      throw err;
    }
    this.#state = 'running';
    this.#schedule(this.#agent);
    this.emit('rotated', this.agentId, this.#info(this.#agent));
    await this.refresh().catch(() => undefined); // logged and emitted by refresh
    await Promise.all([...this.#workloads.values()].map((slot) => this.#renew(slot)));
  }

  /** Stops every timer and waits for requests in flight. The stored SVID stays. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    const slots = [this.#agent, ...this.#workloads.values()];
    for (const slot of slots) this.#disarm(slot);
    await Promise.all(slots.map((s) => s.inFlight?.catch(() => undefined)));
    await this.#queue.catch(() => undefined);
    this.#client?.close();
  }

  /** Fetches the CA's roots and revocation list (the control plane also pushes them). */
  async refresh(): Promise<void> {
    this.#requireRunning();
    try {
      const pem = await this.#ca((c) => c.bundlePem());
      this.setTrustBundle(pem);
      const list = await this.#ca((c) => c.revocations());
      this.setRevocations(createRevocationSet(list));
    } catch (err) {
      const e = err instanceof IdentityError ? err : new IdentityError('ca_failed', `refreshing the trust bundle and revocations from the CA: ${errorText(err)}`, { cause: err });
      this.#log({ level: 'warn', event: 'ca_refresh_failed', code: e.code, error: e.message });
      this.#emitError(e);
      throw e;
    }
  }

  // ------------------------------------------------------------ TLS material

  /** The secure context for `spiffeId` (the agent's or a workload's): SVID chain, key, trust roots. Cached until the next rotation or trust change. */
  contextFor(spiffeId: string): tls.SecureContext {
    return this.tlsOptionsFor(spiffeId).secureContext;
  }

  agentContext(): tls.SecureContext {
    return this.contextFor(this.agentId);
  }

  /**
   * node:tls options for `spiffeId` from svidTlsOptions (@amime/identity),
   * cached with the context: a client passes them to tls.connect, a server
   * to tls.createServer / server.setSecureContext (a server ignores `secureContext`).
   */
  tlsOptionsFor(spiffeId: string): SvidTlsOptions {
    const slot = this.#slot(spiffeId);
    const svid = this.#ready(slot);
    slot.tls ??= svidTlsOptions({ certChain: svid.certPem, privateKey: svid.key.privateKey, bundle: this.#trust.bundle });
    return slot.tls;
  }

  credential(spiffeId: string): SvidCredential {
    const svid = this.#ready(this.#slot(spiffeId));
    return { spiffeId, certPem: svid.certPem, keyPem: svid.keyPem, notAfter: new Date(svid.leaf.notAfter), serialHex: svid.leaf.serialHex };
  }

  // ------------------------------------------------------------ trust

  bundle(): TrustBundle {
    return this.#trust.bundle;
  }

  revocations(): RevocationSet {
    return this.#revocations;
  }

  /**
   * Trust these roots from now on (a pushed TrustBundle, or the CA's). Returns
   * false when they are the roots already held. Otherwise stores them,
   * rebuilds contexts, emits 'trust', and renews at once any SVID that no
   * longer chains to them. Throws TrustBundleError for PEM that is not a
   * bundle of our trust domain (nothing changes).
   */
  setTrustBundle(pem: string): boolean {
    const bundle = bundleFromPem(pem, this.trustDomain);
    const fingerprint = bundleFingerprint(bundle);
    if (fingerprint === this.#trust.fingerprint) return false;
    const roots = bundleToPem(bundle);
    this.#trust = { bundle, pem: roots, fingerprint };
    for (const slot of this.#slots()) slot.tls = undefined;
    if (this.#state === 'running' || this.#state === 'starting') {
      try {
        writeStoredBundle(this.#paths, roots);
      } catch (err) {
        this.#log({ level: 'warn', event: 'bundle_store_failed', error: errorText(err) });
      }
      void this.#ca(async (c) => c.updateTrust(roots)).catch((err) => this.#log({ level: 'error', event: 'ca_trust_update_failed', error: errorText(err) }));
    }
    this.#log({ level: 'info', event: 'trust_bundle_updated', roots: bundle.roots.length, fingerprint });
    this.emit('trust', bundle);
    if (this.#state === 'running') this.#renewWhere((svid) => this.#untrusted(svid), 'svid_untrusted');
    return true;
  }

  /**
   * Use this revocation list (a pushed RevocationList, or the CA's), as a
   * RevocationSet or its JSON form. Returns false for a version older than or
   * equal to the one held. An SVID of ours whose serial is on it is renewed
   * at once. Throws RevocationError for a malformed list (nothing changes).
   */
  setRevocations(list: RevocationSet | RevocationSetJson): boolean {
    const set = Array.isArray(list.serials) ? createRevocationSet(list as RevocationSetJson) : (list as RevocationSet);
    const held = this.#revocations;
    // Versions only go up; the first list is taken unless it is as empty as the start value.
    if (held === EMPTY_REVOCATIONS ? set.version === 0 && set.serials.size === 0 && set.spiffeIds.size === 0 : set.version <= held.version) return false;
    this.#revocations = set;
    this.emit('revocations', set);
    for (const slot of this.#slots()) {
      if (set.spiffeIds.has(slot.id)) this.#log({ level: 'error', event: 'identity_revoked', spiffeId: slot.id, hint: 'the CA refuses new SVIDs for it until `meshctl` unrevokes it' });
    }
    if (this.#state === 'running') this.#renewWhere((svid) => set.serials.has(svid.leaf.serialHex), 'svid_revoked');
    return true;
  }

  // ------------------------------------------------------------ workloads

  /** Manage one more workload identity (its SVID is obtained at once when running). False when already managed. */
  addWorkload(spiffeId: string): boolean {
    const id = this.#checkWorkloadId(spiffeId, 'addWorkload');
    if (this.#workloads.has(id)) return false;
    const slot = newSlot(id, 'workload');
    this.#workloads.set(id, slot);
    this.#log({ level: 'info', event: 'workload_added', spiffeId: id });
    if (this.#state === 'running') void this.#renew(slot);
    return true;
  }

  /** Stop managing a workload identity: no more renewals, contextFor refuses it. False when not managed. */
  removeWorkload(spiffeId: string): boolean {
    const slot = this.#workloads.get(spiffeId);
    if (!slot) return false;
    slot.removed = true;
    this.#disarm(slot);
    this.#workloads.delete(spiffeId);
    this.#log({ level: 'info', event: 'workload_removed', spiffeId });
    return true;
  }

  /** Make the managed workloads exactly `spiffeIds` (e.g. when the node's assignments change). */
  setWorkloads(spiffeIds: readonly string[]): { added: string[]; removed: string[] } {
    const wanted = new Set(spiffeIds.map((id) => this.#checkWorkloadId(id, 'setWorkloads')));
    const removed = [...this.#workloads.keys()].filter((id) => !wanted.has(id));
    for (const id of removed) this.removeWorkload(id);
    const added = [...wanted].filter((id) => this.addWorkload(id));
    return { added, removed };
  }

  /** The agent SVID, then every workload's, sorted by SPIFFE ID. */
  list(): CertificateInfo[] {
    const workloads = [...this.#workloads.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return [this.#agent, ...workloads].map((slot) => this.#info(slot));
  }

  /**
   * Every certificate the agent relies on and when it expires, for metrics:
   * its SVIDs (agent, then workloads), the intermediates in their chains and
   * the trust roots. An intermediate or root appears once per subject, with
   * the earliest expiry among certificates of that subject.
   */
  certificateExpiries(): CertificateExpiry[] {
    const out: CertificateExpiry[] = [];
    const ca = new Map<string, CertificateExpiry>();
    const addCa = (der: Buffer, kind: 'intermediate' | 'root') => {
      const { subject, notAfter, selfSigned } = caCertificate(der);
      if (kind === 'intermediate' && selfSigned) return; // a root sent along with a chain: reported from the bundle
      const k = `${kind}\0${subject}`;
      const held = ca.get(k);
      if (!held || notAfter < held.notAfter) ca.set(k, { identity: subject, kind, notAfter });
    };
    for (const info of this.list()) if (info.notAfter) out.push({ identity: info.spiffeId, kind: info.kind, notAfter: info.notAfter });
    for (const slot of this.#slots()) for (const der of slot.svid?.chain.slice(1) ?? []) addCa(der, 'intermediate');
    for (const root of this.#trust.bundle.roots) addCa(root.der, 'root');
    return [...out, ...ca.values()];
  }

  /** Renew `spiffeId` now (also what the timers do); resolves when the attempt is over, failed or not. */
  renewNow(spiffeId: string): Promise<void> {
    this.#requireRunning();
    return this.#renew(this.#slot(spiffeId));
  }

  // ------------------------------------------------------------ internals: start

  /** The install roots plus any stored ones (from a later rotation), until the CA says which are current. */
  #startTrust(): Trust {
    const ders = [...this.#trust.bundle.roots.map((r) => r.der)];
    const stored = readStoredBundle(this.#paths);
    if (stored !== undefined) {
      try {
        for (const r of bundleFromPem(stored, this.trustDomain).roots) if (!ders.some((d) => d.equals(r.der))) ders.push(r.der);
      } catch (err) {
        this.#log({ level: 'warn', event: 'stored_bundle_unusable', path: this.#paths.bundle, error: errorText(err) });
      }
    }
    const bundle = createTrustBundle({ trustDomain: this.trustDomain, roots: ders });
    return { bundle, pem: bundleToPem(bundle), fingerprint: bundleFingerprint(bundle) };
  }

  async #loadOrJoin(): Promise<Svid> {
    const now = this.#clock.now();
    const dir = this.#paths.dir;
    let unusable: string | undefined;
    let stored;
    try {
      stored = readStoredAgent(this.#paths, this.agentId);
    } catch (err) {
      unusable = errorText(err);
      this.#log({ level: 'warn', event: 'stored_agent_svid_unusable', dir, error: unusable });
    }
    if (stored?.keyModeFixed) this.#log({ level: 'warn', event: 'agent_key_mode_fixed', path: this.#paths.key, mode: '0600' });
    if (stored && stored.leaf.notAfter.getTime() > now) {
      this.#log({ level: 'info', event: 'agent_svid_loaded', spiffeId: this.agentId, serial: stored.leaf.serialHex, notAfter: stored.leaf.notAfter.toISOString() });
      if (this.#token !== undefined) this.#log({ level: 'info', event: 'join_token_unused', reason: 'a valid agent SVID is stored' });
      return {
        certPem: stored.certPem,
        keyPem: stored.keyPem,
        key: stored.key,
        leaf: stored.leaf,
        chain: fromPem(stored.certPem, 'CERTIFICATE'),
        start: Math.max(stored.leaf.notBefore.getTime(), Math.min(stored.writtenAt, now)),
      };
    }
    const hint = `meshctl token create --node ${this.node}`;
    if (this.#token === undefined) {
      if (stored) {
        throw new IdentityError('agent_expired', `the agent SVID expired at ${stored.leaf.notAfter.toISOString()}; create a new join token with \`${hint}\` and restart with --token`);
      }
      if (unusable !== undefined) {
        throw new IdentityError('no_token', `the stored agent SVID in ${dir} is unusable (${unusable}); start the agent with a join token (${hint})`);
      }
      throw new IdentityError('no_token', `no stored agent SVID in ${dir}; start the agent with a join token (${hint})`);
    }
    this.#log({ level: 'info', event: 'joining', node: this.node, because: stored ? `the stored SVID expired at ${stored.leaf.notAfter.toISOString()}` : unusable ? 'the stored SVID is unusable' : 'no stored SVID' });
    return this.#join(this.#token);
  }

  async #join(token: string): Promise<Svid> {
    const key = await newKeyPair(this.#algorithm);
    let answer;
    try {
      answer = await this.#ca((c) => c.join(token, createCsr(key, this.agentId)));
    } catch (err) {
      if (err instanceof CaClientError && err.refused) {
        const fix = TOKEN_REASONS.has(err.reason) ? `; create a new one with \`meshctl token create --node ${this.node}\`` : '';
        throw new IdentityError('join_refused', `the CA refused to join node ${this.node}: ${err.message} (${err.reason})${fix}`, { cause: err });
      }
      throw new IdentityError('ca_failed', `cannot join node ${this.node}: ${errorText(err)}`, { cause: err });
    }
    const svid = this.#accept(this.agentId, answer.svid, key);
    try {
      this.setTrustBundle(answer.bundle);
    } catch (err) {
      throw new IdentityError('bad_answer', `the CA's join answer carries an unusable bundle: ${errorText(err)}`, { cause: err });
    }
    writeStoredAgent(this.#paths, svid.certPem, svid.keyPem);
    writeStoredBundle(this.#paths, this.#trust.pem);
    this.#log({ level: 'info', event: 'joined', spiffeId: this.agentId, serial: svid.leaf.serialHex, notAfter: svid.leaf.notAfter.toISOString() });
    return svid;
  }

  /** An SVID from the CA's answer, checked to be for `spiffeId` and our key. */
  #accept(spiffeId: string, chainPem: string, key: KeyPair): Svid {
    let chain: Buffer[];
    let leaf: ParsedCertificate;
    try {
      chain = fromPem(chainPem, 'CERTIFICATE');
      if (chain.length === 0) throw new Error('no CERTIFICATE block');
      leaf = parseCertificate(chain[0]!);
    } catch (err) {
      throw new IdentityError('bad_answer', `the CA's SVID for ${spiffeId} does not parse: ${errorText(err)}`, { cause: err });
    }
    const uris = leaf.uris.filter((u) => u.startsWith('spiffe://'));
    if (uris.length !== 1 || uris[0] !== spiffeId || !leaf.spki.equals(key.spki)) {
      throw new IdentityError('bad_answer', `the CA returned an SVID for ${uris.join(', ') || 'no SPIFFE ID'} or for another key; expected ${spiffeId} for our CSR`);
    }
    return { certPem: chainPem, keyPem: exportPrivateKeyPem(key.privateKey), key, leaf, chain, start: Math.max(leaf.notBefore.getTime(), this.#clock.now()) };
  }

  // ------------------------------------------------------------ internals: renewal

  /** Never rejects: a failure is logged, emitted and retried; a throwing listener is logged. */
  #renew(slot: Slot): Promise<void> {
    if (slot.inFlight) return slot.inFlight;
    const attempt = (async () => {
      let info: CertificateInfo | undefined;
      try {
        info = await this.#renewOnce(slot);
      } finally {
        // Cleared before 'rotated' listeners run, so a renewal they ask for is not folded into this one.
        slot.inFlight = undefined;
      }
      if (info) this.emit('rotated', slot.id, info);
    })().catch((err: unknown) => this.#log({ level: 'error', event: 'identity_listener_failed', spiffeId: slot.id, error: errorText(err) }));
    slot.inFlight = attempt;
    return attempt;
  }

  /** The new SVID's info, or undefined when the attempt failed (and a retry is armed) or no longer matters. */
  async #renewOnce(slot: Slot): Promise<CertificateInfo | undefined> {
    this.#disarm(slot);
    const live = () => this.#state === 'running' && !slot.removed;
    let info: CertificateInfo;
    try {
      const key = await newKeyPair(this.#algorithm);
      const answer = await this.#ca((c) => c.svid(createCsr(key, slot.id), slot.id));
      const svid = this.#accept(slot.id, answer.svid, key);
      if (!live()) return undefined;
      if (slot.kind === 'agent') {
        writeStoredAgent(this.#paths, svid.certPem, svid.keyPem);
        await this.#ca(async (c) => c.updateCredential({ certPem: svid.certPem, keyPem: svid.keyPem }));
      }
      const previous = slot.svid?.leaf.serialHex;
      this.#install(slot, svid);
      this.#schedule(slot);
      info = this.#info(slot);
      this.#log({ level: 'info', event: previous ? 'svid_rotated' : 'svid_issued', spiffeId: slot.id, kind: slot.kind, serial: info.serialHex, previous, notAfter: info.notAfter?.toISOString(), renewsAt: info.renewsAt?.toISOString() });
    } catch (err) {
      if (live()) this.#failed(slot, err);
      return undefined;
    }
    return info;
  }

  #failed(slot: Slot, err: unknown): void {
    const now = this.#clock.now();
    slot.failures++;
    const notAfter = slot.svid?.leaf.notAfter.getTime() ?? Number.POSITIVE_INFINITY;
    const retry = retryAfterFailure(now, notAfter, slot.failures, this.#policy, this.#random());
    const caError = err instanceof CaClientError ? err : undefined;
    const e =
      err instanceof IdentityError
        ? err
        : new IdentityError('ca_failed', `${slot.svid ? 'renewing' : 'obtaining'} the SVID of ${slot.id}: ${errorText(err)}${caError?.refused ? ` (${caError.reason})` : ''}`, { cause: err });
    slot.lastError = e.message;
    this.#arm(slot, retry.delayMs);
    const fields = { spiffeId: slot.id, kind: slot.kind, attempt: slot.failures, retryInMs: retry.delayMs, code: caError?.code ?? e.code, error: e.message };
    if (retry.expired) {
      const fix = slot.kind === 'agent' ? `; if it keeps failing, create a new join token with \`meshctl token create --node ${this.node}\` and restart with --token` : '';
      this.#log({ level: 'error', event: 'svid_expired', ...fields, expiredAt: iso(notAfter), hint: `the SVID expired unrenewed${fix}` });
    } else if (retry.expiring) {
      this.#log({ level: 'error', event: 'svid_expiring', ...fields, notAfter: iso(notAfter), hint: 'renewals keep failing and the SVID expires before the next backoff step' });
    } else {
      this.#log({ level: 'warn', event: 'svid_renew_failed', ...fields });
    }
    this.#emitError(e);
  }

  #install(slot: Slot, svid: Svid): void {
    slot.svid = svid;
    slot.tls = undefined;
    slot.failures = 0;
    slot.lastError = undefined;
  }

  #schedule(slot: Slot): void {
    const svid = slot.svid!;
    const at = renewalTime(svid.start, svid.leaf.notAfter.getTime(), this.#policy, this.#random());
    this.#arm(slot, Math.max(0, at - this.#clock.now()));
  }

  #arm(slot: Slot, delayMs: number): void {
    this.#disarm(slot);
    if (this.#state !== 'running' || slot.removed) return;
    slot.dueAt = this.#clock.now() + delayMs;
    slot.timer = this.#clock.setTimeout(() => {
      slot.timer = undefined;
      void this.#renew(slot);
    }, delayMs);
  }

  #disarm(slot: Slot): void {
    if (slot.timer !== undefined) this.#clock.clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.dueAt = undefined;
  }

  #renewWhere(test: (svid: Svid) => boolean, event: string): void {
    for (const slot of this.#slots()) {
      if (slot.svid && test(slot.svid)) {
        this.#log({ level: 'warn', event, spiffeId: slot.id, serial: slot.svid.leaf.serialHex, action: 'renewing now' });
        void this.#renew(slot);
      }
    }
  }

  #untrusted(svid: Svid): boolean {
    const v = verifySvid(svid.chain, { bundle: this.#trust.bundle, now: new Date(this.#clock.now()) });
    return !v.ok && v.reason === 'unknown_issuer';
  }

  // ------------------------------------------------------------ internals: misc

  /** Runs CA requests one at a time (see the file header). */
  #ca<T>(fn: (client: CaClient) => Promise<T>): Promise<T> {
    const client = this.#client;
    if (!client) return Promise.reject(new IdentityError('not_running', 'the identity manager has not been started'));
    const run = this.#queue.then(() => fn(client));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #slots(): Slot[] {
    return [this.#agent, ...this.#workloads.values()];
  }

  #slot(spiffeId: string): Slot {
    const slot = spiffeId === this.agentId ? this.#agent : this.#workloads.get(spiffeId);
    if (!slot) throw new IdentityError('unknown_identity', `${spiffeId} is not an identity of this agent (node ${this.node}); assign it with \`meshctl assign ${this.node} ${spiffeId}\` and add it to the agent's workloads`);
    return slot;
  }

  #ready(slot: Slot): Svid {
    if (!slot.svid) {
      const why = slot.lastError ? `: ${slot.lastError}` : this.#state === 'running' ? ' yet' : ' (the identity manager is not running)';
      throw new IdentityError('not_ready', `no SVID for ${slot.id}${why}`);
    }
    return slot.svid;
  }

  #requireRunning(): void {
    if (this.#state !== 'running' && this.#state !== 'starting') throw new IdentityError('not_running', `the identity manager is ${this.#state === 'new' ? 'not started' : 'stopped'}`);
  }

  #info(slot: Slot): CertificateInfo {
    const svid = slot.svid;
    const info: CertificateInfo = { spiffeId: slot.id, kind: slot.kind, state: 'pending', failures: slot.failures };
    if (svid) {
      info.state = svid.leaf.notAfter.getTime() <= this.#clock.now() ? 'expired' : 'ready';
      info.serialHex = svid.leaf.serialHex;
      info.notBefore = new Date(svid.leaf.notBefore);
      info.notAfter = new Date(svid.leaf.notAfter);
    }
    if (slot.dueAt !== undefined) info.renewsAt = new Date(slot.dueAt);
    if (slot.lastError !== undefined) info.lastError = slot.lastError;
    return info;
  }

  #checkWorkloadId(id: string, where = 'workloads'): string {
    let parsed;
    try {
      parsed = parseSpiffeId(id);
    } catch (err) {
      throw new IdentityError('bad_options', `${where}: ${errorText(err)}`);
    }
    if (parsed.trustDomain !== this.trustDomain) {
      throw new IdentityError('bad_options', `${where}: ${id} belongs to trust domain ${parsed.trustDomain}, not ${this.trustDomain}`);
    }
    if (!WORKLOAD_PATH.test(parsed.path)) throw new IdentityError('bad_options', `${where}: ${id} is not a workload identity; expected spiffe://${this.trustDomain}/ns/<namespace>/sa/<service-account>`);
    return parsed.toString();
  }

  #emitError(err: IdentityError): void {
    // An 'error' event without a listener would throw: the log line already told the operator.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
