// The CA's persisted state: one JSON document (state.json) is the single
// commit point. Private keys live in their own 0600 files with unique names,
// written and synced before state.json refers to them, so a `kill -9` at any
// moment leaves either the old state or the new one, both complete.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '@amime/store';
import { CaError } from './errors.js';

export type KeyAlgorithmName = 'ec-p256' | 'rsa-2048';

export interface SlotRecord {
  /** Unique id; also the folder under slots/ holding this slot's keys. */
  id: string;
  createdAt: string;
  rootCertPem: string;
  /** Absent when the operator supplied only the intermediate (offline root). */
  rootKeyFile?: string;
  intermediateCertPem: string;
  intermediateKeyFile: string;
}

export type RotationPhase = 'steady' | 'prepared' | 'activated';

export interface RotationRecord {
  phase: RotationPhase;
  /** Slot that signs after activation (set in prepared/activated). */
  newSlot?: string;
  /** Slot being retired (set in prepared/activated). */
  oldSlot?: string;
  preparedAt?: string;
  activatedAt?: string;
  /** Earliest time the old root may leave the bundle: every old-root leaf has expired. */
  retireAfter?: string;
}

export interface TokenRecord {
  /** sha256 of the token: the state file never holds a usable token. */
  hash: string;
  node: string;
  createdAt: string;
  expiresAt: string;
  usedAt?: string;
}

export interface RevokedSerial {
  serial: string;
  reason: string;
  at: string;
  /** The revoked certificate's expiry: after it the entry can be dropped. */
  notAfter?: string;
}

export interface RevokedId {
  spiffeId: string;
  reason: string;
  at: string;
}

export interface Ttls {
  workloadSeconds: number;
  agentSeconds: number;
  adminSeconds: number;
  intermediateSeconds: number;
  rootSeconds: number;
}

export interface PersistedState {
  schema: 1;
  trustDomain: string;
  keyAlgorithm: KeyAlgorithmName;
  createdAt: string;
  ttl: Ttls;
  refreshHintSeconds: number;
  /** Bundle order: the roots published to every peer. */
  slots: SlotRecord[];
  activeSlot: string;
  rotation: RotationRecord;
  bundleSequence: number;
  admins: string[];
  /** node name → assigned workload SPIFFE IDs. */
  assignments: Record<string, string[]>;
  tokens: TokenRecord[];
  nodes: Record<string, { joinedAt?: string; evictedAt?: string }>;
  revocations: { version: number; serials: RevokedSerial[]; spiffeIds: RevokedId[] };
}

export const STATE_FILE = 'state.json';

export function loadState(dir: string): PersistedState | undefined {
  const file = join(dir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  let parsed: PersistedState;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as PersistedState;
  } catch (err) {
    throw new CaError('AMIME_ERR_CA_STATE', `${file} is not valid JSON (${(err as Error).message})`);
  }
  if (parsed.schema !== 1) throw new CaError('AMIME_ERR_CA_STATE', `${file}: unknown schema ${String(parsed.schema)}`);
  for (const slot of parsed.slots) {
    for (const f of [slot.rootKeyFile, slot.intermediateKeyFile]) {
      if (f && !existsSync(join(dir, f))) {
        throw new CaError('AMIME_ERR_CA_STATE', `${file} refers to missing key file ${f}`);
      }
    }
  }
  return parsed;
}

export function saveState(dir: string, state: PersistedState): void {
  writeFileAtomicSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

/** Remove key files no slot refers to (left by a crash between key write and state commit, or by retirement) and stale temp files. */
export function removeUnreferencedKeys(dir: string, state: PersistedState): void {
  // temp files of atomic writes a crash interrupted (never renamed, never acknowledged)
  for (const name of readdirSync(dir)) if (name.startsWith('.') && name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
  const slotsDir = join(dir, 'slots');
  if (!existsSync(slotsDir)) return;
  const referenced = new Set<string>();
  for (const s of state.slots) {
    if (s.rootKeyFile) referenced.add(s.rootKeyFile);
    referenced.add(s.intermediateKeyFile);
  }
  for (const name of readdirSync(slotsDir)) {
    const rel = `slots/${name}`;
    if (!referenced.has(rel) || name.endsWith('.tmp')) rmSync(join(slotsDir, name), { force: true, recursive: true });
  }
}
