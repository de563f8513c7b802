/**
 * One contract for both state backends: every SessionStore, Locker and Bus promise is checked
 * against Redis (a real redis-server) and against the embedded store (real files).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import { createEmbeddedState } from '../../src/core/state/embedded.js'
import { createRedisState, sessionKeys } from '../../src/core/state/redis.js'
import { LockAbortedError, LockTimeoutError } from '../../src/core/state/locker.js'
import type { Lock, StateBackend } from '../../src/core/state/types.js'
import { removeDir, tempDir } from '../helpers/server.js'
import {
  startRedisCluster,
  startRedisSentinel,
  testRedisUrl,
  uniquePrefix,
  type RedisGroup,
} from '../helpers/redis.js'

interface Maker {
  name: string
  make(): Promise<{
    state: StateBackend
    reopen(): Promise<StateBackend>
    cleanup(): Promise<void>
  }>
}

/**
 * Lock waiters of these backends look again on their own only this often: a wake-up well inside
 * it came over the bus.
 */
const RECHECK_MS = 2000
/** A Redis maker on the URL `url()` answers when the suite's describe block starts. */
function redisMaker(name: string, url: () => string): Maker {
  return {
    name,
    async make() {
      const prefix = uniquePrefix()
      const state = await createRedisState(url(), prefix, { lockRecheckMs: RECHECK_MS })
      const opened: StateBackend[] = [state]
      return {
        state,
        async reopen() {
          const s = await createRedisState(url(), prefix, { lockRecheckMs: RECHECK_MS })
          opened.push(s)
          return s
        },
        async cleanup() {
          for (const s of opened) await s.close()
        },
      }
    },
  }
}

// The other topologies, started once for the file (a few seconds each).
let cluster: RedisGroup | undefined
let sentinel: RedisGroup | undefined
beforeAll(async () => {
  ;[cluster, sentinel] = await Promise.all([startRedisCluster(), startRedisSentinel()])
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
  await sentinel?.stop()
})

const makers: Maker[] = [
  redisMaker('redis', testRedisUrl),
  redisMaker('redis (Sentinel primary)', () => sentinel!.url),
  redisMaker('redis (3-primary cluster)', () => cluster!.url),
  {
    name: 'embedded',
    async make() {
      const dir = tempDir()
      let state = createEmbeddedState(dir, { lockRecheckMs: RECHECK_MS })
      return {
        state,
        async reopen() {
          await state.close()
          state = createEmbeddedState(dir, { lockRecheckMs: RECHECK_MS })
          return state
        },
        async cleanup() {
          await state.close()
          removeDir(dir)
        },
      }
    },
  },
]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const T0 = 1_700_000_000_000
const LEASE = 10_000
const newSession = (key: string, total = 100, target = 'a/b.bin') => ({
  key,
  incarnation: randomUUID(),
  target,
  totalBytes: total,
  tempName: `${key}.part`,
})

