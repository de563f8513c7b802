import type { PrivateRedis } from './redis.js'

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __ferryRedis?: PrivateRedis }).__ferryRedis?.stop()
}
