// @amime/protocol: the schemas both ends of the push protocol and the admin
// API use. Validate at the edge with these; pass the typed results inward.

export * from './validate.js';
export * from './resources.js';
export * from './messages.js';
export * from './tap-messages.js';
