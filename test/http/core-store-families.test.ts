/**
 * The tus, lakeFS and bulk-ingest families on the filesystem store seen through `coreOnly` (no
 * LocalPaths, HardLinkSnapshots, FolderSync, Appendable or AtomicFolders): the code paths a bucket
 * takes, without S3. test/e2e/s3-core-families.test.ts runs the same suite on the real Swift.
 */
import { join } from 'node:path'
import { coreOnly } from '../helpers/core-store.js'
import { familiesOnCoreStores } from '../helpers/families-suite.js'

familiesOnCoreStores(async (srv) => {
  const { stores, layout } = srv.app.engine
  return {
    staging: coreOnly(stores.staging),
    tus: coreOnly(stores.staging),
    ingest: coreOnly(stores.ingest),
    stagingRoot: join(layout.root, 'staging'),
  }
})
