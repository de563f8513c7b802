/**
 * tus and lakeFS staging with FERRY_STORAGE=s3 on the real Swift (s3api), two Ferry instances
 * with separate data directories (as on two machines) sharing Redis and the bucket: tus-js-client
 * uploads, HEAD and GET with Range of the finished upload from the bucket, concatenation; lakectl's
 * presigned PUT + link and presigned multipart, the physical address naming the bucket, a link of
 * bytes written straight to the bucket at that address, and a re-PUT that does not change a
 * linked object; bulk ingest (uploads on both instances, the run, mapping.csv as one object,
 * finalize). What the bucket holds is read with the SDK, not through Ferry.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Upload } from 'tus-js-client'
import { request, seededBytes, sha256, type Reply } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { basicAuth, stagingBackingUrl, type StagingLocation } from '../helpers/staging.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'
import { testBucket } from '../helpers/swift.js'
import { refuseUnsupportedStorage } from '../../src/app.js'
import { loadConfig } from '../../src/config/config.js'
import { signJwt, nowSeconds } from '../helpers/jwt.js'
import { waitFor } from '../helpers/wait.js'

const MIB = 1024 * 1024
const BASIC = basicAuth('AKIAS3E2E', 's3-e2e-secret')
const PREFIX = 'fleet/'
const JWT = { secret: 's3-e2e-ingest-secret-0123456789ab', issuer: 'dsp', audience: 'ferry' }

let a: TestServer
let b: TestServer
let cfgDir: string
let s3: S3Client
let bucket: string
let env: Record<string, string>

beforeAll(async () => {
  const t = await testBucket()
  bucket = t.bucket
  s3 = new S3Client({
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
    credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
  })
  cfgDir = tempDir('ferry-s3-fam-cfg-')
  const cfg = join(cfgDir, 'ferry.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      lakefs: {
        signingSecret: 's3-e2e-signing',
        jwtSecret: 's3-e2e-jwt',
        credentials: [{ accessKeyId: 'AKIAS3E2E', secretAccessKey: 's3-e2e-secret' }],
        repositories: [
          {
            name: 'example',
            storageNamespace: `s3://${bucket}/${PREFIX}staging/example`,
            branches: ['main'],
          },
        ],
      },
      ingest: { jwt: JWT },
    }),
  )
  env = {
    REDIS_URL: testRedisUrl(),
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_CONFIG: cfg,
    FERRY_FAMILIES: 'tus,lakefs,ingest',
    FERRY_MAX_UPLOAD_BYTES: String(64 * MIB),
    FERRY_STORAGE: 's3',
    FERRY_S3_ENDPOINT: t.endpoint,
    FERRY_S3_REGION: t.region,
    FERRY_S3_BUCKET: bucket,
    FERRY_S3_PREFIX: PREFIX,
    FERRY_S3_FORCE_PATH_STYLE: 'true',
  }
  a = await startFerry(env)
  b = await startFerry(env)
}, 180_000)
afterAll(async () => {
  await a?.close()
  await b?.close()
  for (const s of [a, b]) if (s) removeDir(s.dataDir)
  removeDir(cfgDir)
  s3?.destroy()
})

async function bucketKeys(prefix: string): Promise<string[]> {
  const keys: string[] = []
  let token: string | undefined
  do {
    const r = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    )
    for (const o of r.Contents ?? []) keys.push(o.Key!)
    token = r.IsTruncated ? r.NextContinuationToken : undefined
  } while (token)
  return keys
}

async function bucketBytes(key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  return Buffer.from(await r.Body!.transformToByteArray())
}

/** Files below a data directory's folder (the local side must hold no finished bytes). */
function localFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
}

/** Points a URL at another instance (as a load balancer would). */
const via = (url: string, base: string) => {
  const u = new URL(url)
  u.host = new URL(base).host
  return u.href
}

function tusUpload(endpoint: string, data: Buffer, parallel = 1): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const u: Upload = new Upload(data, {
      endpoint,
      chunkSize: 256 * 1024,
      parallelUploads: parallel,
      retryDelays: null,
      metadata: { filename: 'x.bin' },
      onSuccess: () => resolve(u.url ?? ''),
      onError: reject,
    })
    u.start()
  })
}

