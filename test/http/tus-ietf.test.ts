/**
 * The IETF draft "Resumable Uploads for HTTP" on the tus endpoint, interop 8 and 6, over raw
 * HTTP (the 104 read with Node's 'information' event) and with tus-js-client's
 * `protocol: 'ietf-draft-05'`.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { type IncomingHttpHeaders, request as httpRequest } from 'node:http'
import { Upload, type UploadOptions } from 'tus-js-client'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { startFerry, type TestServer } from '../helpers/server.js'

const PARTIAL = 'application/partial-upload'

let ferry: TestServer

beforeAll(async () => {
  ferry = await startFerry({
    REDIS_URL: testRedisUrl(),
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_TUS_MAX_SIZE: String(4 * 1024 * 1024),
  })
})

afterAll(async () => {
  await ferry?.close()
})

interface Answer {
  infos: { status: number; headers: IncomingHttpHeaders }[]
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** A request through node's client, keeping every 1xx it saw. */
function send(
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<Answer> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const infos: Answer['infos'] = []
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: u.pathname, method, headers },
      (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('end', () =>
          resolve({
            infos,
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString(),
          }),
        )
      },
    )
    req.on('information', (info) => infos.push({ status: info.statusCode, headers: info.headers }))
    req.on('error', reject)
    req.end(body)
  })
}

const files = () => `${ferry.url}/files/`

describe.each([8, 6])('interop %d', (v) => {
  const V = { 'Upload-Draft-Interop-Version': v }

  test('OPTIONS: Upload-Limit and Accept-Patch', async () => {
    const r = await send(files(), 'OPTIONS', V)
    expect(r.status).toBe(204)
    expect(r.headers['upload-limit']).toBe(`max-size=${4 * 1024 * 1024}`)
    expect(r.headers['accept-patch']).toBe(PARTIAL)
  })

  test('creation with ?0: a 104 (Location, Upload-Limit), 201; appends; ?1', async () => {
    const data = seededBytes(300_000, `ietf-${v}`)
    const first = data.subarray(0, 100_000)
    const c = await send(
      files(),
      'POST',
      { ...V, 'Upload-Complete': '?0', 'Content-Length': first.length },
      first,
    )
    expect(c.status).toBe(201)
    expect(c.infos.map((i) => i.status)).toEqual([104])
    const location = String(c.headers.location)
    expect(c.infos[0]!.headers['location']).toBe(location)
    expect(c.infos[0]!.headers['upload-draft-interop-version']).toBe(String(v))
    expect(String(c.infos[0]!.headers['upload-limit'])).toContain(`max-size=${4 * 1024 * 1024}`)
    expect(String(c.infos[0]!.headers['upload-limit'])).toContain(v === 6 ? 'expires=' : 'max-age=')
    expect(c.headers['upload-complete']).toBe('?0')
    expect(c.headers['upload-offset']).toBe(String(first.length))
    const h = await send(location, 'HEAD', V)
    expect(h.status).toBe(204)
    expect(h.headers['upload-offset']).toBe('100000')
    expect(h.headers['upload-complete']).toBe('?0')
    expect(h.headers['upload-length']).toBeUndefined()
    expect(h.headers['cache-control']).toBe('no-store')
    // A wrong offset: 409 problem+json with the right one.
    const bad = await send(
      location,
      'PATCH',
      {
        ...V,
        'Content-Type': PARTIAL,
        'Upload-Offset': 5,
        'Upload-Complete': '?0',
        'Content-Length': 1,
      },
      Buffer.from('x'),
    )
    expect(bad.status).toBe(409)
    expect(bad.headers['content-type']).toBe('application/problem+json')
    expect(bad.headers['upload-offset']).toBe('100000')
    const problem = JSON.parse(bad.body) as Record<string, unknown>
    expect(String(problem['type'])).toMatch(/mismatching-upload-offset$/)
    expect(problem['expected-offset']).toBe(100_000)
    expect(problem['provided-offset']).toBe(5)
    // 415 for another media type.
    const wrongType = await send(
      location,
      'PATCH',
      {
        ...V,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': 100_000,
        'Upload-Complete': '?0',
        'Content-Length': 1,
      },
      Buffer.from('x'),
    )
    expect(wrongType.status).toBe(415)
    const mid = data.subarray(100_000, 200_000)
    const p1 = await send(
      location,
      'PATCH',
      {
        ...V,
        'Content-Type': PARTIAL,
        'Upload-Offset': 100_000,
        'Upload-Complete': '?0',
        'Content-Length': mid.length,
      },
      mid,
    )
    expect(p1.status).toBe(204)
    expect(p1.headers['upload-offset']).toBe('200000')
    const last = data.subarray(200_000)
    const p2 = await send(
      location,
      'PATCH',
      {
        ...V,
        'Content-Type': PARTIAL,
        'Upload-Offset': 200_000,
        'Upload-Complete': '?1',
        'Content-Length': last.length,
      },
      last,
    )
    expect(p2.status).toBe(200)
    expect(p2.headers['upload-complete']).toBe('?1')
    expect(p2.headers['upload-offset']).toBe(String(data.length))
    const done = await send(location, 'HEAD', V)
    expect(done.headers['upload-complete']).toBe('?1')
    expect(done.headers['upload-length']).toBe(String(data.length))
    expect(sha256((await request(location)).body)).toBe(sha256(data))
    // An append to the completed upload.
    const again = await send(location, 'PATCH', {
      ...V,
      'Content-Type': PARTIAL,
      'Upload-Offset': data.length,
      'Upload-Complete': '?1',
      'Content-Length': 0,
    })
    expect(again.status).toBe(v === 6 ? 400 : 410)
    // tus cannot continue an upload the draft created.
    const tusHead = await request(location, {
      method: 'HEAD',
      headers: { 'Tus-Resumable': '1.0.0' },
    })
    expect(tusHead.status).toBe(409)
  })

  test('creation with the whole body and ?1: 201 complete at once', async () => {
    const data = Buffer.from(`all at once ${v}`)
    const c = await send(
      files(),
      'POST',
      { ...V, 'Upload-Complete': '?1', 'Content-Length': data.length },
      data,
    )
    expect(c.status).toBe(201)
    expect(c.headers['upload-complete']).toBe('?1')
    expect((await request(String(c.headers.location))).body.toString()).toBe(data.toString())
  })

  test('DELETE: 204, then 410', async () => {
    const c = await send(files(), 'POST', { ...V, 'Upload-Complete': '?0', 'Content-Length': 0 })
    const location = String(c.headers.location)
    expect((await send(location, 'DELETE', V)).status).toBe(204)
    expect((await send(location, 'HEAD', V)).status).toBe(410)
  })

  test('inconsistent lengths: 400 inconsistent-upload-length', async () => {
    const c = await send(files(), 'POST', {
      ...V,
      'Upload-Complete': '?0',
      'Upload-Length': 10,
      'Content-Length': 0,
    })
    const location = String(c.headers.location)
    expect((await send(location, 'HEAD', V)).headers['upload-length']).toBe('10')
    const r = await send(
      location,
      'PATCH',
      {
        ...V,
        'Content-Type': PARTIAL,
        'Upload-Offset': 0,
        'Upload-Complete': '?1',
        'Content-Length': 4,
      },
      Buffer.from('abcd'),
    )
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body).type).toMatch(/inconsistent-upload-length$/)
  })

  test('413 with Upload-Limit over the maximum size', async () => {
    const r = await send(files(), 'POST', {
      ...V,
      'Upload-Complete': '?0',
      'Upload-Length': 4 * 1024 * 1024 + 1,
      'Content-Length': 0,
    })
    expect(r.status).toBe(413)
    expect(String(r.headers['upload-limit'])).toContain('max-size=')
  })
})

