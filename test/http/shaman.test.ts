/**
 * The Shaman front door over real HTTP, one Ferry on a real redis-server: every status of the
 * file, requirements and checkout routes, bad paths and headers, claims and garbage collection.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  utimesSync,
} from 'node:fs'
import { request as rawRequest, type IncomingHttpHeaders } from 'node:http'
import { dirname, join, relative } from 'node:path'
import { Readable } from 'node:stream'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { RawConn } from '../helpers/raw-http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'
import { casBlobPath, shamanStatus, waitShamanStatus } from '../helpers/shaman.js'
import { sleep, waitFor } from '../helpers/wait.js'
import { GC_LOCK_KEY } from '../../src/core/cas/cas-store.js'
import { CHECKOUT_MARK } from '../../src/core/cas/checkout.js'

const API = '/api/v3/shaman'
let srv: TestServer
let base: string

beforeAll(async () => {
  srv = await startFerry({
    REDIS_URL: testRedisUrl(),
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_MAX_JSON_BYTES: String(16 * 1024 * 1024),
    FERRY_SHAMAN_GC_INTERVAL_SEC: '0',
  })
  base = srv.url + API
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
})

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  /** Bytes of the request body written when the answer arrived. */
  readonly sentWhenAnswered: number
}

interface Sending {
  readonly answer: Promise<Answer>
  /** Resolves when the whole request body was handed to the socket. */
  readonly sent: Promise<void>
  /** Resolves when the body stopped at `gateAt`. */
  readonly gated: Promise<void>
  release(): void
  abort(): void
}

/**
 * POSTs `body` to `url` as a stream of 64 KiB pieces, pausing after `gateAt` bytes until
 * `release()`. `contentLength: null` sends it chunked.
 */
function send(
  url: string,
  body: Buffer,
  opts: { headers?: Record<string, string>; gateAt?: number; contentLength?: number | null } = {},
): Sending {
  let sentBytes = 0
  let releaseGate = () => {}
  let reachGate = () => {}
  const gated = new Promise<void>((r) => (reachGate = r))
  const gate = new Promise<void>((r) => (releaseGate = r))
  const gateAt = opts.gateAt ?? Infinity
  const stream = Readable.from(
    (async function* () {
      for (let off = 0; off < body.length; ) {
        if (off >= gateAt) {
          reachGate()
          await gate
        }
        const end = Math.min(body.length, off + 64 * 1024, off < gateAt ? gateAt : Infinity)
        sentBytes = end
        yield body.subarray(off, end)
        off = end
      }
      reachGate()
    })(),
    { objectMode: false },
  )
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    ...opts.headers,
  }
  if (opts.contentLength !== null) headers['Content-Length'] = opts.contentLength ?? body.length
  let req!: ReturnType<typeof rawRequest>
  const sent = new Promise<void>((resolve, reject) => {
    req = rawRequest(url, { method: 'POST', headers, agent: false })
    req.on('finish', resolve)
    req.on('error', reject)
  })
  sent.catch(() => {})
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const sentWhenAnswered = sentBytes
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          sentWhenAnswered,
        }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  answer.catch(() => {})
  stream.pipe(req)
  return { answer, sent, gated, release: () => releaseGate(), abort: () => req.destroy() }
}

const fileUrl = (sha: string, size: number | string) => `${base}/files/${sha}/${size}`
const status = (sha: string, size: number) => shamanStatus(base, sha, size)
const waitStatus = (sha: string, size: number, want: string, timeoutMs = 5000) =>
  waitShamanStatus(base, sha, size, want, timeoutMs)

async function upload(data: Buffer, headers: Record<string, string> = {}) {
  return request(fileUrl(sha256(data), data.length), {
    method: 'POST',
    body: data,
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
  })
}

const json = (body: unknown) => ({
  method: 'POST',
  body: JSON.stringify(body),
  headers: { 'Content-Type': 'application/json' },
})
const errorOf = (r: { json<T>(): T }) => r.json<{ code: number; message: string }>()
const tmpFiles = () => readdirSync(join(srv.dataDir, 'tmp'))

