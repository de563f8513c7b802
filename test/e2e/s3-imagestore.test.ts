/**
 * Ferry with FERRY_STORAGE=s3 on the run's private Swift: ImageStore whole-file PUTs land in the
 * bucket under `<FERRY_S3_PREFIX>/store/` (checked with the SDK, not through Ferry), listings,
 * copy and delete read and change the bucket, and nothing lands in the data directory's store/.
 * A configuration that mounts a family the S3 store cannot hold is refused at start, by name.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createS3Client } from '../../src/core/storage/s3-client.js'
import { API } from '../helpers/imagestore.js'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'
import { type SwiftEndpoint, testBucket } from '../helpers/swift.js'

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url))

describe('ImageStore with FERRY_STORAGE=s3', () => {
  let t: SwiftEndpoint & { bucket: string }
  let srv: TestServer
  let s3: S3Client
  let env: Record<string, string>

  beforeAll(async () => {
    t = await testBucket()
    env = {
      FERRY_STORAGE: 's3',
      FERRY_S3_ENDPOINT: t.endpoint,
      FERRY_S3_BUCKET: t.bucket,
      FERRY_S3_PREFIX: 'ferry',
      FERRY_FAMILIES: 'imagestore',
    }
    srv = await startFerry(env)
    s3 = createS3Client({ endpoint: t.endpoint, region: t.region, forcePathStyle: true })
  }, 180_000)
  afterAll(async () => {
    await srv?.close()
    s3?.destroy()
    if (srv) removeDir(srv.dataDir)
  })

  const inBucket = async (key: string) => {
    const out = await s3.send(new GetObjectCommand({ Bucket: t.bucket, Key: `ferry/store/${key}` }))
    return Buffer.from(await out.Body!.transformToByteArray())
  }
  const bucketKeys = async (prefix: string) =>
    (
      (await s3.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix }))).Contents ?? []
    ).map((c) => c.Key!)
  const put = (path: string, body: Buffer | string) =>
    request(`${srv.url}/ImageStore/${path}?${API}`, { method: 'PUT', body })
  const get = (path: string) => request(`${srv.url}/ImageStore/${path}?${API}`)

  test('a whole-file PUT lands in the bucket with its sha256; GET and listing read it back', async () => {
    const small = seededBytes(300_000, 's3-small')
    // Past the store's multipart threshold (16 MiB): a multipart upload under the hood.
    const big = seededBytes(17 * 1024 * 1024 + 3, 's3-big')
    expect((await put('app/pkg/small.bin', small)).status).toBe(200)
    const r = await put('app/pkg/big.bin', big)
    expect(r.status).toBe(200)

    expect(sha256(await inBucket('app/pkg/small.bin'))).toBe(sha256(small))
    expect(sha256(await inBucket('app/pkg/big.bin'))).toBe(sha256(big))
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: t.bucket, Key: 'ferry/store/app/pkg/big.bin' }),
    )
    expect(head.Metadata).toMatchObject({ sha256: sha256(big), size: String(big.length) })
    // Nothing published in the data directory.
    expect(existsSync(join(srv.dataDir, 'store', 'app'))).toBe(false)

    const file = await get('app/pkg/small.bin')
    expect(file.status).toBe(200)
    expect(file.json()).toMatchObject({
      StoreFiles: [{ StoreRelativePath: 'app/pkg/small.bin', FileSize: '300000' }],
      StoreFolders: [],
    })
    const folder = await get('app')
    expect(folder.json()).toEqual({
      StoreFiles: [],
      StoreFolders: [{ StoreRelativePath: 'app/pkg', FileCount: '2' }],
    })
    const pkg = await get('app/pkg')
    type Listing = { StoreFiles: { StoreRelativePath: string; FileSize: string }[] }
    expect(pkg.json<Listing>().StoreFiles.map((f) => [f.StoreRelativePath, f.FileSize])).toEqual([
      ['app/pkg/big.bin', String(big.length)],
      ['app/pkg/small.bin', '300000'],
    ])
    expect((await get('app/nothing')).status).toBe(404)
  })

  test('copy of a marked folder and delete of a folder change the bucket', async () => {
    for (const p of ['cp/src/a.bin', 'cp/src/n/b.bin', 'cp/src/_.dir']) {
      expect((await put(p, `data:${p}`)).status).toBe(200)
    }
    const copy = await request(`${srv.url}/ImageStore/$/Copy?${API}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ RemoteSource: 'cp/src', RemoteDestination: 'cp/dst' }),
    })
    expect(copy.status).toBe(200)
    expect((await inBucket('cp/dst/n/b.bin')).toString()).toBe('data:cp/src/n/b.bin')
    expect((await bucketKeys('ferry/store/cp/dst/')).sort()).toEqual([
      'ferry/store/cp/dst/_.dir',
      'ferry/store/cp/dst/a.bin',
      'ferry/store/cp/dst/n/b.bin',
    ])
    const del = await request(`${srv.url}/ImageStore/cp/src?${API}`, { method: 'DELETE' })
    expect(del.status).toBe(200)
    expect(await bucketKeys('ferry/store/cp/src/')).toEqual([])
    expect((await get('cp/src')).status).toBe(404)
    expect((await bucketKeys('ferry/store/cp/dst/')).length).toBe(3)
  })

  test('the data directory keeps only local things (temp files, state), no published files', () => {
    expect(readdirSync(join(srv.dataDir, 'store'))).toEqual([])
  })

  test('/readyz asks the bucket: ready on it, not ready (naming it) on a missing one', async () => {
    expect((await request(`${srv.url}/readyz`)).status).toBe(200)
    const missing = `${t.bucket}-missing`
    const other = await startFerry({ ...env, FERRY_S3_BUCKET: missing })
    try {
      const r = await request(`${other.url}/readyz`)
      expect(r.status).toBe(503)
      expect(r.json<{ reasons: string[] }>().reasons).toEqual([
        `the bucket s3://${missing} does not answer (HTTP 404)`,
      ])
    } finally {
      await other.close()
      removeDir(other.dataDir)
    }
  })

  test('a family the S3 store cannot hold is refused at start, by name, secrets unprinted', () => {
    const secret = 'do-not-print-this-secret-0123456789'
    const r = spawnSync(process.execPath, [MAIN], {
      env: {
        PATH: process.env['PATH'] ?? '',
        FERRY_STORAGE: 's3',
        FERRY_S3_BUCKET: t.bucket,
        FERRY_S3_ENDPOINT: t.endpoint,
        FERRY_PORT: '0',
        AWS_ACCESS_KEY_ID: 'test:tester',
        AWS_SECRET_ACCESS_KEY: secret,
      },
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/FERRY_STORAGE=s3/)
    // tus, lakeFS and bulk ingest need only the core operations; Shaman is refused.
    expect(r.stderr).not.toMatch(/tus needs/)
    expect(r.stderr).toMatch(/shaman needs Toucher and LocalPaths/)
    expect(r.stderr).toMatch(/FERRY_FAMILIES=imagestore/)
    expect(r.stderr + r.stdout).not.toContain(secret)
    expect(r.stderr).not.toMatch(/imagestore needs/)
  })
})
