// Every write of a resource goes through here: operator applies and deletes
// (admin API) and the derived kinds (registry Endpoints, CA-sync TrustBundle
// and RevocationList). One writer, so that:
//
// - the action reported (created / configured / unchanged) is what happened:
//   writes are serialized here and each is a compare-and-swap on the key;
// - a delete is bracketed by `/meta/last-delete/<Kind>` records (pending
//   before, the store revision after), which lets the push cache resume
//   agents with a delta after a restart and never miss a delete
//   (docs/design/control-plane.md, "Versions"; resource-cache.ts);
// - an unchanged resource is never rewritten, so its version (the store
//   revision of its last write) and the agents' caches stay put.
//
// Values are stored without metadata.version; reads add it back from the
// entry's revision. A batch is validated as a whole before the first write,
// so invalid input changes nothing; the writes themselves are one per
// resource (the store has no multi-key transactions).
import { LAST_DELETE_PREFIX } from './resource-cache.js';
import { isDeepStrictEqual } from 'node:util';
import {
  CONFIG_KINDS,
  DERIVED_KINDS,
  DNS1123_LABEL,
  INVALID,
  RESOURCE_SCHEMAS,
  RESOURCE_TYPES,
  anyResource,
  configResource,
  formatIssue,
  resourceKey,
  type ConfigResource,
  type Issue,
  type Resource,
  type ResourceType,
  ValidationError,
} from '@amime/protocol';
import { StoreError, type Store } from '@amime/store';
import { ControlPlaneError, cpError } from './errors.js';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  kind: string;
  namespace: string;
  name: string;
  /** Store key, `/resources/<Kind>/<namespace>/<name>`. */
  key: string;
  action: ApplyAction;
  /**
   * The resource's version after the apply: the store revision of its last
   * write, as a decimal string. On a dry run, the current version, or ''
   * for a resource that does not exist yet.
   */
  version: string;
}

export interface ApplyOutcome {
  results: ApplyResult[];
  /** Problems that do not refuse the apply, e.g. a Route to a Service that does not exist. */
  warnings: string[];
  dryRun: boolean;
}

export interface DeleteResult {
  kind: string;
  namespace: string;
  name: string;
  key: string;
  action: 'deleted';
  /** The version the resource had when it was deleted (or would be, on a dry run). */
  version: string;
  /** Problems the delete leaves behind, e.g. Routes to a deleted Service. */
  warnings: string[];
  dryRun: boolean;
}

export interface WriteFlags {
  dryRun?: boolean;
}

export interface ResourceServiceOptions {
  /** Structured events (corrupt stored values); nothing is logged without it. */
  log?: (event: Record<string, unknown>) => void;
}

/** `/meta/last-delete/<Kind>`: `{ revision, pending? }`, see #deleteEntry. */
export function lastDeleteKey(kind: ResourceType): string {
  return `${LAST_DELETE_PREFIX}${kind}`;
}

/** Conflicting writes by another process: re-read and retry this many times. */
const CAS_ATTEMPTS = 3;

const isKind = (kind: string, kinds: readonly string[]): boolean => kinds.includes(kind);

/** 400 naming every issue, one per line, with its document index, field path and fix. */
export function validationFailure(err: ValidationError, what = 'resources'): ControlPlaneError {
  const n = err.issues.length;
  const lines = err.issues.map((i) => `  ${formatIssue(i)}`).join('\n');
  return cpError('AMIME_ERR_CP_BAD_REQUEST', `invalid ${what}: ${n} problem${n === 1 ? '' : 's'}:\n${lines}`, 'invalid_resource', err.issues);
}

/** 400 unless `kind` is a resource type (and, with `kinds`, one of those). */
export function checkKind(kind: string, kinds: readonly string[] = RESOURCE_TYPES): asserts kind is ResourceType {
  if (isKind(kind, kinds)) return;
  if (isKind(kind, RESOURCE_TYPES)) {
    throw cpError(
      'AMIME_ERR_CP_BAD_REQUEST',
      `${kind} resources are derived by the control plane (from agent registrations and the CA), not written by operators; operators write ${CONFIG_KINDS.join(', ')}`,
      'derived_kind',
    );
  }
  const shown = JSON.stringify(kind.slice(0, 64));
  throw cpError('AMIME_ERR_CP_BAD_REQUEST', `kind ${shown} is not a resource type; use one of ${RESOURCE_TYPES.join(', ')}`, 'bad_kind');
}

