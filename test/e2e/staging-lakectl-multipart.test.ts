/**
 * lakectl's presigned multipart upload (lakeFS pkg/api/helpers/upload.go, uploadMultipart), step
 * by step as the client runs it, against two Ferry instances sharing one Redis and one data
 * directory: config → create with parts=N → the parts PUT 5 at a time, alternating instances, each
 * URL checked for expiry (X-Amz-Date + X-Amz-Expires, 15 s margin) and refreshed when expired →
 * complete with the ETags in part order → ObjectStats; on a failed part, abort.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { presignPartQuery } from '../../src/core/staging/signing.js'
import { request, seededBytes, sha256, type Reply } from '../helpers/http.js'
import {
  removeDir,
  startCluster,
  tempDir,
  type TestCluster,
  type TestServer,
} from '../helpers/server.js'

const BASIC = `Basic ${Buffer.from('AKIALAKECTL:lakectl-secret').toString('base64')}`
const SIGNING = 'e2e-pmpu-signing'
const MIB = 1024 * 1024

let cluster: TestCluster<[TestServer, TestServer]>
let a: TestServer
let b: TestServer
let cfgDir: string

beforeAll(async () => {
  cfgDir = tempDir('ferry-lakectl-pmpu-cfg-')
  const cfg = join(cfgDir, 'ferry.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      lakefs: {
        signingSecret: SIGNING,
        jwtSecret: 'e2e-jwt',
        credentials: [{ accessKeyId: 'AKIALAKECTL', secretAccessKey: 'lakectl-secret' }],
        repositories: [
          { name: 'example', storageNamespace: 'local://example', branches: ['main'] },
        ],
      },
    }),
  )
  cluster = await startCluster(
    2,
    { FERRY_CONFIG: cfg, FERRY_MAX_UPLOAD_BYTES: String(256 * MIB) },
    'ferry-lakectl-pmpu-data-',
  )
  ;[a, b] = cluster.servers
})
afterAll(async () => {
  await cluster.close()
  removeDir(cfgDir)
})

interface Mpu {
  physical_address: string
  presigned_urls?: string[]
  upload_id: string
}

const api = (base: string) => `${base}/api/v1`
const pmpu = (base: string, path: string, tail = '') =>
  `${api(base)}/repositories/example/branches/main/staging/pmpu${tail}?path=${encodeURIComponent(path)}`
const jsonReq = (method: string, body: unknown) => ({
  method,
  headers: { Authorization: BASIC, 'Content-Type': 'application/json' },
  body: JSON.stringify(body),
})

/** Points a presigned URL at another instance (as a load balancer would). */
const via = (url: string, base: string) => {
  const u = new URL(url)
  u.host = new URL(base).host
  return u.href
}

/** lakectl's initMultipart sizing: 5 MiB parts, larger when 10,000 would not do. */
function lakectlPartSize(size: number): { partSize: number; numParts: number } {
  let partSize = 5 * MIB
  if (Math.floor(size / partSize) >= 10_000) partSize = Math.floor(size / 10_000) + 1
  return { partSize, numParts: Math.ceil(size / partSize) }
}

/** lakectl's presignedURLExpired: missing or unparsable parameters count as expired. */
function presignedUrlExpired(raw: string): boolean {
  const u = new URL(raw)
  const date = u.searchParams.get('X-Amz-Date')
  const expires = u.searchParams.get('X-Amz-Expires')
  if (!date || !expires) return true
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date)
  if (!m || !/^\d+$/.test(expires)) return true
  const signedMs = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)
  return Date.now() + 15_000 > signedMs + Number(expires) * 1000
}

/** lakectl's extractEtagFromResponseHeader: Content-MD5 (base64 → hex) first, else the ETag. */
function etagOf(r: Reply): string {
  const md5 = r.headers['content-md5']
  if (typeof md5 === 'string') return Buffer.from(md5, 'base64').toString('hex')
  return String(r.headers['etag'] ?? '').replace(/^[" ]+|[" ]+$/g, '')
}

