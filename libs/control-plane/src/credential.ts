// The control plane's own X.509-SVID, spiffe://<td>/control-plane/controller.
// The first time it is obtained from the CA with the operator's admin
// credential; from then on the control plane renews it with itself, at half
// its life, so the admin credential need not stay on the host. It lives in
// <dir>/credential/{cert,key,bundle}.pem (0600, crash-safe writes), so a
// restart reuses it instead of asking the CA again.
//
// The key is made here and never leaves the process except into key.pem.
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  CaClient,
  CaClientError,
  bundleFingerprint,
  bundleFromPem,
  bundleToPem,
  createCsr,
  exportPrivateKeyPem,
  fromPem,
  generateKeyPair,
  importPrivateKeyPem,
  parseCertificate,
  parseSpiffeId,
  trustDomainFromPem,
  type CaCredential,
  type ParsedCertificate,
} from '@amime/identity';
import { writeFileAtomicSync } from '@amime/store';

export type Clock = () => number;
/** One structured log line's fields; the default logger writes them as JSON to stderr. */
export type Logger = (fields: Record<string, unknown>) => void;

/** JSON lines on stderr (JSON escaping keeps fields from forging lines). */
export const stderrLogger: Logger = (fields) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), component: 'control-plane', ...fields }) + '\n');
};

export const CONTROL_PLANE_ID_PATH = '/control-plane/controller';
/** Below this fraction of its life left, a stored SVID is renewed before it is used. */
export const REUSE_MIN_REMAINING = 0.1;
const RENEW_AT = 0.5;
/** ± this fraction of the life around RENEW_AT, so restarted replicas do not renew in step. */
const RENEW_JITTER = 0.05;

export const CREDENTIAL_ERROR_REASONS = ['bad_options', 'no_credential', 'ca_failed', 'bad_answer', 'stopped'] as const;
export type CredentialErrorReason = (typeof CREDENTIAL_ERROR_REASONS)[number];

export class CredentialError extends Error {
  readonly code: string;
  constructor(
    readonly reason: CredentialErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CredentialError';
    this.code = `AMIME_ERR_CP_${reason.toUpperCase()}`;
  }
}

export interface ObtainOptions {
  /** https://host:port of the CA API. */
  caUrl: string;
  /** The control plane's data directory; the credential lives in <dir>/credential/. */
  dir: string;
  /** The operator's admin credential (cert.pem, key.pem, bundle.pem): needed only when no usable SVID of our own is stored. */
  adminDir?: string;
  /** Default spiffe://<td>/control-plane/controller, td from the admin credential or the stored bundle. */
  spiffeId?: string;
  clock?: Clock;
  /** Per CA request; default 10 s. */
  timeoutMs?: number;
  /** Backoff after a failed renewal: first delay (default 1 s), doubling up to maxMs (default 30 s). */
  retry?: { initialMs?: number; maxMs?: number };
  /** Source of jitter in [0, 1); default Math.random. */
  random?: () => number;
  log?: Logger;
}

export interface CredentialSnapshot {
  /** Our SVID chain, leaf first. */
  certPem: string;
  /** PKCS#8. */
  keyPem: string;
  /** The CA's trust roots. */
  bundlePem: string;
  spiffeId: string;
  notAfter: Date;
}

export interface RenewFailure {
  attempt: number;
  retryInMs: number;
}

/** What we hold: the files' content plus when its life started. */
interface Held {
  certPem: string;
  keyPem: string;
  bundlePem: string;
  bundleFingerprint: string;
  serial: string;
  notAfter: number;
  /**
   * Start of life for the renewal schedule: when we received the SVID (the
   * file's mtime after a restart), not notBefore, which CAs backdate for
   * clock skew (ours by 60 s) and which would make a short-lived SVID look
   * half-spent on arrival.
   */
  start: number;
}

interface AdminFiles extends CaCredential {
  bundlePem: string;
  spiffeId: string;
  notAfter: number;
}

interface Internals {
  caUrl: string;
  credDir: string;
  adminDir: string | undefined;
  spiffeId: string;
  trustDomain: string;
  clock: Clock;
  timeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  random: () => number;
  log: Logger;
}

