/**
 * ImageStore chunked sessions with FERRY_STORAGE=s3 on the real Swift (the part grid,
 * src/core/uploads/grid.ts): chunks land in each instance's own staging directory and reach the
 * bucket as parts (whole grid cells) or fragments (edge pieces) before they count; commit
 * publishes the whole object with its sha256 and size as metadata. Two instances with separate
 * data directories share Redis and the bucket; a committing instance killed mid-commit is
 * replaced by the other; the sweeper aborts abandoned multipart uploads.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { API, commit, newSessionId, putChunk } from '../helpers/imagestore.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import {
  removeDir,
  spawnFerry,
  startFerry,
  tempDir,
  type ChildServer,
  type TestServer,
} from '../helpers/server.js'
import { testBucket } from '../helpers/swift.js'
import { sleep, waitFor } from '../helpers/wait.js'

const MiB = 1024 * 1024
const CELL = 5 * MiB

let bucket: string
let s3: S3Client
let base: Record<string, string>
const cleanups: (() => Promise<void> | void)[] = []

beforeAll(async () => {
  const t = await testBucket()
  bucket = t.bucket
  s3 = new S3Client({
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
    credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  base = {
    FERRY_STORAGE: 's3',
    FERRY_S3_ENDPOINT: t.endpoint,
    FERRY_S3_BUCKET: t.bucket,
    FERRY_S3_REGION: t.region,
    FERRY_S3_FORCE_PATH_STYLE: 'true',
    FERRY_S3_PREFIX: 'ferry',
    FERRY_S3_PART_BYTES: String(CELL),
    // The families that need a filesystem are refused with FERRY_STORAGE=s3 (for now).
    FERRY_FAMILIES: 'imagestore',
  }
}, 180_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  s3?.destroy()
})

/** An instance with its own data directory (its own staging), on Redis under `prefix`. */
async function instance(prefix: string | null, env: Record<string, string> = {}) {
  const dataDir = tempDir('ferry-s3grid-')
  const redis = prefix === null ? {} : { REDIS_URL: testRedisUrl(), FERRY_REDIS_PREFIX: prefix }
  const s = await startFerry({ ...base, ...redis, ...env, FERRY_DATA_DIR: dataDir })
  cleanups.push(async () => {
    await s.close()
    removeDir(dataDir)
  })
  return s
}

const objectKey = (path: string) => `ferry/store/${path}`

async function head(key: string) {
  try {
    return await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
  } catch (err) {
    if ((err as { name?: string }).name === 'NotFound') return null
    throw err
  }
}

async function read(key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  return Buffer.from(await r.Body!.transformToByteArray())
}

/** Multipart uploads under way in the bucket (every key). */
async function pendingUploads(): Promise<{ key: string; id: string }[]> {
  const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
  return (r.Uploads ?? []).map((u) => ({ key: u.Key!, id: u.UploadId! }))
}

/** Staging objects of one session (fragments, the completed staging object). */
async function stagingObjects(id: string): Promise<string[]> {
  const prefix = `ferry/uploads/${encodeURIComponent(`imagestore:${id}`)}/`
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))
  return (r.Contents ?? []).map((o) => o.Key!)
}

/** Sends `data` as chunks of `chunk` bytes, chunk i to `servers[i % n]`, `parallel` at a time. */
async function sendChunks(
  servers: readonly { url: string }[],
  path: string,
  id: string,
  data: Buffer,
  chunk: number,
) {
  const n = Math.ceil(data.length / chunk)
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const start = i * chunk
      const end = Math.min(data.length, start + chunk) - 1
      const body = data.subarray(start, end + 1)
      const r = await putChunk(
        servers[i % servers.length]!.url,
        path,
        id,
        start,
        end,
        data.length,
        body,
      )
      expect([i, r.status, r.text()]).toEqual([i, 200, ''])
    }),
  )
}

