/**
 * lakeFS presigned multipart uploads (`/staging/pmpu`, lakeFS pkg/api/controller.go
 * CreatePresignMultipartUpload / UploadPart / CompletePresignMultipartUpload /
 * AbortPresignMultipartUpload), raw HTTP, one status per test line.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { multipartEtag, StagingMultipart } from '../../src/core/staging/multipart.js'
import { makeSignedAddress, presignPartQuery } from '../../src/core/staging/signing.js'
import { StagingStore } from '../../src/core/staging/store.js'
import type { FsObjectStore } from '../../src/core/storage/fs-object-store.js'
import { request, seededBytes, sha256, type Reply } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const SIGNING = 'pmpu-signing-secret'
const BASIC = `Basic ${Buffer.from('AKIAFERRY:s3cr3t-key').toString('base64')}`
const LAKEFS = {
  signingSecret: SIGNING,
  jwtSecret: 'pmpu-jwt',
  credentials: [{ accessKeyId: 'AKIAFERRY', secretAccessKey: 's3cr3t-key' }],
  repositories: [{ name: 'repo1', storageNamespace: 'local://repo1', branches: ['main', 'dev'] }],
}
const MIB = 1024 * 1024
const MAX_UPLOAD = 16 * MIB

let srv: TestServer
let off: TestServer
let cfgDir: string

function configFile(name: string, lakefs: object): string {
  const f = join(cfgDir, name)
  writeFileSync(f, JSON.stringify({ lakefs }))
  return f
}

beforeAll(async () => {
  cfgDir = tempDir('ferry-pmpu-cfg-')
  const common = { REDIS_URL: testRedisUrl(), FERRY_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) }
  srv = await startFerry({
    ...common,
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_CONFIG: configFile('a.json', LAKEFS),
  })
  off = await startFerry({
    ...common,
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_CONFIG: configFile('off.json', { ...LAKEFS, presignMultipart: false }),
  })
})
afterAll(async () => {
  await srv.close()
  await off.close()
  removeDir(srv.dataDir)
  removeDir(off.dataDir)
  removeDir(cfgDir)
})

interface Created {
  physical_address: string
  presigned_urls?: string[]
  upload_id: string
}

const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex')
const msg = (r: Reply) => r.json<{ message: string }>().message
const s3Code = (r: Reply) => /<Code>([^<]+)<\/Code>/.exec(r.text())?.[1]
const pmpuUrl = (base: string, path: string, tail = '', query = '') =>
  `${base}/api/v1/repositories/repo1/branches/main/staging/pmpu${tail}?path=${encodeURIComponent(path)}${query}`
const json = (body: unknown) => ({
  headers: { Authorization: BASIC, 'Content-Type': 'application/json' },
  body: JSON.stringify(body),
})

async function create(base: string, path: string, parts: number): Promise<Created> {
  const r = await request(pmpuUrl(base, path, '', `&parts=${parts}`), {
    method: 'POST',
    headers: { Authorization: BASIC },
  })
  expect(r.status).toBe(201)
  return r.json<Created>()
}

function putPart(url: string, data: Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return request(url, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
    body: data,
  })
}

function complete(
  base: string,
  path: string,
  c: Created,
  parts: { part_number: number; etag: string }[],
  extra: object = {},
): Promise<Reply> {
  return request(pmpuUrl(base, path, `/${c.upload_id}`), {
    method: 'PUT',
    ...json({ physical_address: c.physical_address, parts, ...extra }),
  })
}

function abort(base: string, path: string, c: Created): Promise<Reply> {
  return request(pmpuUrl(base, path, `/${c.upload_id}`), {
    method: 'DELETE',
    ...json({ physical_address: c.physical_address }),
  })
}

const linkedEntry = (path: string) =>
  JSON.parse(
    readFileSync(
      join(
        srv.dataDir,
        'staging',
        'repo1',
        'branches',
        'main',
        'objects',
        ...path.split('/').map((s, i, a) => (i === a.length - 1 ? `${s}.o` : `${s}.d`)),
      ),
      'utf8',
    ),
  ) as { blob: string; sha256: string }
const linkedBytes = (path: string) =>
  readFileSync(join(srv.dataDir, 'staging', 'repo1', linkedEntry(path).blob))

/** Three parts as lakectl cuts them: 5 MiB, 5 MiB, the rest. */
function threeParts(seed: string): { data: Buffer; parts: Buffer[] } {
  const data = seededBytes(10 * MIB + 12_345, seed)
  return {
    data,
    parts: [data.subarray(0, 5 * MIB), data.subarray(5 * MIB, 10 * MIB), data.subarray(10 * MIB)],
  }
}

