/**
 * Two capabilities of upload sessions that a tus front door needs, through the real upload
 * service of a running Ferry (real files, real worker threads; Redis or the embedded store):
 * a chunk whose body is cut mid-way keeps the bytes that reached the file when asked
 * (`keepPartial`), and a session may be opened with its length unknown and metadata, its length
 * declared later.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { PassThrough, Readable } from 'node:stream'
import type { UploadService } from '../../src/core/uploads/uploads.js'
import { seededBytes, sha256 } from '../helpers/http.js'
import { startCluster, startFerry, type TestServer } from '../helpers/server.js'

const MIB = 1024 * 1024
const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const setups: { name: string; durable: boolean; start(): Promise<TestServer> }[] = [
  {
    name: 'embedded, FERRY_FSYNC=commit',
    durable: false,
    start: () => startFerry({ FERRY_FSYNC: 'commit' }),
  },
  {
    name: 'embedded, FERRY_FSYNC=chunk',
    durable: true,
    start: () => startFerry({ FERRY_FSYNC: 'chunk' }),
  },
  {
    name: 'redis, FERRY_FSYNC=commit',
    durable: false,
    async start() {
      const c = await startCluster(1, { FERRY_FSYNC: 'commit' })
      cleanups.push(() => c.close())
      return c.servers[0]
    },
  },
]

async function waitFor(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/**
 * Sends `data[from..]` as one chunk ending the file, but cuts the body (a connection reset)
 * once at least `cutAfter` bytes are in the file; answers the error the write ended with.
 */
async function cutChunk(
  uploads: UploadService,
  key: string,
  data: Buffer,
  from: number,
  cutAfter: number,
  keepPartial: boolean,
): Promise<unknown> {
  const body = new PassThrough()
  const writing = uploads.writeChunk({
    key,
    target: `partial/${key}.bin`,
    totalBytes: data.length,
    range: { start: from, end: data.length - 1 },
    body,
    keepPartial,
  })
  // In 64 KiB pieces, then a few bytes more that stay in the writer's batch and never land.
  const piece = 64 * 1024
  for (let off = from; off < from + cutAfter; off += piece) {
    body.write(data.subarray(off, Math.min(off + piece, from + cutAfter)))
  }
  body.write(data.subarray(from + cutAfter, from + cutAfter + 10))
  await waitFor('the bytes to land', async () => {
    const s = await uploads.getSession(key)
    return s !== null && (await stat(uploads.tempPathOf(s))).size >= from + cutAfter
  })
  body.destroy(Object.assign(new Error('connection reset by the test'), { code: 'ECONNRESET' }))
  return writing.then(
    () => null,
    (err: unknown) => err,
  )
}

/** Commits and answers the bytes the commit handed to `publish`. */
async function committedBytes(
  uploads: UploadService,
  key: string,
): Promise<{ bytes: Buffer; sha256: string }> {
  let out = { bytes: Buffer.alloc(0), sha256: '' }
  await uploads.commit(key, async ({ tempPath, digests }) => {
    out = { bytes: await readFile(tempPath), sha256: digests['sha256'] ?? '' }
    await uploads.discard(tempPath)
    return '{}'
  })
  return out
}