describe.each(makers)('state backend: $name', (maker) => {
  let h: Awaited<ReturnType<Maker['make']>>
  beforeAll(async () => {
    h = await maker.make()
  })
  afterAll(async () => {
    await h.cleanup()
  })
  const k = () => `c:${randomUUID()}`

  test('open creates once; a second open answers the existing record', async () => {
    const key = k()
    const a = await h.state.sessions.open(newSession(key), T0)
    expect(a.created).toBe(true)
    const b = await h.state.sessions.open(newSession(key, 999, 'other'), T0 + 5)
    expect(b.created).toBe(false)
    expect(b.session.totalBytes).toBe(100)
    expect(b.session.target).toBe('a/b.bin')
    expect(await h.state.sessions.get(key)).toMatchObject({ key, state: 'open', received: [] })
  })

  test('reserve refuses overlap with a live reservation, ignores an expired one', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 49 }, 't1', T0, LEASE)).status,
    ).toBe('reserved')
    expect(
      (await h.state.sessions.reserve(key, { start: 40, end: 59 }, 't2', T0 + 1, LEASE)).status,
    ).toBe('busy')
    expect(
      (await h.state.sessions.reserve(key, { start: 50, end: 99 }, 't3', T0 + 1, LEASE)).status,
    ).toBe('reserved')
    // t1's lease ran out: its range may be taken, and t1 can no longer complete or renew.
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 49 }, 't4', T0 + LEASE + 100, LEASE))
        .status,
    ).toBe('reserved')
    expect(await h.state.sessions.complete(key, 't1', T0 + LEASE + 200)).toBeNull()
    expect(await h.state.sessions.renew(key, 't1', T0 + LEASE + 200, LEASE)).toBe(false)
  })

  test('complete marks the range received, merges, and refreshes updatedAt', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    await h.state.sessions.reserve(key, { start: 50, end: 99 }, 'a', T0, LEASE)
    await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'b', T0, LEASE)
    const r1 = await h.state.sessions.complete(key, 'a', T0 + 10)
    expect(r1?.received).toEqual([{ start: 50, end: 99 }])
    const r2 = await h.state.sessions.complete(key, 'b', T0 + 20)
    expect(r2?.received).toEqual([{ start: 0, end: 99 }])
    // On the store's clock shifted by the caller's offset: T0 + 20 plus the round trip.
    expect(r2!.updatedAtMs).toBeGreaterThanOrEqual(T0 + 20)
    expect(r2!.updatedAtMs).toBeLessThan(T0 + 1020)
    expect(r2?.reservations).toEqual([])
  })

  test('only an exact received chunk answers "received"; any other range touching received bytes "straddles"', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'a', T0, LEASE)
    await h.state.sessions.complete(key, 'a', T0)
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'b', T0, LEASE)).status,
    ).toBe('received')
    // A part of a chunk would let a client compare guessed bytes one at a time: refused unread.
    expect(
      (await h.state.sessions.reserve(key, { start: 10, end: 20 }, 'b', T0, LEASE)).status,
    ).toBe('straddles')
    expect((await h.state.sessions.reserve(key, { start: 0, end: 0 }, 'b', T0, LEASE)).status).toBe(
      'straddles',
    )
    expect(
      (await h.state.sessions.reserve(key, { start: 40, end: 60 }, 'c', T0, LEASE)).status,
    ).toBe('straddles')
    // Chunks survive a restart of the store.
    h.state = await h.reopen()
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'd', T0, LEASE)).status,
    ).toBe('received')
    expect((await h.state.sessions.get(key))?.chunks).toBe(1)
  })

  test('a key removed and created again is a new incarnation: nothing of the old one carries over', async () => {
    const key = k()
    const first = await h.state.sessions.open(newSession(key), T0)
    await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'a', T0, LEASE)
    await h.state.sessions.complete(key, 'a', T0)
    await h.state.sessions.remove(key)
    const second = await h.state.sessions.open(newSession(key), T0)
    expect(second.session.incarnation).not.toBe(first.session.incarnation)
    expect(second.session.received).toEqual([])
    // The old chunk set went with the old record.
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 49 }, 'b', T0, LEASE)).status,
    ).toBe('reserved')
    // A request that expects the old incarnation is told it is gone.
    expect(
      (
        await h.state.sessions.reserve(
          key,
          { start: 50, end: 99 },
          'c',
          T0,
          LEASE,
          first.session.incarnation,
        )
      ).status,
    ).toBe('missing')
  })

  test('limits: ranges and chunks per session', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 10_000), T0)
    // Default limit: 256 separate ranges. Every other 10-byte block makes a new range.
    for (let i = 0; i < 256; i++) {
      const r = { start: i * 20, end: i * 20 + 9 }
      expect((await h.state.sessions.reserve(key, r, `t${i}`, T0, LEASE)).status).toBe('reserved')
      await h.state.sessions.complete(key, `t${i}`, T0)
    }
    const over = await h.state.sessions.reserve(
      key,
      { start: 256 * 20, end: 256 * 20 + 9 },
      'over',
      T0,
      LEASE,
    )
    expect(over.status).toBe('limit')
    // Filling a gap needs no new range: still taken.
    expect(
      (await h.state.sessions.reserve(key, { start: 10, end: 19 }, 'gap', T0, LEASE)).status,
    ).toBe('reserved')
  })

  test('cancel is refused while a live commit holds the session, allowed after its lease', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 0), T0)
    expect((await h.state.sessions.beginCommit(key, 'o', T0, LEASE)).status).toBe('begun')
    expect((await h.state.sessions.cancel(key, T0 + 1)).status).toBe('busy')
    expect((await h.state.sessions.cancel(key, T0 + LEASE + 100)).status).toBe('removed')
    expect((await h.state.sessions.cancel(key, T0 + LEASE + 200)).status).toBe('missing')
  })

  test('fence: checkCommit holds only for the owner with lease to spare; fences only grow; a take-over names its victim', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 0), T0)
    const a = await h.state.sessions.beginCommit(key, 'a', T0, LEASE)
    expect(a.status).toBe('begun')
    expect(await h.state.sessions.checkCommit(key, 'a', T0 + 100, 1000)).toBe(true)
    expect(await h.state.sessions.checkCommit(key, 'x', T0 + 100, 1000)).toBe(false)
    expect(await h.state.sessions.checkCommit(key, 'a', T0 + LEASE - 500, 1000)).toBe(false)
    const b = await h.state.sessions.beginCommit(key, 'b', T0 + LEASE + 100, LEASE)
    expect(b.status === 'begun' && b.takenOverFrom).toBe('a')
    expect(
      b.status === 'begun' && a.status === 'begun' && b.session.commitFence > a.session.commitFence,
    ).toBe(true)
    // The stalled commit wakes up: the fence refuses it, and so do renew and finish.
    expect(await h.state.sessions.checkCommit(key, 'a', T0 + LEASE + 200, 0)).toBe(false)
    expect(await h.state.sessions.renewCommit(key, 'a', T0 + LEASE + 200, LEASE)).toBe(false)
    expect(await h.state.sessions.finishCommit(key, 'a', 'stale', T0 + LEASE + 200)).toBe(false)
    expect(await h.state.sessions.finishCommit(key, 'b', 'ok', T0 + LEASE + 200)).toBe(true)
  })

  test('release drops a reservation without marking anything', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'a', T0, LEASE)
    await h.state.sessions.release(key, 'a')
    expect((await h.state.sessions.get(key))?.received).toEqual([])
    expect((await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'b', T0, LEASE)).status).toBe(
      'reserved',
    )
  })

  test('concurrent reservations of one range: exactly one wins', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 1000), T0)
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        h.state.sessions.reserve(key, { start: 100, end: 199 }, `t${i}`, T0, LEASE),
      ),
    )
    expect(outcomes.filter((o) => o.status === 'reserved')).toHaveLength(1)
    expect(outcomes.filter((o) => o.status === 'busy')).toHaveLength(19)
  })

  test('concurrent completes of disjoint ranges are all kept', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 1000), T0)
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        h.state.sessions.reserve(key, { start: i * 100, end: i * 100 + 99 }, `t${i}`, T0, LEASE),
      ),
    )
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => h.state.sessions.complete(key, `t${i}`, T0 + 1)),
    )
    expect((await h.state.sessions.get(key))?.received).toEqual([{ start: 0, end: 999 }])
  })

  test('commit: incomplete refused; begun closes the session to chunks; repeat answers committed', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    expect((await h.state.sessions.beginCommit(key, 'o1', T0, LEASE)).status).toBe('incomplete')
    await h.state.sessions.reserve(key, { start: 0, end: 99 }, 'a', T0, LEASE)
    await h.state.sessions.complete(key, 'a', T0)
    expect((await h.state.sessions.beginCommit(key, 'o1', T0, LEASE)).status).toBe('begun')
    expect((await h.state.sessions.beginCommit(key, 'o2', T0 + 1, LEASE)).status).toBe('busy')
    expect(
      (await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'late', T0 + 1, LEASE)).status,
    ).toBe('closed')
    expect(await h.state.sessions.finishCommit(key, 'o2', 'x', T0 + 2)).toBe(false)
    expect(await h.state.sessions.finishCommit(key, 'o1', '{"ok":1}', T0 + 2)).toBe(true)
    const again = await h.state.sessions.beginCommit(key, 'o3', T0 + 3, LEASE)
    expect(again.status).toBe('committed')
    expect(again.status === 'committed' && again.session.result).toBe('{"ok":1}')
  })

  test('a crashed commit is taken over after its lease; abortCommit reopens', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key, 0), T0)
    expect((await h.state.sessions.beginCommit(key, 'dead', T0, LEASE)).status).toBe('begun')
    // Renewed, the lease holds past its first term; renewal by another owner fails.
    expect(await h.state.sessions.renewCommit(key, 'dead', T0 + LEASE - 100, LEASE)).toBe(true)
    expect(await h.state.sessions.renewCommit(key, 'other', T0 + LEASE - 100, LEASE)).toBe(false)
    expect((await h.state.sessions.beginCommit(key, 'early', T0 + LEASE + 100, LEASE)).status).toBe(
      'busy',
    )
    expect((await h.state.sessions.beginCommit(key, 'next', T0 + 2 * LEASE, LEASE)).status).toBe(
      'begun',
    )
    await h.state.sessions.abortCommit(key, 'next')
    expect((await h.state.sessions.beginCommit(key, 'dead2', T0 + 2 * LEASE, LEASE)).status).toBe(
      'begun',
    )
    await h.state.sessions.abortCommit(key, 'dead2')
    expect((await h.state.sessions.get(key))?.state).toBe('open')
  })

  test('listByTarget and remove', async () => {
    const target = `t/${randomUUID()}`
    const [a, b] = [k(), k()]
    await h.state.sessions.open(newSession(a, 10, target), T0)
    await h.state.sessions.open(newSession(b, 10, target), T0)
    expect((await h.state.sessions.listByTarget('c:', target)).map((s) => s.key).sort()).toEqual(
      [a, b].sort(),
    )
    expect((await h.state.sessions.remove(a))?.key).toBe(a)
    expect(await h.state.sessions.remove(a)).toBeNull()
    expect((await h.state.sessions.listByTarget('c:', target)).map((s) => s.key)).toEqual([b])
  })

  test('count: every session the store holds, one more per open, one less per remove', async () => {
    const before = await h.state.sessions.count()
    const [a, b] = [k(), k()]
    await h.state.sessions.open(newSession(a, 10, 't/count'), T0)
    await h.state.sessions.open(newSession(a, 10, 't/count'), T0)
    await h.state.sessions.open(newSession(b, 10, 't/count'), T0)
    expect(await h.state.sessions.count()).toBe(before + 2)
    await h.state.sessions.remove(a)
    expect(await h.state.sessions.count()).toBe(before + 1)
    await h.state.sessions.cancel(b, T0)
    expect(await h.state.sessions.count()).toBe(before)
  })

  test('expiry: listed once past the TTL, not removed while a chunk is in flight', async () => {
    const key = k()
    const ttl = 1000
    await h.state.sessions.open(newSession(key), T0)
    // The store judges time on its own clock (Redis TIME), shifted by the caller's offset: allow
    // a few milliseconds of round trip at the edges.
    expect(await h.state.sessions.listExpired(T0 + ttl - 100, ttl, 1000)).not.toContain(key)
    expect(await h.state.sessions.listExpired(T0 + ttl + 100, ttl, 1000)).toContain(key)
    await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'inflight', T0 + ttl, LEASE)
    expect(await h.state.sessions.removeIfExpired(key, T0 + ttl + 100, ttl)).toBeNull()
    expect((await h.state.sessions.removeIfExpired(key, T0 + ttl + LEASE + 100, ttl))?.key).toBe(
      key,
    )
    expect(await h.state.sessions.get(key)).toBeNull()
  })

  test('sessions survive a restart of the process that holds them', async () => {
    const key = k()
    await h.state.sessions.open(newSession(key), T0)
    await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'a', T0, LEASE)
    await h.state.sessions.complete(key, 'a', T0)
    h.state = await h.reopen()
    expect((await h.state.sessions.get(key))?.received).toEqual([{ start: 0, end: 9 }])
  })

  test('updateGrid: atomic changes of the grid, only for its incarnation; kept across chunks and restarts', async () => {
    const key = k()
    const { session } = await h.state.sessions.open(newSession(key), T0)
    const empty = { cell: 10, uploadId: 'u1', parts: {}, frags: {} }
    const set = await h.state.sessions.updateGrid(key, session.incarnation, (g) =>
      g === null ? { grid: empty, out: 'created' } : { grid: 'same', out: 'had' },
    )
    expect(set?.out).toBe('created')
    expect(set?.session.grid).toEqual(empty)
    // Another incarnation (or none) changes nothing.
    expect(await h.state.sessions.updateGrid(key, 'other', () => ({ grid: empty, out: 1 }))).toBe(
      null,
    )
    expect(await h.state.sessions.updateGrid(k(), 'x', () => ({ grid: empty, out: 1 }))).toBe(null)
    // Concurrent changes from many callers: none is lost.
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        h.state.sessions.updateGrid(key, session.incarnation, (g) => ({
          grid: { ...g!, parts: { ...g!.parts, [String(i)]: `e${i}` } },
          out: undefined,
        })),
      ),
    )
    await h.state.sessions.reserve(key, { start: 0, end: 9 }, 'a', T0, LEASE)
    const done = await h.state.sessions.complete(key, 'a', T0)
    expect(Object.keys(done!.grid!.parts)).toHaveLength(12)
    h.state = await h.reopen()
    const again = await h.state.sessions.get(key)
    expect(again?.grid?.parts['11']).toBe('e11')
    expect(again?.grid?.uploadId).toBe('u1')
    expect(again?.received).toEqual([{ start: 0, end: 9 }])
  })

  test('locker: one holder at a time; release frees; expiry frees; isHeld tells', async () => {
    const key = `lk:${randomUUID()}`
    const a = await h.state.locker.tryAcquire(key, 300)
    expect(a).not.toBeNull()
    expect(await h.state.locker.tryAcquire(key, 300)).toBeNull()
    expect(await h.state.locker.isHeld(key)).toBe(true)
    await a!.release()
    expect(a!.signal.aborted).toBe(true)
    expect(await h.state.locker.isHeld(key)).toBe(false)
    const b = await h.state.locker.tryAcquire(key, 300)
    expect(b).not.toBeNull()
    // Renewal keeps it past its first lifetime.
    await new Promise((r) => setTimeout(r, 700)) // over two lifetimes of 300 ms: the case
    expect(await h.state.locker.isHeld(key)).toBe(true)
    expect(b!.signal.aborted).toBe(false)
    await b!.release()
  })

  test('acquire waits for a held lock, gets it as soon as it is released', async () => {
    const key = `lk:${randomUUID()}`
    const a = (await h.state.locker.tryAcquire(key, 10_000))!
    let settledAt = 0
    const waiting = h.state.locker
      .acquire(key, { ttlMs: 1000, waitMs: 5000 })
      .finally(() => (settledAt = performance.now()))
    await sleep(100)
    expect(settledAt).toBe(0)
    const releasedAt = performance.now()
    await a.release()
    const b = await waiting
    // The holder's lease (10 s) and the re-check (2 s) are far off: the release message woke it.
    expect(settledAt - releasedAt).toBeLessThan(RECHECK_MS / 4)
    expect(b.key).toBe(key)
    expect(b.token).not.toBe(a.token)
    expect(await h.state.locker.tryAcquire(key, 1000)).toBeNull()
    await b.release()
  })

  test('acquire gives up after waitMs (ERR_LOCKED); waitMs 0 tries once', async () => {
    const key = `lk:${randomUUID()}`
    const a = (await h.state.locker.tryAcquire(key, 10_000))!
    const t0 = performance.now()
    const err = await h.state.locker
      .acquire(key, { ttlMs: 1000, waitMs: 250 })
      .catch((e: unknown) => e)
    const took = performance.now() - t0
    expect(err).toBeInstanceOf(LockTimeoutError)
    expect(err).toMatchObject({ code: 'ERR_LOCKED', key })
    expect(took).toBeGreaterThanOrEqual(240)
    expect(took).toBeLessThan(RECHECK_MS)
    await expect(h.state.locker.acquire(key, { ttlMs: 1000, waitMs: 0 })).rejects.toBeInstanceOf(
      LockTimeoutError,
    )
    expect(a.signal.aborted).toBe(false)
    await a.release()
    const free = await h.state.locker.acquire(key, { ttlMs: 1000, waitMs: 0 })
    await free.release()
  })

  test('acquire and waitUntilFree stop when their signal aborts (ERR_CLIENT_ABORTED)', async () => {
    const key = `lk:${randomUUID()}`
    const a = (await h.state.locker.tryAcquire(key, 10_000))!
    const ac = new AbortController()
    const t0 = performance.now()
    const both = Promise.all([
      h.state.locker
        .acquire(key, { ttlMs: 1000, waitMs: Infinity, signal: ac.signal })
        .catch((e: unknown) => e),
      h.state.locker
        .waitUntilFree(key, { waitMs: Infinity, signal: ac.signal })
        .catch((e: unknown) => e),
    ])
    setTimeout(() => ac.abort(new Error('client gone')), 100)
    for (const err of await both) {
      expect(err).toBeInstanceOf(LockAbortedError)
      expect(err).toMatchObject({ code: 'ERR_CLIENT_ABORTED', key })
    }
    expect(performance.now() - t0).toBeLessThan(RECHECK_MS / 2)
    // Already aborted: refused without waiting; the holder is untouched.
    await expect(
      h.state.locker.acquire(key, { ttlMs: 1000, waitMs: 5000, signal: ac.signal }),
    ).rejects.toBeInstanceOf(LockAbortedError)
    expect(await h.state.locker.isHeld(key)).toBe(true)
    await a.release()
  })

  test('a release request reaches the holder; heeded: hand-over, ignored: kept', async () => {
    const key = `lk:${randomUUID()}`
    let asked = 0
    const holder: Lock = await h.state.locker.acquire(key, {
      ttlMs: 10_000,
      waitMs: 0,
      onReleaseRequested: () => {
        asked++
        void holder.release()
      },
    })
    const t0 = performance.now()
    const next = await h.state.locker.acquire(key, {
      ttlMs: 10_000,
      waitMs: 5000,
      requestRelease: true,
    })
    expect(performance.now() - t0).toBeLessThan(RECHECK_MS / 4)
    expect(asked).toBe(1)
    expect(holder.signal.aborted).toBe(true)
    // This holder listens but does not let go: waiters wait out their waitMs.
    let heard = 0
    await next.release()
    const stubborn = await h.state.locker.acquire(key, {
      ttlMs: 10_000,
      waitMs: 0,
      onReleaseRequested: () => heard++,
    })
    await h.state.locker.requestRelease(key)
    await expect(
      h.state.locker.acquire(key, { ttlMs: 1000, waitMs: 300, requestRelease: true }),
    ).rejects.toBeInstanceOf(LockTimeoutError)
    expect(heard).toBe(2)
    expect(stubborn.signal.aborted).toBe(false)
    await stubborn.release()
    // A released lock hears no more requests.
    await h.state.locker.requestRelease(key)
    await sleep(50)
    expect(heard).toBe(2)
  })

  test('waitUntilFree: at once when free, woken by a release, times out', async () => {
    const key = `lk:${randomUUID()}`
    await h.state.locker.waitUntilFree(key, { waitMs: 0 })
    const a = (await h.state.locker.tryAcquire(key, 10_000))!
    await expect(h.state.locker.waitUntilFree(key, { waitMs: 200 })).rejects.toBeInstanceOf(
      LockTimeoutError,
    )
    let freedAt = 0
    const waiting = h.state.locker
      .waitUntilFree(key, { waitMs: 5000 })
      .then(() => (freedAt = performance.now()))
    await sleep(100)
    expect(freedAt).toBe(0)
    const releasedAt = performance.now()
    await a.release()
    await waiting
    expect(freedAt - releasedAt).toBeLessThan(RECHECK_MS / 4)
    expect(await h.state.locker.isHeld(key)).toBe(false)
  })

  test('notifyWaiters wakes waiters (no release): their recheck may end the wait', async () => {
    const key = `lk:${randomUUID()}`
    const a = (await h.state.locker.tryAcquire(key, 10_000))!
    let busy = false
    let rechecks = 0
    const t0 = performance.now()
    const waiting = h.state.locker
      .acquire(key, {
        ttlMs: 1000,
        waitMs: 5000,
        recheck: () => {
          rechecks++
          if (busy) throw new Error('the holder now runs a job')
        },
      })
      .catch((e: unknown) => e)
    await sleep(100)
    busy = true
    await h.state.locker.notifyWaiters(key)
    expect(await waiting).toMatchObject({ message: 'the holder now runs a job' })
    expect(performance.now() - t0).toBeLessThan(RECHECK_MS / 2)
    expect(rechecks).toBeGreaterThanOrEqual(2)
    expect(a.signal.aborted).toBe(false)
    await a.release()
  })

  test('many waiters: each gets the lock in turn, never two at once', async () => {
    const key = `lk:${randomUUID()}`
    let inside = 0
    let most = 0
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const lock = await h.state.locker.acquire(key, { ttlMs: 5000, waitMs: 10_000 })
        most = Math.max(most, ++inside)
        await sleep(20)
        inside--
        await lock.release()
      }),
    )
    expect(most).toBe(1)
    // Eight hand-overs by message, not by re-check.
    expect(performance.now() - t0).toBeLessThan(RECHECK_MS)
  })

  test('bus: a published message reaches every subscriber of the channel', async () => {
    const ch = `ch:${randomUUID()}`
    const got: string[] = []
    const off = await h.state.bus.subscribe(ch, (m) => got.push(m))
    await h.state.bus.publish(ch, 'hello')
    await h.state.bus.publish(`${ch}:other`, 'nope')
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(got).toEqual(['hello'])
    await off()
  })

  /** The outcome's status of a store call (a short form for the tests below). */
  const statusOf = async (p: Promise<{ status: string }>) => (await p).status
  const reserve = (key: string, start: number, end: number, token: string, now: number) =>
    statusOf(h.state.sessions.reserve(key, { start, end }, token, now, LEASE))

  test('complete with an end keeps the prefix a cut chunk left and frees the rest', async () => {
    const key = k()
    const s = () => h.state.sessions
    await s().open(newSession(key), T0)
    await s().reserve(key, { start: 0, end: 49 }, 'a', T0, LEASE)
    // Not durable: the prefix is owed by this instance until a flush, like a whole chunk.
    const cut = await s().complete(key, 'a', T0 + 1, false, 19)
    expect(cut?.received).toEqual([{ start: 0, end: 19 }])
    expect(cut?.reservations).toEqual([])
    expect(cut?.chunks).toBe(1)
    expect(cut?.owed.flatMap((o) => o.ranges)).toEqual([{ start: 0, end: 19 }])
    // The rest is free again; the original range now straddles received bytes.
    expect(await reserve(key, 0, 49, 'b', T0 + 2)).toBe('straddles')
    expect(await reserve(key, 0, 19, 'b', T0 + 2)).toBe('received')
    expect(await reserve(key, 20, 59, 'c', T0 + 2)).toBe('reserved')
    // An end outside the reservation is a caller's bug: refused, nothing marked.
    const invalid = { code: 'ERR_INVALID_RANGE' }
    await expect(s().complete(key, 'c', T0 + 3, true, 60)).rejects.toMatchObject(invalid)
    await expect(s().complete(key, 'c', T0 + 3, true, 19)).rejects.toMatchObject(invalid)
    // Durable: nothing more owed.
    const second = await s().complete(key, 'c', T0 + 4, true, 20)
    expect(second?.received).toEqual([{ start: 0, end: 20 }])
    expect(second?.owed.flatMap((o) => o.ranges)).toEqual([{ start: 0, end: 19 }])
    // A cut whose reservation was taken meanwhile keeps nothing.
    await s().reserve(key, { start: 21, end: 40 }, 'd', T0, LEASE)
    await s().reserve(key, { start: 21, end: 40 }, 'e', T0 + LEASE + 100, LEASE)
    expect(await s().complete(key, 'd', T0 + LEASE + 200, false, 30)).toBeNull()
    await s().release(key, 'e')
    // Kept prefixes survive a restart of the store, as chunks.
    h.state = await h.reopen()
    const after = await s().get(key)
    expect(after?.received).toEqual([{ start: 0, end: 20 }])
    expect(after?.chunks).toBe(2)
    expect(await reserve(key, 20, 20, 'f', T0 + 5)).toBe('received')
  })

  test('an unknown length is declared once, never below what is held; commit waits', async () => {
    const key = k()
    const s = () => h.state.sessions
    const metadata = { filename: 'b.bin', 'content-type': 'application/octet-stream', empty: '' }
    const opened = await s().open({ ...newSession(key), totalBytes: null, metadata }, T0)
    expect(opened.session).toMatchObject({ totalBytes: null, metadata })
    await s().reserve(key, { start: 0, end: 49 }, 'a', T0, LEASE)
    await s().complete(key, 'a', T0, true)
    expect(await statusOf(s().beginCommit(key, 'o', T0, LEASE))).toBe('incomplete')
    // A live reservation counts as held: 60 would cut it.
    await s().reserve(key, { start: 50, end: 69 }, 'b', T0, LEASE)
    expect(await statusOf(s().declareLength(key, 49, T0))).toBe('too-small')
    expect(await statusOf(s().declareLength(key, 60, T0))).toBe('too-small')
    await s().release(key, 'b')
    // The fields survive a restart of the store.
    h.state = await h.reopen()
    const held = { totalBytes: null, metadata, received: [{ start: 0, end: 49 }] }
    expect(await s().get(key)).toMatchObject(held)
    const declared = await s().declareLength(key, 50, T0 + 10)
    expect(declared).toMatchObject({ status: 'declared', session: { totalBytes: 50 } })
    expect(await statusOf(s().declareLength(key, 50, T0 + 11))).toBe('declared')
    expect(await statusOf(s().declareLength(key, 51, T0 + 11))).toBe('conflict')
    expect(await statusOf(s().declareLength(`${key}:none`, 51, T0))).toBe('missing')
    const invalid = { code: 'ERR_INVALID_ARGUMENT' }
    await expect(s().declareLength(key, -1, T0)).rejects.toMatchObject(invalid)
    h.state = await h.reopen()
    expect(await s().get(key)).toMatchObject({ totalBytes: 50, metadata })
    expect(await statusOf(s().beginCommit(key, 'o', T0 + 20, LEASE))).toBe('begun')
  })

  test('metadata past its bounds or of the wrong shape is refused, nothing stored', async () => {
    const bad: unknown[] = [
      Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
      { 'has space': 'v' },
      { 'a,b': 'v' },
      { '': 'v' },
      { ['k'.repeat(129)]: 'v' },
      { big: 'x'.repeat(8200) },
      { n: 1 },
      ['v'],
    ]
    for (const metadata of bad) {
      const key = k()
      const init = { ...newSession(key), metadata: metadata as Record<string, string> }
      const invalid = { code: 'ERR_INVALID_ARGUMENT' }
      await expect(h.state.sessions.open(init, T0)).rejects.toMatchObject(invalid)
      expect(await h.state.sessions.get(key)).toBeNull()
    }
    // At the bounds (32 entries, 32 x (3 + 253) = 8192 bytes): accepted.
    const key = k()
    const name = (i: number) => `k${String(i).padStart(2, '0')}`
    const full = Object.fromEntries(
      Array.from({ length: 32 }, (_, i) => [name(i), 'v'.repeat(253)]),
    )
    const opened = await h.state.sessions.open({ ...newSession(key), metadata: full }, T0)
    expect(opened.session.metadata).toEqual(full)
  })
})

