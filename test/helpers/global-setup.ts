import { startPrivateRedis } from './redis.js'

/** Starts the suite's private redis-server unless REDIS_URL points at one. */
export default async function globalSetup(): Promise<void> {
  if (process.env['REDIS_URL']) {
    process.env['FERRY_TEST_REDIS_URL'] = process.env['REDIS_URL']
    return
  }
  const redis = await startPrivateRedis()
  process.env['FERRY_TEST_REDIS_URL'] = redis.url
  ;(globalThis as { __ferryRedis?: typeof redis }).__ferryRedis = redis
}
