// What the multi-host scenario needs from a "host", whatever makes it: a
// Linux network namespace (netns-driver.ts) or a container (container-driver.ts).
// Each host has its own address, its own loopback and its own processes; the
// scenario only runs commands in hosts and moves files between them.

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A background process the scenario started in a host. */
export interface HostProcess {
  readonly what: string;
  /** SIGTERM, then SIGKILL after a grace period; resolves when it is gone. */
  stop(): Promise<void>;
  /** The tail of its stderr (and stdout where the driver cannot split them), for failure messages. */
  output(): Promise<string>;
}

export interface Host {
  readonly name: string;
  /** Its own address: other hosts and the test reach it here (never 127.0.0.1). */
  readonly address: string;
  /** A directory on this host the scenario may write into. */
  readonly dir: string;
  /** Runs argv inside the host (working directory: the workspace as the host sees it) to completion, bounded. */
  run(argv: string[], timeoutMs?: number): Promise<RunResult>;
  /**
   * Starts argv in the background inside the host and resolves with the first
   * stdout line containing `"<marker>"`, parsed as JSON (bounded by timeoutMs).
   */
  start(what: string, argv: string[], marker: string, timeoutMs?: number): Promise<{ proc: HostProcess; line: Record<string, unknown> }>;
  writeFile(path: string, content: string, mode?: number): Promise<void>;
  readFile(path: string): Promise<string>;
}

/** A hub (CA and control plane) and three VMs, made by one driver. */
export interface Hosts {
  hub: Host;
  vms: Record<'vm1' | 'vm2' | 'vm3', Host>;
  /** The repository as the hosts see it (node_modules, dist/ bundles and sources). */
  workspace: string;
  /** The node binary inside the hosts. */
  node: string;
  /** Removes everything the driver made (also after a failure); idempotent. */
  close(): Promise<void>;
}

/** Either the hosts, or a plain reason why this driver cannot run here. */
export type Provisioned = { hosts: Hosts } | { skip: string };

/** Bounded tail of a string, for messages. */
export const tail = (s: string, n = 3000): string => (s.length > n ? `…${s.slice(-n)}` : s);