const lockerTopologies: [string, () => string][] = [
  ['one Redis', testRedisUrl],
  ['a 3-primary cluster', () => cluster!.url],
]
describe.each(lockerTopologies)('locker: two instances on %s', (_name, url) => {
  const open = (prefix: string) => createRedisState(url(), prefix, { lockRecheckMs: RECHECK_MS })

  test('a release wakes a waiter on the other instance; release requests cross', async () => {
    const prefix = uniquePrefix()
    const [a, b] = await Promise.all([open(prefix), open(prefix)])
    const key = `lk:${randomUUID()}`
    let asked = 0
    const held = await a.locker.acquire(key, {
      ttlMs: 10_000,
      waitMs: 0,
      onReleaseRequested: () => asked++,
    })
    expect(await b.locker.tryAcquire(key, 1000)).toBeNull()
    let gotAt = 0
    const waiting = b.locker
      .acquire(key, {
        ttlMs: 10_000,
        waitMs: 5000,
        requestRelease: true,
      })
      .then((l) => {
        gotAt = performance.now()
        return l
      })
    for (let i = 0; i < 100 && asked === 0; i++) await sleep(10)
    expect(asked).toBe(1)
    expect(gotAt).toBe(0)
    const releasedAt = performance.now()
    await held.release()
    const mine = await waiting
    expect(gotAt - releasedAt).toBeLessThan(RECHECK_MS / 4)
    expect(await a.locker.isHeld(key)).toBe(true)
    await mine.release()
    await Promise.all([a.close(), b.close()])
  })

  test('contending from both instances: one at a time, all served, by message', async () => {
    const prefix = uniquePrefix()
    const [a, b] = await Promise.all([open(prefix), open(prefix)])
    const key = `lk:${randomUUID()}`
    let inside = 0
    let most = 0
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const lock = await (i % 2 === 0 ? a : b).locker.acquire(key, {
          ttlMs: 5000,
          waitMs: 10_000,
        })
        most = Math.max(most, ++inside)
        await sleep(15)
        inside--
        await lock.release()
      }),
    )
    expect(most).toBe(1)
    expect(performance.now() - t0).toBeLessThan(RECHECK_MS)
    await Promise.all([a.close(), b.close()])
  })

  test('a holder that died: the waiter gets the lock when its lease runs out', async () => {
    const prefix = uniquePrefix()
    const [a, b] = await Promise.all([open(prefix), open(prefix)])
    const key = `lk:${randomUUID()}`
    await a.locker.acquire(key, { ttlMs: 600, waitMs: 0 })
    await a.close() // its Redis connection is gone: no renewal, no release, no message
    const t0 = performance.now()
    const lock = await b.locker.acquire(key, { ttlMs: 5000, waitMs: 5000 })
    const took = performance.now() - t0
    expect(took).toBeGreaterThan(300)
    expect(took).toBeLessThan(1200)
    await lock.release()
    // The same for waitUntilFree.
    const c = await open(prefix)
    await c.locker.acquire(key, { ttlMs: 600, waitMs: 0 })
    await c.close()
    const t1 = performance.now()
    await b.locker.waitUntilFree(key, { waitMs: 5000 })
    expect(performance.now() - t1).toBeLessThan(1200)
    await b.close()
  })
})

