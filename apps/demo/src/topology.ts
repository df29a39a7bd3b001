// The demo's topology lives in @amime/demo-topology, shared with the
// multi-host tests (test/multihost); re-exported for this app's modules.
export * from '@amime/demo-topology';
