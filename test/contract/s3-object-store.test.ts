/**
 * What only the S3 store has to get right, on the run's private Swift (the shared contract is in
 * object-store.test.ts): multipart puts and their metadata, Range reads across parts, a put cut
 * mid-way leaving neither object nor multipart upload, if-absent races between two instances
 * (each with its own state-store connection, as on two machines), keys that need URL-escaping,
 * and the part-by-part server-side copy.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3'
import { createHash, randomUUID } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { createRedisState } from '../../src/core/state/redis.js'
import type { StateBackend } from '../../src/core/state/types.js'
import { createS3Client } from '../../src/core/storage/s3-client.js'
import { S3ObjectStore, type S3ObjectStoreOptions } from '../../src/core/storage/s3-object-store.js'
import { TempFiles } from '../../src/core/storage/temp-files.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { type SwiftEndpoint, testBucket } from '../helpers/swift.js'
import { ThrottleProxy } from '../helpers/throttle-proxy.js'

const MiB = 1024 * 1024

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 7 + (i >> 13)) & 0xff
  return b
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of s as AsyncIterable<Buffer>) parts.push(c)
  return Buffer.concat(parts)
}

describe('S3ObjectStore on Swift', () => {
  let t: SwiftEndpoint & { bucket: string }
  let client: S3Client
  let states: StateBackend[]
  let dir: string
  let temps: TempFiles
  const clients: S3Client[] = []

  beforeAll(async () => {
    t = await testBucket()
    client = createS3Client({ endpoint: t.endpoint, region: t.region, forcePathStyle: true })
    clients.push(client)
    // Two instances sharing one Redis (the same key prefix), as two Ferry processes would.
    const prefix = uniquePrefix()
    states = [
      await createRedisState(testRedisUrl(), prefix),
      await createRedisState(testRedisUrl(), prefix),
    ]
    dir = tempDir('ferry-s3-store-')
    temps = new TempFiles(dir)
  }, 180_000)
  afterAll(async () => {
    for (const c of clients) c.destroy()
    for (const s of states ?? []) await s.close()
    if (dir) removeDir(dir)
  })

  /** A store over the test bucket; `instance` picks the state connection (two "machines"). */
  const store = (o: Partial<S3ObjectStoreOptions> = {}, instance = 0) =>
    new S3ObjectStore({
      client,
      bucket: t.bucket,
      prefix: 'specific/',
      locker: states[instance]!.locker,
      ...o,
    })
  const temp = (data: Buffer | string) => {
    const p = temps.streamPath()
    writeFileSync(p, data)
    return p
  }
  const k = (name = 'obj') => `t-${randomUUID()}/${name}`
  const uploadsUnder = async (prefix: string) =>
    (
      (await client.send(new ListMultipartUploadsCommand({ Bucket: t.bucket, Prefix: prefix })))
        .Uploads ?? []
    ).map((u) => u.Key)

  test('a file over the threshold goes up in parts; sha256 and size ride as metadata', async () => {
    const s = store({ multipartThresholdBytes: 5 * MiB, partBytes: 5 * MiB, partConcurrency: 2 })
    const data = bytes(12 * MiB + 123, 1)
    const key = k('big.bin')
    const info = await s.put(key, temp(data), { mode: 'overwrite', sha256: sha(data) })
    expect(info.size).toBe(data.length)
    // A multipart object's ETag names its part count: 12 MiB + 123 in 5 MiB parts is 3.
    expect(info.etag).toMatch(/-3$/)
    const head = await client.send(
      new HeadObjectCommand({ Bucket: t.bucket, Key: `specific/${key}` }),
    )
    expect(head.Metadata).toMatchObject({ sha256: sha(data), size: String(data.length) })
    expect(sha(await readAll(await s.get(key)))).toBe(sha(data))
    // Ranges inside one part, across part boundaries, and the very end.
    for (const [a, b] of [
      [0, 99],
      [5 * MiB - 10, 5 * MiB + 9],
      [5 * MiB - 1, 10 * MiB + 1],
      [data.length - 1, data.length - 1],
    ] as const) {
      // Buffer.equals: jest's toEqual walks a buffer byte by byte (minutes for MiBs).
      const got = await readAll(await s.get(key, { start: a, end: b }))
      expect(got.equals(data.subarray(a, b + 1))).toBe(true)
    }
    await expect(s.get(key, { start: 0, end: data.length })).rejects.toMatchObject({
      code: 'ERR_RANGE_NOT_SATISFIABLE',
      detail: { kind: 'unsatisfiable', size: data.length },
    })
    expect(await uploadsUnder(`specific/${key}`)).toEqual([])
  })

  test('a file under the threshold goes up in one streamed PUT, whole', async () => {
    const s = store()
    const data = bytes(11 * MiB + 5, 5)
    const key = k('single.bin')
    const info = await s.put(key, temp(data), { mode: 'if-absent', sha256: sha(data) })
    // One PUT: the ETag is the MD5 of the bytes (no part count).
    expect(info.etag).toBe(createHash('md5').update(data).digest('hex'))
    expect(sha(await readAll(await s.get(key)))).toBe(sha(data))
  })

  test('a put cut mid-way leaves no object, no multipart upload, and the temp file', async () => {
    // Every connection through the proxy is cut after 4 MiB of request bytes: the small
    // CreateMultipartUpload passes, every 5 MiB part is cut mid-body.
    const proxy = await ThrottleProxy.start(Number(new URL(t.endpoint).port), {
      bytesPerSec: 0,
      cutAfter: () => 4 * MiB,
    })
    const cutClient = createS3Client({
      endpoint: proxy.url,
      region: t.region,
      forcePathStyle: true,
    })
    clients.push(cutClient)
    try {
      const s = store({
        client: cutClient,
        multipartThresholdBytes: 5 * MiB,
        partBytes: 5 * MiB,
        uploadAttempts: 1,
      })
      const key = k('cut.bin')
      const tmp = temp(bytes(11 * MiB, 2))
      await expect(s.put(key, tmp, { mode: 'overwrite' })).rejects.toBeDefined()
      expect(proxy.cuts).toBeGreaterThan(0)
      expect(existsSync(tmp)).toBe(true)
      expect(await store().head(key)).toBeNull()
      expect(await uploadsUnder(`specific/${key}`)).toEqual([])

      // A single PUT cut the same way: nothing either.
      const small = store({ client: cutClient, uploadAttempts: 1 })
      const key2 = k('cut-small.bin')
      const tmp2 = temp(bytes(4 * MiB + 1000, 3))
      await expect(small.put(key2, tmp2, { mode: 'overwrite' })).rejects.toBeDefined()
      expect(existsSync(tmp2)).toBe(true)
      expect(await store().head(key2)).toBeNull()
    } finally {
      await proxy.close()
    }
  })

  test('racing if-absent puts from two instances: exactly one wins, whole', async () => {
    const opts = { multipartThresholdBytes: 5 * MiB, partBytes: 5 * MiB }
    const pair = [store(opts, 0), store(opts, 1)]
    for (let round = 0; round < 2; round++) {
      const key = k('race.bin')
      const datas = [bytes(6 * MiB, 10), bytes(6 * MiB + 1, 11), bytes(300, 12), bytes(301, 13)]
      const results = await Promise.allSettled(
        datas.map((d, i) => pair[(i + round) % 2]!.put(key, temp(d), { mode: 'if-absent' })),
      )
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []))
      expect(won).toHaveLength(1)
      for (const r of results) {
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'ERR_ALREADY_EXISTS' })
      }
      expect(sha(await readAll(await pair[1]!.get(key)))).toBe(sha(datas[won[0]!]!))
    }
  })

  test('keys that need URL-escaping round-trip through put, list, copy and delete', async () => {
    const s = store()
    const top = `esc-${randomUUID()}`
    const names = [
      'a b/c+d.txt',
      'pct%20and%2F/x',
      'q?x=1&y=2#frag',
      'ünïcødé/日本語.bin',
      'quote\'"<>|*:;@$!,~()[]{}',
      'tab-less=equals',
    ]
    for (const [i, n] of names.entries()) {
      const key = `${top}/${n}`
      await s.put(key, temp(`v${i}`), { mode: 'if-absent' })
      expect((await readAll(await s.get(key))).toString()).toBe(`v${i}`)
      expect((await s.head(key))?.size).toBe(2)
      const copied = await s.copy(key, `${top}/copies/${n}`, { mode: 'if-absent' })
      expect(copied.key).toBe(`${top}/copies/${n}`)
      expect((await readAll(await s.get(copied.key))).toString()).toBe(`v${i}`)
    }
    const listed: string[] = []
    for await (const e of s.list(`${top}/`)) listed.push(e.key)
    const want = names.flatMap((n) => [`${top}/${n}`, `${top}/copies/${n}`])
    expect(listed.sort()).toEqual(want.sort())
    for (const key of want) expect(await s.delete(key)).toBe(true)
    const left = await client.send(
      new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `specific/${top}` }),
    )
    expect(left.Contents ?? []).toEqual([])
  })

  test('list pages through answers (a page of 2 keys here), with and without delimiter', async () => {
    const s = store({ listPageSize: 2 })
    const top = `page-${randomUUID()}`
    const names = ['a', 'b', 'c/1', 'c/2', 'd/1', 'e']
    for (const n of names) await s.put(`${top}/${n}`, temp(n), { mode: 'overwrite' })
    const list = async (delimiter: boolean) => {
      const out: string[] = []
      for await (const e of s.list(`${top}/`, { delimiter })) out.push(`${e.kind}:${e.key}`)
      return out.sort()
    }
    expect(await list(false)).toEqual(names.map((n) => `object:${top}/${n}`).sort())
    expect(await list(true)).toEqual(
      ['object:a', 'object:b', 'prefix:c/', 'prefix:d/', 'object:e']
        .map((x) => x.replace(':', `:${top}/`))
        .sort(),
    )
  })

  test('a copy past the part threshold goes part by part, metadata kept', async () => {
    const s = store({ copyPartThresholdBytes: 5 * MiB })
    const data = bytes(11 * MiB + 7, 4)
    const from = k('src.bin')
    const to = k('dst.bin')
    await s.put(from, temp(data), { mode: 'overwrite', sha256: sha(data) })
    const info = await s.copy(from, to, { mode: 'if-absent' })
    expect(info.size).toBe(data.length)
    expect(info.etag).toMatch(/-3$/)
    expect(sha(await readAll(await s.get(to)))).toBe(sha(data))
    const head = await client.send(
      new HeadObjectCommand({ Bucket: t.bucket, Key: `specific/${to}` }),
    )
    expect(head.Metadata?.['sha256']).toBe(sha(data))
    await expect(s.copy(k('missing'), k('x'), { mode: 'overwrite' })).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    })
  })

  test('a bad prefix option is refused at construction', () => {
    expect(() => store({ prefix: 'no-slash' })).toThrow(/ends with/)
    expect(() => store({ prefix: '../x/' })).toThrow()
  })
})