describe('GET and POST /files/{checksum}/{filesize}', () => {
  test('unknown → POST stores it (204, no body) → stored; the blob holds the exact bytes', async () => {
    const data = seededBytes(300_000, 'basic')
    const sha = sha256(data)
    const r0 = await request(fileUrl(sha, data.length))
    expect(r0.status).toBe(200)
    expect(r0.headers['content-type']).toMatch(/^application\/json/)
    expect(r0.json()).toEqual({ status: 'unknown' })
    const r = await upload(data, {
      'X-Shaman-Can-Defer-Upload': 'True',
      'X-Shaman-Original-Filename': '=?utf-8?q?scene=2Eblend?=',
    })
    expect(r.status).toBe(204)
    expect(r.body.length).toBe(0)
    expect(await status(sha, data.length)).toBe('stored')
    expect(readFileSync(casBlobPath(srv.dataDir, sha, data.length))).toEqual(data)
    expect(tmpFiles()).toEqual([])
  })

  test('the same bytes again answer 208 and keep the one copy', async () => {
    const data = seededBytes(1000, 'again')
    expect((await upload(data)).status).toBe(204)
    const ino = statSync(casBlobPath(srv.dataDir, sha256(data), 1000)).ino
    const r = await upload(data)
    expect(r.status).toBe(208)
    expect(r.body.length).toBe(0)
    expect(statSync(casBlobPath(srv.dataDir, sha256(data), 1000)).ino).toBe(ino)
  })

  test('a 0-byte file is stored (sha256 of nothing)', async () => {
    const sha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    expect(sha256(Buffer.alloc(0))).toBe(sha)
    const r = await request(fileUrl(sha, 0), {
      method: 'POST',
      body: Buffer.alloc(0),
      headers: { 'Content-Length': 0 },
    })
    expect(r.status).toBe(204)
    expect(statSync(casBlobPath(srv.dataDir, sha, 0)).size).toBe(0)
    expect(await status(sha, 0)).toBe('stored')
  })

  test('208 for a stored file reaches a client still sending; the connection stays usable', async () => {
    const data = seededBytes(2 * 1024 * 1024, 'early')
    expect((await upload(data)).status).toBe(204)
    const conn = await RawConn.open(base)
    const url = fileUrl(sha256(data), data.length)
    await conn.head('POST', url, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': data.length,
      'X-Shaman-Can-Defer-Upload': 'True',
    })
    await conn.writeBody(data.subarray(0, 128 * 1024))
    const a = await conn.answer()
    expect(a.status).toBe(208)
    expect(a.body.length).toBe(0)
    // The client finishes sending; the server reads it away and takes the next request.
    await conn.writeBody(data.subarray(128 * 1024))
    await conn.head('GET', url, {})
    const next = await conn.answer()
    expect(next.status).toBe(200)
    expect(JSON.parse(next.body.toString())).toEqual({ status: 'stored' })
    expect(conn.closed).toBe(false)
    conn.close()
  })

  test('208 for a small body comes once the body is in: a proxy closing on an early answer cannot lose it', async () => {
    // Through haproxy an answer sent while the client was still sending was lost now and then
    // ("socket hang up"): a body of up to 1 MiB is now read to its end before the 208.
    const data = seededBytes(64 * 1024, 'small-early')
    expect((await upload(data)).status).toBe(204)
    const conn = await RawConn.open(base)
    const url = fileUrl(sha256(data), data.length)
    await conn.head('POST', url, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': data.length,
    })
    await conn.writeBody(data.subarray(0, 16 * 1024))
    await sleep(400)
    expect(conn.hasAnswer()).toBe(false)
    await conn.writeBody(data.subarray(16 * 1024))
    const a = await conn.answer()
    expect(a.status).toBe(208)
    await conn.head('GET', url, {})
    const next = await conn.answer()
    expect(next.status).toBe(200)
    expect(conn.closed).toBe(false)
    conn.close()
  })

  test('a corrupted body answers 417 (checksum) and stores nothing', async () => {
    const data = seededBytes(500_000, 'corrupt')
    const sha = sha256(data)
    const bad = Buffer.from(data)
    bad[1234] = bad[1234]! ^ 1
    const r = await request(fileUrl(sha, data.length), { method: 'POST', body: bad })
    expect(r.status).toBe(417)
    expect(errorOf(r)).toEqual({
      code: 417,
      message: `file SHA256 mismatched, declared ${sha} but received ${sha256(bad)}`,
    })
    expect(existsSync(casBlobPath(srv.dataDir, sha, data.length))).toBe(false)
    expect(await status(sha, data.length)).toBe('unknown')
    expect(tmpFiles()).toEqual([])
  })

  test('size is checked before the checksum: Content-Length ≠ filesize is 417 before reading', async () => {
    const data = seededBytes(1000, 'cl')
    const sha = sha256(data)
    const r = await request(fileUrl(sha, 999), { method: 'POST', body: data })
    expect(r.status).toBe(417)
    expect(errorOf(r)).toEqual({
      code: 417,
      message: 'file size mismatched, declared 999 but received 1000 bytes',
    })
    const r2 = await request(fileUrl(sha, 1001), { method: 'POST', body: data })
    expect(errorOf(r2)).toEqual({
      code: 417,
      message: 'file size mismatched, declared 1001 but received 1000 bytes',
    })
    expect(existsSync(casBlobPath(srv.dataDir, sha, 999))).toBe(false)
    expect(existsSync(casBlobPath(srv.dataDir, sha, 1001))).toBe(false)
  })

  test('a chunked body shorter than filesize is 417 with the count received; nothing stored', async () => {
    const data = seededBytes(300_000, 'short')
    const s = send(fileUrl(sha256(data), 300_001), data, { contentLength: null })
    const a = await s.answer
    expect(a.status).toBe(417)
    expect(JSON.parse(a.body.toString())).toEqual({
      code: 417,
      message: 'file size mismatched, declared 300001 but received 300000 bytes',
    })
    expect(existsSync(casBlobPath(srv.dataDir, sha256(data), 300_001))).toBe(false)
  })

  test('a chunked body longer than filesize stops at the excess: 417, nothing stored', async () => {
    const data = seededBytes(700_000, 'long')
    const declared = 200_000
    const s = send(fileUrl(sha256(data.subarray(0, declared)), declared), data, {
      contentLength: null,
    })
    const a = await s.answer
    expect(a.status).toBe(417)
    const e = JSON.parse(a.body.toString()) as { code: number; message: string }
    expect(e.code).toBe(417)
    expect(e.message).toMatch(/^file size mismatched, declared 200000 but received \d+ bytes$/)
    expect(Number(/received (\d+)/.exec(e.message)![1])).toBeGreaterThan(declared)
    expect(existsSync(casBlobPath(srv.dataDir, sha256(data.subarray(0, declared)), declared))).toBe(
      false,
    )
    await waitFor('the temp file to go', () => tmpFiles().length === 0, {
      timeoutMs: 2000,
      everyMs: 10,
    })
  })

  test('425 for a deferrable duplicate of an upload in flight (any ParseBool spelling); others upload in parallel and the first is cut short with 208', async () => {
    const data = seededBytes(1024 * 1024, 'defer')
    const sha = sha256(data)
    const url = fileUrl(sha, data.length)
    const first = await RawConn.open(base)
    await first.head('POST', url, {
      'Content-Length': data.length,
      'X-Shaman-Can-Defer-Upload': 'False',
    })
    await first.writeBody(data.subarray(0, 256 * 1024))
    await waitStatus(sha, data.length, 'uploading')
    for (const v of ['True', 'TRUE', 'true', '1', 't', 'T', 'tRUE']) {
      const r = await request(url, {
        method: 'POST',
        body: data,
        headers: { 'X-Shaman-Can-Defer-Upload': v },
      })
      expect([v, r.status, r.body.length]).toEqual([v, 425, 0])
    }
    expect(first.hasAnswer()).toBe(false)
    // Not deferrable: it goes ahead, stores the object, and the first upload is cut short.
    const second = await request(url, {
      method: 'POST',
      body: data,
      headers: { 'X-Shaman-Can-Defer-Upload': 'False' },
    })
    expect(second.status).toBe(204)
    const a = await first.answer()
    expect(a.status).toBe(208)
    await first.writeBody(data.subarray(256 * 1024))
    await first.head('GET', url, {})
    expect((await first.answer()).status).toBe(200)
    first.close()
    expect(readFileSync(casBlobPath(srv.dataDir, sha, data.length))).toEqual(data)
    expect(await status(sha, data.length)).toBe('stored')
  })

  test('a client that drops mid-upload releases its claim at once; its temp file goes', async () => {
    const data = seededBytes(1024 * 1024, 'drop')
    const sha = sha256(data)
    const s = send(fileUrl(sha, data.length), data, { gateAt: 256 * 1024 })
    await s.gated
    await waitStatus(sha, data.length, 'uploading')
    s.abort()
    // The claim would otherwise live 30 s (the default lock lifetime).
    expect(await waitStatus(sha, data.length, 'unknown', 2000)).toBeLessThan(2000)
    await waitFor('the temp file to go', () => tmpFiles().length === 0, {
      timeoutMs: 2000,
      everyMs: 20,
    })
    expect(existsSync(casBlobPath(srv.dataDir, sha, data.length))).toBe(false)
  })

  const okSha = 'a'.repeat(64)
  test.each([
    ['short checksum', 'abc', '3'],
    ['65 hex digits', 'a'.repeat(65), '3'],
    ['uppercase checksum', 'A'.repeat(64), '3'],
    ['non-hex checksum', 'g'.repeat(64), '3'],
    ['dot-dot checksum', '..', '3'],
    ['encoded dot-dot', '%2e%2e', '3'],
    ['negative size', okSha, '-1'],
    ['fractional size', okSha, '1.5'],
    ['word size', okSha, 'abc'],
    ['empty size', okSha, ''],
    ['huge size', okSha, '99999999999999999'],
    ['hex size', okSha, '0x10'],
  ])('%s is 400 Error for GET and POST', async (_name, sha, size) => {
    for (const method of ['GET', 'POST']) {
      const r = await request(fileUrl(sha, size), {
        method,
        ...(method === 'POST' ? { body: 'abc' } : {}),
      })
      expect([method, r.status]).toEqual([method, 400])
      expect(errorOf(r).code).toBe(400)
      expect(typeof errorOf(r).message).toBe('string')
    }
  })

  test.each([
    ['X-Shaman-Can-Defer-Upload', 'yes'],
    ['X-Shaman-Can-Defer-Upload', ''],
    ['X-Shaman-Original-Filename', '=?iso-8859-1?q?caf=E9?='],
    ['X-Shaman-Original-Filename', '=?utf-8?b?@@@@?='],
    ['X-Shaman-Original-Filename', '=?utf-8?q?=C3?='],
  ])('%s: %j is 400 Error and stores nothing', async (name, value) => {
    const data = seededBytes(100, `hdr-${name}-${value}`)
    const r = await upload(data, { [name]: value })
    expect(r.status).toBe(400)
    expect(errorOf(r).code).toBe(400)
    expect(existsSync(casBlobPath(srv.dataDir, sha256(data), 100))).toBe(false)
  })

  test('a filesize over the upload limit is 413 Error', async () => {
    const r = await request(fileUrl(okSha, String(100 * 1024 ** 4)), { method: 'POST', body: 'x' })
    expect(r.status).toBe(413)
    expect(errorOf(r).code).toBe(413)
  })

  test('other methods are 405 with Allow; unknown routes 404; both in the Error shape', async () => {
    const r = await request(fileUrl(okSha, 3), { method: 'PUT', body: 'abc' })
    expect(r.status).toBe(405)
    expect(r.headers['allow']).toBe('GET, POST')
    expect(errorOf(r).code).toBe(405)
    const r2 = await request(`${base}/checkout/requirements`)
    expect(r2.status).toBe(405)
    expect(r2.headers['allow']).toBe('POST')
    for (const p of ['/nope', '/files', `/files/${okSha}`, `/files/${okSha}/3/x`, '']) {
      const r3 = await request(`${base}${p}`)
      expect([p, r3.status, errorOf(r3).code]).toEqual([p, 404, 404])
    }
  })
})