const FILES = { cert: 'cert.pem', key: 'key.pem', bundle: 'bundle.pem' } as const;

function leafOf(certPem: string): ParsedCertificate {
  const der = fromPem(certPem, 'CERTIFICATE')[0];
  if (!der) throw new Error('no CERTIFICATE block');
  return parseCertificate(der);
}

const spiffeUri = (leaf: ParsedCertificate): string | undefined => leaf.uris.find((u) => u.startsWith('spiffe://'));

function readAdmin(dir: string): AdminFiles {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const certPem = read(FILES.cert);
  const keyPem = read(FILES.key);
  const bundlePem = read(FILES.bundle);
  const leaf = leafOf(certPem);
  const id = spiffeUri(leaf);
  if (!id) throw new Error(`${join(dir, FILES.cert)} holds no X.509-SVID (no spiffe:// URI SAN)`);
  return { certPem, keyPem, bundlePem, spiffeId: parseSpiffeId(id).toString(), notAfter: leaf.notAfter.getTime() };
}

export class ControlPlaneCredential extends EventEmitter {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly #o: Internals;
  #held: Held;
  readonly #client: CaClient;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<CredentialSnapshot> | undefined;
  #failures = 0;
  #stopped = false;

  private constructor(o: Internals, held: Held) {
    super();
    this.#o = o;
    this.spiffeId = o.spiffeId;
    this.trustDomain = o.trustDomain;
    this.#held = held;
    this.#client = new CaClient({
      url: o.caUrl,
      bundlePem: held.bundlePem,
      credential: { certPem: held.certPem, keyPem: held.keyPem },
      trustDomain: o.trustDomain,
      timeoutMs: o.timeoutMs,
    });
  }

  /**
   * Loads the stored SVID when it has more than 10% of its life left; else
   * gets a new one from the CA, authenticated with the stored SVID while it
   * is valid, else with the admin credential in `adminDir`. Then renews
   * itself at half life until stop().
   */
  static async obtain(opts: ObtainOptions): Promise<ControlPlaneCredential> {
    if (typeof opts.caUrl !== 'string' || !/^https:\/\/[^/]+\/?$/.test(opts.caUrl)) {
      throw new CredentialError('bad_options', `caUrl: ${JSON.stringify(opts.caUrl)} is not https://HOST:PORT`);
    }
    if (typeof opts.dir !== 'string' || opts.dir === '') throw new CredentialError('bad_options', 'dir: the control plane data directory is required');
    const clock = opts.clock ?? Date.now;
    const log = opts.log ?? stderrLogger;
    const credDir = join(opts.dir, 'credential');
    const problems: string[] = [];
    let caError: unknown;
    let refused = false;

    let admin: AdminFiles | undefined;
    if (opts.adminDir !== undefined) {
      try {
        admin = readAdmin(opts.adminDir);
      } catch (err) {
        problems.push(`admin credential in ${opts.adminDir}: ${(err as Error).message}`);
      }
    }

    const spiffeId = ControlPlaneCredential.#chooseId(opts.spiffeId, admin, credDir);
    const o: Internals = {
      caUrl: opts.caUrl,
      credDir,
      adminDir: opts.adminDir,
      spiffeId,
      trustDomain: parseSpiffeId(spiffeId).trustDomain,
      clock,
      timeoutMs: opts.timeoutMs ?? 10_000,
      retryInitialMs: opts.retry?.initialMs ?? 1000,
      retryMaxMs: opts.retry?.maxMs ?? 30_000,
      random: opts.random ?? Math.random,
      log,
    };

    const now = clock();
    let own: Held | undefined;
    try {
      own = readOwn(o, now);
    } catch (err) {
      problems.push(`stored credential in ${credDir}: ${(err as Error).message}`);
      log({ event: 'credential_unusable', dir: credDir, error: (err as Error).message });
    }
    if (own && own.notAfter - now > REUSE_MIN_REMAINING * (own.notAfter - own.start)) {
      log({ event: 'credential_loaded', spiffeId, serial: own.serial, notAfter: new Date(own.notAfter).toISOString() });
      return ControlPlaneCredential.#begin(o, own);
    }

    let fresh: Held | undefined;
    if (own && own.notAfter > now) {
      try {
        fresh = await fetchSvid(o, { certPem: own.certPem, keyPem: own.keyPem }, own.bundlePem);
      } catch (err) {
        caError = err;
        refused ||= refusedByCa(err);
        problems.push(`renewing with our own SVID: ${(err as Error).message}`);
      }
    }
    if (!fresh && admin) {
      if (admin.notAfter <= now) {
        problems.push(`the admin credential in ${opts.adminDir} expired at ${new Date(admin.notAfter).toISOString()}; renew it ('meshctl admin renew' or 'ca admin-credential')`);
      } else {
        try {
          // meshctl keeps the admin bundle current through rotations, so trust it here.
          fresh = await fetchSvid(o, admin, admin.bundlePem);
        } catch (err) {
          caError = err;
          refused ||= refusedByCa(err);
          problems.push(`with the admin credential ${admin.spiffeId}: ${(err as Error).message}`);
        }
      }
    }
    if (fresh) {
      install(o, fresh);
      log({ event: 'credential_issued', spiffeId, serial: fresh.serial, notAfter: new Date(fresh.notAfter).toISOString() });
      return ControlPlaneCredential.#begin(o, fresh);
    }
    if (own && own.notAfter > now && !refused) {
      // The CA could not be reached: starting on an SVID that is about to
      // lapse beats not starting, peers keep working while the renewal loop
      // retries. A CA that refused us (revoked) gets no such grace.
      log({ event: 'credential_degraded', spiffeId, notAfter: new Date(own.notAfter).toISOString(), error: problems.join('; ') });
      return ControlPlaneCredential.#begin(o, own, 0);
    }
    if (!own && opts.adminDir === undefined) problems.push(`no stored credential in ${credDir} and no adminDir`);
    throw new CredentialError(
      caError === undefined ? 'no_credential' : 'ca_failed',
      `cannot obtain ${spiffeId}: ${problems.join('; ')}. Pass the operator's admin credential directory (cert.pem, key.pem, bundle.pem) once; the control plane renews itself afterwards`,
      { cause: caError },
    );
  }

  static #chooseId(requested: string | undefined, admin: AdminFiles | undefined, credDir: string): string {
    if (requested !== undefined) {
      try {
        return parseSpiffeId(requested).toString();
      } catch (err) {
        throw new CredentialError('bad_options', `spiffeId: ${(err as Error).message}`);
      }
    }
    let td = admin ? parseSpiffeId(admin.spiffeId).trustDomain : undefined;
    if (td === undefined && existsSync(join(credDir, FILES.bundle))) {
      try {
        td = trustDomainFromPem(readFileSync(join(credDir, FILES.bundle), 'utf8'));
      } catch {
        td = undefined; // a damaged bundle is reported when the credential is read
      }
    }
    if (td === undefined) {
      throw new CredentialError('no_credential', `no trust domain: neither an admin credential (adminDir) nor a stored bundle in ${credDir} names one; pass adminDir or spiffeId`);
    }
    return `spiffe://${td}${CONTROL_PLANE_ID_PATH}`;
  }

  static #begin(o: Internals, held: Held, renewInMs?: number): ControlPlaneCredential {
    const cred = new ControlPlaneCredential(o, held);
    if (renewInMs === undefined) cred.#scheduleRenewal();
    else cred.#arm(renewInMs);
    return cred;
  }

  /** The credential in use now; a TLS server should rebuild its context on 'renewed' and 'bundle'. */
  current(): CredentialSnapshot {
    const h = this.#held;
    return { certPem: h.certPem, keyPem: h.keyPem, bundlePem: h.bundlePem, spiffeId: this.spiffeId, notAfter: new Date(h.notAfter) };
  }

  /** A CA client authenticated with our SVID; it follows renewals and setBundle. */
  get client(): CaClient {
    return this.#client;
  }

  /**
   * Trust these roots from now on (the CA's bundle changed, e.g. a rotation
   * step): the CA client and bundle.pem follow, 'bundle' is emitted. Returns
   * false when the roots are the ones already held. Throws a TrustBundleError
   * for PEM that is not a bundle of our trust domain.
   */
  setBundle(pem: string): boolean {
    const bundle = bundleFromPem(pem, this.trustDomain);
    const fp = bundleFingerprint(bundle);
    if (fp === this.#held.bundleFingerprint) return false;
    const bundlePem = bundleToPem(bundle);
    // CaSync may already have moved this client to the new roots.
    if (bundleFingerprint(bundleFromPem(this.#client.bundlePemInUse, this.trustDomain)) !== fp) this.#client.updateTrust(bundlePem);
    writeFileAtomicSync(join(this.#o.credDir, FILES.bundle), bundlePem, 0o600);
    this.#held = { ...this.#held, bundlePem, bundleFingerprint: fp };
    this.#o.log({ event: 'bundle_updated', roots: bundle.roots.length });
    this.emit('bundle', bundlePem);
    return true;
  }

  /** Renew now (also what the timer does). Concurrent calls share one request. */
  renew(): Promise<CredentialSnapshot> {
    if (this.#stopped) return Promise.reject(new CredentialError('stopped', 'the credential was stopped'));
    this.#inFlight ??= this.#renewOnce().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  /** Stops renewing; waits for a renewal in flight. The files stay. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight?.catch(() => undefined);
    this.#client.close();
  }

  async #renewOnce(): Promise<CredentialSnapshot> {
    const o = this.#o;
    clearTimeout(this.#timer);
    try {
      const h = this.#held;
      let fresh: Held;
      if (h.notAfter > o.clock()) {
        fresh = await fetchSvid(o, undefined, h.bundlePem, this.#client);
      } else if (o.adminDir !== undefined) {
        // Our SVID lapsed (the CA was away too long): only the operator's credential can vouch for us now.
        const admin = readAdmin(o.adminDir);
        fresh = await fetchSvid(o, admin, admin.bundlePem);
      } else {
        throw new CredentialError('no_credential', `our SVID expired at ${new Date(h.notAfter).toISOString()} and no adminDir was given; restart with the operator's admin credential`);
      }
      if (this.#stopped) throw new CredentialError('stopped', 'the credential was stopped during renewal');
      install(o, fresh);
      const bundleChanged = fresh.bundleFingerprint !== h.bundleFingerprint;
      this.#held = fresh;
      this.#client.updateCredential({ certPem: fresh.certPem, keyPem: fresh.keyPem });
      if (bundleChanged) this.#client.updateTrust(fresh.bundlePem);
      this.#failures = 0;
      o.log({ event: 'credential_renewed', spiffeId: this.spiffeId, serial: fresh.serial, notAfter: new Date(fresh.notAfter).toISOString() });
      this.#scheduleRenewal();
      const snap = this.current();
      this.emit('renewed', snap);
      if (bundleChanged) this.emit('bundle', fresh.bundlePem);
      return snap;
    } catch (err) {
      if (!this.#stopped) {
        this.#failures++;
        const base = Math.min(o.retryMaxMs, o.retryInitialMs * 2 ** Math.min(this.#failures - 1, 30));
        const retryInMs = Math.round(base * (0.8 + 0.4 * o.random()));
        this.#arm(retryInMs);
        const e = err as Error & { code?: string };
        o.log({ event: 'credential_renew_failed', spiffeId: this.spiffeId, attempt: this.#failures, retryInMs, code: e.code, error: e.message });
        const info: RenewFailure = { attempt: this.#failures, retryInMs };
        this.emit('renew_failed', err, info);
      }
      throw err;
    }
  }

  #scheduleRenewal(): void {
    const h = this.#held;
    const life = h.notAfter - h.start;
    const at = h.start + life * (RENEW_AT + (this.#o.random() * 2 - 1) * RENEW_JITTER);
    this.#arm(Math.max(0, at - this.#o.clock()));
  }

  #arm(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    // The timer alone must not keep the process alive; the servers do.
    this.#timer = setTimeout(() => void this.renew().catch(() => undefined), ms).unref();
  }
}

const refusedByCa = (err: unknown): boolean => err instanceof CaClientError && err.refused;

/** Reads <credDir>/{cert,key,bundle}.pem; undefined when absent, throws when present but unusable. */
function readOwn(o: Internals, now: number): Held | undefined {
  const paths = { cert: join(o.credDir, FILES.cert), key: join(o.credDir, FILES.key), bundle: join(o.credDir, FILES.bundle) };
  const present = Object.values(paths).filter((p) => existsSync(p));
  if (present.length === 0) return undefined;
  if (present.length < 3) throw new Error(`incomplete: only ${present.map((p) => p.slice(o.credDir.length + 1)).join(', ')}`);
  const certPem = readFileSync(paths.cert, 'utf8');
  const keyPem = readFileSync(paths.key, 'utf8');
  const bundlePem = readFileSync(paths.bundle, 'utf8');
  const leaf = leafOf(certPem);
  const id = spiffeUri(leaf);
  if (id !== o.spiffeId) throw new Error(`cert.pem is ${id ?? 'no SVID'}, not ${o.spiffeId}`);
  // Files are replaced one by one; a crash between two renames leaves a key
  // that does not match the certificate, which must not be used.
  if (!importPrivateKeyPem(keyPem).spki.equals(leaf.spki)) throw new Error('key.pem does not match cert.pem');
  const bundle = bundleFromPem(bundlePem, o.trustDomain);
  const mtime = statSync(paths.cert).mtimeMs;
  return {
    certPem,
    keyPem,
    bundlePem,
    bundleFingerprint: bundleFingerprint(bundle),
    serial: leaf.serialHex,
    notAfter: leaf.notAfter.getTime(),
    start: Math.max(leaf.notBefore.getTime(), Math.min(mtime, now)),
  };
}

/**
 * A new key and an SVID for it, plus the CA's current roots. Authenticates
 * with `auth` over a one-off client, or with `client` (ours) when given.
 */
async function fetchSvid(o: Internals, auth: CaCredential | undefined, trustPem: string, client?: CaClient): Promise<Held> {
  const oneOff = client === undefined;
  const c =
    client ??
    new CaClient({ url: o.caUrl, bundlePem: trustPem, credential: auth!, trustDomain: o.trustDomain, timeoutMs: o.timeoutMs });
  try {
    const key = generateKeyPair('ec-p256');
    const answer = await c.svid(createCsr(key, o.spiffeId), o.spiffeId);
    const receivedAt = o.clock();
    const rootsPem = await c.bundlePem();
    let leaf: ParsedCertificate;
    let bundle;
    try {
      leaf = leafOf(answer.svid);
      bundle = bundleFromPem(rootsPem, o.trustDomain);
    } catch (err) {
      throw new CredentialError('bad_answer', `the CA's answer does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (spiffeUri(leaf) !== o.spiffeId || !leaf.spki.equals(key.spki)) {
      throw new CredentialError('bad_answer', `the CA returned an SVID for ${spiffeUri(leaf) ?? 'nothing'} or another key; expected ${o.spiffeId} for our CSR`);
    }
    return {
      certPem: answer.svid,
      keyPem: exportPrivateKeyPem(key.privateKey),
      bundlePem: bundleToPem(bundle),
      bundleFingerprint: bundleFingerprint(bundle),
      serial: leaf.serialHex,
      notAfter: leaf.notAfter.getTime(),
      start: Math.max(leaf.notBefore.getTime(), receivedAt),
    };
  } finally {
    if (oneOff) c.close();
  }
}

/** Writes the three files, key first; readOwn refuses a mismatched pair left by a crash. */
function install(o: Internals, h: Held): void {
  writeFileAtomicSync(join(o.credDir, FILES.key), h.keyPem, 0o600);
  writeFileAtomicSync(join(o.credDir, FILES.cert), h.certPem, 0o600);
  writeFileAtomicSync(join(o.credDir, FILES.bundle), h.bundlePem, 0o600);
}
