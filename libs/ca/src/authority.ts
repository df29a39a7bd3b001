// The certificate authority's rules: who may get which SVID, join tokens,
// identity assignments, revocation and root rotation. Mechanics (keys, DER,
// signatures) come from @amime/identity; persistence from ca-state.ts.
// Every mutation is made on a copy and committed with one atomic write, so a
// refused request or a crash changes nothing that was stored.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import {
  createRevocationSet,
  createTrustBundle,
  normalizeSerial,
  parseSpiffeId,
  toSpiffeBundle,
  type RevocationSet,
  type TrustBundle,
} from '@amime/identity';
import {
  type PersistedState,
  type KeyAlgorithmName,
  type Ttls,
  loadState,
  saveState,
  removeUnreferencedKeys,
} from './ca-state.js';
import { CaError } from './errors.js';
import { Journal } from './journal.js';
import { type Signer, certFromPem, createSlot, loadSigner, renewIntermediate } from './slots.js';

export type Clock = () => number;

export interface IssuedRecord {
  serial: string;
  spiffeId: string;
  /** Node the SVID's key lives on ('' for operator-issued credentials). */
  node: string;
  slot: string;
  notAfter: string;
  at: string;
}

export interface IssuedSvid {
  spiffeId: string;
  serial: string;
  notAfter: Date;
  /** Leaf first, then the intermediate. */
  chainPem: string;
  chainDer: readonly Buffer[];
}

export interface InitOptions {
  trustDomain: string;
  keyAlgorithm?: KeyAlgorithmName;
  ttl?: Partial<Ttls>;
  refreshHintSeconds?: number;
  adminName?: string;
  /** Plug-in CA: operator-supplied root (and optionally intermediate) in PEM. */
  plugIn?: { rootCertPem: string; rootKeyPem?: string; intermediateCertPem?: string; intermediateKeyPem?: string };
}

export const DEFAULT_TTLS: Ttls = {
  workloadSeconds: 3600,
  agentSeconds: 3600,
  adminSeconds: 30 * 86400,
  intermediateSeconds: 7 * 86400,
  rootSeconds: 10 * 365 * 86400,
};

const NODE_NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const RESERVED_PREFIXES = ['/agent/', '/admin/', '/control-plane/'];
const MAX_TOKEN_TTL = 7 * 86400;

