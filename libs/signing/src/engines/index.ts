// Reference engines (@peculiar/x509, node-forge), a separate entry point so
// that importing @amime/signing never loads them.
export { forgeEngine } from './forge.js';
export { peculiarEngine, peculiarPipeline } from './peculiar.js';
