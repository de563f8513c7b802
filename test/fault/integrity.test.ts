/**
 * Integrity under stalls, reused ids and lost state (issue 17 items 1-3, 7-9; issue 9 items 2, 4,
 * 5, 8). Each race is reproduced deterministically: a test hook holds the data path (or the Redis
 * store between its read and its compare-and-set) exactly where a GC pause or a slow Redis reply
 * would, while another request runs.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createRedisState } from '../../src/core/state/redis.js'
import { API, commit, newSessionId, putChunk, sessionById } from '../helpers/imagestore.js'
import { request } from '../helpers/http.js'
import {
  startPrivateRedis,
  testRedisUrl,
  uniquePrefix,
  type PrivateRedis,
} from '../helpers/redis.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

/**
 * A gate a hook waits on: `hold()` arms it, `reached` resolves when a hook waits, `open()` lets it
 * go.
 */
function gate() {
  let armed = false
  let release: () => void = () => {}
  let reached: () => void = () => {}
  const g = {
    reached: Promise.resolve(),
    hold() {
      armed = true
      g.reached = new Promise<void>((r) => (reached = r))
    },
    open() {
      armed = false
      release()
    },
    async wait() {
      if (!armed) return
      armed = false
      const released = new Promise<void>((r) => (release = r))
      reached()
      await released
    },
  }
  return g
}

const storeFile = (srv: TestServer, rel: string) => join(srv.dataDir, 'store', rel)
const fill = (n: number, byte: number) => Buffer.alloc(n, byte)

describe('Redis store: versions never repeat (ABA)', () => {
  test('an update computed on a removed incarnation and delayed past its re-creation never lands on the new one', async () => {
    const prefix = uniquePrefix()
    const g = gate()
    const stalled = await createRedisState(testRedisUrl(), prefix, { beforeCas: () => g.wait() })
    const other = await createRedisState(testRedisUrl(), prefix)
    try {
      const key = `aba:${randomUUID()}`
      const now = Date.now()
      const init = (inc: string) => ({
        key,
        incarnation: inc,
        target: 't',
        totalBytes: 100,
        tempName: `${inc}.part`,
      })
      await stalled.sessions.open(init('x'), now)
      await stalled.sessions.reserve(key, { start: 0, end: 49 }, 'old', now, 60_000)
      g.hold()
      const late = stalled.sessions.complete(key, 'old', now)
      await g.reached
      // Meanwhile the session is removed and created again, reaching the same number of writes.
      await other.sessions.remove(key)
      await other.sessions.open(init('y'), now)
      await other.sessions.reserve(key, { start: 50, end: 99 }, 'new', now, 60_000)
      g.open()
      expect(await late).toBeNull()
      const done = await other.sessions.complete(key, 'new', now)
      expect(done?.incarnation).toBe('y')
      expect(done?.received).toEqual([{ start: 50, end: 99 }])
    } finally {
      await stalled.close()
      await other.close()
    }
  })

  test('Lock.check is a fence read from the store: a lock taken over in Redis fails it before its holder notices', async () => {
    const prefix = uniquePrefix()
    const st = await createRedisState(testRedisUrl(), prefix)
    try {
      const lock = await st.locker.tryAcquire('fenced', 60_000)
      await lock!.check()
      // Expired and taken by another owner while this one stalled.
      await st.redis.set(`${prefix}lock:fenced`, 'another-owner', 'PX', 60_000)
      expect(lock!.signal.aborted).toBe(false)
      await expect(lock!.check()).rejects.toMatchObject({ code: 'ERR_LOCKED' })
      expect(lock!.signal.aborted).toBe(true)
    } finally {
      await st.close()
    }
  })

  test('a lease held by a dead instance is broken at once; a live instance keeps its lease', async () => {
    const prefix = uniquePrefix()
    const a = await createRedisState(testRedisUrl(), prefix, { livenessMs: 1000 })
    const b = await createRedisState(testRedisUrl(), prefix, { livenessMs: 1000 })
    const key = `dead:${randomUUID()}`
    const now = Date.now()
    await a.sessions.open(
      { key, incarnation: 'i', target: 't', totalBytes: 100, tempName: 'i.part' },
      now,
    )
    expect((await a.sessions.reserve(key, { start: 0, end: 99 }, 'a1', now, 60_000)).status).toBe(
      'reserved',
    )
    expect(
      (await b.sessions.reserve(key, { start: 0, end: 99 }, 'b1', Date.now(), 60_000)).status,
    ).toBe('busy')
    await a.close() // its liveness key goes (a SIGKILL lets it run out within livenessMs)
    // Free within a second (b may trust what it saw alive for half a second), not after the 60 s
    // lease.
    const t0 = Date.now()
    let got = ''
    for (let i = 0; Date.now() - t0 < 2000 && got !== 'reserved'; i++) {
      got = (await b.sessions.reserve(key, { start: 0, end: 99 }, `b${i + 2}`, Date.now(), 60_000))
        .status
      if (got !== 'reserved') await new Promise((r) => setTimeout(r, 50))
    }
    expect(got).toBe('reserved')
    expect(Date.now() - t0).toBeLessThan(1000)
    await b.close()
  })
})

