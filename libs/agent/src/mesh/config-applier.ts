// Applies pushed config: the update is folded into a candidate state, the
// candidate is compiled and its trust material checked before anything is
// swapped in; a throw here becomes a NACK and the agent keeps serving its
// previous config. After the swap the config is saved as the last good one.
import { createRevocationSet, type RevocationSet } from '@amime/identity';
import type { Resource, ResourceType } from '@amime/protocol';
import type { AppliedUpdate } from '@amime/protocol/client';
import type { HeldConfig } from '../config/last-good.js';
import { MeshState } from './mesh-state.js';
import { MeshRuntime } from './mesh-runtime.js';

/** Where pushed trust material goes (the identity manager). */
export interface TrustSink {
  /** Throws on roots it cannot use; true when they changed. */
  setTrustBundle(pem: string): boolean;
  /** False when not newer than the list held. */
  setRevocations(set: RevocationSet): boolean;
  revocations(): RevocationSet;
}

export interface ConfigApplierOptions {
  held: HeldConfig;
  trustDomain: string;
  localZone?: string;
  trust: TrustSink;
  save(held: HeldConfig): Promise<void>;
  /** A RevocationList was applied: close what it revokes. */
  onRevocations?(set: RevocationSet): void;
  log(event: Record<string, unknown>): void;
}

export function stateOf(held: HeldConfig): MeshState {
  return new MeshState({
    versions: Object.fromEntries(Object.entries(held).map(([t, v]) => [t, v!.version])) as Partial<Record<ResourceType, string>>,
    resources: Object.fromEntries(Object.entries(held).map(([t, v]) => [t, v!.resources])) as Partial<Record<ResourceType, readonly Resource[]>>,
  });
}

export class ConfigApplier {
  readonly runtime: MeshRuntime;
  readonly #opts: ConfigApplierOptions;
  #held: HeldConfig;

  /** Starts from the held (last good) config; its trust material is applied too. */
  constructor(opts: ConfigApplierOptions) {
    this.#opts = opts;
    this.#held = opts.held;
    const state = stateOf(opts.held);
    try {
      this.#applyTrust(state);
    } catch (err) {
      // A stored bundle the identity manager refuses: keep the CA's roots, the next push decides.
      opts.log({ level: 'warn', event: 'last_good_trust_ignored', error: (err as Error).message });
    }
    this.runtime = new MeshRuntime(state, { trustDomain: opts.trustDomain, ...(opts.localZone !== undefined && { localZone: opts.localZone }) });
  }

  get held(): HeldConfig {
    return this.#held;
  }

  /** For the push client: throw (NACK) to keep the previous config. */
  async apply(u: AppliedUpdate): Promise<void> {
    const next: HeldConfig = { ...this.#held, [u.resourceType]: { version: u.version, resources: [...u.resources.values()] } };
    const state = stateOf(next);
    for (const issue of MeshRuntime.check(state, this.#opts.trustDomain)) this.#opts.log({ level: 'warn', event: 'policy_issue', issue });
    if (u.resourceType === 'TrustBundle' || u.resourceType === 'RevocationList') this.#applyTrust(state);
    this.runtime.update(state);
    this.#held = next;
    if (u.resourceType === 'RevocationList') this.#opts.onRevocations?.(this.#opts.trust.revocations());
    await this.#opts.save(next);
  }

  #applyTrust(state: MeshState): void {
    const tb = state.trustBundle;
    if (tb) {
      if (tb.spec.trustDomain !== this.#opts.trustDomain) {
        throw new Error(`TrustBundle ${tb.metadata.name} is for trust domain ${tb.spec.trustDomain}; this agent is in ${this.#opts.trustDomain}`);
      }
      if (this.#opts.trust.setTrustBundle(tb.spec.roots.join(''))) this.#opts.log({ level: 'info', event: 'trust_bundle_updated', roots: tb.spec.roots.length });
    }
    const rl = state.revocations;
    if (rl) {
      // The CA's version, comparable with the list the identity manager fetches from the CA itself.
      this.#opts.trust.setRevocations(createRevocationSet({ version: rl.spec.version ?? 0, serials: rl.spec.serials, spiffeIds: rl.spec.identities }));
    }
  }
}