describe.each(setups)('$name', (setup) => {
  let server: TestServer
  let uploads: UploadService
  beforeAll(async () => {
    server = await setup.start()
    cleanups.push(() => server.close())
    uploads = server.app.engine.uploads
  })

  test('a cut body keeps the bytes that landed; the resumed append continues there', async () => {
    const key = `p:${randomUUID()}`
    const data = seededBytes(6 * MIB + 12345, 'partial')
    // A first whole chunk, so the cut one starts mid-file.
    await uploads.writeChunk({
      key,
      target: `partial/${key}.bin`,
      totalBytes: data.length,
      range: { start: 0, end: MIB - 1 },
      body: Readable.from([data.subarray(0, MIB)]),
    })
    const err = await cutChunk(uploads, key, data, MIB, 3 * MIB, true)
    expect(err).toMatchObject({ code: 'ERR_CLIENT_ABORTED' })
    const session = (await uploads.getSession(key))!
    expect(session.reservations).toEqual([])
    expect(session.received).toHaveLength(1)
    const kept = session.received[0]!.end + 1
    // Everything that landed and nothing that did not: the 10 bytes left in the batch are asked
    // for again.
    expect(kept).toBeGreaterThanOrEqual(4 * MIB)
    expect(kept).toBeLessThanOrEqual(4 * MIB + 10)
    expect(uploads.missing(session)).toEqual([{ start: kept, end: data.length - 1 }])
    // Per the fsync mode, like whole chunks: fdatasynced before they count, or owed until a flush.
    const owed = setup.durable ? [] : [{ start: 0, end: kept - 1 }]
    expect(session.owed.flatMap((o) => o.ranges)).toEqual(owed)
    // The resumed append starts where the kept bytes end.
    const r = await uploads.writeChunk({
      key,
      target: `partial/${key}.bin`,
      totalBytes: data.length,
      range: { start: kept, end: data.length - 1 },
      body: Readable.from([data.subarray(kept)]),
    })
    expect(r.status).toBe('written')
    const done = await committedBytes(uploads, key)
    expect(done.sha256).toBe(sha256(data))
    expect(done.bytes.equals(data)).toBe(true)
  })

  test('without keepPartial a cut chunk counts for nothing and may be resent', async () => {
    const key = `p:${randomUUID()}`
    const data = seededBytes(3 * MIB, 'whole only')
    const err = await cutChunk(uploads, key, data, 0, 2 * MIB, false)
    expect(err).toMatchObject({ code: 'ERR_CLIENT_ABORTED' })
    const session = (await uploads.getSession(key))!
    expect(session.received).toEqual([])
    expect(session.reservations).toEqual([])
    await uploads.writeChunk({
      key,
      target: `partial/${key}.bin`,
      totalBytes: data.length,
      range: { start: 0, end: data.length - 1 },
      body: Readable.from([data]),
    })
    expect((await committedBytes(uploads, key)).sha256).toBe(sha256(data))
  })

  test('unknown length and metadata: commit refused until the length is declared', async () => {
    const key = `u:${randomUUID()}`
    const target = `partial/${key}.bin`
    const data = seededBytes(2 * MIB + 7, 'unknown length')
    const metadata = { filename: 'x.bin', note: 'héllo' }
    const opened = await uploads.openSession({ key, target, totalBytes: null, metadata })
    expect(opened).toMatchObject({ totalBytes: null, metadata })
    // Opening again answers the same session; a different target is another upload's id.
    const again = await uploads.openSession({ key, target, totalBytes: null })
    expect(again.incarnation).toBe(opened.incarnation)
    await expect(
      uploads.openSession({ key, target: 'elsewhere', totalBytes: null }),
    ).rejects.toMatchObject({ code: 'ERR_SESSION_ID_CONFLICT' })
    const badMeta = { 'a b': 'c' }
    const other = `u:${randomUUID()}`
    await expect(
      uploads.openSession({ key: other, target, totalBytes: null, metadata: badMeta }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
    const append = (start: number, end: number, bytes: Buffer) =>
      uploads.writeChunk({
        key,
        target,
        totalBytes: null,
        range: { start, end },
        body: Readable.from([bytes]),
      })
    await append(0, MIB - 1, data.subarray(0, MIB))
    expect(uploads.missing((await uploads.getSession(key))!)).toEqual([])
    await expect(uploads.commit(key, async () => '{}')).rejects.toMatchObject({
      code: 'ERR_SESSION_INCOMPLETE',
      message: expect.stringMatching(/not declared/),
    })
    // A 0-byte "declaration" chunk needs a known length of 0.
    await expect(append(0, -1, Buffer.alloc(0))).rejects.toMatchObject({
      code: 'ERR_INVALID_RANGE',
    })
    await expect(uploads.declareLength(key, MIB - 1)).rejects.toMatchObject({
      code: 'ERR_SIZE_MISMATCH',
    })
    expect((await uploads.declareLength(key, data.length)).totalBytes).toBe(data.length)
    expect((await uploads.declareLength(key, data.length)).totalBytes).toBe(data.length)
    await expect(uploads.declareLength(key, data.length + 1)).rejects.toMatchObject({
      code: 'ERR_SIZE_MISMATCH',
    })
    // Now the range is checked against the declared length.
    await expect(append(MIB, data.length, data.subarray(MIB))).rejects.toMatchObject({
      code: 'ERR_INVALID_RANGE',
    })
    await append(MIB, data.length - 1, data.subarray(MIB))
    const done = await committedBytes(uploads, key)
    expect(done.bytes.equals(data)).toBe(true)
    expect((await uploads.getSession(key))?.metadata).toEqual(metadata)
  })
})