describe('one instance on the suite Redis, with hooks', () => {
  const hooks = { afterReserve: gate(), beforePublish: gate(), afterRecordRemoved: gate() }
  /** A stall of the whole event loop (a long GC pause): nothing runs, not even lease renewals. */
  let stallMs = 0
  let srv: TestServer
  const prefix = uniquePrefix()
  beforeAll(async () => {
    srv = await startFerry(
      {
        REDIS_URL: testRedisUrl(),
        FERRY_REDIS_PREFIX: prefix,
        FERRY_COMMIT_LEASE_MS: '1500',
        FERRY_SESSION_TTL_SEC: '1',
      },
      {
        uploadHooks: {
          afterReserve: () => hooks.afterReserve.wait(),
          beforePublish: async () => {
            if (stallMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs)
            stallMs = 0
            await hooks.beforePublish.wait()
          },
          afterRecordRemoved: () => hooks.afterRecordRemoved.wait(),
        },
      },
    )
  })
  afterAll(async () => {
    await srv.close()
    removeDir(srv.dataDir)
  })

  test('a commit stalled past its lease never publishes over a newer version (fencing)', async () => {
    const id1 = newSessionId()
    const v1 = fill(1000, 0x11)
    expect((await putChunk(srv.url, 'fenced.bin', id1, 0, 999, 1000, v1)).status).toBe(200)
    hooks.beforePublish.hold()
    stallMs = 1700 // past the 1.5 s commit lease
    const stalled = commit(srv.url, id1)
    await hooks.beforePublish.reached
    // Another commit takes the session over and publishes v1; then a new session publishes v2.
    expect((await commit(srv.url, id1)).status).toBe(200)
    const id2 = newSessionId()
    const v2 = fill(1000, 0x22)
    expect((await putChunk(srv.url, 'fenced.bin', id2, 0, 999, 1000, v2)).status).toBe(200)
    expect((await commit(srv.url, id2)).status).toBe(200)
    hooks.beforePublish.open()
    const r = await stalled
    // The stalled commit learns it lost its lease; v2 stays.
    expect(r.status).toBe(409)
    expect(readFileSync(storeFile(srv, 'fenced.bin')).equals(v2)).toBe(true)
  })

  test('cancel during a commit is refused (409) and the commit publishes', async () => {
    const id = newSessionId()
    const data = fill(500, 0x33)
    expect((await putChunk(srv.url, 'cancel-commit.bin', id, 0, 499, 500, data)).status).toBe(200)
    hooks.beforePublish.hold()
    const c = commit(srv.url, id)
    await hooks.beforePublish.reached
    const cancel = await request(
      `${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`,
      { method: 'DELETE' },
    )
    expect(cancel.status).toBe(409)
    hooks.beforePublish.open()
    expect((await c).status).toBe(200)
    expect(readFileSync(storeFile(srv, 'cancel-commit.bin')).equals(data)).toBe(true)
  })

  test("a cancel racing a resumed upload of the same id never deletes the new incarnation's bytes", async () => {
    const id = newSessionId()
    expect((await putChunk(srv.url, 'race.bin', id, 0, 99, 200, fill(100, 0xaa))).status).toBe(200)
    hooks.afterRecordRemoved.hold()
    const cancel = request(`${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`, {
      method: 'DELETE',
    })
    await hooks.afterRecordRemoved.reached
    // Between the record's removal and the temp file's deletion, the client starts over.
    const data = Buffer.concat([fill(100, 0x55), fill(100, 0x66)])
    expect(
      (await putChunk(srv.url, 'race.bin', id, 0, 99, 200, data.subarray(0, 100))).status,
    ).toBe(200)
    hooks.afterRecordRemoved.open()
    expect((await cancel).status).toBe(200)
    expect(
      (await putChunk(srv.url, 'race.bin', id, 100, 199, 200, data.subarray(100))).status,
    ).toBe(200)
    expect((await commit(srv.url, id)).status).toBe(200)
    expect(readFileSync(storeFile(srv, 'race.bin')).equals(data)).toBe(true)
  })

  test("a chunk written while its session is cancelled and recreated lands in no one's file", async () => {
    const id = newSessionId()
    expect(
      (await putChunk(srv.url, 'stale-writer.bin', id, 0, 99, 200, fill(100, 0x01))).status,
    ).toBe(200)
    hooks.afterReserve.hold()
    const stale = putChunk(srv.url, 'stale-writer.bin', id, 100, 199, 200, fill(100, 0xee))
    await hooks.afterReserve.reached
    expect(
      (
        await request(`${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`, {
          method: 'DELETE',
        })
      ).status,
    ).toBe(200)
    const data = fill(200, 0x77)
    expect((await putChunk(srv.url, 'stale-writer.bin', id, 0, 199, 200, data)).status).toBe(200)
    hooks.afterReserve.open()
    const r = await stale
    // Refused (the reservation is gone), never a 5xx, and no file of the old incarnation comes
    // back.
    expect(r.status).toBeGreaterThanOrEqual(400)
    expect(r.status).toBeLessThan(500)
    expect((await commit(srv.url, id)).status).toBe(200)
    const rec = await srv.app.engine.uploads.getSession(`imagestore:${id}`)
    const prefixOf = (n: string) => n.split('.')[0] ?? n
    expect(
      readdirSync(join(srv.dataDir, 'tmp')).filter((n) => n.startsWith(prefixOf(rec!.tempName))),
    ).toEqual([])
    expect(readFileSync(storeFile(srv, 'stale-writer.bin')).equals(data)).toBe(true)
  })

  test('no byte oracle: only an exact re-send of a whole received chunk is compared', async () => {
    const id = newSessionId()
    const secret = Buffer.from('the secret is: swordfish-1234567890')
    expect(
      (await putChunk(srv.url, 'oracle.bin', id, 0, secret.length - 1, 100, secret)).status,
    ).toBe(200)
    // Guessing one byte: the right guess and a wrong one answer the same.
    const right = await putChunk(srv.url, 'oracle.bin', id, 0, 0, 100, secret.subarray(0, 1))
    const wrong = await putChunk(srv.url, 'oracle.bin', id, 0, 0, 100, Buffer.from('x'))
    expect([right.status, right.text()]).toEqual([wrong.status, wrong.text()])
    expect(right.status).toBe(400)
    // The exact chunk re-sent (a retry whose answer was lost) is a no-op 200; other bytes are
    // refused.
    expect(
      (await putChunk(srv.url, 'oracle.bin', id, 0, secret.length - 1, 100, secret)).status,
    ).toBe(200)
    expect(
      (
        await putChunk(
          srv.url,
          'oracle.bin',
          id,
          0,
          secret.length - 1,
          100,
          fill(secret.length, 0x41),
        )
      ).status,
    ).toBe(400)
  })

  test("sweep: temp files of committed sessions and stale commit hand-offs go; a live session's stays", async () => {
    const id = newSessionId()
    expect((await putChunk(srv.url, 'swept.bin', id, 0, 9, 10, fill(10, 1))).status).toBe(200)
    const keep = newSessionId()
    expect((await putChunk(srv.url, 'kept.bin', keep, 0, 4, 10, fill(5, 1))).status).toBe(200)
    expect((await commit(srv.url, id)).status).toBe(200)
    const rec = await srv.app.engine.uploads.getSession(`imagestore:${id}`)
    expect(rec?.state).toBe('committed')
    // A crash between recording the commit and deleting the temp file, and one mid-commit.
    const tmp = join(srv.dataDir, 'tmp')
    const leftover = join(tmp, rec!.tempName)
    const handoff = join(
      tmp,
      `p-${Buffer.from(`imagestore:${id}`).toString('base64url')}.${randomUUID()}.part`,
    )
    writeFileSync(leftover, fill(10, 1))
    writeFileSync(handoff, fill(10, 1))
    const old = new Date(Date.now() - 120_000)
    for (const f of [leftover, handoff, ...readdirSync(tmp).map((n) => join(tmp, n))])
      utimesSync(f, old, old)
    // Keep the live session from expiring during the sweep.
    const live = await srv.app.engine.uploads.getSession(`imagestore:${keep}`)
    await srv.app.engine.uploads.sweep(live!.updatedAtMs + 10)
    expect(existsSync(leftover)).toBe(false)
    expect(existsSync(handoff)).toBe(false)
    expect(existsSync(join(tmp, live!.tempName))).toBe(true)
  })

  test('sweep: stream temp files of killed instances go; those of a live instance or a running stream stay', async () => {
    const tmp = join(srv.dataDir, 'tmp')
    const other = await createRedisState(testRedisUrl(), prefix) // another live instance
    try {
      const self = srv.app.engine.state.instanceId
      const names = {
        dead: `w-${randomUUID()}.${randomUUID()}.part`,
        mineIdle: `w-${self}.${randomUUID()}.part`,
        otherLive: `w-${other.instanceId}.${randomUUID()}.part`,
      }
      const running = srv.app.engine.uploads.streamTempPath() // a stream of ours in progress
      const old = new Date(Date.now() - 120_000)
      for (const f of [...Object.values(names).map((n) => join(tmp, n)), running]) {
        writeFileSync(f, 'x')
        utimesSync(f, old, old)
      }
      await srv.app.engine.uploads.sweep()
      expect(existsSync(join(tmp, names.dead))).toBe(false)
      expect(existsSync(join(tmp, names.mineIdle))).toBe(false)
      expect(existsSync(join(tmp, names.otherLive))).toBe(true)
      expect(existsSync(running)).toBe(true)
      await srv.app.engine.uploads.discard(running)
    } finally {
      await other.close()
    }
  })

  test('limits: tiny chunks below the minimum and too many separate ranges are refused with 400', async () => {
    const min = await startFerry({
      FERRY_MIN_CHUNK_BYTES: '65536',
      FERRY_MAX_RANGES_PER_SESSION: '3',
    })
    try {
      const id = newSessionId()
      const total = 1024 * 1024
      const r = await putChunk(min.url, 'min.bin', id, 0, 0, total, Buffer.from('x'))
      expect(r.status).toBe(400)
      // The last chunk of a file may be small.
      expect(
        (await putChunk(min.url, 'min.bin', id, total - 1, total - 1, total, Buffer.from('x')))
          .status,
      ).toBe(200)
      const c = 65536
      expect((await putChunk(min.url, 'min.bin', id, 0, c - 1, total, fill(c, 1))).status).toBe(200)
      expect(
        (await putChunk(min.url, 'min.bin', id, 2 * c, 3 * c - 1, total, fill(c, 1))).status,
      ).toBe(200)
      const over = await putChunk(min.url, 'min.bin', id, 4 * c, 5 * c - 1, total, fill(c, 1))
      expect(over.status).toBe(400)
      expect(over.text()).toMatch(/separate ranges/)
    } finally {
      await min.close()
      removeDir(min.dataDir)
    }
  })
})

