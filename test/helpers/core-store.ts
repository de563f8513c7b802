import type { ObjectStore } from '../../src/core/storage/object-store.js'

/**
 * `store` with only the core ObjectStore operations (no LocalPaths, HardLinkSnapshots, …): what a
 * family sees of a bucket. The bytes stay in the real store (a real folder), so a test can run a
 * family's code path for stores without filesystem capabilities without a running S3.
 */
export function coreOnly(store: ObjectStore): ObjectStore {
  return {
    put: (key, tempPath, opts) => store.put(key, tempPath, opts),
    head: (key) => store.head(key),
    get: (key, range) => store.get(key, range),
    delete: (key, opts) => store.delete(key, opts),
    list: (prefix, opts) => store.list(prefix, opts),
    copy: (from, to, opts) => store.copy(from, to, opts),
  }
}