export function validateNodeName(node: unknown, field = 'node'): string {
  if (typeof node !== 'string' || !NODE_NAME.test(node)) {
    throw new CaError(
      'AMIME_ERR_CA_BAD_REQUEST',
      `${field} must be 1-63 lowercase letters, digits, '.', '-' or '_', starting and ending with a letter or digit`,
      'bad_node_name',
    );
  }
  return node;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const iso = (ms: number): string => new Date(ms).toISOString();

export class CertificateAuthorityService {
  #state: PersistedState;
  #signers = new Map<string, Signer>();
  #issued: Journal<IssuedRecord>;
  /** node → issued SVIDs still valid: what an eviction must revoke. */
  #byNode = new Map<string, { list: { serial: string; notAfter: string }[]; pruneAt: number }>();
  /** slot → latest leaf expiry signed by it: when its root may retire. */
  #slotMaxNotAfter = new Map<string, number>();
  #bundle!: TrustBundle;
  #revocations!: RevocationSet;
  #listeners = new Set<() => void>();
  issuedSinceStart = 0;

  private constructor(
    readonly dir: string,
    state: PersistedState,
    readonly clock: Clock,
  ) {
    this.#state = state;
    for (const slot of state.slots) this.#signers.set(slot.id, loadSigner(dir, slot, state.trustDomain, clock));
    const journalPath = join(dir, 'issued.log');
    const now = clock();
    for (const rec of Journal.read<IssuedRecord>(journalPath)) this.#remember(rec, now);
    this.#issued = new Journal<IssuedRecord>(journalPath);
    this.#rebuildViews();
  }

  /** Create a new CA in an empty directory (or a plug-in CA from operator material). */
  static init(dir: string, opts: InitOptions, clock: Clock = Date.now): CertificateAuthorityService {
    if (loadState(dir)) throw new CaError('AMIME_ERR_CA_CONFLICT', `${dir} already holds a CA; refusing to overwrite it`);
    const trustDomain = parseSpiffeId(`spiffe://${opts.trustDomain}`).trustDomain;
    const ttl: Ttls = { ...DEFAULT_TTLS, ...opts.ttl };
    const keyAlgorithm = opts.keyAlgorithm ?? 'ec-p256';
    const now = clock();
    const slot = createSlot(dir, { trustDomain, keyAlgorithm, ttl, now, ...(opts.plugIn ? { plugIn: opts.plugIn } : {}) });
    const state: PersistedState = {
      schema: 1,
      trustDomain,
      keyAlgorithm,
      createdAt: iso(now),
      ttl,
      refreshHintSeconds: opts.refreshHintSeconds ?? 300,
      slots: [slot],
      activeSlot: slot.id,
      rotation: { phase: 'steady' },
      bundleSequence: 1,
      admins: [`spiffe://${trustDomain}/admin/${opts.adminName ?? 'operator'}`],
      assignments: {},
      tokens: [],
      nodes: {},
      revocations: { version: 1, serials: [], spiffeIds: [] },
    };
    saveState(dir, state);
    return new CertificateAuthorityService(dir, state, clock);
  }

  static open(dir: string, clock: Clock = Date.now): CertificateAuthorityService {
    const state = loadState(dir);
    if (!state) throw new CaError('AMIME_ERR_CA_STATE', `${dir} holds no CA: run 'meshctl init' or 'ca init' first`);
    removeUnreferencedKeys(dir, state);
    return new CertificateAuthorityService(dir, state, clock);
  }

  close(): void {
    this.#issued.close();
  }

  // ------------------------------------------------------------ views

  get trustDomain(): string {
    return this.#state.trustDomain;
  }
  get state(): Readonly<PersistedState> {
    return this.#state;
  }
  bundle(): TrustBundle {
    return this.#bundle;
  }
  bundleJson(): object {
    return toSpiffeBundle(this.#bundle);
  }
  bundlePem(): string {
    return this.#state.slots.map((s) => s.rootCertPem.trim()).join('\n') + '\n';
  }
  revocations(): RevocationSet {
    return this.#revocations;
  }
  revocationList(): { version: number; serials: string[]; spiffeIds: string[] } {
    const r = this.#revocations;
    return { version: r.version, serials: [...r.serials], spiffeIds: [...r.spiffeIds] };
  }
  isAdmin(spiffeId: string): boolean {
    return this.#state.admins.includes(spiffeId);
  }
  activeSigner(): Signer {
    return this.#signers.get(this.#state.activeSlot)!;
  }
  /** Called after every change to the bundle or the revocation list. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  // ------------------------------------------------------------ issuance

  /** Sign a CSR for an identity the caller is entitled to. */
  async issue(caller: string, csr: string | Buffer, requested: unknown): Promise<IssuedSvid> {
    if (typeof requested !== 'string') throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'spiffeId: required string');
    const id = this.#parseOwnId(requested, 'spiffeId');
    const callerNode = this.#agentNode(caller);
    const controlPlaneCaller = this.#controlPlaneId(caller);
    let node = '';
    let ttl: number;
    if (callerNode !== undefined) {
      node = callerNode;
      if (this.#state.nodes[node]?.evictedAt) {
        this.#refuse(caller, requested, 'node_evicted');
        throw new CaError('AMIME_ERR_CA_REVOKED', `node ${node} was evicted; create a new join token to readmit it`, 'node_evicted');
      }
      if (id === caller) ttl = this.#state.ttl.agentSeconds;
      else if (this.#state.assignments[node]?.includes(id)) ttl = this.#state.ttl.workloadSeconds;
      else {
        this.#refuse(caller, requested, 'not_assigned');
        throw new CaError(
          'AMIME_ERR_CA_NOT_ASSIGNED',
          `${id} is not assigned to node ${node}; an operator can assign it with 'meshctl assign ${node} ${id}'`,
          'not_assigned',
        );
      }
    } else if (this.isAdmin(caller)) {
      const path = parseSpiffeId(id).path;
      if (!path.startsWith('/control-plane/') && !path.startsWith('/admin/')) {
        throw new CaError('AMIME_ERR_CA_FORBIDDEN', 'an admin may issue only /control-plane/* and /admin/* identities; workloads get SVIDs through their agent', 'admin_scope');
      }
      if (path.startsWith('/admin/') && !this.isAdmin(id)) {
        throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${id} is not an admin identity of this CA`, 'admin_scope');
      }
      ttl = path.startsWith('/admin/') ? this.#state.ttl.adminSeconds : this.#state.ttl.agentSeconds;
    } else if (controlPlaneCaller !== undefined) {
      // The control plane renews its own SVID without the operator's admin
      // credential; it gets nothing else, so a stolen control-plane key cannot mint other identities.
      if (id !== controlPlaneCaller) {
        this.#refuse(caller, requested, 'caller_not_allowed');
        throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${caller} may renew only its own SVID, not request ${id}`, 'caller_not_allowed');
      }
      ttl = this.#state.ttl.agentSeconds;
    } else {
      this.#refuse(caller, requested, 'caller_not_allowed');
      throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${caller} may not request SVIDs`, 'caller_not_allowed');
    }
    if (this.#idRevoked(id)) throw new CaError('AMIME_ERR_CA_REVOKED', `${id} is revoked`, 'id_revoked');
    return this.#sign(csr, id, ttl, node);
  }

  /** Bootstrap: a one-time join token plus a CSR for spiffe://<td>/agent/<node>. */
  async join(token: unknown, csr: unknown): Promise<IssuedSvid & { node: string }> {
    if (typeof token !== 'string' || token.length > 200) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'token: required string');
    if (typeof csr !== 'string') throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'csr: required PEM string');
    const hash = sha256(token);
    const rec = this.#state.tokens.find((t) => timingSafeEqual(Buffer.from(t.hash, 'hex'), Buffer.from(hash, 'hex')));
    const now = this.clock();
    if (!rec) return this.#tokenRefused('unknown join token', 'token_unknown');
    if (rec.usedAt) return this.#tokenRefused(`join token for node ${rec.node} was already used at ${rec.usedAt}`, 'token_reused');
    if (Date.parse(rec.expiresAt) <= now) return this.#tokenRefused(`join token for node ${rec.node} expired at ${rec.expiresAt}`, 'token_expired');
    const expected = `spiffe://${this.trustDomain}/agent/${rec.node}`;
    // The CSR is checked (and signed) before the token is spent, so a bad CSR
    // does not burn the token; the token is spent durably before the SVID is
    // returned, so a crash can never let it be used twice.
    const prepared = this.#prepareSign(csr, expected, this.#state.ttl.agentSeconds);
    if (this.#idRevoked(expected)) throw new CaError('AMIME_ERR_CA_REVOKED', `${expected} is revoked`, 'id_revoked');
    this.#mutate((s) => {
      const t = s.tokens.find((x) => x.hash === rec.hash)!;
      t.usedAt = iso(now);
      const n = (s.nodes[rec.node] ??= {});
      n.joinedAt = iso(now);
      delete n.evictedAt;
    });
    const out = await this.#commitIssued(prepared, rec.node);
    return { ...out, node: rec.node };
  }

  #tokenRefused(message: string, reason: string): never {
    this.#refuse('(join)', '', reason);
    throw new CaError('AMIME_ERR_CA_TOKEN', message, reason);
  }

  async #sign(csr: string | Buffer, id: string, ttl: number, node: string): Promise<IssuedSvid> {
    return this.#commitIssued(this.#prepareSign(csr, id, ttl), node);
  }

  #prepareSign(csr: string | Buffer, id: string, ttl: number): IssuedSvid & { slot: string } {
    const signer = this.activeSigner();
    try {
      const r = signer.authority.signCsr(csr, { spiffeId: id, ttlSeconds: ttl });
      return { spiffeId: id, serial: r.serialHex, notAfter: r.notAfter, chainDer: r.chainDer, chainPem: r.chainPem, slot: signer.slotId };
    } catch (err) {
      const e = err as Error & { reason?: string; code?: string };
      if (e instanceof CaError) throw e;
      throw new CaError('AMIME_ERR_CA_BAD_CSR', `csr: ${e.message}`, `csr_${e.reason ?? 'malformed'}`);
    }
  }

  async #commitIssued(p: IssuedSvid & { slot: string }, node: string): Promise<IssuedSvid> {
    const rec: IssuedRecord = { serial: p.serial, spiffeId: p.spiffeId, node, slot: p.slot, notAfter: p.notAfter.toISOString(), at: iso(this.clock()) };
    await this.#issued.append(rec);
    this.#remember(rec, this.clock());
    this.issuedSinceStart++;
    log({ event: 'svid_issued', spiffeId: p.spiffeId, node, serial: p.serial, notAfter: rec.notAfter });
    const { slot: _slot, ...out } = p;
    return out;
  }

  /** The CA's own serving SVID (key in memory only). */
  issueOwn(csr: Buffer | string, component = 'ca'): IssuedSvid {
    const id = `spiffe://${this.trustDomain}/control-plane/${component}`;
    const p = this.#prepareSign(csr, id, this.#state.ttl.agentSeconds);
    this.#slotMaxNotAfter.set(p.slot, Math.max(this.#slotMaxNotAfter.get(p.slot) ?? 0, p.notAfter.getTime()));
    const { slot: _slot, ...out } = p;
    return out;
  }

  /** Sign the first admin credential (at init, outside the API). */
  async issueAdmin(csr: Buffer | string, name?: string): Promise<IssuedSvid> {
    const id = name ? `spiffe://${this.trustDomain}/admin/${name}` : this.#state.admins[0]!;
    if (!this.isAdmin(id)) throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${id} is not an admin identity`);
    return this.#sign(csr, id, this.#state.ttl.adminSeconds, '');
  }

  // ------------------------------------------------------------ operator actions

  createJoinToken(node: unknown, ttlSeconds: unknown = 600): { token: string; node: string; expiresAt: string } {
    const name = validateNodeName(node);
    if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TOKEN_TTL) {
      throw new CaError('AMIME_ERR_CA_BAD_REQUEST', `ttlSeconds must be an integer from 1 to ${MAX_TOKEN_TTL}`);
    }
    const token = `amime-jt.${randomBytes(32).toString('base64url')}`;
    const now = this.clock();
    const expiresAt = iso(now + ttlSeconds * 1000);
    this.#mutate((s) => {
      // drop expired tokens so the list stays small; a spent one is kept until
      // it expires, so that a replay is reported as token_reused, not unknown
      s.tokens = s.tokens.filter((t) => Date.parse(t.expiresAt) > now);
      s.tokens.push({ hash: sha256(token), node: name, createdAt: iso(now), expiresAt });
    });
    log({ event: 'join_token_created', node: name, expiresAt });
    return { token, node: name, expiresAt };
  }

  assign(node: unknown, spiffeId: unknown): { node: string; spiffeId: string } {
    const name = validateNodeName(node);
    const id = this.#workloadId(spiffeId);
    this.#mutate((s) => {
      const list = (s.assignments[name] ??= []);
      if (!list.includes(id)) list.push(id);
    });
    log({ event: 'identity_assigned', node: name, spiffeId: id });
    return { node: name, spiffeId: id };
  }

  unassign(node: unknown, spiffeId: unknown): { node: string; spiffeId: string } {
    const name = validateNodeName(node);
    const id = this.#workloadId(spiffeId);
    if (!this.#state.assignments[name]?.includes(id)) {
      throw new CaError('AMIME_ERR_CA_NOT_FOUND', `${id} is not assigned to node ${name}`);
    }
    this.#mutate((s) => {
      s.assignments[name] = s.assignments[name]!.filter((x) => x !== id);
      if (s.assignments[name]!.length === 0) delete s.assignments[name];
    });
    return { node: name, spiffeId: id };
  }

  assignments(node?: string): Record<string, string[]> {
    if (node !== undefined) return { [node]: [...(this.#state.assignments[node] ?? [])] };
    return structuredClone(this.#state.assignments);
  }

  revokeSerial(serial: unknown, reason = 'operator'): { version: number } {
    if (typeof serial !== 'string' || !/^[0-9a-f]{1,40}$/i.test(serial)) {
      throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'serial: hex string of at most 40 digits');
    }
    const s = normalizeSerial(serial); // the form issued serials have (whole bytes, no leading zero bytes)
    this.#mutate((st) => {
      if (!st.revocations.serials.some((r) => r.serial === s)) {
        st.revocations.serials.push({ serial: s, reason, at: iso(this.clock()), ...this.#notAfterOf(s) });
        st.revocations.version++;
      }
    });
    log({ event: 'revoked_serial', serial: s, reason });
    return { version: this.#state.revocations.version };
  }

  revokeSpiffeId(spiffeId: unknown, reason = 'operator'): { version: number } {
    if (typeof spiffeId !== 'string') throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'spiffeId: required string');
    const id = this.#parseOwnId(spiffeId, 'spiffeId');
    if (this.isAdmin(id)) throw new CaError('AMIME_ERR_CA_FORBIDDEN', 'refusing to revoke an admin identity: it would lock operators out');
    this.#mutate((st) => {
      if (!st.revocations.spiffeIds.some((r) => r.spiffeId === id)) {
        st.revocations.spiffeIds.push({ spiffeId: id, reason, at: iso(this.clock()) });
        st.revocations.version++;
      }
    });
    log({ event: 'revoked_spiffe_id', spiffeId: id, reason });
    return { version: this.#state.revocations.version };
  }

  unrevokeSpiffeId(spiffeId: unknown): { version: number } {
    if (typeof spiffeId !== 'string') throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'spiffeId: required string');
    const id = this.#parseOwnId(spiffeId, 'spiffeId');
    if (!this.#idRevoked(id)) throw new CaError('AMIME_ERR_CA_NOT_FOUND', `${id} is not revoked`);
    this.#mutate((st) => {
      st.revocations.spiffeIds = st.revocations.spiffeIds.filter((r) => r.spiffeId !== id);
      st.revocations.version++;
    });
    return { version: this.#state.revocations.version };
  }

  /** Evict a node: revoke every SVID whose key lives there, drop its assignments and tokens. */
  evictNode(node: unknown): { version: number; revokedSerials: number } {
    const name = validateNodeName(node);
    const now = this.clock();
    const live = (this.#byNode.get(name)?.list ?? []).filter((r) => Date.parse(r.notAfter) > now);
    this.#mutate((st) => {
      const have = new Set(st.revocations.serials.map((r) => r.serial));
      for (const r of live) {
        if (!have.has(r.serial)) st.revocations.serials.push({ serial: r.serial, reason: `evict:${name}`, at: iso(now), notAfter: r.notAfter });
      }
      st.revocations.version++;
      delete st.assignments[name];
      st.tokens = st.tokens.filter((t) => t.node !== name);
      (st.nodes[name] ??= {}).evictedAt = iso(now);
    });
    log({ event: 'node_evicted', node: name, revokedSerials: live.length });
    return { version: this.#state.revocations.version, revokedSerials: live.length };
  }

  // ------------------------------------------------------------ root rotation

  rotationStatus(): object {
    const r = this.#state.rotation;
    return {
      ...r,
      activeSlot: this.#state.activeSlot,
      bundleSequence: this.#state.bundleSequence,
      roots: this.#state.slots.map((s) => ({ slot: s.id, fingerprint: certFromPem(s.rootCertPem).fingerprint256, notAfter: new Date(certFromPem(s.rootCertPem).validTo).toISOString() })),
      canActivateAfter: r.preparedAt ? iso(Date.parse(r.preparedAt) + this.#state.refreshHintSeconds * 1000) : undefined,
    };
  }

  /** Step 1: a new root and intermediate; both roots in the bundle; signing unchanged. */
  prepareRotation(): object {
    if (this.#state.rotation.phase !== 'steady') {
      throw new CaError('AMIME_ERR_CA_CONFLICT', `a rotation is already ${this.#state.rotation.phase}; finish it first`, 'rotation_in_progress');
    }
    const now = this.clock();
    const slot = createSlot(this.dir, { trustDomain: this.trustDomain, keyAlgorithm: this.#state.keyAlgorithm, ttl: this.#state.ttl, now });
    const signer = loadSigner(this.dir, slot, this.trustDomain, this.clock);
    this.#mutate((s) => {
      s.slots.push(slot);
      s.bundleSequence++;
      s.rotation = { phase: 'prepared', newSlot: slot.id, oldSlot: s.activeSlot, preparedAt: iso(now) };
    });
    this.#signers.set(slot.id, signer);
    log({ event: 'rotation_prepared', slot: slot.id });
    return this.rotationStatus();
  }

  /** Step 2: sign with the new intermediate. Waits one bundle refresh so peers hold the new root. */
  activateRotation(force = false): object {
    const r = this.#state.rotation;
    if (r.phase !== 'prepared') throw new CaError('AMIME_ERR_CA_CONFLICT', `nothing to activate (rotation is ${r.phase}); run prepare first`, 'rotation_state');
    const now = this.clock();
    const earliest = Date.parse(r.preparedAt!) + this.#state.refreshHintSeconds * 1000;
    if (!force && now < earliest) {
      throw new CaError('AMIME_ERR_CA_CONFLICT', `peers may not hold the new root yet: activate after ${iso(earliest)} (one bundle refresh), or force`, 'rotation_too_early');
    }
    const oldMax = this.#slotMaxNotAfter.get(r.oldSlot!) ?? now;
    this.#mutate((s) => {
      s.activeSlot = r.newSlot!;
      s.rotation = { ...r, phase: 'activated', activatedAt: iso(now), retireAfter: iso(Math.max(now, oldMax)) };
    });
    log({ event: 'rotation_activated', slot: r.newSlot });
    this.#emit();
    return this.rotationStatus();
  }

  /** Step 3: drop the old root once every leaf it signed has expired. */
  retireRotation(force = false): object {
    const r = this.#state.rotation;
    if (r.phase !== 'activated') throw new CaError('AMIME_ERR_CA_CONFLICT', `nothing to retire (rotation is ${r.phase})`, 'rotation_state');
    const now = this.clock();
    const retireAfter = Math.max(Date.parse(r.retireAfter!), this.#slotMaxNotAfter.get(r.oldSlot!) ?? 0);
    if (!force && now < retireAfter) {
      throw new CaError('AMIME_ERR_CA_CONFLICT', `leaves signed under the old root are valid until ${iso(retireAfter)}; retire after that, or force`, 'rotation_too_early');
    }
    this.#mutate((s) => {
      s.slots = s.slots.filter((x) => x.id !== r.oldSlot);
      s.bundleSequence++;
      s.rotation = { phase: 'steady' };
    });
    this.#signers.delete(r.oldSlot!);
    removeUnreferencedKeys(this.dir, this.#state);
    log({ event: 'rotation_retired', slot: r.oldSlot });
    return this.rotationStatus();
  }

  /** Renew the active intermediate when past half its life (needs the root key online). */
  renewIntermediateIfDue(): boolean {
    const slot = this.#state.slots.find((s) => s.id === this.#state.activeSlot)!;
    const cert = certFromPem(slot.intermediateCertPem);
    const now = this.clock();
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (now < from + (to - from) / 2 || !slot.rootKeyFile) return false;
    const renewed = renewIntermediate(this.dir, slot, { trustDomain: this.trustDomain, keyAlgorithm: this.#state.keyAlgorithm, ttl: this.#state.ttl, now });
    this.#mutate((s) => {
      const i = s.slots.findIndex((x) => x.id === slot.id);
      s.slots[i] = renewed;
    });
    this.#signers.set(slot.id, loadSigner(this.dir, renewed, this.trustDomain, this.clock));
    removeUnreferencedKeys(this.dir, this.#state);
    log({ event: 'intermediate_renewed', slot: slot.id, notAfter: certFromPem(renewed.intermediateCertPem).validTo });
    return true;
  }

  // ------------------------------------------------------------ internals

  #mutate(fn: (s: PersistedState) => void): void {
    const next = structuredClone(this.#state);
    fn(next);
    // An entry for an expired certificate protects nothing: drop it so the
    // stored and published list stays as small as the live set.
    const now = this.clock();
    const kept = next.revocations.serials.filter((r) => !r.notAfter || Date.parse(r.notAfter) > now);
    if (kept.length !== next.revocations.serials.length) {
      next.revocations.serials = kept;
      if (next.revocations.version === this.#state.revocations.version) next.revocations.version++;
    }
    saveState(this.dir, next);
    const bundleChanged = next.bundleSequence !== this.#state.bundleSequence;
    const revChanged = next.revocations.version !== this.#state.revocations.version;
    this.#state = next;
    if (bundleChanged || revChanged) {
      this.#rebuildViews();
      this.#emit();
    }
  }

  #emit(): void {
    for (const fn of this.#listeners) fn();
  }

  #rebuildViews(): void {
    const s = this.#state;
    const now = this.clock();
    this.#bundle = createTrustBundle({
      trustDomain: s.trustDomain,
      roots: s.slots.map((x) => certFromPem(x.rootCertPem).raw),
      sequence: s.bundleSequence,
      refreshHintSeconds: s.refreshHintSeconds,
    });
    this.#revocations = createRevocationSet({
      version: s.revocations.version,
      serials: s.revocations.serials.filter((r) => !r.notAfter || Date.parse(r.notAfter) > now).map((r) => r.serial),
      spiffeIds: s.revocations.spiffeIds.map((r) => r.spiffeId),
    });
  }

  #remember(rec: IssuedRecord, now: number): void {
    const notAfter = Date.parse(rec.notAfter);
    this.#slotMaxNotAfter.set(rec.slot, Math.max(this.#slotMaxNotAfter.get(rec.slot) ?? 0, notAfter));
    if (notAfter <= now) return; // operator-issued ('' node) are tracked too, for revokeSerial's expiry
    let entry = this.#byNode.get(rec.node);
    if (!entry) this.#byNode.set(rec.node, (entry = { list: [], pruneAt: 64 }));
    // Drop expired entries when the list has doubled since the last prune:
    // memory tracks live SVIDs and the cost stays amortised O(1).
    if (entry.list.length >= entry.pruneAt) {
      entry.list = entry.list.filter((r) => Date.parse(r.notAfter) > now);
      entry.pruneAt = Math.max(64, entry.list.length * 2);
    }
    entry.list.push({ serial: rec.serial, notAfter: rec.notAfter });
  }

  #notAfterOf(serial: string): { notAfter?: string } {
    for (const { list } of this.#byNode.values()) {
      const hit = list.find((r) => r.serial === serial);
      if (hit) return { notAfter: hit.notAfter };
    }
    return {};
  }

  #idRevoked(id: string): boolean {
    return this.#state.revocations.spiffeIds.some((r) => r.spiffeId === id);
  }

  /** The caller's normalized ID when it is a /control-plane/* identity of this trust domain. */
  #controlPlaneId(caller: string): string | undefined {
    try {
      const id = parseSpiffeId(caller);
      return id.trustDomain === this.trustDomain && id.path.startsWith('/control-plane/') ? id.toString() : undefined;
    } catch {
      return undefined;
    }
  }

  #agentNode(caller: string): string | undefined {
    const prefix = `spiffe://${this.trustDomain}/agent/`;
    if (!caller.startsWith(prefix)) return undefined;
    const node = caller.slice(prefix.length);
    return NODE_NAME.test(node) ? node : undefined;
  }

  #parseOwnId(value: string, field: string): string {
    let id;
    try {
      id = parseSpiffeId(value);
    } catch (err) {
      throw new CaError('AMIME_ERR_CA_BAD_REQUEST', `${field}: ${(err as Error).message}`, 'bad_spiffe_id');
    }
    if (id.trustDomain !== this.trustDomain) {
      throw new CaError('AMIME_ERR_CA_FORBIDDEN', `${field}: trust domain ${id.trustDomain} is not this CA's (${this.trustDomain})`, 'foreign_trust_domain');
    }
    return id.toString();
  }

  #workloadId(value: unknown): string {
    if (typeof value !== 'string') throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'spiffeId: required string');
    const id = this.#parseOwnId(value, 'spiffeId');
    const path = parseSpiffeId(id).path;
    if (RESERVED_PREFIXES.some((p) => path.startsWith(p)) || !/^\/ns\/[^/]+\/sa\/[^/]+$/.test(path)) {
      throw new CaError('AMIME_ERR_CA_BAD_REQUEST', `spiffeId: workload identities have the form spiffe://${this.trustDomain}/ns/<namespace>/sa/<service-account>`, 'bad_workload_id');
    }
    return id;
  }

  #refuse(caller: string, requested: string, reason: string): void {
    log({ event: 'svid_refused', caller, requested, reason });
  }
}

/** Structured audit log on stderr: one JSON object per line (JSON escaping keeps fields from forging lines). */
export function log(fields: Record<string, unknown>): void {
  if (process.env['AMIME_CA_QUIET']) return;
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), component: 'ca', ...fields }) + '\n');
}