describe('power loss: ranges owed by a dead writer (FERRY_FSYNC=commit)', () => {
  const received = async (st: StateBackend, key: string) =>
    await st.sessions.beginCommit(key, 'probe', Date.now(), LEASE)

  test('embedded: after a reboot the unflushed ranges are asked for again; flushed ones and a mere process restart keep theirs', async () => {
    const dir = tempDir()
    let st = createEmbeddedState(dir, { bootId: 'boot-1' })
    const now = Date.now()
    await st.sessions.open({ ...newSession('p:1', 100), incarnation: 'inc' }, now)
    for (const [i, r] of [
      [0, 49],
      [50, 99],
    ].entries()) {
      await st.sessions.reserve('p:1', { start: r[0]!, end: r[1]! }, `t${i}`, now, LEASE)
      await st.sessions.complete('p:1', `t${i}`, now)
    }
    await st.sessions.markDurable('p:1', 'inc', [{ start: 0, end: 49 }], now) // a background flush covered these
    await st.close()
    // The process died, the host did not reboot: the page cache still holds everything.
    st = createEmbeddedState(dir, { bootId: 'boot-1' })
    expect((await st.sessions.get('p:1'))?.received).toEqual([{ start: 0, end: 99 }])
    await st.close()
    removeDir(dir)
    // The same, but the host rebooted before the restart.
    const dir2 = tempDir()
    let st2 = createEmbeddedState(dir2, { bootId: 'boot-1' })
    await st2.sessions.open({ ...newSession('p:2', 100), incarnation: 'inc2' }, now)
    for (const [i, r] of [
      [0, 49],
      [50, 99],
    ].entries()) {
      await st2.sessions.reserve('p:2', { start: r[0]!, end: r[1]! }, `t${i}`, now, LEASE)
      await st2.sessions.complete('p:2', `t${i}`, now)
    }
    await st2.sessions.markDurable('p:2', 'inc2', [{ start: 0, end: 49 }], now)
    await st2.close()
    st2 = createEmbeddedState(dir2, { bootId: 'boot-2' })
    const c = await received(st2, 'p:2')
    expect(c.status).toBe('incomplete')
    expect(c.status === 'incomplete' && c.session.received).toEqual([{ start: 0, end: 49 }])
    await st2.close()
    removeDir(dir2)
  })

  test("redis: a dead instance's unflushed ranges are dropped when its host rebooted, kept when it is the same boot", async () => {
    const prefix = uniquePrefix()
    const a = await createRedisState(testRedisUrl(), prefix, { bootId: 'host-a', livenessMs: 1000 })
    const now = Date.now()
    for (const key of ['q:other-boot', 'q:same-boot']) {
      await a.sessions.open({ ...newSession(key, 100), incarnation: key }, now)
      await a.sessions.reserve(key, { start: 0, end: 99 }, 't', now, LEASE)
      await a.sessions.complete(key, 't', now)
    }
    await a.close() // dead: its liveness key is gone
    const b = await createRedisState(testRedisUrl(), prefix, { bootId: 'host-b' })
    const c = await received(b, 'q:other-boot')
    expect(c.status).toBe('incomplete')
    await b.close()
    const a2 = await createRedisState(testRedisUrl(), prefix, { bootId: 'host-a' })
    expect((await received(a2, 'q:same-boot')).status).toBe('begun')
    await a2.close()
  })

  test('durable chunks (FERRY_FSYNC=chunk) owe nothing', async () => {
    const dir = tempDir()
    let st = createEmbeddedState(dir, { bootId: 'boot-1' })
    const now = Date.now()
    await st.sessions.open(newSession('d:1', 10), now)
    await st.sessions.reserve('d:1', { start: 0, end: 9 }, 't', now, LEASE)
    await st.sessions.complete('d:1', 't', now, true)
    await st.close()
    st = createEmbeddedState(dir, { bootId: 'boot-2' })
    expect((await received(st, 'd:1')).status).toBe('begun')
    await st.close()
    removeDir(dir)
  })
})