describe('a Redis that loses its data or goes away', () => {
  let redis: PrivateRedis
  let srv: TestServer
  beforeAll(async () => {
    redis = await startPrivateRedis({ appendonly: false })
    srv = await startFerry({ REDIS_URL: redis.url, FERRY_REDIS_TIMEOUT_MS: '500' })
  })
  afterAll(async () => {
    await srv.close()
    await redis.stop()
    removeDir(redis.dir)
    removeDir(srv.dataDir)
  })

  test('a session id reused after Redis lost its data publishes exactly the new bytes', async () => {
    const id = newSessionId()
    const mib = 1024 * 1024
    expect(
      (await putChunk(srv.url, 'reuse.bin', id, 0, mib - 1, 3 * mib, fill(mib, 0xaa))).status,
    ).toBe(200)
    expect(
      (await putChunk(srv.url, 'reuse.bin', id, mib, 2 * mib - 1, 3 * mib, fill(mib, 0xaa))).status,
    ).toBe(200)
    await redis.kill()
    await redis.restart() // no persistence: every session is gone
    let r = await putChunk(srv.url, 'reuse.bin', id, 0, mib - 1, mib, fill(mib, 0x55))
    for (let i = 0; i < 20 && r.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 250))
      r = await putChunk(srv.url, 'reuse.bin', id, 0, mib - 1, mib, fill(mib, 0x55))
    }
    expect(r.status).toBe(200)
    expect((await commit(srv.url, id)).status).toBe(200)
    const stored = readFileSync(storeFile(srv, 'reuse.bin'))
    expect(stored.length).toBe(mib)
    expect(stored.equals(fill(mib, 0x55))).toBe(true)
  })

  test('a subscription made while Redis is down (an instance starting during a Redis restart) comes through once it is back', async () => {
    const st = await createRedisState(redis.url, uniquePrefix())
    try {
      await redis.stop()
      const got: string[] = []
      await st.bus.subscribe('late', (m) => got.push(m)) // must not throw
      await redis.restart()
      for (let i = 0; i < 100 && got.length === 0; i++) {
        await st.bus.publish('late', 'hello').catch(() => {})
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(got[0]).toBe('hello')
    } finally {
      await st.close()
    }
  })

  test('during an outage requests fail fast with 503 and the family body; Ferry recovers by itself', async () => {
    const id = newSessionId()
    await redis.stop()
    const t0 = Date.now()
    const r = await putChunk(srv.url, 'outage.bin', id, 0, 9, 10, fill(10, 1))
    const took = Date.now() - t0
    expect(r.status).toBe(503)
    expect(r.json<{ Error: { Code: string } }>().Error.Code).toBe('E_FAIL')
    expect(took).toBeLessThan(5000)
    expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    await redis.restart()
    let ok = 0
    for (let i = 0; i < 40 && ok !== 200; i++) {
      ok = (await putChunk(srv.url, 'outage.bin', id, 0, 9, 10, fill(10, 1))).status
      if (ok !== 200) await new Promise((res) => setTimeout(res, 250))
    }
    expect(ok).toBe(200)
    expect((await sessionById(srv.url, id)).status).toBe(200)
  })
})