interface Flow {
  readonly mpu: Mpu
  readonly refreshed: number[]
  readonly instances: string[]
}

/**
 * lakectl's uploadMultipart on instances `servers` (part i through servers[i % n]); `urlFor` may
 * change the URL handed out for a part (to make it expired). Completes on `completeOn`.
 */
async function lakectlMultipart(
  servers: readonly TestServer[],
  path: string,
  data: Buffer,
  contentType: string,
  opts: {
    urlFor?: (mpu: Mpu, i: number, url: string) => string
    completeOn?: TestServer
    failPart?: number
  } = {},
): Promise<{ flow: Flow; complete: Reply | null; failure: Reply | null }> {
  const first = servers[0]!
  const cfg = await request(`${api(first.url)}/config`, { headers: { Authorization: BASIC } })
  expect(
    cfg.json<{ storage_config: { pre_sign_multipart_upload: boolean } }>().storage_config
      .pre_sign_multipart_upload,
  ).toBe(true)
  const { partSize, numParts } = lakectlPartSize(data.length)
  const c = await request(`${pmpu(first.url, path)}&parts=${numParts}`, {
    method: 'POST',
    headers: { Authorization: BASIC },
  })
  expect(c.status).toBe(201)
  const mpu = c.json<Mpu>()
  // lakectl: the number of URLs must be the number of parts, or the upload fails.
  expect(mpu.presigned_urls).toHaveLength(numParts)
  const etags: string[] = new Array<string>(numParts)
  const refreshed: number[] = []
  const instances: string[] = new Array<string>(numParts)
  let failure: Reply | null = null
  // errgroup with SetLimit(5): five parts in flight at a time.
  let next = 0
  const worker = async () => {
    while (next < numParts && failure === null) {
      const i = next++
      const server = servers[i % servers.length]!
      let url = opts.urlFor ? opts.urlFor(mpu, i, mpu.presigned_urls![i]!) : mpu.presigned_urls![i]!
      if (presignedUrlExpired(url)) {
        const fresh = await request(
          pmpu(server.url, path, `/${mpu.upload_id}/parts/${i + 1}`),
          jsonReq('PUT', { physical_address: mpu.physical_address }),
        )
        expect(fresh.status).toBe(200)
        url = fresh.json<{ presigned_url: string }>().presigned_url
        refreshed.push(i + 1)
      }
      const body = data.subarray(i * partSize, Math.min(data.length, (i + 1) * partSize))
      if (opts.failPart === i + 1)
        url = url.replace(/X-Ferry-Signature=[^&]+/, `X-Ferry-Signature=${'A'.repeat(43)}`)
      const r = await request(via(url, server.url), {
        method: 'PUT',
        headers: { 'Content-Length': body.length, 'Content-Type': contentType },
        body,
      })
      if (r.status !== 200) {
        failure = r
        break
      }
      const etag = etagOf(r)
      expect(etag).not.toBe('') // "upload etag is missing" is a hard error for lakectl
      etags[i] = etag
      instances[i] = server.url
    }
  }
  await Promise.all(Array.from({ length: 5 }, worker))
  const flow = { mpu, refreshed, instances }
  if (failure !== null) {
    // lakectl aborts with a fresh context and expects 204.
    const ab = await request(
      pmpu((opts.completeOn ?? first).url, path, `/${mpu.upload_id}`),
      jsonReq('DELETE', { physical_address: mpu.physical_address }),
    )
    expect(ab.status).toBe(204)
    return { flow, complete: null, failure }
  }
  const complete = await request(
    pmpu((opts.completeOn ?? first).url, path, `/${mpu.upload_id}`),
    jsonReq('PUT', {
      parts: etags.map((etag, i) => ({ part_number: i + 1, etag })),
      physical_address: mpu.physical_address,
      user_metadata: { origin: 'lakectl' },
      content_type: contentType,
    }),
  )
  return { flow, complete, failure: null }
}