describe('POST /checkout/requirements', () => {
  test('answers the files not stored (unknown / uploading), first path wins for duplicates, and touches the stored ones', async () => {
    const stored = seededBytes(5000, 'req-stored')
    expect((await upload(stored)).status).toBe(204)
    const old = new Date(Date.now() - 5 * 24 * 3600_000)
    utimesSync(casBlobPath(srv.dataDir, sha256(stored), 5000), old, old)
    const inflight = seededBytes(1024 * 1024, 'req-inflight')
    const s = send(fileUrl(sha256(inflight), inflight.length), inflight, { gateAt: 128 * 1024 })
    await s.gated
    await waitStatus(sha256(inflight), inflight.length, 'uploading')
    const unknownA = seededBytes(10, 'req-a')
    const unknownB = seededBytes(11, 'req-b')
    const spec = (b: Buffer, path: string) => ({ sha: sha256(b), size: b.length, path })
    const r = await request(
      `${base}/checkout/requirements`,
      json({
        files: [
          spec(unknownA, 'a.txt'),
          spec(stored, 'stored.bin'),
          spec(inflight, 'textures/in flight.png'),
          spec(unknownA, 'copy-of-a.txt'),
          spec(unknownB, 'ünïcödé/b.txt'),
          spec(stored, 'stored-again.bin'),
        ],
      }),
    )
    expect(r.status).toBe(200)
    expect(r.json()).toEqual({
      files: [
        { ...spec(unknownA, 'a.txt'), status: 'unknown' },
        { ...spec(inflight, 'textures/in flight.png'), status: 'uploading' },
        { ...spec(unknownB, 'ünïcödé/b.txt'), status: 'unknown' },
      ],
    })
    expect(
      Date.now() - statSync(casBlobPath(srv.dataDir, sha256(stored), 5000)).mtimeMs,
    ).toBeLessThan(60_000)
    s.abort()
  })

  test('nothing needed answers an empty list, never null', async () => {
    const r = await request(`${base}/checkout/requirements`, json({ files: [] }))
    expect(r.status).toBe(200)
    expect(r.json()).toEqual({ files: [] })
  })

  const sha = 'b'.repeat(64)
  test.each([
    ['not JSON', '{"files": ['],
    ['an array', []],
    ['no files', {}],
    ['files not an array', { files: 'x' }],
    ['an entry not an object', { files: [1] }],
    ['missing path', { files: [{ sha, size: 1 }] }],
    ['missing sha', { files: [{ size: 1, path: 'a' }] }],
    ['missing size', { files: [{ sha, path: 'a' }] }],
    ['uppercase sha', { files: [{ sha: 'B'.repeat(64), size: 1, path: 'a' }] }],
    ['short sha', { files: [{ sha: 'abc', size: 1, path: 'a' }] }],
    ['negative size', { files: [{ sha, size: -1, path: 'a' }] }],
    ['fractional size', { files: [{ sha, size: 1.5, path: 'a' }] }],
    ['string size', { files: [{ sha, size: '1', path: 'a' }] }],
    ['path not a string', { files: [{ sha, size: 1, path: 7 }] }],
    ['absolute path', { files: [{ sha, size: 1, path: '/etc/passwd' }] }],
    ['dot-dot path', { files: [{ sha, size: 1, path: '../x' }] }],
  ])('%s is 400 Error', async (_name, body) => {
    const r = await request(
      `${base}/checkout/requirements`,
      typeof body === 'string' ? { method: 'POST', body } : json(body),
    )
    expect(r.status).toBe(400)
    expect(errorOf(r).code).toBe(400)
  })

  test('more than 100,000 files is 400 Error', async () => {
    const files = Array.from({ length: 100_001 }, (_, i) => ({ sha, size: i, path: 'p' }))
    const r = await request(`${base}/checkout/requirements`, json({ files }))
    expect(r.status).toBe(400)
    expect(errorOf(r).message).toMatch(/at most 100000/)
  })
})

