export {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  StoreError,
  encodeValue,
  validateKey,
  validatePrefix,
  type Store,
  type StoreEntry,
  type StoreErrorCode,
  type StoreValue,
  type WatchEvent,
  type WatchListener,
  type WriteOptions,
} from './store.js';
export { EmbeddedStore, type EmbeddedStoreOptions } from './embedded-store.js';
export { EtcdStore, type EtcdStoreOptions } from './etcd-store.js';
export { writeFileAtomic, writeFileAtomicSync } from './durable-file.js';