const linkedBytes = (path: string) => {
  const segs = path.split('/')
  const entryFile = join(
    cluster.dataDir,
    'staging',
    'example',
    'branches',
    'main',
    'objects',
    ...segs.map((s, i) => (i === segs.length - 1 ? `${s}.o` : `${s}.d`)),
  )
  const entry = JSON.parse(readFileSync(entryFile, 'utf8')) as { blob: string }
  return readFileSync(join(cluster.dataDir, 'staging', 'example', entry.blob))
}

const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex')

describe('lakectl fs upload --pre-sign, multipart, against two instances', () => {
  test('5 parts alternating A and B, completed on B: 200 ObjectStats, the exact bytes linked, then linkable again on A', async () => {
    const data = seededBytes(22 * MIB + 777, 'lakectl-mpu-1')
    const { flow, complete } = await lakectlMultipart(
      [a, b],
      'datasets/big.parquet',
      data,
      'application/x-parquet',
      { completeOn: b },
    )
    expect(flow.instances).toEqual([a.url, b.url, a.url, b.url, a.url])
    expect(flow.refreshed).toEqual([])
    expect(complete!.status).toBe(200)
    const stats = complete!.json<{
      checksum: string
      size_bytes: number
      physical_address: string
      path: string
      metadata: object
      content_type: string
    }>()
    const partMd5s = [0, 1, 2, 3, 4].map((i) =>
      md5hex(data.subarray(i * 5 * MIB, Math.min(data.length, (i + 1) * 5 * MIB))),
    )
    const etag = `${createHash('md5')
      .update(Buffer.concat(partMd5s.map((m) => Buffer.from(m, 'hex'))))
      .digest('hex')}-5`
    expect(stats).toMatchObject({
      checksum: etag,
      size_bytes: data.length,
      physical_address: flow.mpu.physical_address,
      path: 'datasets/big.parquet',
      metadata: { origin: 'lakectl' },
      content_type: 'application/x-parquet',
    })
    expect(sha256(linkedBytes('datasets/big.parquet'))).toBe(sha256(data))
    // The completed address links like a presigned PUT's address, on the other instance too.
    const link = await request(
      `${api(a.url)}/repositories/example/branches/main/staging/backing?path=datasets/big.parquet`,
      jsonReq('PUT', {
        staging: { physical_address: flow.mpu.physical_address, presigned_url: null },
        checksum: stats.checksum,
        size_bytes: data.length,
      }),
    )
    expect(link.status).toBe(200)
    expect(sha256(linkedBytes('datasets/big.parquet'))).toBe(sha256(data))
    // Nothing of the upload is left in the parts folder.
    const dir = join(cluster.dataDir, 'staging', 'example', 'pmpu', flow.mpu.upload_id)
    expect(readdirSync(dir).filter((n) => n.endsWith('.part'))).toEqual([])
  })

  test('an expired part URL is refused (403 AccessDenied); lakectl sees it expired and fetches a fresh one, which works', async () => {
    const data = seededBytes(11 * MIB, 'lakectl-mpu-expired')
    // Part 2's URL as if handed out an hour ago (signed with the cluster's key, 900 s).
    const stale = (mpu: Mpu, i: number, url: string) => {
      if (i !== 1) return url
      const u = new URL(url)
      const relative = mpu.physical_address.slice('local://example/'.length)
      const q = presignPartQuery(
        SIGNING,
        { repository: 'example', relative, uploadId: mpu.upload_id, partNumber: 2 },
        Date.now() - 3600_000,
        900,
      )
      return `${u.origin}${u.pathname}?${q}`
    }
    let staleUrl = ''
    const { flow, complete } = await lakectlMultipart(
      [b, a],
      'datasets/expired.bin',
      data,
      'application/octet-stream',
      {
        urlFor: (mpu, i, url) => {
          const s = stale(mpu, i, url)
          if (i === 1) staleUrl = s
          return s
        },
      },
    )
    expect(flow.refreshed).toEqual([2])
    expect(complete!.status).toBe(200)
    expect(sha256(linkedBytes('datasets/expired.bin'))).toBe(sha256(data))
    for (const s of [a, b]) {
      const r = await request(via(staleUrl, s.url), { method: 'PUT', body: Buffer.from('late') })
      expect(r.status).toBe(403)
      expect(r.text()).toMatch(/<Code>AccessDenied<\/Code><Message>Request has expired<\/Message>/)
    }
  })

  test('a part that fails: lakectl aborts (204 on B); the parts are gone and every part URL answers NoSuchUpload on both instances', async () => {
    const data = seededBytes(16 * MIB, 'lakectl-mpu-abort')
    const { flow, failure } = await lakectlMultipart(
      [a, b],
      'datasets/aborted.bin',
      data,
      'application/octet-stream',
      { completeOn: b, failPart: 4 },
    )
    expect(failure!.status).toBe(403)
    const dir = join(cluster.dataDir, 'staging', 'example', 'pmpu', flow.mpu.upload_id)
    expect(existsSync(dir)).toBe(false)
    for (const [i, url] of flow.mpu.presigned_urls!.entries()) {
      const r = await request(via(url, [a, b][i % 2]!.url), {
        method: 'PUT',
        body: Buffer.from('after abort'),
      })
      expect(r.status).toBe(404)
      expect(r.text()).toContain('<Code>NoSuchUpload</Code>')
    }
    const done = await request(
      pmpu(a.url, 'datasets/aborted.bin', `/${flow.mpu.upload_id}`),
      jsonReq('PUT', {
        parts: [{ part_number: 1, etag: md5hex(data.subarray(0, 5 * MIB)) }],
        physical_address: flow.mpu.physical_address,
      }),
    )
    expect(done.status).toBe(404)
    const entry = join(
      cluster.dataDir,
      'staging',
      'example',
      'branches',
      'main',
      'objects',
      'datasets.d',
      'aborted.bin.o',
    )
    expect(existsSync(entry)).toBe(false)
  })

  // Four rounds: without the completion lock, about one race in four broke both (400, 400).
  test('two completions of one upload racing on A and B: both 200 with the same ObjectStats', async () => {
    for (let round = 0; round < 4; round++) await raceCompletions(`race/obj${round}.bin`)
  })

  async function raceCompletions(path: string): Promise<void> {
    const data = seededBytes(10 * MIB + 5, `lakectl-mpu-${path}`)
    const c = await request(`${pmpu(a.url, path)}&parts=3`, {
      method: 'POST',
      headers: { Authorization: BASIC },
    })
    const mpu = c.json<Mpu>()
    const parts = [
      data.subarray(0, 5 * MIB),
      data.subarray(5 * MIB, 10 * MIB),
      data.subarray(10 * MIB),
    ]
    await Promise.all(
      parts.map((p, i) =>
        request(via(mpu.presigned_urls![i]!, [b, a][i % 2]!.url), { method: 'PUT', body: p }),
      ),
    )
    const body = {
      parts: parts.map((p, i) => ({ part_number: i + 1, etag: md5hex(p) })),
      physical_address: mpu.physical_address,
    }
    const [ra, rb] = await Promise.all(
      [a, b].map((s) => request(pmpu(s.url, path, `/${mpu.upload_id}`), jsonReq('PUT', body))),
    )
    expect([ra!.status, rb!.status]).toEqual([200, 200])
    expect(ra!.json<{ checksum: string; size_bytes: number }>()).toMatchObject({
      size_bytes: data.length,
    })
    expect(rb!.json<{ checksum: string }>().checksum).toBe(
      ra!.json<{ checksum: string }>().checksum,
    )
    expect(sha256(linkedBytes(path))).toBe(sha256(data))
  }
})
