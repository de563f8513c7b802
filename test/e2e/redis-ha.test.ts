/**
 * Ferry on highly available Redis (issue 16): two instances on a 3-primary Redis Cluster (chunked
 * upload, dedup race), and uploads over two instances on a Sentinel-managed primary that is killed
 * (SIGKILL) while they run. Real redis-server processes on loopback ports.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { request, seededBytes, sha256, shuffle } from '../helpers/http.js'
import {
  commit,
  newSessionId,
  putChunk,
  sessionById,
  uploadChunks,
  type SessionInfo,
} from '../helpers/imagestore.js'
import { RawConn } from '../helpers/raw-http.js'
import { blobFilesOf } from '../helpers/shaman.js'
import { startRedisCluster, startRedisSentinel, type RedisGroup } from '../helpers/redis.js'
import { startCluster, type TestCluster, type TestServer } from '../helpers/server.js'

const MIB = 1024 * 1024
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('two Ferry instances on a 3-primary Redis Cluster', () => {
  let redis: RedisGroup & { ports: number[] }
  let ferry: TestCluster<[TestServer, TestServer]>
  beforeAll(async () => {
    redis = await startRedisCluster()
    const env = { REDIS_URL: redis.url, FERRY_SHAMAN_GC_INTERVAL_SEC: '0' }
    ferry = await startCluster(2, env, 'ferry-rcl-')
  }, 60_000)
  afterAll(async () => {
    await ferry?.close()
    await redis?.stop()
  })

  test('a chunked upload spread over both instances commits to the exact bytes', async () => {
    const data = seededBytes(8 * MIB, 'cluster-chunks')
    const id = newSessionId()
    const bases = ferry.servers.map((s) => s.url)
    const order = shuffle(
      Array.from({ length: 16 }, (_, i) => i),
      5,
    )
    await uploadChunks(bases, 'rc/file.bin', id, data, 512 * 1024, 4, order)
    // Seen from the other instance before the commit: nothing missing.
    const info = (await sessionById(bases[1]!, id)).json<{ UploadSessions: SessionInfo[] }>()
    expect(info.UploadSessions[0]!.ExpectedRanges).toEqual([])
    expect((await commit(bases[1]!, id)).status).toBe(200)
    expect(sha256(readFileSync(join(ferry.dataDir, 'store/rc/file.bin')))).toBe(sha256(data))
  })

  test('a dedup race over both instances: one 204, the rest 208 or 425, one blob', async () => {
    const body = seededBytes(4 * MIB, 'cluster-dedup')
    const s = sha256(body)
    const answers = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const raw = { pieceBytes: 256 * 1024, answerTimeoutMs: 60_000 }
        const c = await RawConn.open(ferry.servers[i % 2]!.url, raw)
        await c.head('POST', `/api/v3/shaman/files/${s}/${body.length}`, {
          'Content-Type': 'application/octet-stream',
          'Content-Length': body.length,
          'X-Shaman-Can-Defer-Upload': i % 3 === 0 ? 'True' : 'False',
          'X-Shaman-Original-Filename': 'race.bin',
          'Accept-Encoding': 'identity',
        })
        const [ans] = await Promise.all([c.answer(), c.writeBody(body)])
        c.close()
        return ans.status
      }),
    )
    expect(answers.every((st) => st === 204 || st === 208 || st === 425)).toBe(true)
    expect(answers.filter((st) => st === 204)).toHaveLength(1)
    const blobs = await blobFilesOf(ferry.dataDir, s)
    expect(blobs).toHaveLength(1)
    expect(sha256(readFileSync(blobs[0]!))).toBe(s)
  })

  // Last in this block: it takes the cluster down.
  test('every primary gone: a chunk is answered 503 with Retry-After at once', async () => {
    for (const p of redis.ports) await redis.kill(p)
    const t0 = performance.now()
    const id = newSessionId()
    const r = await putChunk(ferry.servers[0].url, 'rc/down.bin', id, 0, 3, 8, Buffer.from('abcd'))
    expect(r.status).toBe(503)
    expect(r.headers['retry-after']).toBeDefined()
    expect(performance.now() - t0).toBeLessThan(3000)
  })
})

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return 0
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

describe('Sentinel failover under load', () => {
  let redis: RedisGroup & { primary: number; replica: number }
  let ferry: TestCluster<[TestServer, TestServer]>
  beforeAll(async () => {
    redis = await startRedisSentinel()
    // Short reservation leases: a reservation whose completion the failover lost (its instance
    // answered 200 and moved on) holds its range until the lease runs out.
    ferry = await startCluster(
      2,
      {
        REDIS_URL: redis.url,
        FERRY_REDIS_TIMEOUT_MS: '500',
        FERRY_RESERVE_LEASE_MS: '3000',
      },
      'ferry-rsn-',
    )
  }, 60_000)
  afterAll(async () => {
    await ferry?.close()
    await redis?.stop()
  })

  test('the primary is killed mid-upload: every upload completes with its bytes', async () => {
    const UPLOADS = 6
    const CHUNK = 128 * 1024
    const CHUNKS = 32
    const bases = ferry.servers.map((s) => s.url)
    const files = Array.from({ length: UPLOADS }, (_, u) => ({
      id: newSessionId(),
      path: `ha/f${u}.bin`,
      data: seededBytes(CHUNK * CHUNKS, `ha-${u}`),
    }))
    let acked = 0
    const LOST_CHUNKS = 12
    let cut: Promise<void> = Promise.resolve()
    /**
     * Replication stops: the replica is told a wrong password for the primary and its link is cut,
     * so it cannot sync again (the primary asks for no password: AUTH fails, the handshake stops).
     */
    const cutReplication = async () => {
      const node = (port: number) => new Redis({ port, host: '127.0.0.1' })
      const [p, r] = [node(redis.primary), node(redis.replica)]
      await r.config('SET', 'masterauth', 'not-the-password')
      await p.call('CLIENT', 'KILL', 'TYPE', 'replica')
      p.disconnect()
      r.disconnect()
    }
    let killedAt = 0
    let failures = 0
    let noRetryAfter = 0
    const statuses = new Map<number, number>()
    /** Longest time each upload went without an acknowledged chunk. */
    const stalls = files.map(() => 0)
    const lastAck = files.map(() => performance.now())

    /** Sends one range until it is acknowledged (503s and other refusals are retried). */
    const send = async (u: number, start: number, end: number, via: number) => {
      const f = files[u]!
      for (let attempt = 0; ; attempt++) {
        const body = f.data.subarray(start, end + 1)
        const base = bases[(via + attempt) % 2]!
        const r = await putChunk(base, f.path, f.id, start, end, f.data.length, body).catch(() => ({
          status: 0,
          headers: {} as Record<string, string>,
          text: () => '',
        }))
        if (r.status === 200) break
        if (process.env['HA_DEBUG']) console.log(r.status, r.text().slice(0, 200))
        if (r.status === 503 && r.headers['retry-after'] === undefined) noRetryAfter++
        failures++
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
        if (killedAt > 0 && performance.now() - killedAt > 60_000) {
          throw new Error(`stuck: ${r.status}`)
        }
        await sleep(100)
      }
      const now = performance.now()
      stalls[u] = Math.max(stalls[u]!, now - lastAck[u]!)
      lastAck[u] = now
      // A third of the way through, with every upload in flight, the replica stops receiving
      // (replication is asynchronous: the primary keeps acknowledging), and LOST_CHUNKS chunks
      // later the primary dies: what it acknowledged meanwhile is lost with it.
      acked++
      if (acked === Math.floor((UPLOADS * CHUNKS) / 3)) cut = cutReplication()
      if (acked === Math.floor((UPLOADS * CHUNKS) / 3) + LOST_CHUNKS) {
        await cut
        killedAt = performance.now()
        void redis.kill(redis.primary)
      }
    }

    await Promise.all(
      files.map(async (_, u) => {
        for (let i = 0; i < CHUNKS; i += 2) {
          await Promise.all([i, i + 1].map((c) => send(u, c * CHUNK, (c + 1) * CHUNK - 1, c)))
        }
      }),
    )
    expect(killedAt).toBeGreaterThan(0)

    // A chunk acknowledged just before the failover may be gone from the session: the session
    // asks for it again (ExpectedRanges), and the client sends it again.
    let resent = 0
    for (const [u, f] of files.entries()) {
      for (let round = 0; ; round++) {
        const r = await sessionById(bases[round % 2]!, f.id)
        if (r.status !== 200) {
          expect(round).toBeLessThan(100)
          await sleep(100)
          continue
        }
        const info = r.json<{ UploadSessions: SessionInfo[] }>()
        const missing = info.UploadSessions[0]!.ExpectedRanges
        if (missing.length === 0) break
        for (const m of missing) {
          const from = Number(m.StartPosition)
          const to = Number(m.EndPosition)
          for (let s = from; s <= to; s += CHUNK) {
            resent++
            await send(u, s, Math.min(to, s + CHUNK - 1), round)
          }
        }
      }
      for (let attempt = 0; ; attempt++) {
        const done = await commit(bases[attempt % 2]!, f.id)
        if (done.status === 200) break
        expect(attempt).toBeLessThan(100)
        await sleep(100)
      }
      expect(sha256(readFileSync(join(ferry.dataDir, 'store', f.path)))).toBe(sha256(f.data))
    }

    // The replica was promoted and Ferry followed it without a restart.
    const promoted = new Redis({ port: redis.replica, host: '127.0.0.1', lazyConnect: true })
    await promoted.connect()
    expect((await promoted.info('replication')).includes('role:master')).toBe(true)
    promoted.disconnect()
    expect((await request(`${bases[0]}/readyz`)).status).toBe(200)

    const figures = {
      uploads: UPLOADS,
      chunks: UPLOADS * CHUNKS,
      failedRequests: failures,
      statuses: Object.fromEntries(statuses),
      resentChunks: resent,
      stallP50Ms: Math.round(pct(stalls, 50)),
      stallP99Ms: Math.round(pct(stalls, 99)),
    }
    console.log(`failover under load: ${JSON.stringify(figures)}`)
    // The failover happened under the uploads: some requests were refused meanwhile, and chunks
    // acknowledged by the lost primary were asked for again.
    expect(failures).toBeGreaterThan(0)
    expect(noRetryAfter).toBe(0)
    expect(resent).toBeGreaterThan(0)
  }, 120_000)
})
