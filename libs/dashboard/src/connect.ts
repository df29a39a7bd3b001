// At start the dashboard waits for the admin credential and the control
// plane: under `npm start` the CA writes the credential and the control plane
// its URL file after the dashboard has started. Bounded (waitMs), with a log
// line when the wait starts and every 10 s while it lasts.
import { setTimeout as sleep } from 'node:timers/promises';
import { AdminCredentialError, loadAdminCredential, readUrlFile } from '@amime/control-plane';
import { AdminApiSource, type MeshSource } from './mesh-source.js';

export interface ConnectOptions {
  credentialsDir: string;
  /** Else <credentialsDir>/control-plane-url, read again on every attempt (a file from an earlier run may name a port nobody serves yet). */
  controlPlaneUrl?: string | undefined;
  waitMs: number;
  signal: AbortSignal;
  /** One line for people. */
  log(message: string): void;
  /** Builds the source; tests replace it. */
  makeSource?(url: string, credentialsDir: string): MeshSource;
  everyMs?: number;
}

export class ConnectError extends Error {}

export async function connectControlPlane(o: ConnectOptions): Promise<{ source: MeshSource; url: string }> {
  const started = Date.now();
  const every = o.everyMs ?? 500;
  let last = '';
  let told = 0;
  const make = o.makeSource ?? ((url: string, dir: string) => new AdminApiSource(url, loadAdminCredential(dir)));
  while (!o.signal.aborted) {
    let source: MeshSource | undefined;
    try {
      const url = o.controlPlaneUrl ?? readUrlFile(o.credentialsDir, 'control-plane-url');
      loadAdminCredential(o.credentialsDir); // names the missing file before the URL
      if (url === undefined) throw new ConnectError(`no ${o.credentialsDir}/control-plane-url yet (the control plane writes it when it starts)`);
      source = make(url, o.credentialsDir);
      await source.agents(); // any authenticated answer proves both the URL and the credential
      return { source, url };
    } catch (err) {
      source?.close();
      if (err instanceof AdminCredentialError && !err.missing) throw new ConnectError(err.message); // a broken credential does not fix itself
      last = (err as Error).message;
    }
    const waited = Date.now() - started;
    if (waited > o.waitMs) throw new ConnectError(`the control plane did not answer within ${Math.round(o.waitMs / 1000)} s: ${last}`);
    if (waited >= told * 10_000) {
      o.log(`waiting for the admin credential and the control plane (${Math.round(waited / 1000)} s of ${Math.round(o.waitMs / 1000)} s): ${last}`);
      told++;
    }
    await sleep(every, undefined, { signal: o.signal }).catch(() => undefined);
  }
  throw new ConnectError('stopped while waiting for the control plane');
}
