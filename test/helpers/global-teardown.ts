import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import type { PrivateRedis } from './redis.js'
import { stopRunSwift } from './swift.js'

export default async function globalTeardown(): Promise<void> {
  const run = process.env['FERRY_TEST_SWIFT_RUN']
  if (run) {
    await stopRunSwift(run)
    rmSync(dirname(run), { recursive: true, force: true })
  }
  await (globalThis as { __ferryRedis?: PrivateRedis }).__ferryRedis?.stop()
}