describe('tus with FERRY_STORAGE=s3', () => {
  test('tus-js-client upload; HEAD and GET with Range on the other instance read the bucket', async () => {
    const data = seededBytes(MIB + 12_345, 's3-tus')
    const url = await tusUpload(`${a.url}/files/`, data)
    const id = url.split('/').pop()!
    const head = await request(via(url, b.url), {
      method: 'HEAD',
      headers: { 'Tus-Resumable': '1.0.0' },
    })
    expect(head.status).toBe(200)
    expect(head.headers['upload-offset']).toBe(String(data.length))
    expect(head.headers['upload-length']).toBe(String(data.length))
    const whole = await request(via(url, b.url))
    expect(whole.status).toBe(200)
    expect(sha256(whole.body)).toBe(sha256(data))
    const part = await request(via(url, b.url), { headers: { Range: 'bytes=1000-1999' } })
    expect(part.status).toBe(206)
    expect(part.headers['content-range']).toBe(`bytes 1000-1999/${data.length}`)
    expect(part.body.equals(data.subarray(1000, 2000))).toBe(true)
    const tail = await request(url, { headers: { Range: 'bytes=-10' } })
    expect(tail.status).toBe(206)
    expect(tail.body.equals(data.subarray(data.length - 10))).toBe(true)
    const past = await request(url, { headers: { Range: `bytes=${data.length}-` } })
    expect(past.status).toBe(416)
    // The bytes are an object of the bucket, and no data directory holds them.
    const keys = (await bucketKeys(PREFIX)).filter((k) => k.endsWith(`/${id}`))
    expect(keys).toHaveLength(1)
    expect(sha256(await bucketBytes(keys[0]!))).toBe(sha256(data))
    for (const s of [a, b]) expect(localFiles(join(s.dataDir, 'tus'))).toEqual([])
  })

  test('parallel uploads: partials and the final concatenation live in the bucket', async () => {
    const data = seededBytes(700_001, 's3-tus-concat')
    const url = await tusUpload(`${b.url}/files/`, data, 2)
    const got = await request(via(url, a.url))
    expect(got.status).toBe(200)
    expect(sha256(got.body)).toBe(sha256(data))
    const id = url.split('/').pop()!
    const keys = (await bucketKeys(PREFIX)).filter((k) => k.endsWith(`/${id}`))
    expect(keys).toHaveLength(1)
    expect(sha256(await bucketBytes(keys[0]!))).toBe(sha256(data))
  })

  test('DELETE terminates a finished upload: 404/410 afterwards, its object gone', async () => {
    const data = seededBytes(1000, 's3-tus-del')
    const url = await tusUpload(`${a.url}/files/`, data)
    const id = url.split('/').pop()!
    const del = await request(via(url, b.url), {
      method: 'DELETE',
      headers: { 'Tus-Resumable': '1.0.0' },
    })
    expect(del.status).toBe(204)
    const after = await request(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
    expect([404, 410]).toContain(after.status)
    expect((await bucketKeys(PREFIX)).filter((k) => k.endsWith(`/${id}`))).toEqual([])
  })
})

const api = (base: string) => `${base}/api/v1`
const md5hex = (d: Buffer) => createHash('md5').update(d).digest('hex')

async function address(base: string, path: string): Promise<StagingLocation> {
  const g = await request(`${stagingBackingUrl(base, 'example', 'main', path)}&presign=true`, {
    headers: { Authorization: BASIC },
  })
  expect(g.status).toBe(200)
  return g.json<StagingLocation>()
}

function link(base: string, path: string, loc: StagingLocation, data: Buffer): Promise<Reply> {
  return request(stagingBackingUrl(base, 'example', 'main', path), {
    method: 'PUT',
    headers: { Authorization: BASIC, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      staging: loc,
      checksum: md5hex(data),
      size_bytes: data.length,
      user_metadata: {},
      content_type: 'application/octet-stream',
    }),
  })
}

/** The bucket key of a physical address (`s3://<bucket>/<key>`). */
function keyOf(physicalAddress: string): string {
  const head = `s3://${bucket}/`
  expect(physicalAddress.startsWith(head)).toBe(true)
  return physicalAddress.slice(head.length)
}

/** The bytes a linked path holds: its entry names its blob, both objects of the bucket. */
async function linkedBytes(path: string): Promise<Buffer> {
  const root = `${PREFIX}staging/example`
  const segs = path.split('/')
  const names = segs.map((n, i) => (i === segs.length - 1 ? `${n}.o` : `${n}.d`))
  const entry = JSON.parse(
    (await bucketBytes(`${root}/branches/main/objects/${names.join('/')}`)).toString(),
  ) as { blob: string }
  return bucketBytes(`${root}/${entry.blob}`)
}