describe('config and create', () => {
  test('GET /config advertises pre_sign_multipart_upload: true, and false when turned off', async () => {
    const on = await request(`${srv.url}/api/v1/config`, { headers: { Authorization: BASIC } })
    expect(
      on.json<{ storage_config: { pre_sign_multipart_upload: boolean } }>().storage_config
        .pre_sign_multipart_upload,
    ).toBe(true)
    const o = await request(`${off.url}/api/v1/config`, { headers: { Authorization: BASIC } })
    const body = o.json<{
      storage_config: { pre_sign_multipart_upload: boolean }
      storage_config_list: unknown[]
    }>()
    expect(body.storage_config.pre_sign_multipart_upload).toBe(false)
    expect(body.storage_config_list).toEqual([body.storage_config])
  })

  test('201 with N part URLs carrying X-Amz-Date and X-Amz-Expires (the presign TTL), in Go field order', async () => {
    const before = Date.now()
    const r = await request(pmpuUrl(srv.url, 'big/file.bin', '', '&parts=3'), {
      method: 'POST',
      headers: { Authorization: BASIC },
    })
    expect(r.status).toBe(201)
    expect(r.headers['content-type']).toBe('application/json')
    expect(Object.keys(r.json<object>())).toEqual([
      'physical_address',
      'presigned_urls',
      'upload_id',
    ])
    const c = r.json<Created>()
    expect(c.upload_id).toMatch(/^[0-9a-f]{32}$/)
    expect(c.physical_address).toMatch(
      /^local:\/\/repo1\/data\/[0-9a-v]{20}\/[0-9a-v]{20},[A-Za-z0-9_-]{43}$/,
    )
    expect(c.presigned_urls).toHaveLength(3)
    c.presigned_urls!.forEach((u, i) => {
      const url = new URL(u)
      expect(url.origin).toBe(srv.url)
      expect(url.searchParams.get('partNumber')).toBe(String(i + 1))
      expect(url.searchParams.get('uploadId')).toBe(c.upload_id)
      expect(url.searchParams.get('X-Amz-Expires')).toBe('900')
      const d = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(
        url.searchParams.get('X-Amz-Date') ?? '',
      )
      expect(d).not.toBeNull()
      const signedMs = Date.UTC(+d![1]!, +d![2]! - 1, +d![3]!, +d![4]!, +d![5]!, +d![6]!)
      expect(signedMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
      expect(signedMs).toBeLessThanOrEqual(Date.now())
    })
  })

  test('parts=0 or no parts: 201 without presigned_urls, as lakeFS', async () => {
    for (const q of ['&parts=0', '']) {
      const r = await request(pmpuUrl(srv.url, 'zero.bin', '', q), {
        method: 'POST',
        headers: { Authorization: BASIC },
      })
      expect(r.status).toBe(201)
      expect(Object.keys(r.json<object>())).toEqual(['physical_address', 'upload_id'])
    }
  })

  test('refusals: 401 anonymous, 404 repository, 404 branch, 400 path and parts, 405 method, 501 when off', async () => {
    const post = (url: string, auth = true) =>
      request(url, { method: 'POST', headers: auth ? { Authorization: BASIC } : {} })
    const anon = await post(pmpuUrl(srv.url, 'a', '', '&parts=1'), false)
    expect([anon.status, msg(anon)]).toEqual([401, 'error authenticating request'])
    const repo = await post(
      `${srv.url}/api/v1/repositories/nope/branches/main/staging/pmpu?path=a&parts=1`,
    )
    expect([repo.status, msg(repo)]).toEqual([404, 'repository not found'])
    const branch = await post(
      `${srv.url}/api/v1/repositories/repo1/branches/nope/staging/pmpu?path=a&parts=1`,
    )
    expect([branch.status, msg(branch)]).toEqual([404, "branch 'nope' not found"])
    const noPath = await post(
      `${srv.url}/api/v1/repositories/repo1/branches/main/staging/pmpu?parts=1`,
    )
    expect([noPath.status, msg(noPath)]).toEqual([
      400,
      'parameter "path" in query has an error: value is required but missing',
    ])
    const empty = await post(pmpuUrl(srv.url, '', '', '&parts=1'))
    expect([empty.status, msg(empty)]).toEqual([400, 'path is required'])
    const badPath = await post(pmpuUrl(srv.url, 'a/../b', '', '&parts=1'))
    expect(badPath.status).toBe(400)
    const nan = await post(pmpuUrl(srv.url, 'a', '', '&parts=many'))
    expect([nan.status, msg(nan)]).toEqual([
      400,
      'parameter "parts" in query has an error: value many: an invalid integer: invalid syntax',
    ])
    for (const n of [-1, 10_001]) {
      const r = await post(pmpuUrl(srv.url, 'a', '', `&parts=${n}`))
      expect([r.status, msg(r)]).toEqual([400, 'parts can be between 0 and 10000'])
    }
    const max = await post(pmpuUrl(srv.url, 'a', '', '&parts=10000'))
    expect(max.status).toBe(201)
    expect(max.json<Created>().presigned_urls).toHaveLength(10_000)
    const get = await request(pmpuUrl(srv.url, 'a'), { headers: { Authorization: BASIC } })
    expect([get.status, get.headers['allow']]).toEqual([405, 'POST'])
    const offCreate = await post(pmpuUrl(off.url, 'a', '', '&parts=1'))
    expect([offCreate.status, msg(offCreate)]).toEqual([
      501,
      'presign multipart upload API is not supported',
    ])
    const offDone = await request(pmpuUrl(off.url, 'a', `/${'0'.repeat(32)}`), {
      method: 'PUT',
      ...json({ physical_address: 'x', parts: [] }),
    })
    expect(offDone.status).toBe(501)
  })
})

describe('parts', () => {
  test('200 with the quoted MD5 as ETag, in any order; a re-sent part replaces the first', async () => {
    const c = await create(srv.url, 'order/a.bin', 2)
    const p2 = seededBytes(1000, 'p2')
    const p1 = seededBytes(6 * MIB, 'p1')
    const r2 = await putPart(c.presigned_urls![1]!, p2)
    expect(r2.status).toBe(200)
    expect(r2.headers['etag']).toBe(`"${md5hex(p2)}"`)
    expect((await putPart(c.presigned_urls![0]!, seededBytes(6 * MIB, 'first try'))).status).toBe(
      200,
    )
    const r1 = await putPart(c.presigned_urls![0]!, p1)
    expect(r1.headers['etag']).toBe(`"${md5hex(p1)}"`)
    const done = await complete(srv.url, 'order/a.bin', c, [
      { part_number: 1, etag: md5hex(p1) },
      { part_number: 2, etag: `"${md5hex(p2)}"` },
    ])
    expect(done.status).toBe(200)
    expect(linkedBytes('order/a.bin').equals(Buffer.concat([p1, p2]))).toBe(true)
  })

  test('tampered, unsigned or expired part URLs: 403 with S3 XML; a bad part number 400; too large 413', async () => {
    const c = await create(srv.url, 'refuse/a.bin', 2)
    const u = new URL(c.presigned_urls![0]!)
    const other = new URL(u)
    other.searchParams.set('partNumber', '2')
    const swapped = await putPart(other.href, Buffer.from('x'))
    expect([swapped.status, s3Code(swapped)]).toEqual([403, 'SignatureDoesNotMatch'])
    expect(swapped.headers['content-type']).toBe('application/xml')
    const later = new URL(u)
    later.searchParams.set('X-Amz-Expires', '999999')
    expect(s3Code(await putPart(later.href, Buffer.from('x')))).toBe('SignatureDoesNotMatch')
    const unsigned = new URL(u)
    unsigned.searchParams.delete('X-Amz-Date')
    const r = await putPart(unsigned.href, Buffer.from('x'))
    expect([r.status, s3Code(r)]).toEqual([403, 'AccessDenied'])
    // An URL signed (with the server's key) an hour ago for 900 s.
    const relative = c.physical_address.slice('local://repo1/'.length)
    const q = presignPartQuery(
      SIGNING,
      { repository: 'repo1', relative, uploadId: c.upload_id, partNumber: 1 },
      Date.now() - 3600_000,
      900,
    )
    const expired = await putPart(`${u.origin}${u.pathname}?${q}`, Buffer.from('x'))
    expect([expired.status, s3Code(expired)]).toEqual([403, 'AccessDenied'])
    expect(expired.text()).toContain('<Message>Request has expired</Message>')
    const zero = new URL(u)
    zero.searchParams.set('partNumber', '0')
    const bad = await putPart(zero.href, Buffer.from('x'))
    expect([bad.status, s3Code(bad)]).toEqual([400, 'InvalidArgument'])
    const big = await putPart(u.href, Buffer.alloc(MAX_UPLOAD + 1))
    expect([big.status, s3Code(big)]).toEqual([413, 'EntityTooLarge'])
    const digest = await putPart(u.href, Buffer.from('abc'), {
      'Content-MD5': Buffer.from(md5hex(Buffer.from('abd')), 'hex').toString('base64'),
    })
    expect([digest.status, s3Code(digest)]).toEqual([400, 'BadDigest'])
  })

  test('a signed part URL for an upload id that does not exist: 404 NoSuchUpload', async () => {
    const c = await create(srv.url, 'ghost/a.bin', 1)
    const u = new URL(c.presigned_urls![0]!)
    const relative = c.physical_address.slice('local://repo1/'.length)
    const ghost = 'f'.repeat(32)
    const q = presignPartQuery(
      SIGNING,
      { repository: 'repo1', relative, uploadId: ghost, partNumber: 1 },
      Date.now(),
      900,
    )
    const r = await putPart(`${u.origin}${u.pathname}?${q}`, Buffer.from('x'))
    expect([r.status, s3Code(r)]).toEqual([404, 'NoSuchUpload'])
  })

  test('a fresh part URL: 200 {presigned_url} that works; 400 for a part number out of range or a foreign address', async () => {
    const c = await create(srv.url, 'fresh/a.bin', 0)
    const r = await request(pmpuUrl(srv.url, 'fresh/a.bin', `/${c.upload_id}/parts/7`), {
      method: 'PUT',
      ...json({ physical_address: c.physical_address }),
    })
    expect(r.status).toBe(200)
    expect(Object.keys(r.json<object>())).toEqual(['presigned_url'])
    const url = r.json<{ presigned_url: string }>().presigned_url
    expect(new URL(url).searchParams.get('partNumber')).toBe('7')
    const data = Buffer.from('the seventh part')
    const put = await putPart(url, data)
    expect([put.status, put.headers['etag']]).toEqual([200, `"${md5hex(data)}"`])
    for (const n of ['0', '10001']) {
      const bad = await request(pmpuUrl(srv.url, 'fresh/a.bin', `/${c.upload_id}/parts/${n}`), {
        method: 'PUT',
        ...json({ physical_address: c.physical_address }),
      })
      expect(bad.status).toBe(400)
    }
    const wrongPath = await request(
      pmpuUrl(srv.url, 'fresh/other.bin', `/${c.upload_id}/parts/1`),
      { method: 'PUT', ...json({ physical_address: c.physical_address }) },
    )
    expect([wrongPath.status, msg(wrongPath)]).toEqual([
      400,
      'invalid address signature: link address invalid',
    ])
    const outside = await request(pmpuUrl(srv.url, 'fresh/a.bin', `/${c.upload_id}/parts/1`), {
      method: 'PUT',
      ...json({ physical_address: 's3://elsewhere/x' }),
    })
    expect([outside.status, msg(outside)]).toEqual([
      400,
      'physical address must be relative to the storage namespace',
    ])
    const noBody = await request(pmpuUrl(srv.url, 'fresh/a.bin', `/${c.upload_id}/parts/1`), {
      method: 'PUT',
      ...json({}),
    })
    expect([noBody.status, msg(noBody)]).toEqual([
      400,
      'request body has an error: doesn\'t match schema: property "physical_address" is missing',
    ])
    const copy = await request(pmpuUrl(srv.url, 'fresh/a.bin', `/${c.upload_id}/parts/1/copy`), {
      method: 'PUT',
      ...json({ physical_address: c.physical_address }),
    })
    expect(copy.status).toBe(501)
  })
})

describe('complete', () => {
  test('200 ObjectStats with the multipart ETag; the bytes are linked; a retry answers the same; the address links again', async () => {
    const { data, parts } = threeParts('complete-1')
    const c = await create(srv.url, 'done/obj.bin', 3)
    const etags: string[] = []
    for (const i of [2, 0, 1]) {
      const r = await putPart(c.presigned_urls![i]!, parts[i]!)
      expect(r.status).toBe(200)
      etags[i] = String(r.headers['etag']).replace(/"/g, '')
    }
    const list = etags.map((etag, i) => ({ part_number: i + 1, etag }))
    const r = await complete(srv.url, 'done/obj.bin', c, list, {
      user_metadata: { who: 'lakectl' },
      content_type: 'application/x-parquet',
    })
    expect(r.status).toBe(200)
    const stats = r.json<Record<string, unknown>>()
    const etag = multipartEtag(parts.map(md5hex))
    expect(Object.keys(stats)).toEqual([
      'checksum',
      'content_type',
      'metadata',
      'mtime',
      'path',
      'path_type',
      'physical_address',
      'size_bytes',
    ])
    expect(stats).toMatchObject({
      checksum: etag,
      content_type: 'application/x-parquet',
      metadata: { who: 'lakectl' },
      path: 'done/obj.bin',
      path_type: 'object',
      physical_address: c.physical_address,
      size_bytes: data.length,
    })
    expect(etag).toMatch(/^[0-9a-f]{32}-3$/)
    expect(sha256(linkedBytes('done/obj.bin'))).toBe(sha256(data))
    expect(linkedEntry('done/obj.bin').sha256).toBe(sha256(data))
    // The parts are gone once joined.
    const dir = join(srv.dataDir, 'staging', 'repo1', 'pmpu', c.upload_id)
    expect(existsSync(join(dir, '1.part'))).toBe(false)
    const again = await complete(srv.url, 'done/obj.bin', c, list, {
      user_metadata: { who: 'lakectl' },
      content_type: 'application/x-parquet',
    })
    expect([again.status, again.json()]).toEqual([200, stats])
    const late = await putPart(c.presigned_urls![0]!, parts[0]!)
    expect([late.status, s3Code(late)]).toEqual([404, 'NoSuchUpload'])
    const other = await complete(srv.url, 'done/obj.bin', c, list.slice(0, 2))
    expect(other.status).toBe(404)
    // The address is a staged address like a presigned PUT's: the link route takes it, with the
    // multipart ETag the completion answered or with the object's MD5.
    for (const checksum of [etag, md5hex(data)]) {
      const link = await request(
        `${srv.url}/api/v1/repositories/repo1/branches/main/staging/backing?path=done/obj.bin`,
        {
          method: 'PUT',
          ...json({
            staging: { physical_address: c.physical_address },
            checksum,
            size_bytes: data.length,
          }),
        },
      )
      expect([link.status, link.json<{ checksum: string }>().checksum]).toEqual([200, checksum])
      expect(sha256(linkedBytes('done/obj.bin'))).toBe(sha256(data))
    }
  })

  test('400 for no parts, a descending list, a wrong ETag, a part never sent, a small part but the last; 413 over the limit', async () => {
    const { parts } = threeParts('complete-bad')
    const c = await create(srv.url, 'bad/obj.bin', 3)
    for (const [i, p] of parts.entries())
      expect((await putPart(c.presigned_urls![i]!, p)).status).toBe(200)
    const list = parts.map((p, i) => ({ part_number: i + 1, etag: md5hex(p) }))
    const none = await complete(srv.url, 'bad/obj.bin', c, [])
    expect([none.status, msg(none)]).toEqual([400, 'parts are required'])
    const desc = await complete(srv.url, 'bad/obj.bin', c, [list[1]!, list[0]!])
    expect([desc.status, msg(desc)]).toEqual([
      400,
      'The list of parts was not in ascending order. Parts must be ordered by part number.',
    ])
    const wrong = await complete(srv.url, 'bad/obj.bin', c, [
      list[0]!,
      { part_number: 2, etag: md5hex(Buffer.from('nope')) },
      list[2]!,
    ])
    expect(wrong.status).toBe(400)
    expect(msg(wrong)).toMatch(/^One or more of the specified parts could not be found/)
    const missing = await complete(srv.url, 'bad/obj.bin', c, [
      list[0]!,
      list[1]!,
      { part_number: 4, etag: md5hex(Buffer.from('4')) },
    ])
    expect([missing.status, msg(missing)]).toEqual([400, wrong.json<{ message: string }>().message])
    const small = await complete(srv.url, 'bad/obj.bin', c, [
      list[0]!,
      list[2]!,
      { part_number: 5, etag: md5hex(Buffer.from('5')) },
    ])
    expect(small.status).toBe(400)
    expect(msg(small)).toMatch(
      /^Your proposed upload is smaller than the minimum allowed size: part 3 has 12345 bytes/,
    )
    const smallLast = await complete(srv.url, 'bad/obj.bin', c, [list[2]!])
    expect(smallLast.status).toBe(200) // one part: it is the last, any size
    const noParts = await request(pmpuUrl(srv.url, 'bad/obj.bin', `/${c.upload_id}`), {
      method: 'PUT',
      ...json({ physical_address: c.physical_address }),
    })
    expect([noParts.status, msg(noParts)]).toEqual([
      400,
      'request body has an error: doesn\'t match schema: property "parts" is missing',
    ])

    const tooSmall = await create(srv.url, 'bad/small.bin', 2)
    const tiny = [Buffer.from('tiny'), Buffer.from('last')]
    for (const [i, p] of tiny.entries()) await putPart(tooSmall.presigned_urls![i]!, p)
    const ts = await complete(
      srv.url,
      'bad/small.bin',
      tooSmall,
      tiny.map((p, i) => ({ part_number: i + 1, etag: md5hex(p) })),
    )
    expect(ts.status).toBe(400)
    expect(msg(ts)).toMatch(
      /^Your proposed upload is smaller than the minimum allowed size: part 1 has 4 bytes/,
    )

    const huge = await create(srv.url, 'bad/huge.bin', 3)
    const six = [0, 1, 2].map((i) => seededBytes(6 * MIB, `six-${i}`))
    for (const [i, p] of six.entries())
      expect((await putPart(huge.presigned_urls![i]!, p)).status).toBe(200)
    const h = await complete(
      srv.url,
      'bad/huge.bin',
      huge,
      six.map((p, i) => ({ part_number: i + 1, etag: md5hex(p) })),
    )
    expect([h.status, msg(h)]).toEqual([
      413,
      `the parts hold ${18 * MIB} bytes, over the limit of ${MAX_UPLOAD}`,
    ])
  })

  test('404 for an unknown upload id or one of another address; 400 for an address of another path', async () => {
    const a = await create(srv.url, 'two/a.bin', 1)
    const b = await create(srv.url, 'two/a.bin', 1)
    await putPart(a.presigned_urls![0]!, Buffer.from('a'))
    const list = [{ part_number: 1, etag: md5hex(Buffer.from('a')) }]
    const crossed = await complete(srv.url, 'two/a.bin', { ...a, upload_id: b.upload_id }, list)
    expect(crossed.status).toBe(404)
    const unknown = await complete(srv.url, 'two/a.bin', { ...a, upload_id: 'not-an-id' }, list)
    expect(unknown.status).toBe(404)
    const elsewhere = makeSignedAddress(
      SIGNING,
      { repository: 'repo1', branch: 'main', path: 'two/b.bin' },
      Date.now(),
    )
    const foreign = await complete(
      srv.url,
      'two/a.bin',
      { ...a, physical_address: `local://repo1/${elsewhere}` },
      list,
    )
    expect([foreign.status, msg(foreign)]).toEqual([
      400,
      'invalid address signature: link address invalid',
    ])
  })
})

describe('abort', () => {
  test('204; afterwards parts, completion and abort answer 404, and the parts are gone from disk', async () => {
    const c = await create(srv.url, 'gone/a.bin', 2)
    expect((await putPart(c.presigned_urls![0]!, seededBytes(5 * MIB, 'abort'))).status).toBe(200)
    const dir = join(srv.dataDir, 'staging', 'repo1', 'pmpu', c.upload_id)
    expect(existsSync(join(dir, '1.part'))).toBe(true)
    const r = await abort(srv.url, 'gone/a.bin', c)
    expect(r.status).toBe(204)
    expect(r.body.length).toBe(0)
    expect(existsSync(dir)).toBe(false)
    const late = await putPart(c.presigned_urls![1]!, Buffer.from('late'))
    expect([late.status, s3Code(late)]).toEqual([404, 'NoSuchUpload'])
    expect(existsSync(dir)).toBe(false)
    const done = await complete(srv.url, 'gone/a.bin', c, [
      { part_number: 1, etag: md5hex(Buffer.from('x')) },
    ])
    expect(done.status).toBe(404)
    expect((await abort(srv.url, 'gone/a.bin', c)).status).toBe(404)
    const noBody = await request(pmpuUrl(srv.url, 'gone/a.bin', `/${c.upload_id}`), {
      method: 'DELETE',
      ...json({}),
    })
    expect(noBody.status).toBe(400)
  })

  test('a part whose body was still arriving when the upload was aborted: 404 NoSuchUpload, and the folder stays gone', async () => {
    const c = await create(srv.url, 'gone/racing.bin', 1)
    const dir = join(srv.dataDir, 'staging', 'repo1', 'pmpu', c.upload_id)
    const tmp = srv.app.engine.layout.tmp
    const before = new Set(readdirSync(tmp))
    const data = seededBytes(4 * MIB, 'abort-mid-body')
    const body = new PassThrough()
    const put = request(c.presigned_urls![0]!, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length },
      body,
    })
    body.write(data.subarray(0, 2 * MIB))
    // Gate: the part's temp file holds bytes, so the upload was checked and found before the abort.
    await waitFor('the part body on disk', () =>
      readdirSync(tmp).some(
        (n) => !before.has(n) && n.startsWith('w-') && statSync(join(tmp, n)).size > 0,
      ),
    )
    expect((await abort(srv.url, 'gone/racing.bin', c)).status).toBe(204)
    expect(existsSync(dir)).toBe(false)
    body.end(data.subarray(2 * MIB))
    const r = await put
    expect([r.status, s3Code(r)]).toEqual([404, 'NoSuchUpload'])
    expect(existsSync(dir)).toBe(false)
    expect(readdirSync(tmp).filter((n) => !before.has(n))).toEqual([])
  })
})

