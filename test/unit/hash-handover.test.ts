/**
 * Running hashes take the request buffers the main thread has written (moved to the worker, not
 * copied) instead of reading those bytes back, and count them only once the writer that handed
 * them over confirms them. The pool-level cases write one thing to the file and hand over another,
 * so the digest shows which bytes were hashed. The last case goes through HTTP: an ImageStore
 * chunked upload moves its chunks' buffers and commits the right digest.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  DEFAULT_WORKER_FILE,
  HashPool,
  HANDOVER_BUDGET_BYTES,
} from '../../src/core/hashing/hash-pool.js'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { API, commit, newSessionId, uploadChunks } from '../helpers/imagestore.js'
import { removeDir, startFerry, tempDir } from '../helpers/server.js'

const MIB = 1024 * 1024
const hex = (...parts: Buffer[]) => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}
/** Fresh buffers, each the only view of its memory (as node:http hands a body over). */
const own = (b: Buffer) => Buffer.from(b)

let pool: HashPool
let dir: string
beforeAll(() => {
  dir = tempDir()
  pool = new HashPool({
    workerFile: DEFAULT_WORKER_FILE,
    threads: 1,
    streamThreads: 1,
    streamsPerThread: 4,
    streamIdleMs: 30_000,
  })
})
afterAll(async () => {
  await pool.close()
  removeDir(dir)
})

describe('a running hash with handed-over buffers', () => {
  const onDisk = seededBytes(2 * MIB, 'disk')
  const inMemory = seededBytes(2 * MIB, 'memory')
  const file = () => {
    const path = join(dir, `f-${Math.random()}`)
    writeFileSync(path, onDisk)
    return path
  }

  test('hashes the bytes it was handed, confirmed by their writer, instead of the file', async () => {
    const h = pool.openStream(file())!
    const first = own(inMemory.subarray(0, MIB))
    expect(h.take('w1', 0, [first])).toBe(true)
    expect(first.length).toBe(0) // moved, not copied
    expect(h.take('w1', MIB, [own(inMemory.subarray(MIB))])).toBe(true)
    h.advance(2 * MIB, { id: 'w1', end: 2 * MIB })
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(hex(inMemory))
    expect(r?.digests['sha256']).not.toBe(hex(onDisk))
  })

  test('reads the file when the advance comes from another writer (its bytes were recorded)', async () => {
    const h = pool.openStream(file())!
    expect(h.take('w1', 0, [own(inMemory.subarray(0, MIB))])).toBe(true)
    h.advance(MIB, { id: 'w2', end: MIB })
    h.advance(2 * MIB)
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(hex(onDisk))
  })

  test('counts only what the writer recorded, then reads the rest from the file', async () => {
    const h = pool.openStream(file())!
    expect(h.take('w1', 0, [own(inMemory.subarray(0, MIB))])).toBe(true)
    // The writer recorded less than it handed over (a cut body): nothing of it counts.
    h.advance(MIB / 2, { id: 'w1', end: MIB / 2 })
    expect(h.take('w3', MIB / 2, [own(inMemory.subarray(MIB / 2, MIB))])).toBe(true)
    h.advance(MIB, { id: 'w3', end: MIB })
    h.advance(2 * MIB)
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(
      hex(onDisk.subarray(0, MIB / 2), inMemory.subarray(MIB / 2, MIB), onDisk.subarray(MIB)),
    )
  })

  test('a retry of the same range replaces what an unrecorded writer handed over', async () => {
    const h = pool.openStream(file())!
    const stale = seededBytes(MIB, 'stale')
    expect(h.take('lost', 0, [own(stale)])).toBe(true)
    expect(h.take('retry', 0, [own(inMemory.subarray(0, MIB))])).toBe(true)
    h.advance(MIB, { id: 'retry', end: MIB })
    h.advance(2 * MIB)
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(hex(inMemory.subarray(0, MIB), onDisk.subarray(MIB)))
  })

  test('bytes handed over past a gap are dropped: the file is read', async () => {
    const h = pool.openStream(file())!
    expect(h.take('w1', MIB, [own(inMemory.subarray(MIB))])).toBe(true)
    h.advance(2 * MIB, { id: 'w1', end: 2 * MIB })
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(hex(onDisk))
  })

  test('keeps a buffer that shares its memory, and stays within the budget', async () => {
    const h = pool.openStream(file())!
    const shared = Buffer.from(inMemory.subarray(0, 2 * MIB)).subarray(0, MIB)
    expect(h.take('w1', 0, [shared])).toBe(false)
    expect(shared.length).toBe(MIB) // not moved
    expect(h.take('w1', 0, [Buffer.alloc(HANDOVER_BUDGET_BYTES + 1)])).toBe(false)
    h.advance(2 * MIB, { id: 'w1', end: 2 * MIB })
    const r = await h.finish(2 * MIB)
    expect(r?.digests['sha256']).toBe(hex(onDisk))
  })
})

test('an ImageStore chunked upload moves its chunk buffers to the running hash', async () => {
  const s = await startFerry()
  try {
    const data = seededBytes(24 * MIB, 'imagestore-handover')
    const id = newSessionId()
    const before = s.app.engine.pool.handedOverBytes
    await uploadChunks([s.url], 'handover/a.bin', id, data, 8 * MIB, 1)
    const moved = s.app.engine.pool.handedOverBytes - before
    // Every chunk continued the hashed prefix; a batch may stay behind only over budget.
    expect(moved).toBeGreaterThan(data.length / 2)
    const c = await commit(s.url, id)
    expect(c.status).toBe(200)
    expect(c.headers['x-ferry-sha256']).toBe(sha256(data))
    expect(s.app.engine.uploads.hashCounts.local).toBe(1)

    // A whole-file PUT larger than the inline-hash size is hashed from its buffers too.
    const whole = seededBytes(16 * MIB, 'imagestore-whole')
    const mark = s.app.engine.pool.handedOverBytes
    const put = await request(`${s.url}/ImageStore/handover/b.bin?${API}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: whole,
    })
    expect(put.status).toBe(200)
    expect(put.headers['x-ferry-sha256']).toBe(sha256(whole))
    expect(s.app.engine.pool.handedOverBytes - mark).toBeGreaterThan(whole.length / 2)
  } finally {
    await s.close()
    removeDir(s.dataDir)
  }
})