describe('ImageStore chunked sessions on S3 (the part grid)', () => {
  test('aligned chunks: parts only, no fragments; commit publishes the object with its sha256', async () => {
    const s = await instance(null)
    const data = seededBytes(2 * CELL + 3 * MiB + 17, 'aligned')
    const id = newSessionId()
    // Chunks of one cell at cell boundaries: every chunk is a part as it is.
    await sendChunks([s], 'a/aligned.bin', id, data, CELL)
    expect(await stagingObjects(id)).toEqual([])
    const mine = (await pendingUploads()).filter((u) => u.key.includes(id))
    expect(mine).toHaveLength(1)
    // Nothing visible before the commit.
    expect(await head(objectKey('a/aligned.bin'))).toBeNull()

    const c = await commit(s.url, id)
    expect(c.status).toBe(200)
    expect(c.headers['x-ferry-sha256']).toBe(sha256(data))
    const h = await head(objectKey('a/aligned.bin'))
    expect(h?.ContentLength).toBe(data.length)
    expect(h?.Metadata).toEqual({ sha256: sha256(data), size: String(data.length) })
    expect(sha256(await read(objectKey('a/aligned.bin')))).toBe(sha256(data))
    // Nothing left behind: the multipart upload is now the object, the staging object is gone.
    expect((await pendingUploads()).filter((u) => u.key.includes(id))).toEqual([])
    expect(await stagingObjects(id)).toEqual([])
    // The ImageStore listing finds it.
    const list = await request(`${s.url}/ImageStore/a?${API}`)
    expect(list.status).toBe(200)
    const files = (list.json() as { StoreFiles: { StoreRelativePath: string; FileSize: string }[] })
      .StoreFiles
    expect(files.map((f) => [f.StoreRelativePath, f.FileSize])).toEqual([
      ['a/aligned.bin', String(data.length)],
    ])
    // A repeated commit answers the same.
    expect((await commit(s.url, id)).status).toBe(200)
  }, 120_000)

  test('two instances, separate staging dirs, unaligned chunks alternating: one whole object', async () => {
    const prefix = uniquePrefix()
    const a = await instance(prefix)
    const b = await instance(prefix)
    const data = seededBytes(4 * CELL + 2 * MiB + 4321, 'spread')
    const id = newSessionId()
    // 3 MiB + 1234: no chunk is aligned to the grid, and every cell holds pieces of two or
    // three chunks, received by both instances.
    await sendChunks([a, b], 'b/spread.bin', id, data, 3 * MiB + 1234)
    // The chunks' bytes are in the bucket (neither instance has them all locally): commit on
    // each side would do; the one that did not open the session commits.
    const c = await commit(b.url, id)
    expect([c.status, c.text()]).toEqual([200, ''])
    const h = await head(objectKey('b/spread.bin'))
    expect(h?.Metadata).toEqual({ sha256: sha256(data), size: String(data.length) })
    expect((await read(objectKey('b/spread.bin'))).equals(data)).toBe(true)
    expect((await pendingUploads()).filter((u) => u.key.includes(id))).toEqual([])
    expect(await stagingObjects(id)).toEqual([])
    // The other instance answers the committed result too.
    expect((await commit(a.url, id)).status).toBe(200)
  }, 180_000)

  test('fragments wait in the bucket until their cell is whole', async () => {
    const s = await instance(null)
    const data = seededBytes(CELL + 1000, 'frag')
    const id = newSessionId()
    const path = 'c/frag.bin'
    // The first 2 MiB of cell 0: a fragment, no part yet.
    let r = await putChunk(s.url, path, id, 0, 2 * MiB - 1, data.length, data.subarray(0, 2 * MiB))
    expect(r.status).toBe(200)
    expect((await stagingObjects(id)).map((k) => k.replace(/^.*\//, ''))).toEqual([
      `0-${2 * MiB - 1}`,
    ])
    // The rest of the file: cell 0 is whole now, its fragments become its part and go.
    r = await putChunk(
      s.url,
      path,
      id,
      2 * MiB,
      data.length - 1,
      data.length,
      data.subarray(2 * MiB),
    )
    expect(r.status).toBe(200)
    expect(await stagingObjects(id)).toEqual([])
    expect((await commit(s.url, id)).status).toBe(200)
    expect((await read(objectKey(path))).equals(data)).toBe(true)
  }, 120_000)

  test('SIGKILL of the committing instance mid-commit: the other completes it', async () => {
    const prefix = uniquePrefix()
    const lease = { FERRY_COMMIT_LEASE_MS: '3000', FERRY_LIVENESS_MS: '2000' }
    const b = await instance(prefix, lease)
    const dirA = tempDir('ferry-s3grid-a-')
    let a: ChildServer | null = await spawnFerry({
      ...base,
      ...lease,
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: prefix,
      FERRY_DATA_DIR: dirA,
      AWS_ACCESS_KEY_ID: process.env['AWS_ACCESS_KEY_ID'] ?? '',
      AWS_SECRET_ACCESS_KEY: process.env['AWS_SECRET_ACCESS_KEY'] ?? '',
    })
    cleanups.push(() => {
      if (a !== null && a.proc.exitCode === null) a.proc.kill('SIGKILL')
      removeDir(dirA)
    })
    const data = seededBytes(8 * CELL + 12345, 'killed')
    const id = newSessionId()
    const path = 'd/killed.bin'
    await sendChunks([a, b], path, id, data, 4 * MiB + 99)
    const key = `imagestore:${id}`
    // A commits; it has only half the bytes locally, so after completing the multipart upload
    // it reads the object back to hash it: it is stopped there, then killed.
    const committing = commit(a.url, id).catch(() => null)
    await waitFor(
      'the commit record to say completed',
      async () => (await b.app.engine.state.sessions.get(key))?.grid?.commit === 'completed',
      { everyMs: 2, timeoutMs: 60_000 },
    )
    a.proc.kill('SIGSTOP')
    // Completed to the staging object, but nothing at the final key: never visible unless whole.
    expect(await head(objectKey(path))).toBeNull()
    a.proc.kill('SIGKILL')
    await a.exited
    await committing
    a = null
    // B takes the commit over once A's lease (or liveness) has run out.
    const c = await waitFor(
      'the commit on the other instance',
      async () => {
        const r = await commit(b.url, id)
        return r.status === 200 ? r : null
      },
      { everyMs: 250, timeoutMs: 60_000 },
    )
    expect(c.status).toBe(200)
    const h = await head(objectKey(path))
    expect(h?.Metadata).toEqual({ sha256: sha256(data), size: String(data.length) })
    expect(sha256(await read(objectKey(path)))).toBe(sha256(data))
    expect((await pendingUploads()).filter((u) => u.key.includes(id))).toEqual([])
    expect(await stagingObjects(id)).toEqual([])
  }, 180_000)

  test('the sweeper aborts abandoned multipart uploads and deletes their fragments', async () => {
    const s: TestServer = await instance(null, { FERRY_SESSION_TTL_SEC: '60' })
    const data = seededBytes(CELL + 2 * MiB, 'abandoned')
    const id = newSessionId()
    // One whole cell (a part of the multipart upload) and a fragment, then the client is gone.
    const r = await putChunk(
      s.url,
      'e/gone.bin',
      id,
      0,
      CELL + MiB - 1,
      data.length,
      data.subarray(0, CELL + MiB),
    )
    expect(r.status).toBe(200)
    expect((await pendingUploads()).filter((u) => u.key.includes(id))).toHaveLength(1)
    expect(await stagingObjects(id)).toHaveLength(1)
    // An upload no session names at all (an instance died between creating it and recording it).
    const orphanKey = `ferry/uploads/${encodeURIComponent(`imagestore:${newSessionId()}`)}/x/object`
    await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: orphanKey }))
    // Before the session expires, the sweep leaves everything alone.
    await s.app.engine.uploads.sweep(Date.now())
    expect((await pendingUploads()).filter((u) => u.key.includes(id))).toHaveLength(1)
    expect((await pendingUploads()).filter((u) => u.key === orphanKey)).toHaveLength(1)
    // An hour later: the expired session is removed, its upload aborted, its fragment deleted;
    // the orphan upload is aborted too.
    await s.app.engine.uploads.sweep(Date.now() + 3600_000)
    await sleep(0)
    expect(
      (await pendingUploads()).filter((u) => u.key.includes(id) || u.key === orphanKey),
    ).toEqual([])
    expect(await stagingObjects(id)).toEqual([])
    expect(await head(objectKey('e/gone.bin'))).toBeNull()
  }, 120_000)
})
