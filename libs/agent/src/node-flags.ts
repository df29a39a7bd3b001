// V8 settings every launcher of the agent uses (bench, `npm start`, the
// systemd unit). They must be node flags: the young generation is sized at
// start, v8.setFlagsFromString is too late.
//
// --max-semi-space-size=2 (MiB, default 16): the agent's garbage is short-lived
// request state; a small young generation keeps peak RSS under load near
// 80 MiB instead of 105-125 MiB, with no throughput loss measured at 2 (at 1,
// L7 throughput halved). See tools/bench/dataplane/README.md.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