describe('interop versions', () => {
  test('an unsupported interop version is 400 and gets no 104', async () => {
    for (const v of ['5', '7', 'x']) {
      const r = await send(files(), 'POST', {
        'Upload-Draft-Interop-Version': v,
        'Upload-Complete': '?0',
        'Content-Length': 0,
      })
      expect(r.status).toBe(400)
      expect(r.infos).toEqual([])
    }
  })

  test('an upload created with interop 8 is not continued with interop 6', async () => {
    const c = await send(files(), 'POST', {
      'Upload-Draft-Interop-Version': 8,
      'Upload-Complete': '?0',
      'Content-Length': 0,
    })
    const h = await send(String(c.headers.location), 'HEAD', { 'Upload-Draft-Interop-Version': 6 })
    expect(h.status).toBe(409)
  })
})

describe('tus-js-client with protocol ietf-draft-05', () => {
  test('a whole upload in chunks', async () => {
    const data = seededBytes(700_000, 'ietf-client')
    const url = await new Promise<string>((resolve, reject) => {
      // tus-js-client 4.3.1 takes `protocol` but its typings do not list it.
      const options: UploadOptions & { protocol: string } = {
        endpoint: files(),
        protocol: 'ietf-draft-05',
        chunkSize: 200_000,
        retryDelays: [0, 100, 200],
        onSuccess: () => resolve(u.url ?? ''),
        onError: reject,
      }
      const u: Upload = new Upload(data, options)
      u.start()
    })
    const h = await send(url, 'HEAD', { 'Upload-Draft-Interop-Version': 6 })
    expect(h.headers['upload-complete']).toBe('?1')
    expect(sha256((await request(url)).body)).toBe(sha256(data))
  })
})