describe('lakeFS staging with FERRY_STORAGE=s3', () => {
  test('presigned PUT through B, link on A: the address names the object in the bucket', async () => {
    const data = seededBytes(600_000, 's3-lakefs')
    const loc = await address(a.url, 'datasets/one.bin')
    const put = await request(via(loc.presigned_url!, b.url), { method: 'PUT', body: data })
    expect(put.status).toBe(200)
    expect(sha256(await bucketBytes(keyOf(loc.physical_address)))).toBe(sha256(data))
    const r = await link(a.url, 'datasets/one.bin', loc, data)
    expect(r.status).toBe(200)
    expect(r.json()).toMatchObject({ physical_address: loc.physical_address })
    expect(sha256(await linkedBytes('datasets/one.bin'))).toBe(sha256(data))
    // The presigned URL still works, but the linked object keeps what was checked.
    const again = await request(loc.presigned_url!, {
      method: 'PUT',
      body: seededBytes(600_000, 'other'),
    })
    expect(again.status).toBe(200)
    expect(sha256(await linkedBytes('datasets/one.bin'))).toBe(sha256(data))
  })

  test('bytes written straight to the bucket at the address are linked (hashed from the bucket)', async () => {
    const data = seededBytes(300_000, 's3-direct')
    const loc = await address(b.url, 'direct/two.bin')
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: keyOf(loc.physical_address), Body: data }),
    )
    const wrong = await link(a.url, 'direct/two.bin', loc, Buffer.from('not it'))
    expect(wrong.status).toBe(400)
    const r = await link(a.url, 'direct/two.bin', loc, data)
    expect(r.status).toBe(200)
    expect(sha256(await linkedBytes('direct/two.bin'))).toBe(sha256(data))
  })

  test('presigned multipart: parts on both instances, completed into the bucket', async () => {
    const path = 'multi/three.bin'
    const pmpu = (base: string, tail = '') =>
      `${api(base)}/repositories/example/branches/main/staging/pmpu${tail}?path=${encodeURIComponent(path)}`
    const c = await request(`${pmpu(a.url)}&parts=2`, {
      method: 'POST',
      headers: { Authorization: BASIC },
    })
    expect(c.status).toBe(201)
    const mpu = c.json<{ upload_id: string; physical_address: string; presigned_urls: string[] }>()
    const p1 = seededBytes(5 * MIB, 's3-p1')
    const p2 = seededBytes(MIB + 3, 's3-p2')
    const etags: string[] = []
    for (const [i, d] of [p1, p2].entries()) {
      const put = await request(via(mpu.presigned_urls[i]!, i === 0 ? a.url : b.url), {
        method: 'PUT',
        body: d,
      })
      expect(put.status).toBe(200)
      etags.push(String(put.headers['etag']).replace(/"/g, ''))
    }
    const done = await request(pmpu(b.url, `/${mpu.upload_id}`), {
      method: 'PUT',
      headers: { Authorization: BASIC, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        physical_address: mpu.physical_address,
        parts: etags.map((etag, i) => ({ part_number: i + 1, etag })),
      }),
    })
    expect(done.status).toBe(200)
    const whole = Buffer.concat([p1, p2])
    expect(sha256(await linkedBytes(path))).toBe(sha256(whole))
    expect(sha256(await bucketBytes(keyOf(mpu.physical_address)))).toBe(sha256(whole))
    // The parts are gone from the bucket once completed.
    const parts = (await bucketKeys(`${PREFIX}staging/example/pmpu/${mpu.upload_id}/`)).filter(
      (k) => k.endsWith('.part'),
    )
    expect(parts).toEqual([])
  })
})