describe('sweep rules (the clock passed in)', () => {
  const T = 1000 // s
  let mp: StagingMultipart
  let pmpuDir: string
  beforeAll(() => {
    const { config, layout, stores, state, uploads, pool, log } = srv.app.engine
    const lakefs = config.lakefs!
    // The data directory's store (this server runs with FERRY_STORAGE=fs).
    const staging = stores.staging as FsObjectStore
    const store = new StagingStore({
      config: lakefs,
      objects: staging,
      uploads,
      pool,
      maxUploadBytes: MAX_UPLOAD,
    })
    mp = new StagingMultipart({
      config: lakefs,
      objects: staging,
      uploads,
      pool,
      store,
      locker: state.locker,
      lockTtlMs: 10_000,
      maxUploadBytes: MAX_UPLOAD,
      idleTtlMs: 600 * T,
      log,
    })
    pmpuDir = join(layout.staging, 'repo1', 'pmpu')
  })
  /** An upload folder made by hand, its files' mtimes set to `at` (ms). */
  const folder = (id: string, files: Record<string, string>, at: number) => {
    const dir = join(pmpuDir, id)
    mkdirSync(dir, { recursive: true })
    for (const [name, text] of Object.entries(files)) {
      writeFileSync(join(dir, name), text)
      utimesSync(join(dir, name), new Date(at), new Date(at))
    }
    return dir
  }
  const manifest = (id: string, createdMs: number) =>
    JSON.stringify({
      v: 1,
      uploadId: id,
      repository: 'repo1',
      branch: 'main',
      path: `sweep/${id}`,
      relative: 'data/x',
      createdMs,
    })

  test('no upload.json: kept while its newest part is under a minute old, then removed', async () => {
    const t0 = Date.now()
    const dir = folder('a'.repeat(32), { '1.part': 'old', '2.part': 'new' }, t0 - 120 * T)
    utimesSync(join(dir, '2.part'), new Date(t0), new Date(t0))
    await mp.sweep(t0 + 30 * T)
    expect(existsSync(dir)).toBe(true)
    await mp.sweep(t0 + 61 * T)
    expect(existsSync(dir)).toBe(false)
  })

  test('an empty folder goes only when sweeps over a minute apart find it empty, with nothing between', async () => {
    const t0 = Date.now()
    const dir = folder('b'.repeat(32), {}, t0)
    await mp.sweep(t0 + 3600 * T)
    expect(existsSync(dir)).toBe(true)
    await mp.sweep(t0 + 3630 * T)
    expect(existsSync(dir)).toBe(true)
    await mp.sweep(t0 + 3661 * T)
    expect(existsSync(dir)).toBe(false)
    // Something landed between two sweeps (a create): the minute starts again once it is empty.
    const x = t0 + 5000 * T
    const id = 'c'.repeat(32)
    const other = folder(id, {}, x)
    await mp.sweep(x)
    folder(id, { 'upload.json': manifest(id, x) }, x)
    await mp.sweep(x + 61 * T)
    expect(existsSync(join(other, 'upload.json'))).toBe(true)
    rmSync(join(other, 'upload.json'))
    await mp.sweep(x + 122 * T)
    expect(existsSync(other)).toBe(true)
    await mp.sweep(x + 183 * T)
    expect(existsSync(other)).toBe(false)
  })

  test('an upload is idle since its newest object; a completed one since its completion', async () => {
    const t0 = Date.now()
    const id = 'd'.repeat(32)
    const dir = folder(
      id,
      { 'upload.json': manifest(id, t0 - 900 * T), '1.part': 'p1' },
      t0 - 900 * T,
    )
    utimesSync(join(dir, '1.part'), new Date(t0), new Date(t0))
    await mp.sweep(t0 + 599 * T)
    expect(existsSync(dir)).toBe(true)
    await mp.sweep(t0 + 601 * T)
    expect(existsSync(dir)).toBe(false)
    const done = folder(
      'e'.repeat(32),
      { 'upload.json': manifest('e'.repeat(32), t0), 'completed.json': '{}' },
      t0,
    )
    await mp.sweep(t0 + 599 * T)
    expect(existsSync(done)).toBe(true)
    await mp.sweep(t0 + 601 * T)
    expect(existsSync(done)).toBe(false)
  })
})

describe('sweeper', () => {
  test('an upload left idle past the session TTL is removed: its part URLs answer NoSuchUpload', async () => {
    const s = await startFerry({
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_CONFIG: configFile('sweep.json', LAKEFS),
      FERRY_SESSION_TTL_SEC: '1',
      FERRY_SWEEP_INTERVAL_SEC: '1',
    })
    try {
      const c = await create(s.url, 'idle/a.bin', 2)
      expect((await putPart(c.presigned_urls![0]!, Buffer.from('first'))).status).toBe(200)
      const dir = join(s.dataDir, 'staging', 'repo1', 'pmpu', c.upload_id)
      const until = Date.now() + 15_000
      while (existsSync(dir) && Date.now() < until) await new Promise((r) => setTimeout(r, 200))
      expect(existsSync(dir)).toBe(false)
      const r = await putPart(c.presigned_urls![1]!, Buffer.from('second'))
      expect([r.status, s3Code(r)]).toEqual([404, 'NoSuchUpload'])
    } finally {
      await s.close()
      removeDir(s.dataDir)
    }
  })
})
