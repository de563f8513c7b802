/**
 * The tus, lakeFS and bulk-ingest families over S3ObjectStore on the real Swift (s3api): the
 * same suite as test/http/core-store-families.test.ts, each family under its own prefix of one
 * bucket, the locks of if-absent puts in the server's state store.
 */
import { createS3Client } from '../../src/core/storage/s3-client.js'
import { S3ObjectStore } from '../../src/core/storage/s3-object-store.js'
import { familiesOnCoreStores } from '../helpers/families-suite.js'
import { testBucket } from '../helpers/swift.js'

familiesOnCoreStores(async (srv) => {
  const t = await testBucket()
  const client = createS3Client({
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
  })
  const { locker } = srv.app.engine.state
  const at = (prefix: string) => new S3ObjectStore({ client, bucket: t.bucket, prefix, locker })
  return { staging: at('staging/'), tus: at('tus/'), ingest: at('ingest/'), stagingRoot: null }
})
