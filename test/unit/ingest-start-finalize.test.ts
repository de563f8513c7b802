/**
 * Bulk ingest: a start that looked at the import folder just before a finalize removed it must not
 * go on once it holds the project lock (issue 9, item 10). The interleaving is forced with the
 * service's `beforeJobLock` hook; real locker (redis-server and embedded), real files, real pool.
 */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { UploadError } from '../../src/core/errors.js'
import { DEFAULT_INGEST_WORKER_FILE, IngestPool } from '../../src/core/hashing/ingest-pool.js'
import { BulkIngestService } from '../../src/core/ingest/bulk-ingest.js'
import { createEmbeddedState } from '../../src/core/state/embedded.js'
import { createRedisState } from '../../src/core/state/redis.js'
import type { StateBackend } from '../../src/core/state/types.js'
import { createLayout, createStores, type DataLayout } from '../../src/core/storage/layout.js'
import { createLogger } from '../../src/observability/logger.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const backends: { name: string; make(dir: string): Promise<StateBackend> }[] = [
  { name: 'redis', make: () => createRedisState(testRedisUrl(), uniquePrefix()) },
  { name: 'embedded', make: async (dir) => createEmbeddedState(join(dir, 'state')) },
]

describe.each(backends)('start racing finalize on $name state', ({ make }) => {
  let dir: string
  let layout: DataLayout
  let state: StateBackend
  let pool: IngestPool
  let services: BulkIngestService[]

  beforeEach(async () => {
    dir = tempDir('ferry-ingest-race-')
    layout = createLayout(dir)
    state = await make(dir)
    pool = new IngestPool({ workerFile: DEFAULT_INGEST_WORKER_FILE, threads: 1 })
    services = []
  })
  afterEach(async () => {
    for (const s of services) await s.close()
    await pool.close()
    await state.close()
    removeDir(dir)
  })

  /** One instance's service; `hook` runs between the first folder check and the lock. */
  function service(
    hook?: (sc: string, op: 'start' | 'finalize') => Promise<void>,
  ): BulkIngestService {
    // Each service is an instance of its own: its own stores (and TempFiles) over one directory.
    const stores = createStores(layout)
    const s = new BulkIngestService({
      objects: stores.ingest,
      temps: stores.temps,
      locker: state.locker,
      pool,
      log: createLogger('silent'),
      lockTtlMs: 5000,
      lockWaitMs: 400,
      publishWaitMs: 1000,
      maxParallel: 2,
      ...(hook ? { beforeJobLock: hook } : {}),
    })
    services.push(s)
    return s
  }

  const until = (what: string, fn: () => Promise<boolean> | boolean) =>
    waitFor(what, fn, { timeoutMs: 10_000, everyMs: 10 })

  test('a start that passed the folder check before finalize removed the folder answers 404 and leaves no mapping', async () => {
    const sc = '0a1b'
    let reached = () => {}
    const atGap = new Promise<void>((r) => (reached = r))
    let release = () => {}
    const gate = new Promise<void>((r) => (release = r))
    // Instance A starts; it stops between its first look and the lock.
    const a = service(async (_sc, op) => {
      if (op !== 'start') return
      reached()
      await gate
    })
    const b = service()
    const project = join(layout.ingest, sc)
    mkdirSync(join(project, 'import'), { recursive: true })
    writeFileSync(join(project, 'import', 'one.txt'), 'bytes')

    const started = a.start(sc).then(
      () => 'started',
      (err: unknown) => err,
    )
    await atGap
    // Instance B finalizes in the gap: the folder, mapping and journal go, then the lock is free.
    await b.finalize(sc)
    await until(
      'finalize to finish',
      async () =>
        !existsSync(join(project, 'import')) && !(await state.locker.isHeld(`ingest:job:${sc}`)),
    )
    release()

    const outcome = await started
    expect(outcome).toBeInstanceOf(UploadError)
    expect((outcome as UploadError).code).toBe('ERR_NOT_FOUND')
    await a.close() // waits for any background run A might have begun
    expect(existsSync(join(project, `mapping-${sc}.csv`))).toBe(false)
    expect(existsSync(join(project, 'journal'))).toBe(false)
    // The lock is free again: a new upload folder can be ingested.
    mkdirSync(join(project, 'import'), { recursive: true })
    await expect(b.start(sc)).resolves.toBeUndefined()
  })

  test('a finalize that passed the folder check before another finalize removed it answers 404', async () => {
    const sc = '0a1c'
    let reached = () => {}
    const atGap = new Promise<void>((r) => (reached = r))
    let release = () => {}
    const gate = new Promise<void>((r) => (release = r))
    const a = service(async (_sc, op) => {
      if (op !== 'finalize') return
      reached()
      await gate
    })
    const b = service()
    mkdirSync(join(layout.ingest, sc, 'import'), { recursive: true })
    const first = a.finalize(sc).then(
      () => 'finalized',
      (err: unknown) => err,
    )
    await atGap
    await b.finalize(sc)
    await until(
      'finalize to finish',
      async () =>
        !existsSync(join(layout.ingest, sc, 'import')) &&
        !(await state.locker.isHeld(`ingest:job:${sc}`)),
    )
    release()
    const outcome = await first
    expect(outcome).toBeInstanceOf(UploadError)
    expect((outcome as UploadError).code).toBe('ERR_NOT_FOUND')
  })

  test('an upload waiting behind a publish does not wait out a run that takes the project', async () => {
    const sc = '0a1d'
    const s = service()
    mkdirSync(join(layout.ingest, sc, 'import'), { recursive: true })
    for (let i = 0; i < 20; i++)
      writeFileSync(join(layout.ingest, sc, 'import', `f${i}.pdf`), `pdf ${i}`)
    // Upload A publishes and holds the project mutex until let go.
    let holding = () => {}
    const held = new Promise<void>((r) => (holding = r))
    let letGo = () => {}
    const gate = new Promise<void>((r) => (letGo = r))
    const a = s.withPublishLock(sc, async () => {
      holding()
      await gate
    })
    await held
    // Upload B waits behind A; a run waits for the mutex too.
    let bSettledAt = 0
    const b = s
      .withPublishLock(sc, async () => 'published')
      .then(
        (v) => v,
        (err: unknown) => err,
      )
      .finally(() => (bSettledAt = performance.now()))
    let runDoneAt = 0
    const runDone = new Promise<void>((r) => {
      void s.start(sc, () => {
        runDoneAt = performance.now()
        r()
      })
    })
    await new Promise((r) => setTimeout(r, 50))
    letGo()
    await a
    const outcome = await b
    await runDone
    // Either B published before the run took the mutex, or the run got it and B answered "in
    // progress" at once (the run notified it), never only after the whole run.
    if (outcome !== 'published') {
      expect(outcome).toMatchObject({ code: 'ERR_LOCKED' })
    }
    expect(bSettledAt).toBeLessThan(runDoneAt)
  })
})