/** A record as the version before unknown lengths and metadata wrote it. */
const oldRecord = (key: string) => ({
  key,
  incarnation: 'inc-old',
  target: 'a/b.bin',
  totalBytes: 100,
  tempName: `${key}.part`,
  createdAtMs: T0,
  updatedAtMs: T0,
  received: [{ start: 0, end: 9 }],
  chunks: 1,
  reservations: [],
  state: 'open',
  commitOwner: null,
  commitHolder: null,
  commitLeaseUntilMs: 0,
  commitFence: 0,
  result: null,
  owed: [],
})

describe('records written before unknown lengths and metadata', () => {
  test('redis: an old record loads with no metadata and takes the new steps', async () => {
    const prefix = uniquePrefix()
    const st = await createRedisState(testRedisUrl(), prefix)
    try {
      const doc = JSON.stringify(oldRecord('old:1'))
      const at = sessionKeys(prefix, 'old:1')
      await st.redis.hset(at.record, 'v', '1', 'doc', doc)
      await st.redis.sadd(at.chunks, '0-9')
      const loaded = { totalBytes: 100, metadata: {}, received: [{ start: 0, end: 9 }] }
      expect(await st.sessions.get('old:1')).toMatchObject(loaded)
      expect((await st.sessions.declareLength('old:1', 100, Date.now())).status).toBe('declared')
      expect((await st.sessions.declareLength('old:1', 90, Date.now())).status).toBe('conflict')
      await st.sessions.reserve('old:1', { start: 10, end: 99 }, 't', Date.now(), LEASE)
      const cut = await st.sessions.complete('old:1', 't', Date.now(), true, 49)
      expect(cut?.received).toEqual([{ start: 0, end: 49 }])
      expect(await st.sessions.get('old:1')).toMatchObject({ metadata: {}, totalBytes: 100 })
    } finally {
      await st.close()
    }
  })

  test('redis: sessions of the layout before hash tags move to their buckets', async () => {
    const prefix = uniquePrefix()
    const { Redis } = await import('ioredis')
    const raw = new Redis(testRedisUrl())
    const doc = JSON.stringify({ ...oldRecord('old:2'), target: 'x/y.bin', updatedAtMs: T0 })
    await raw.hset(`${prefix}sess:old:2`, 'v', '7', 'doc', doc)
    await raw.sadd(`${prefix}sess-chunks:old:2`, '0-9')
    await raw.zadd(`${prefix}sess-by-updated`, T0, 'old:2')
    await raw.sadd(`${prefix}sess-by-target:x/y.bin`, 'old:2')
    const st = await createRedisState(testRedisUrl(), prefix)
    try {
      expect(await st.sessions.get('old:2')).toMatchObject({ received: [{ start: 0, end: 9 }] })
      const byTarget = await st.sessions.listByTarget('old:', 'x/y.bin')
      expect(byTarget.map((r) => r.key)).toEqual(['old:2'])
      expect(await st.sessions.listExpired(T0 + 10_000, 1000, 10)).toEqual(['old:2'])
      // The re-send of the chunk received before is recognised (the chunk set moved too).
      const again = await st.sessions.reserve('old:2', { start: 0, end: 9 }, 'r', Date.now(), LEASE)
      expect(again.status).toBe('received')
      expect(await raw.keys(`${prefix}sess*`)).toEqual([])
    } finally {
      await st.close()
      raw.disconnect()
    }
  })

  test('embedded: old journal lines (records, deltas) replay and take the new steps', async () => {
    const dir = tempDir()
    const { writeFileSync } = await import('node:fs')
    const delta = { token: 't0', start: 10, end: 19, at: T0 + 1, owedBy: null }
    writeFileSync(
      `${dir}/sessions.journal`,
      `${[
        JSON.stringify({ k: 'old:1', r: oldRecord('old:1'), c: '0-9' }),
        JSON.stringify({ k: 'old:1', d: delta }),
      ].join('\n')}\n`,
    )
    let st = createEmbeddedState(dir)
    const loaded = { totalBytes: 100, metadata: {}, received: [{ start: 0, end: 19 }], chunks: 2 }
    expect(await st.sessions.get('old:1')).toMatchObject(loaded)
    const resent = await st.sessions.reserve('old:1', { start: 10, end: 19 }, 'x', T0, LEASE)
    expect(resent.status).toBe('received')
    await st.sessions.reserve('old:1', { start: 20, end: 99 }, 't', T0, LEASE)
    await st.sessions.complete('old:1', 't', T0 + 2, true, 29)
    await st.close()
    st = createEmbeddedState(dir)
    const after = { totalBytes: 100, metadata: {}, received: [{ start: 0, end: 29 }] }
    expect(await st.sessions.get('old:1')).toMatchObject(after)
    await st.close()
    removeDir(dir)
  })
})