/** 400 unless `value` is a DNS-1123 label (a namespace or a name). */
export function checkName(value: string, what: 'namespace' | 'name'): void {
  if (value.length <= 63 && DNS1123_LABEL.test(value)) return;
  throw cpError(
    'AMIME_ERR_CP_BAD_REQUEST',
    `${what} ${JSON.stringify(value.slice(0, 64))} is not a DNS-1123 label; use at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit`,
    `bad_${what}`,
  );
}

const keyOf = (kind: string, namespace: string, name: string): string => `/resources/${kind}/${namespace}/${name}`;

function withoutVersion<R extends Resource>(r: R): R {
  const { version: _dropped, ...metadata } = r.metadata;
  return { ...r, metadata } as R;
}

/** Equal as JSON: key order (e.g. of labels) does not matter, undefined fields do not count. */
function sameJson(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
}

function storeFailure(err: unknown): unknown {
  if (err instanceof StoreError) {
    if (err.code === 'AMIME_ERR_STORE_TOO_LARGE') return cpError('AMIME_ERR_CP_TOO_LARGE', `resource too large to store: ${err.message}`, 'value_too_large');
    if (err.code === 'AMIME_ERR_STORE_CONFLICT') return cpError('AMIME_ERR_CP_CONFLICT', `changed concurrently, try again: ${err.message}`, 'conflict');
  }
  return err;
}

const isConflict = (err: unknown): boolean => err instanceof StoreError && err.code === 'AMIME_ERR_STORE_CONFLICT';