describe('bulk ingest with FERRY_STORAGE=s3', () => {
  test('uploads on both instances, a run on A, mapping.csv on B, finalize: all in the bucket', async () => {
    const sc = '0a3a'
    const now = nowSeconds()
    const token = await signJwt(
      { sub: 'tester', scope: 'admin' },
      { secret: JWT.secret, iss: JWT.issuer, aud: JWT.audience, iat: now - 60, exp: now + 3600 },
    )
    const auth = { Authorization: `Bearer ${token}` }
    const base = (s: TestServer, rest = '') => `${s.url}/projects/${sc}/bulk-ingest${rest}`
    const files = new Map<string, Buffer>()
    for (let i = 0; i < 12; i++) {
      files.set(
        `set-${i % 3}/file-${i}.${['tif', 'txt', 'pdf'][i % 3]}`,
        seededBytes(5000 + i, `i${i}`),
      )
    }
    let i = 0
    for (const [p, data] of files) {
      const r = await request(base(i++ % 2 === 0 ? a : b, `/ingest/${encodeURIComponent(p)}`), {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/octet-stream' },
        body: data,
      })
      expect(r.status).toBe(200)
    }
    expect((await request(base(a), { method: 'POST', headers: auth })).status).toBe(202)
    const m = await waitFor(
      'the ingest to end',
      async () => {
        const r = await request(base(b, '/mapping.csv'), { headers: auth })
        return r.status === 409 ? null : r
      },
      { timeoutMs: 120_000 },
    )
    expect(m.status).toBe(200)
    const lines = m.text().split('\n')
    expect(lines[0]).toBe('original,derivative')
    expect(
      lines
        .slice(1)
        .map((l) => l.slice(0, l.lastIndexOf(',')))
        .sort(),
    ).toEqual([...files.keys()].sort())
    const root = `${PREFIX}ingest/${sc}`
    const keys = await bucketKeys(`${root}/`)
    expect(keys).toContain(`${root}/mapping-${sc}.csv`)
    // Every source went (the hidden folder mark stays until finalize); each derivative hashes
    // to its original, as its .info says.
    expect(keys.filter((k) => k.startsWith(`${root}/import/`))).toEqual([
      `${root}/import/.ferry-folder`,
    ])
    for (const line of lines.slice(1)) {
      const original = line.slice(0, line.lastIndexOf(','))
      const deriv = line.slice(line.lastIndexOf(',') + 1)
      const id = deriv.slice(0, 23).toLowerCase()
      const dir = `${root}/assets/${id.slice(0, 2)}/${id.slice(2, 4)}`
      const info = JSON.parse(
        (await bucketBytes(`${dir}/${deriv.slice(0, 23)}.info`)).toString(),
      ) as Record<string, string>
      const want = sha256(files.get(original)!)
      expect(info['checksumOriginal']).toBe(want)
      expect(info['checksumDerivative']).toBe(want)
      expect(sha256(await bucketBytes(`${dir}/${deriv}`))).toBe(want)
      expect(sha256(await bucketBytes(`${dir}/${deriv}.orig`))).toBe(want)
    }
    expect((await request(base(b, '/finalize'), { method: 'POST', headers: auth })).status).toBe(
      200,
    )
    const gone = await waitFor('finalize to end', async () => {
      const r = await request(base(a, '/mapping.csv'), { headers: auth })
      return r.status === 409 ? null : r
    })
    expect(gone.status).toBe(404)
    const after = await bucketKeys(`${root}/`)
    expect(after.filter((k) => !k.startsWith(`${root}/assets/`))).toEqual([])
    expect(after.filter((k) => k.endsWith('.info'))).toHaveLength(files.size)
    // The import folder is gone: a new run finds none.
    expect((await request(base(a), { method: 'POST', headers: auth })).status).toBe(404)
  })
})

test('a lakeFS repository whose namespace is not its place in the bucket is refused at start', () => {
  const cfg = join(cfgDir, 'local-ns.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      lakefs: {
        signingSecret: 'x',
        jwtSecret: 'y',
        credentials: [{ accessKeyId: 'AKIAS3E2E', secretAccessKey: 's3-e2e-secret' }],
        repositories: [
          { name: 'example', storageNamespace: 'local://example', branches: ['main'] },
        ],
      },
      ingest: { jwt: JWT },
    }),
  )
  const config = loadConfig({ ...env, FERRY_CONFIG: cfg, FERRY_DATA_DIR: a.dataDir })
  expect(() => refuseUnsupportedStorage(config)).toThrow(
    `its storageNamespace must be s3://${bucket}/${PREFIX}staging/example`,
  )
  // As configured for this suite: accepted.
  const ok = loadConfig({ ...env, FERRY_DATA_DIR: a.dataDir })
  expect(() => refuseUnsupportedStorage(ok)).not.toThrow()
})
