// What every command declares (its flags, positionals and help) and what it
// is given to run.
import type { ParseArgsConfig } from 'node:util';
import type { CaClient } from '@amime/identity';
import type { ControlPlaneClient } from '@amime/control-plane';
import type { AdminCredential } from '../credentials.js';
import type { CommandOutput, OutputFormat } from '../output.js';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

export interface CommandContext {
  values: Values;
  /** Positionals after the command words. */
  args: string[];
  format: OutputFormat;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The resolved --credentials directory (it may not exist yet). */
  credentialsDir: string;
  /** The admin credential (read on first use). */
  credential(): AdminCredential;
  /** A client for the CA authenticated with the admin credential (made on first use). */
  client(): CaClient;
  /** A client for the control plane's admin API, authenticated with the admin credential (made on first use). */
  controlPlane(): ControlPlaneClient;
  /** Standard input, for `-f -`. */
  stdin: NodeJS.ReadableStream;
  /** A line for people on stderr (progress, waits, warnings); stdout stays the result alone. */
  progress(line: string): void;
  /** Text on stdout as it comes (for commands that stream, like `anomalies --watch`); others return their output. */
  write(text: string): void;
}

export interface Command {
  /** One or two words: 'status', 'token create'. */
  name: string;
  /** e.g. '--node N [--ttl 10m]'. */
  synopsis: string;
  summary: string;
  options?: Options;
  /** Allowed positional count after the command words. */
  positionals?: { min: number; max: number; names: string };
  run(ctx: CommandContext): Promise<CommandOutput>;
}

/** A string flag's value, or undefined. */
export const str = (values: Values, name: string): string | undefined => {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
};
