// @amime/dashboard: the web dashboard's server (static page, read-only API over the control plane's admin API, live updates over WebSocket).
export {};
