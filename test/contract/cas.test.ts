/**
 * The content-addressed store and its garbage collector, against both state backends (a real
 * redis-server and the embedded store) and real files.
 */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join, relative } from 'node:path'
import {
  CasStore,
  GC_LOCK_KEY,
  collectGarbage,
  createCheckout,
  type CasKey,
} from '../../src/core/cas/index.js'
import { createEmbeddedState } from '../../src/core/state/embedded.js'
import { createRedisState } from '../../src/core/state/redis.js'
import type { StateBackend } from '../../src/core/state/types.js'
import {
  createLayout,
  createStores,
  type DataLayout,
  type DataStores,
} from '../../src/core/storage/layout.js'
import { createLogger } from '../../src/observability/logger.js'
import { seededBytes, sha256 } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const log = createLogger('silent')
const HOUR = 3600_000

const backends: { name: string; make(dir: string): Promise<StateBackend> }[] = [
  { name: 'redis', make: () => createRedisState(testRedisUrl(), uniquePrefix()) },
  { name: 'embedded', make: async (dir) => createEmbeddedState(join(dir, 'state')) },
]

describe.each(backends)('CAS on $name state', ({ make }) => {
  let dir: string
  let layout: DataLayout
  let stores: DataStores
  let state: StateBackend
  let cas: CasStore

  beforeEach(async () => {
    dir = tempDir('ferry-cas-')
    layout = createLayout(dir)
    stores = createStores(layout)
    state = await make(dir)
    cas = new CasStore({
      objects: stores.cas,
      locker: state.locker,
      bus: state.bus,
      claimTtlMs: 2000,
      log,
      settleTimeoutMs: 1000,
    })
    await cas.start()
  })
  afterEach(async () => {
    await cas.close()
    await state.close()
    removeDir(dir)
  })

  /** Stores `data` as a blob the way an upload does, answers its key. */
  async function store(data: Buffer): Promise<CasKey> {
    const k = { sha256: sha256(data), size: data.length }
    const tmp = join(layout.tmp, `w-${Math.random()}.part`)
    writeFileSync(tmp, data)
    expect(await cas.publish(tmp, k)).toBe('stored')
    return k
  }
  const age = (k: CasKey, ms: number) => {
    const t = new Date(Date.now() - ms)
    utimesSync(cas.blobPath(k), t, t)
  }

  test('publish is link-if-absent: a second copy is dropped and the first kept', async () => {
    const data = seededBytes(5000, 'one')
    const k = await store(data)
    expect(cas.blobPath(k)).toBe(
      join(layout.cas, k.sha256.slice(0, 2), k.sha256.slice(2), '5000.blob'),
    )
    const ino = statSync(cas.blobPath(k)).ino
    const tmp = join(layout.tmp, 'w-second.part')
    writeFileSync(tmp, data)
    expect(await cas.publish(tmp, k)).toBe('existed')
    expect(statSync(cas.blobPath(k)).ino).toBe(ino)
    expect(existsSync(tmp)).toBe(false)
    expect(readdirSync(layout.tmp)).toEqual([])
  })

  test('status is stored > uploading (a held claim) > unknown; a claim is exclusive and released', async () => {
    const k = { sha256: sha256(Buffer.from('x')), size: 1 }
    expect(await cas.status(k)).toBe('unknown')
    const claim = await cas.claim(k)
    expect(claim).not.toBeNull()
    expect(await cas.claim(k)).toBeNull()
    expect(await cas.status(k)).toBe('uploading')
    await claim!.release()
    expect(await cas.status(k)).toBe('unknown')
    await store(Buffer.from('x'))
    expect(await cas.status(k)).toBe('stored')
  })

  test('watchers fire on an announce only when the blob is on disk', async () => {
    const data = seededBytes(100, 'watch')
    const k = { sha256: sha256(data), size: 100 }
    let fired = 0
    const stop = cas.watch(k, () => fired++)
    await cas.announce(k) // a stray announce: nothing stored
    await new Promise((r) => setTimeout(r, 200)) // a window for a wrong call: not firing has no event
    expect(fired).toBe(0)
    await store(data) // publish announces
    await waitFor('the watcher to fire', () => fired > 0, { timeoutMs: 1000, everyMs: 20 })
    expect(fired).toBe(1)
    stop()
    await cas.announce(k)
    await new Promise((r) => setTimeout(r, 200)) // a window for a wrong call, as above
    expect(fired).toBe(1)
  })

  test('touch moves the mtime to now and answers false for a missing blob', async () => {
    const k = await store(seededBytes(10, 'touch'))
    age(k, 10 * HOUR)
    expect(await cas.touch(k)).toBe(true)
    expect(Date.now() - statSync(cas.blobPath(k)).mtimeMs).toBeLessThan(5000)
    expect(await cas.touch({ sha256: 'a'.repeat(64), size: 3 })).toBe(false)
  })

  test('GC removes an old unused blob, keeps an old linked one and a fresh one, and empties directories', async () => {
    const unused = await store(seededBytes(10, 'unused'))
    const linked = await store(seededBytes(11, 'linked'))
    const fresh = await store(seededBytes(12, 'fresh'))
    const co = join(layout.checkouts, 'job', 'x', 'file.bin')
    mkdirSync(dirname(co), { recursive: true })
    symlinkSync(relative(dirname(co), cas.blobPath(linked)), co)
    age(unused, 2 * HOUR)
    age(linked, 2 * HOUR)
    const r = await collectGarbage({
      cas,
      checkouts: stores.checkouts,
      locker: state.locker,
      lockTtlMs: 2000,
      maxAgeMs: HOUR,
      log,
    })
    expect(r).toMatchObject({
      ran: true,
      blobs: 3,
      old: 2,
      symlinks: 1,
      usedOld: 1,
      removed: 1,
      removedBytes: 10,
    })
    expect(existsSync(cas.blobPath(unused))).toBe(false)
    expect(existsSync(dirname(cas.blobPath(unused)))).toBe(false)
    expect(readFileSync(co)).toEqual(seededBytes(11, 'linked'))
    expect(existsSync(cas.blobPath(fresh))).toBe(true)
    expect(await cas.status(unused)).toBe('unknown')
  })

  test('GC dry run deletes nothing; a pass is skipped while another holds the lock', async () => {
    const k = await store(seededBytes(10, 'dry'))
    age(k, 2 * HOUR)
    const dry = await collectGarbage({
      cas,
      checkouts: stores.checkouts,
      locker: state.locker,
      lockTtlMs: 2000,
      maxAgeMs: HOUR,
      log,
      dryRun: true,
    })
    expect(dry).toMatchObject({ ran: true, removed: 1 })
    expect(existsSync(cas.blobPath(k))).toBe(true)
    const held = await state.locker.tryAcquire(GC_LOCK_KEY, 2000)
    const skipped = await collectGarbage({
      cas,
      checkouts: stores.checkouts,
      locker: state.locker,
      lockTtlMs: 2000,
      maxAgeMs: HOUR,
      log,
    })
    expect(skipped.ran).toBe(false)
    expect(existsSync(cas.blobPath(k))).toBe(true)
    await held!.release()
  })

  test('GC whose lock was lost (taken by another pass while it stalled) deletes nothing: fenced before each unlink', async () => {
    const k = await store(seededBytes(10, 'fenced-gc'))
    age(k, 2 * HOUR)
    // The real locker, but the lock is gone from the store the moment it is granted: what another
    // instance sees after this pass stalled past its lifetime. Its own renewal has not noticed yet.
    const stolen: typeof state.locker = {
      tryAcquire: async (key, ttl) => {
        const lock = await state.locker.tryAcquire(key, ttl)
        if (lock !== null) {
          await lock.release().catch(() => {})
          Object.defineProperty(lock, 'signal', { value: new AbortController().signal })
        }
        return lock
      },
      isHeld: (key) => state.locker.isHeld(key),
      acquire: (key, o) => state.locker.acquire(key, o),
      waitUntilFree: (key, o) => state.locker.waitUntilFree(key, o),
      requestRelease: (key) => state.locker.requestRelease(key),
      notifyWaiters: (key) => state.locker.notifyWaiters(key),
      close: async () => {},
    }
    const r = await collectGarbage({
      cas,
      checkouts: stores.checkouts,
      locker: stolen,
      lockTtlMs: 60_000,
      maxAgeMs: HOUR,
      log,
    })
    expect(r).toMatchObject({ ran: true, old: 1, removed: 0 })
    expect(existsSync(cas.blobPath(k))).toBe(true)
  })

  test('an old blob touched by requirements (mtime now) survives the next pass', async () => {
    const k = await store(seededBytes(10, 'touched'))
    age(k, 2 * HOUR)
    expect(await cas.touch(k)).toBe(true)
    const r = await collectGarbage({
      cas,
      checkouts: stores.checkouts,
      locker: state.locker,
      lockTtlMs: 2000,
      maxAgeMs: HOUR,
      log,
    })
    expect(r).toMatchObject({ ran: true, old: 0, removed: 0 })
    expect(existsSync(cas.blobPath(k))).toBe(true)
  })

  test('settle waits while a GC pass holds the lock and gives up with ERR_UNAVAILABLE', async () => {
    const lock = await state.locker.tryAcquire(GC_LOCK_KEY, 2000)
    const t0 = Date.now()
    setTimeout(() => void lock!.release(), 300) // how long a GC pass holds the lock: the case
    await cas.settle()
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    const lock2 = await state.locker.tryAcquire(GC_LOCK_KEY, 10_000)
    await expect(cas.settle()).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' })
    await lock2!.release()
  })

  test('a checkout links relative symlinks, refuses missing objects (424) and an existing path (409)', async () => {
    const a = await store(seededBytes(20, 'co-a'))
    const b = await store(seededBytes(21, 'co-b'))
    const o = { cas, checkouts: stores.checkouts, locker: state.locker, lockTtlMs: 2000, log }
    const files = [
      { ...a, path: 'sub dir/á hausinn á þér.txt' },
      { ...b, path: 'много ликова.py' },
    ]
    expect(await createCheckout(o, 'proj/job-1', files)).toBe('proj/job-1')
    const link = join(layout.checkouts, 'proj/job-1/sub dir/á hausinn á þér.txt')
    const { readlinkSync } = await import('node:fs')
    expect(readlinkSync(link)).toBe(
      `../../../../cas/${a.sha256.slice(0, 2)}/${a.sha256.slice(2)}/20.blob`,
    )
    expect(readFileSync(link)).toEqual(seededBytes(20, 'co-a'))
    expect(readdirSync(join(layout.checkouts, 'proj'))).toEqual(['job-1'])
    await expect(createCheckout(o, 'proj/job-1', files)).rejects.toMatchObject({
      code: 'ERR_ALREADY_EXISTS',
    })
    const missing = { sha256: 'c'.repeat(64), size: 5, path: 'm' }
    await expect(createCheckout(o, 'proj/job-2', [...files, missing])).rejects.toMatchObject({
      code: 'ERR_DEPENDENCY_MISSING',
    })
    expect(readdirSync(join(layout.checkouts, 'proj'))).toEqual(['job-1'])
  })

  test('a checkout built while GC holds its lock waits for the pass, then verifies its blobs', async () => {
    const a = await store(seededBytes(30, 'gc-co'))
    const lock = await state.locker.tryAcquire(GC_LOCK_KEY, 5000)
    const o = { cas, checkouts: stores.checkouts, locker: state.locker, lockTtlMs: 2000, log }
    let done = false
    const p = createCheckout(o, 'waits', [{ ...a, path: 'f' }]).then((r) => {
      done = true
      return r
    })
    await new Promise((r) => setTimeout(r, 300)) // a window in which the checkout must not finish
    expect(done).toBe(false)
    expect(existsSync(join(layout.checkouts, 'waits'))).toBe(false)
    // The pass deletes the blob (as if it scanned before the checkout's links existed).
    const { unlinkSync } = await import('node:fs')
    unlinkSync(cas.blobPath(a))
    await lock!.release()
    await expect(p).rejects.toMatchObject({ code: 'ERR_DEPENDENCY_MISSING' })
    expect(readdirSync(layout.checkouts)).toEqual([])
  })
})
