// The last config the agent applied (and ACKed), kept on disk so that an agent
// that restarts while the control plane is down serves with it, and its hello
// resumes from those versions. One JSON file, written atomically after each
// applied push; read back through the same wire schemas (a damaged or foreign
// file is ignored with a log line, never trusted).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RESOURCE_SCHEMAS, RESOURCE_TYPES, safeValidate, versionString, type Resource, type ResourceType } from '@amime/protocol';
import { writeFileAtomic } from '../atomic-file.js';

export type HeldConfig = Partial<Record<ResourceType, { version: string; resources: readonly Resource[] }>>;

const FILE = 'last-good-config.json';
const MAX_BYTES = 64 * 1024 * 1024;

export class LastGoodConfig {
  readonly path: string;
  #writing: Promise<void> = Promise.resolve();
  #pending: HeldConfig | undefined;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'config', FILE);
  }

  /** The stored config, or an empty one (with the reason) when absent or unusable. */
  async load(): Promise<{ config: HeldConfig; problem?: string }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { config: {} };
      return { config: {}, problem: `cannot read ${this.path}: ${(err as Error).message}` };
    }
    if (text.length > MAX_BYTES) return { config: {}, problem: `${this.path} is over ${MAX_BYTES} bytes` };
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return { config: {}, problem: `${this.path} is not JSON: ${(err as Error).message}` };
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { config: {}, problem: `${this.path} is not an object` };
    const out: HeldConfig = {};
    const problems: string[] = [];
    for (const type of RESOURCE_TYPES) {
      const held = (doc as Record<string, unknown>)[type] as { version?: unknown; resources?: unknown } | undefined;
      if (held === undefined) continue;
      const v = safeValidate(versionString, held?.version, `${type}.version`);
      if (!v.ok || !Array.isArray(held.resources)) {
        problems.push(`${type}: no valid version or resources`);
        continue;
      }
      const resources: Resource[] = [];
      let bad = false;
      for (const [i, r] of held.resources.entries()) {
        const checked = safeValidate(RESOURCE_SCHEMAS[type] as never, r, `${type}.resources[${i}]`);
        if (!checked.ok) {
          bad = true;
          problems.push(`${type}.resources[${i}] does not validate`);
          break;
        }
        resources.push(checked.value as Resource);
      }
      // A type with one bad resource is dropped whole: a partial set would look complete at its version.
      if (!bad) out[type] = { version: v.value, resources };
    }
    return problems.length > 0 ? { config: out, problem: `${this.path}: ${problems.join('; ')}` } : { config: out };
  }

  /** Queues a write of the whole config; writes coalesce, the last one wins. */
  save(config: HeldConfig): Promise<void> {
    this.#pending = config;
    this.#writing = this.#writing.then(async () => {
      const next = this.#pending;
      this.#pending = undefined;
      if (next) await writeFileAtomic(this.path, JSON.stringify(next));
    });
    return this.#writing;
  }
}
