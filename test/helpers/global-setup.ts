import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startPrivateRedis } from './redis.js'
import { makeSwiftRun } from './swift.js'

/**
 * Starts the suite's private redis-server unless REDIS_URL points at one, and makes the run
 * directory through which the test files share one Swift (started by the first S3 test only:
 * test/helpers/swift.ts).
 */
export default async function globalSetup(): Promise<void> {
  const run = makeSwiftRun(mkdtempSync(join(tmpdir(), 'ferry-run-')))
  process.env['FERRY_TEST_SWIFT_RUN'] = run
  if (process.env['REDIS_URL']) {
    process.env['FERRY_TEST_REDIS_URL'] = process.env['REDIS_URL']
    return
  }
  const redis = await startPrivateRedis()
  process.env['FERRY_TEST_REDIS_URL'] = redis.url
  ;(globalThis as { __ferryRedis?: typeof redis }).__ferryRedis = redis
}
