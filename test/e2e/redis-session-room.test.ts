/**
 * The bound on open sessions with Redis state (FERRY_MAX_SESSIONS): counting them is one ZCARD per
 * bucket (64), so far below the bound a count less than a second old decides, and near it every
 * open counts again. Redis's MONITOR shows the commands each case sent under its own key prefix.
 */
import { afterAll, expect, test } from '@jest/globals'
import { Redis } from 'ioredis'
import { request } from '../helpers/http.js'
import { API, newSessionId, putChunk } from '../helpers/imagestore.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function ferryOnRedis(maxSessions: number): Promise<{ srv: TestServer; prefix: string }> {
  const prefix = uniquePrefix()
  const srv = await startFerry({
    REDIS_URL: testRedisUrl(),
    FERRY_REDIS_PREFIX: prefix,
    FERRY_MAX_SESSIONS: String(maxSessions),
  })
  cleanups.push(async () => {
    await srv.close()
    removeDir(srv.dataDir)
  })
  return { srv, prefix }
}

/** Counts the ZCARDs sent on keys under `prefix` while it runs. */
async function zcardsUnder(prefix: string): Promise<{ count: () => number }> {
  const client = new Redis(testRedisUrl(), { lazyConnect: true })
  await client.connect()
  const monitor = await client.monitor()
  let n = 0
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toLowerCase() === 'zcard' && args[1]?.startsWith(prefix)) n++
  })
  cleanups.push(async () => {
    monitor.disconnect()
    client.disconnect()
  })
  return { count: () => n }
}

const fill = (n: number) => Buffer.alloc(n, 7)

test('far below the bound, twenty session opens count the sessions once, not twenty times', async () => {
  const { srv, prefix } = await ferryOnRedis(10_000)
  const zcards = await zcardsUnder(prefix)
  for (let i = 0; i < 20; i++) {
    const r = await putChunk(srv.url, `room/${i}.bin`, newSessionId(), 0, 4, 10, fill(5))
    expect(r.status).toBe(200)
  }
  await new Promise((r) => setTimeout(r, 200)) // MONITOR's stream catches up
  // One count is 64 ZCARDs (one per bucket); a slow run may need a second count after a second.
  expect(zcards.count()).toBeGreaterThan(0)
  expect(zcards.count()).toBeLessThanOrEqual(3 * 64)
})

test('near the bound every open counts: the fifth of four is 503, and removing one makes room', async () => {
  const { srv } = await ferryOnRedis(4)
  const ids = Array.from({ length: 5 }, () => newSessionId())
  for (let i = 0; i < 4; i++) {
    const r = await putChunk(srv.url, `full/${i}.bin`, ids[i]!, 0, 4, 10, fill(5))
    expect(r.status).toBe(200)
  }
  const full = await putChunk(srv.url, 'full/4.bin', ids[4]!, 0, 4, 10, fill(5))
  expect(full.status).toBe(503)
  const del = await request(
    `${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${ids[0]}`,
    { method: 'DELETE' },
  )
  expect(del.status).toBe(200)
  const again = await putChunk(srv.url, 'full/4.bin', ids[4]!, 0, 4, 10, fill(5))
  expect(again.status).toBe(200)
})