describe('POST /checkout/create', () => {
  const spec = (b: Buffer, path: string) => ({ sha: sha256(b), size: b.length, path })
  const a = seededBytes(3000, 'co-a')
  const b = seededBytes(3001, 'co-b')
  beforeAll(async () => {
    expect((await upload(a)).status).toBe(204)
    expect((await upload(b)).status).toBe(204)
  })
  const create = (body: unknown) => request(`${base}/checkout/create`, json(body))

  test('builds a tree of relative symlinks and answers its path; the same path again is 409', async () => {
    const files = [
      spec(a, 'scene.blend'),
      spec(b, 'textures/sub dir/á hausinn á þér.png'),
      spec(a, 'много ликова.py'),
      spec(a, 'scene.blend'),
    ]
    const r = await create({ checkoutPath: 'Sprite-Fright/scene/job-1', files })
    expect(r.status).toBe(200)
    expect(r.json()).toEqual({ checkoutPath: 'Sprite-Fright/scene/job-1' })
    const root = join(srv.dataDir, 'checkouts', 'Sprite-Fright/scene/job-1')
    const link = join(root, 'textures/sub dir/á hausinn á þér.png')
    expect(lstatSync(link).isSymbolicLink()).toBe(true)
    // Relative, from the link's folder to the blob's file.
    expect(readlinkSync(link)).toBe(
      relative(dirname(link), casBlobPath(srv.dataDir, sha256(b), 3001)),
    )
    expect(readFileSync(link)).toEqual(b)
    expect(readFileSync(join(root, 'scene.blend'))).toEqual(a)
    // The files, and the empty mark that tells a checkout from the folders above it.
    expect(readdirSync(root).sort()).toEqual(
      ['scene.blend', 'textures', 'много ликова.py', CHECKOUT_MARK].sort(),
    )
    expect(statSync(join(root, CHECKOUT_MARK)).size).toBe(0)
    expect(readdirSync(join(srv.dataDir, 'checkouts', 'Sprite-Fright/scene'))).toEqual(['job-1'])
    const again = await create({ checkoutPath: 'Sprite-Fright/scene/job-1', files })
    expect(again.status).toBe(409)
    expect(errorOf(again).code).toBe(409)
  })

  test('an empty file list makes an empty directory', async () => {
    const r = await create({ checkoutPath: 'empty-job', files: [] })
    expect(r.status).toBe(200)
    expect(readdirSync(join(srv.dataDir, 'checkouts', 'empty-job'))).toEqual([CHECKOUT_MARK])
  })

  test('a file that is not stored is 424 and nothing is created', async () => {
    const r = await create({
      checkoutPath: 'missing-job',
      files: [spec(a, 'a'), { sha: 'c'.repeat(64), size: 12, path: 'gone.bin' }],
    })
    expect(r.status).toBe(424)
    expect(errorOf(r)).toMatchObject({
      code: 424,
      message: expect.stringContaining('unknown files requested in checkout'),
    })
    expect(existsSync(join(srv.dataDir, 'checkouts', 'missing-job'))).toBe(false)
  })

  test.each([
    '../escape',
    '/absolute',
    'a/../../etc',
    'a/..',
    '..',
    '.',
    'with\\backslash',
    'c:/windows',
    'nul\u0000byte',
    'blah?',
    'blah*',
    'a;b',
    'a{b}',
    'a//b',
    '',
    '.ferry-co-123456',
  ])('checkoutPath %j is 400', async (checkoutPath) => {
    const before = readdirSync(join(srv.dataDir, 'checkouts')).sort()
    const r = await create({ checkoutPath, files: [spec(a, 'x')] })
    expect(r.status).toBe(400)
    expect(errorOf(r).code).toBe(400)
    expect(readdirSync(join(srv.dataDir, 'checkouts')).sort()).toEqual(before)
    expect(existsSync(join(srv.dataDir, 'escape'))).toBe(false)
  })

  test.each([
    ['escaping file path', [spec(a, '../../../../etc/x')]],
    ['absolute file path', [spec(a, '/etc/passwd')]],
    ['dot segment', [spec(a, 'a/./b')]],
    ['backslash', [spec(a, 'a\\b')]],
    ['NUL', [spec(a, 'a\u0000')]],
    ['one path, two contents', [spec(a, 'same'), spec(b, 'same')]],
    ['a file that is also a folder', [spec(a, 'dir'), spec(b, 'dir/file')]],
  ])('%s is 400 and nothing is created', async (_name, files) => {
    const r = await create({ checkoutPath: 'bad-files-job', files })
    expect(r.status).toBe(400)
    expect(existsSync(join(srv.dataDir, 'checkouts', 'bad-files-job'))).toBe(false)
  })

  test('checkoutPath missing or not a string is 400; files missing is 400', async () => {
    expect((await create({ files: [] })).status).toBe(400)
    expect((await create({ checkoutPath: 5, files: [] })).status).toBe(400)
    expect((await create({ checkoutPath: 'x' })).status).toBe(400)
  })

  test("a checkout path through another checkout's symlink is refused and writes nothing there", async () => {
    expect((await create({ checkoutPath: 'host', files: [spec(a, 'file.bin')] })).status).toBe(200)
    const r = await create({ checkoutPath: 'host/file.bin/inner', files: [spec(b, 'x')] })
    expect(r.status).toBe(409)
    expect(readFileSync(join(srv.dataDir, 'checkouts', 'host', 'file.bin'))).toEqual(a)
    expect(readdirSync(join(srv.dataDir, 'checkouts', 'host')).sort()).toEqual(
      [CHECKOUT_MARK, 'file.bin'].sort(),
    )
  })

  /** Every path below `dir` (relative), with symlink targets, to prove nothing changed. */
  const snapshot = (dir: string): string[] => {
    const out: string[] = []
    const walk = (d: string, rel: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`
        if (e.isDirectory()) walk(join(d, e.name), r)
        else out.push(e.isSymbolicLink() ? `${r} -> ${readlinkSync(join(d, e.name))}` : r)
      }
    }
    walk(dir, '')
    return out.sort()
  }

  test('a checkout inside another checkout (in a sub-folder or at its top) is 409 and writes nothing (issue 9.12)', async () => {
    const files = [spec(a, 'dir/scene.blend'), spec(b, 'top.bin')]
    expect((await create({ checkoutPath: 'co-base', files })).status).toBe(200)
    const base = join(srv.dataDir, 'checkouts', 'co-base')
    const before = snapshot(base)
    for (const checkoutPath of [
      'co-base/dir/nested',
      'co-base/dir',
      'co-base/new-folder/deeper',
      'co-base/x',
    ]) {
      const r = await create({ checkoutPath, files: [spec(b, 'other.bin')] })
      expect(r.status).toBe(409)
      expect(errorOf(r)).toMatchObject({
        code: 409,
        message: expect.stringContaining('"co-base" is a checkout'),
      })
    }
    expect(snapshot(base)).toEqual(before)
    expect(readFileSync(join(base, 'dir/scene.blend'))).toEqual(a)
  })

  test('a checkout that would contain an existing checkout is 409 and changes nothing', async () => {
    expect(
      (await create({ checkoutPath: 'outer/inner-job', files: [spec(a, 'x.bin')] })).status,
    ).toBe(200)
    const outer = join(srv.dataDir, 'checkouts', 'outer')
    const before = snapshot(outer)
    const r = await create({ checkoutPath: 'outer', files: [spec(b, 'y.bin')] })
    expect(r.status).toBe(409)
    expect(errorOf(r).message).toMatch(/holds other checkouts/)
    expect(snapshot(outer)).toEqual(before)
    // A sibling under the same plain folder is fine.
    expect(
      (await create({ checkoutPath: 'outer/second-job', files: [spec(b, 'y.bin')] })).status,
    ).toBe(200)
  })

  test('a file path using the reserved mark name is 400', async () => {
    const r = await create({ checkoutPath: 'reserved-files-job', files: [spec(a, CHECKOUT_MARK)] })
    expect(r.status).toBe(400)
    expect(existsSync(join(srv.dataDir, 'checkouts', 'reserved-files-job'))).toBe(false)
  })
})

describe('garbage collection on its timer', () => {
  test('an old unused blob goes; an old blob used by a checkout and one touched by requirements stay', async () => {
    const gc = await startFerry({
      FERRY_SHAMAN_GC_INTERVAL_SEC: '1',
      FERRY_SHAMAN_GC_MAX_AGE_SEC: '3600',
    })
    try {
      const g = gc.url + API
      const put = (d: Buffer) =>
        request(`${g}/files/${sha256(d)}/${d.length}`, { method: 'POST', body: d })
      const used = seededBytes(100, 'gc-used')
      const touched = seededBytes(101, 'gc-touched')
      const unused = seededBytes(102, 'gc-unused')
      for (const d of [used, touched, unused]) expect((await put(d)).status).toBe(204)
      expect(
        (
          await request(
            `${g}/checkout/create`,
            json({ checkoutPath: 'job', files: [{ sha: sha256(used), size: 100, path: 'u' }] }),
          )
        ).status,
      ).toBe(200)
      // Hold the GC lock while the blobs are back-dated, so no pass runs in between; the
      // requirements call touches its blob first and then waits for the lock.
      let held = await gc.app.engine.state.locker.tryAcquire(GC_LOCK_KEY, 30_000)
      for (let i = 0; held === null && i < 500; i++) {
        await sleep(10) // a pass is running right now: wait for it to end
        held = await gc.app.engine.state.locker.tryAcquire(GC_LOCK_KEY, 30_000)
      }
      expect(held).not.toBeNull()
      const old = new Date(Date.now() - 2 * 3600_000)
      for (const d of [used, touched, unused])
        utimesSync(casBlobPath(gc.dataDir, sha256(d), d.length), old, old)
      const pending = request(
        `${g}/checkout/requirements`,
        json({ files: [{ sha: sha256(touched), size: 101, path: 't' }] }),
      )
      const touchedPath = casBlobPath(gc.dataDir, sha256(touched), 101)
      await waitFor(
        'requirements to touch the blob',
        () => statSync(touchedPath).mtimeMs >= Date.now() - 3600_000,
        { timeoutMs: 4000 },
      )
      await held!.release()
      expect((await pending).json()).toEqual({ files: [] })
      await waitFor(
        'GC to remove the unused blob',
        () => !existsSync(casBlobPath(gc.dataDir, sha256(unused), 102)),
        { timeoutMs: 10_000, everyMs: 100 },
      )
      expect((await request(`${g}/files/${sha256(unused)}/102`)).json()).toEqual({
        status: 'unknown',
      })
      expect(readFileSync(join(gc.dataDir, 'checkouts', 'job', 'u'))).toEqual(used)
      expect(readFileSync(casBlobPath(gc.dataDir, sha256(touched), 101))).toEqual(touched)
    } finally {
      await gc.close()
      removeDir(gc.dataDir)
    }
  })
})