describe('embedded store', () => {
  test('its journal replays after a restart, ignores a last line cut short by a crash, and is compacted', async () => {
    const dir = tempDir()
    const { appendFileSync, readFileSync } = await import('node:fs')
    let state = createEmbeddedState(dir)
    await state.sessions.open(newSession('j:1', 100), T0)
    await state.sessions.open(newSession('j:2', 100), T0)
    for (let i = 0; i < 10; i++) {
      await state.sessions.reserve('j:1', { start: i * 10, end: i * 10 + 9 }, `t${i}`, T0, LEASE)
      await state.sessions.complete('j:1', `t${i}`, T0 + i)
    }
    await state.sessions.remove('j:2')
    await state.close()
    const journal = `${dir}/sessions.journal`
    // Two opens, ten chunks (one short delta line each; reservations are not journaled), a removal.
    const lines = readFileSync(journal, 'utf8').trim().split('\n')
    expect(lines).toHaveLength(13)
    expect(lines.filter((l) => l.includes('"d":'))).toHaveLength(10)
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(1000)
    // A crash in the middle of an append leaves half a line.
    appendFileSync(journal, '{"k":"j:1","r":{"key":"j:1","tot')
    state = createEmbeddedState(dir)
    const rec = await state.sessions.get('j:1')
    expect(rec?.received).toEqual([{ start: 0, end: 99 }])
    expect(await state.sessions.get('j:2')).toBeNull()
    await state.close()
    // Compacted at start (in the background; close waits for it): one line per live session.
    expect(readFileSync(journal, 'utf8').trim().split('\n')).toHaveLength(1)
    removeDir(dir)
  })

  test('refuses a data directory another store holds; a pid file alone, even of a live process, does not', async () => {
    const dir = tempDir()
    const a = createEmbeddedState(dir)
    expect(() => createEmbeddedState(dir)).toThrow(/in use by process/)
    await a.close()
    const { writeFileSync } = await import('node:fs')
    // The lock is the kernel's, not the pid in the file (our parent: alive, unrelated).
    writeFileSync(`${dir}/owner.pid`, String(process.ppid))
    const b = createEmbeddedState(dir)
    await b.close()
    removeDir(dir)
  })
})
