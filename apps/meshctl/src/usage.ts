// Help text, built from the commands' own synopses.
import type { Command } from './commands/command.js';

export const GLOBAL_USAGE = `global flags:
  --ca URL             the CA API (https://HOST:PORT); else $AMIME_CA_URL, else <credentials>/ca-url
  --control-plane URL  the control plane's admin API (https://HOST:PORT); else $AMIME_CONTROL_PLANE_URL,
                       else <credentials>/control-plane-url
  --credentials DIR    admin credential dir (cert.pem, key.pem, bundle.pem); else $AMIME_CREDENTIALS, else var/ca/admin
  -o, --output FORMAT  table (default, for people) | json | yaml (for scripts)
  --timeout DURATION   per request (default 10s)
  -h, --help           this help

exit codes: 0 ok, 1 the CA or control plane refused (the message says what to do next), 2 CA or
control plane unreachable or not proving its identity (TLS), 3 'check' found a failed check (warnings
alone exit 0), 64 usage or local setup error, 70 local failure,
73 a file cannot be written, 78 invalid agent config (agent install)`;

export function commandUsage(c: Command): string {
  return `meshctl ${c.name}${c.synopsis ? ` ${c.synopsis}` : ''}`;
}

export function usage(commands: readonly Command[]): string {
  const lines = commands.map((c) => `  ${commandUsage(c)}\n      ${c.summary}`);
  return `meshctl: operate an amime mesh's CA and control plane\n\nusage: meshctl [global flags] <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\n${GLOBAL_USAGE}\n`;
}