describe('embedded store: open sessions are bounded', () => {
  test('FERRY_MAX_SESSIONS: a session beyond it is 503; removing one makes room', async () => {
    const srv = await startFerry({ FERRY_MAX_SESSIONS: '2' })
    try {
      const ids = [newSessionId(), newSessionId(), newSessionId()]
      expect((await putChunk(srv.url, 'm1.bin', ids[0]!, 0, 4, 10, fill(5, 1))).status).toBe(200)
      expect((await putChunk(srv.url, 'm2.bin', ids[1]!, 0, 4, 10, fill(5, 1))).status).toBe(200)
      const full = await putChunk(srv.url, 'm3.bin', ids[2]!, 0, 4, 10, fill(5, 1))
      expect(full.status).toBe(503)
      // The refused session left no temp file behind.
      expect(readdirSync(join(srv.dataDir, 'tmp')).filter((n) => n.startsWith('s-'))).toHaveLength(
        2,
      )
      expect(
        (
          await request(`${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${ids[0]}`, {
            method: 'DELETE',
          })
        ).status,
      ).toBe(200)
      expect((await putChunk(srv.url, 'm3.bin', ids[2]!, 0, 4, 10, fill(5, 1))).status).toBe(200)
    } finally {
      await srv.close()
      removeDir(srv.dataDir)
    }
  })
})