export class ResourceService {
  readonly #store: Store;
  readonly #log: (event: Record<string, unknown>) => void;
  /** Tail of the write queue: every write runs after the previous one settled. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(store: Store, opts: ResourceServiceOptions = {}) {
    this.#store = store;
    this.#log = opts.log ?? (() => undefined);
  }

  // ---------------------------------------------------------------- operator kinds

  /**
   * Applies operator resources (as parsed by parseResources). The batch is
   * validated again here (anything not a valid Service, Route,
   * AuthorizationPolicy or MeshConfig refuses the whole batch), then each
   * resource is created, configured, or left alone when equal to the stored one.
   */
  async apply(resources: readonly ConfigResource[], flags: WriteFlags = {}): Promise<ApplyOutcome> {
    const batch = checkBatch(resources);
    const dryRun = flags.dryRun === true;
    return this.#serial(async () => {
      const warnings = await this.#applyWarnings(batch);
      const results: ApplyResult[] = [];
      for (const r of batch) results.push(await this.#applyOne(r, dryRun));
      return { results, warnings, dryRun };
    });
  }

  /** Deletes an operator resource; 404 when it does not exist. */
  async delete(kind: string, namespace: string, name: string, flags: WriteFlags = {}): Promise<DeleteResult> {
    checkKind(kind, CONFIG_KINDS);
    checkName(namespace, 'namespace');
    checkName(name, 'name');
    const dryRun = flags.dryRun === true;
    const key = keyOf(kind, namespace, name);
    return this.#serial(async () => {
      const warnings = kind === 'Service' ? await this.#dependents(namespace, name) : [];
      const version = await this.#deleteEntry(kind, key, dryRun);
      if (version === undefined) throw cpError('AMIME_ERR_CP_NOT_FOUND', `${kind} ${namespace}/${name} does not exist`, 'not_found');
      return { kind, namespace, name, key, action: 'deleted', version: String(version), warnings, dryRun };
    });
  }

  // ---------------------------------------------------------------- reads

  /** One resource with metadata.version set; 404 when missing. */
  get(kind: string, namespace: string, name: string): Promise<Resource>;
  /** Every resource of `kind` (in `namespace`), sorted by key, each with metadata.version. */
  get(kind: string, namespace?: string): Promise<Resource[]>;
  get(kind: string, namespace?: string, name?: string): Promise<Resource | Resource[]>;
  async get(kind: string, namespace?: string, name?: string): Promise<Resource | Resource[]> {
    checkKind(kind);
    if (namespace !== undefined) checkName(namespace, 'namespace');
    if (name !== undefined) {
      if (namespace === undefined) throw cpError('AMIME_ERR_CP_BAD_REQUEST', 'a name needs a namespace', 'bad_name');
      checkName(name, 'name');
      const key = keyOf(kind, namespace, name);
      const entry = await this.#store.get(key);
      const r = entry && this.#decode(kind, key, entry.value, entry.revision);
      if (r === undefined) throw cpError('AMIME_ERR_CP_NOT_FOUND', `${kind} ${namespace}/${name} does not exist`, 'not_found');
      return r;
    }
    const prefix = namespace === undefined ? `/resources/${kind}/` : `/resources/${kind}/${namespace}/`;
    const out: Resource[] = [];
    for (const entry of await this.#store.list(prefix)) {
      const r = this.#decode(kind, entry.key, entry.value, entry.revision);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  // ---------------------------------------------------------------- derived kinds

  /**
   * Writes an Endpoint, TrustBundle or RevocationList unless the stored one
   * is equal. Returns its version (store revision), new or unchanged.
   */
  async putDerived(resource: Resource): Promise<number> {
    const issues: Issue[] = [];
    const checked = anyResource.check(resource, '', issues);
    if (checked === INVALID || issues.length > 0) throw validationFailure(new ValidationError(issues, 'resource'), `${String(resource?.kind)} resource`);
    if (!isKind(checked.kind, DERIVED_KINDS)) throw cpError('AMIME_ERR_CP_BAD_REQUEST', `${checked.kind} is an operator kind; use apply`, 'operator_kind');
    const value = withoutVersion(checked);
    const key = resourceKey(value);
    return this.#serial(async () => {
      const { revision } = await this.#putIfChanged(key, value, false);
      return revision;
    });
  }

  /** Deletes an Endpoint, TrustBundle or RevocationList; false when it did not exist. */
  async deleteDerived(kind: string, namespace: string, name: string): Promise<boolean> {
    checkKind(kind, RESOURCE_TYPES);
    if (!isKind(kind, DERIVED_KINDS)) throw cpError('AMIME_ERR_CP_BAD_REQUEST', `${kind} is an operator kind; use delete`, 'operator_kind');
    checkName(namespace, 'namespace');
    checkName(name, 'name');
    return this.#serial(async () => (await this.#deleteEntry(kind, keyOf(kind, namespace, name), false)) !== undefined);
  }

  // ---------------------------------------------------------------- internals

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #applyOne(r: ConfigResource, dryRun: boolean): Promise<ApplyResult> {
    const key = resourceKey(r);
    const { action, revision } = await this.#putIfChanged(key, r, dryRun);
    const version = revision === 0 ? '' : String(revision);
    return { kind: r.kind, namespace: r.metadata.namespace, name: r.metadata.name, key, action, version };
  }

  /** Compare-and-swap write unless equal; revision 0 means "would be created" (dry run). */
  async #putIfChanged(key: string, value: Resource, dryRun: boolean): Promise<{ action: ApplyAction; revision: number }> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.#store.get(key);
      if (current && sameJson(current.value, value)) return { action: 'unchanged', revision: current.revision };
      const action = current ? 'configured' : 'created';
      if (dryRun) return { action, revision: current?.revision ?? 0 };
      try {
        return { action, revision: await this.#store.put(key, value, { expectRevision: current?.revision ?? 0 }) };
      } catch (err) {
        if (isConflict(err) && attempt < CAS_ATTEMPTS) continue;
        throw storeFailure(err);
      }
    }
  }

  /**
   * Deletes `key` if it still holds what was read, bracketed by
   * /meta/last-delete/<Kind> records: `{ revision, pending: true }` first (a
   * crash mid-way leaves it, and the cache then resumes nothing older than
   * its start), then `{ revision }` = the store revision after the delete.
   * Returns the deleted entry's revision, undefined when there was nothing
   * to delete. A dry run only reads.
   */
  async #deleteEntry(kind: ResourceType, key: string, dryRun: boolean): Promise<number | undefined> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.#store.get(key);
      if (!current) return undefined;
      if (dryRun) return current.revision;
      const record = lastDeleteKey(kind);
      try {
        await this.#store.put(record, { revision: await this.#store.revision(), pending: true });
        try {
          return (await this.#store.delete(key, { expectRevision: current.revision })) ? current.revision : undefined;
        } finally {
          await this.#store.put(record, { revision: await this.#store.revision() });
        }
      } catch (err) {
        if (isConflict(err) && attempt < CAS_ATTEMPTS) continue;
        throw storeFailure(err);
      }
    }
  }

  /** The stored value as a resource with its version, or undefined (logged) when it is not one. */
  #decode(kind: ResourceType, key: string, value: unknown, revision: number): Resource | undefined {
    const issues: Issue[] = [];
    const r = RESOURCE_SCHEMAS[kind].check(value, '', issues) as Resource | typeof INVALID;
    if (r === INVALID || issues.length > 0) {
      this.#log({ event: 'stored_resource_corrupt', key, revision, problem: issues.slice(0, 3).map(formatIssue).join('; ') });
      return undefined;
    }
    if (resourceKey(r) !== key) {
      this.#log({ event: 'stored_resource_corrupt', key, revision, problem: `holds ${resourceKey(r)}` });
      return undefined;
    }
    r.metadata.version = String(revision);
    return r;
  }

  /** Whether a Service exists, in the batch being applied or in the store. */
  #serviceLookup(batch: readonly ConfigResource[]): (namespace: string, name: string) => Promise<boolean> {
    const known = new Map<string, boolean>();
    for (const r of batch) if (r.kind === 'Service') known.set(`${r.metadata.namespace}/${r.metadata.name}`, true);
    return async (namespace, name) => {
      const id = `${namespace}/${name}`;
      let found = known.get(id);
      if (found === undefined) {
        found = (await this.#store.get(keyOf('Service', namespace, name))) !== undefined;
        known.set(id, found);
      }
      return found;
    };
  }

  async #applyWarnings(batch: readonly ConfigResource[]): Promise<string[]> {
    const exists = this.#serviceLookup(batch);
    const warnings: string[] = [];
    for (const r of batch) {
      const { namespace, name } = r.metadata;
      const where = `${r.kind} ${namespace}/${name}`;
      const missing = async (service: string, field: string) => {
        if (!(await exists(namespace, service))) warnings.push(`${where}: ${field} names Service ${namespace}/${service}, which does not exist (yet)`);
      };
      if (r.kind === 'Route') {
        await missing(r.spec.service, 'spec.service');
        for (const [i, rule] of r.spec.rules.entries()) {
          for (const [j, b] of rule.backends.entries()) await missing(b.service, `spec.rules[${i}].backends[${j}].service`);
          if (rule.mirror) await missing(rule.mirror.service, `spec.rules[${i}].mirror.service`);
        }
      } else if (r.kind === 'AuthorizationPolicy') {
        await missing(r.spec.target, 'spec.target');
      }
    }
    return warnings;
  }

  /** Routes and AuthorizationPolicies that name Service namespace/name. */
  async #dependents(namespace: string, name: string): Promise<string[]> {
    const out: string[] = [];
    for (const r of await this.get('Route', namespace)) {
      if (r.kind !== 'Route') continue;
      const refs = r.spec.service === name || r.spec.rules.some((rule) => rule.backends.some((b) => b.service === name) || rule.mirror?.service === name);
      if (refs) out.push(`Route ${namespace}/${r.metadata.name} still names Service ${namespace}/${name}`);
    }
    for (const r of await this.get('AuthorizationPolicy', namespace)) {
      if (r.kind === 'AuthorizationPolicy' && r.spec.target === name) out.push(`AuthorizationPolicy ${namespace}/${r.metadata.name} still targets Service ${namespace}/${name}`);
    }
    return out;
  }
}

/** Validates a batch again (kinds, fields, duplicates), naming every problem with its index. */
function checkBatch(resources: readonly ConfigResource[]): ConfigResource[] {
  if (!Array.isArray(resources)) throw cpError('AMIME_ERR_CP_BAD_REQUEST', 'resources must be an array', 'bad_request');
  const issues: Issue[] = [];
  const out: ConfigResource[] = [];
  const seen = new Map<string, number>();
  resources.forEach((input, document) => {
    const local: Issue[] = [];
    const r = configResource.check(input, '', local);
    for (const i of local) issues.push({ ...i, document });
    if (r === INVALID || local.length > 0) return;
    const clean = withoutVersion(r);
    const key = resourceKey(clean);
    const first = seen.get(key);
    if (first !== undefined) {
      issues.push({ document, path: 'metadata.name', message: `repeats ${key} from document ${first}`, fix: 'apply each resource once' });
      return;
    }
    seen.set(key, document);
    out.push(clean);
  });
  if (issues.length > 0) throw validationFailure(new ValidationError(issues, 'resources'));
  return out;
}
