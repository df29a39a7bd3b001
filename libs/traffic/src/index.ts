// @amime/traffic: the control plane's live view of per-edge traffic (rps, errors, denials, p99) built from agents' edge reports.
export {};