describe('power loss with FERRY_FSYNC=commit (simulated: a restart under another boot id, the unflushed bytes zeroed)', () => {
  test('chunks acknowledged but never flushed are asked for again after a reboot, never published as zeros', async () => {
    const dataDir = (await import('../helpers/server.js')).tempDir()
    const id = newSessionId()
    const data = Buffer.concat([fill(1000, 0x5a), fill(1000, 0xa5)])
    let srv = await startFerry({ FERRY_DATA_DIR: dataDir }, { bootId: 'boot-before' })
    expect(
      (await putChunk(srv.url, 'power.bin', id, 0, 999, 2000, data.subarray(0, 1000))).status,
    ).toBe(200)
    expect(
      (await putChunk(srv.url, 'power.bin', id, 1000, 1999, 2000, data.subarray(1000))).status,
    ).toBe(200)
    const rec = await srv.app.engine.uploads.getSession(`imagestore:${id}`)
    await srv.close()
    // The host lost power: what sat in the page cache is gone; the file reads zeros there.
    writeFileSync(join(dataDir, 'tmp', rec!.tempName), Buffer.alloc(2000))
    srv = await startFerry({ FERRY_DATA_DIR: dataDir }, { bootId: 'boot-after' })
    try {
      const c = await commit(srv.url, id)
      expect(c.status).toBe(400)
      const missing = (await sessionById(srv.url, id)).json<{
        UploadSessions: { ExpectedRanges: unknown[] }[]
      }>()
      expect(missing.UploadSessions[0]!.ExpectedRanges).toEqual([
        { StartPosition: '0', EndPosition: '1999' },
      ])
      expect(existsSync(storeFile(srv, 'power.bin'))).toBe(false)
      // The client re-sends what it is asked for; the file is whole.
      expect(
        (await putChunk(srv.url, 'power.bin', id, 0, 999, 2000, data.subarray(0, 1000))).status,
      ).toBe(200)
      expect(
        (await putChunk(srv.url, 'power.bin', id, 1000, 1999, 2000, data.subarray(1000))).status,
      ).toBe(200)
      expect((await commit(srv.url, id)).status).toBe(200)
      expect(readFileSync(storeFile(srv, 'power.bin')).equals(data)).toBe(true)
    } finally {
      await srv.close()
      removeDir(dataDir)
    }
  })

  test('a process restart on the same boot keeps its acknowledged chunks', async () => {
    const dataDir = (await import('../helpers/server.js')).tempDir()
    const id = newSessionId()
    const data = fill(1000, 0x42)
    let srv = await startFerry({ FERRY_DATA_DIR: dataDir }, { bootId: 'same-boot' })
    expect((await putChunk(srv.url, 'restart.bin', id, 0, 999, 1000, data)).status).toBe(200)
    await srv.close()
    srv = await startFerry({ FERRY_DATA_DIR: dataDir }, { bootId: 'same-boot' })
    try {
      expect((await commit(srv.url, id)).status).toBe(200)
      expect(readFileSync(storeFile(srv, 'restart.bin')).equals(data)).toBe(true)
    } finally {
      await srv.close()
      removeDir(dataDir)
    }
  })
})
