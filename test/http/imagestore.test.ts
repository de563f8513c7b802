import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { request as rawRequest } from 'node:http'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import {
  API,
  commit,
  newSessionId,
  putChunk,
  reservationGate,
  sessionById,
  type SessionInfo,
} from '../helpers/imagestore.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

let srv: TestServer
let base: string
const reserved = reservationGate()
const fabric = (r: { json<T>(): T }) => r.json<{ Error: { Code: string; Message: string } }>().Error

beforeAll(async () => {
  srv = await startFerry(
    { FERRY_MAX_UPLOAD_BYTES: String(8 * 1024 * 1024) },
    { uploadHooks: reserved.hooks },
  )
  base = srv.url
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
})

const storeFile = (p: string) => join(srv.dataDir, 'store', p)

describe('ImageStore upload sessions', () => {
  test('chunks in any order, expected ranges as strings, commit publishes the exact bytes', async () => {
    const id = newSessionId()
    const data = seededBytes(300_000, 'order')
    expect(
      (
        await putChunk(
          base,
          'app/pkg/big.bin',
          id,
          200_000,
          299_999,
          300_000,
          data.subarray(200_000),
        )
      ).status,
    ).toBe(200)
    let r = await sessionById(base, id)
    expect(r.status).toBe(200)
    const info = r.json<{ UploadSessions: SessionInfo[] }>().UploadSessions[0]!
    expect(info).toMatchObject({
      StoreRelativePath: 'app/pkg/big.bin',
      SessionId: id,
      FileSize: '300000',
    })
    expect(info.ExpectedRanges).toEqual([{ StartPosition: '0', EndPosition: '199999' }])
    expect(Object.keys(info)).toEqual([
      'StoreRelativePath',
      'SessionId',
      'FileSize',
      'ModifiedDate',
      'ExpectedRanges',
    ])
    expect(info.ModifiedDate).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(
      (await putChunk(base, 'app/pkg/big.bin', id, 0, 99_999, 300_000, data.subarray(0, 100_000)))
        .status,
    ).toBe(200)
    r = await request(`${base}/ImageStore/app/pkg/big.bin/$/GetUploadSession?${API}`)
    expect(r.status).toBe(200)
    expect(r.json<{ UploadSessions: SessionInfo[] }>().UploadSessions[0]!.ExpectedRanges).toEqual([
      { StartPosition: '100000', EndPosition: '199999' },
    ])
    expect(existsSync(storeFile('app/pkg/big.bin'))).toBe(false)
    expect(
      (
        await putChunk(
          base,
          'app/pkg/big.bin',
          id,
          100_000,
          199_999,
          300_000,
          data.subarray(100_000, 200_000),
        )
      ).status,
    ).toBe(200)
    r = await commit(base, id)
    expect(r.status).toBe(200)
    expect(r.body.length).toBe(0)
    expect(sha256(readFileSync(storeFile('app/pkg/big.bin')))).toBe(sha256(data))
    // A repeated commit answers as the first did; the session no longer shows.
    expect((await commit(base, id)).status).toBe(200)
    expect((await sessionById(base, id)).status).toBe(204)
    expect(
      (await request(`${base}/ImageStore/app/pkg/big.bin/$/GetUploadSession?${API}`)).status,
    ).toBe(204)
  })

  test('an exact re-send of a chunk answers 200 and changes nothing; different bytes, a part of a chunk or a straddling range are refused', async () => {
    const id = newSessionId()
    const data = seededBytes(1000, 'resend')
    expect(
      (await putChunk(base, 'resend.bin', id, 0, 499, 1000, data.subarray(0, 500))).status,
    ).toBe(200)
    expect(
      (await putChunk(base, 'resend.bin', id, 0, 499, 1000, data.subarray(0, 500))).status,
    ).toBe(200)
    // Part of a received chunk is refused even with the right bytes: nothing is compared (no byte
    // oracle).
    expect(
      (await putChunk(base, 'resend.bin', id, 100, 199, 1000, data.subarray(100, 200))).status,
    ).toBe(400)
    const bad = Buffer.from(data.subarray(0, 500))
    bad[250] = bad[250]! ^ 0xff
    let r = await putChunk(base, 'resend.bin', id, 0, 499, 1000, bad)
    expect([r.status, fabric(r).Code]).toEqual([
      400,
      'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
    ])
    r = await putChunk(base, 'resend.bin', id, 400, 699, 1000, data.subarray(400, 700))
    expect([r.status, fabric(r).Code]).toEqual([
      400,
      'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
    ])
    expect(
      (await putChunk(base, 'resend.bin', id, 500, 999, 1000, data.subarray(500))).status,
    ).toBe(200)
    expect((await commit(base, id)).status).toBe(200)
    expect(readFileSync(storeFile('resend.bin')).equals(data)).toBe(true)
  })

  test.each([
    ['missing', undefined],
    ['not bytes', 'items 0-9/10'],
    ['no total', 'bytes 0-9'],
    ['start after end', 'bytes 9-0/10'],
    ['end at the total', 'bytes 0-10/10'],
    ['end beyond the total', 'bytes 0-99/10'],
    ['negative', 'bytes -1-9/10'],
    ['garbage numbers', 'bytes a-b/c'],
  ])(
    'Content-Range %s → 400 FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
    async (_name, header) => {
      const headers: Record<string, string> =
        header === undefined ? {} : { 'Content-Range': header }
      const r = await request(
        `${base}/ImageStore/cr.bin/$/UploadChunk?${API}&session-id=${newSessionId()}`,
        { method: 'PUT', headers, body: Buffer.alloc(10) },
      )
      expect([r.status, fabric(r).Code]).toEqual([
        400,
        'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
      ])
    },
  )

  test('a total that differs from the session is E_INVALIDARG; the session keeps its size', async () => {
    const id = newSessionId()
    expect((await putChunk(base, 'tot.bin', id, 0, 9, 100, Buffer.alloc(10))).status).toBe(200)
    const r = await putChunk(base, 'tot.bin', id, 10, 19, 200, Buffer.alloc(10))
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    expect(
      (await sessionById(base, id)).json<{ UploadSessions: SessionInfo[] }>().UploadSessions[0]!
        .FileSize,
    ).toBe('100')
  })

  test('a body shorter or longer than its range is refused and nothing is marked received', async () => {
    const id = newSessionId()
    // Declared length differs from the range: refused before reading.
    let r = await putChunk(base, 'len.bin', id, 0, 99, 200, Buffer.alloc(50))
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    // Chunked transfer (no Content-Length) with more, then fewer, bytes than the range.
    const chunked = (bytes: number) => {
      const body = new PassThrough()
      const pending = request(`${base}/ImageStore/len.bin/$/UploadChunk?${API}&session-id=${id}`, {
        method: 'PUT',
        headers: { 'Content-Range': 'bytes 0-99/200', 'Transfer-Encoding': 'chunked' },
        body,
      })
      body.end(Buffer.alloc(bytes, 1))
      return pending
    }
    for (const bytes of [150, 60]) {
      r = await chunked(bytes)
      expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    }
    const s = await sessionById(base, id)
    expect(s.json<{ UploadSessions: SessionInfo[] }>().UploadSessions[0]!.ExpectedRanges).toEqual([
      { StartPosition: '0', EndPosition: '199' },
    ])
  })

  test('a session id reused for another path → 409 FABRIC_E_UPLOAD_SESSION_ID_CONFLICT', async () => {
    const id = newSessionId()
    expect((await putChunk(base, 'one.bin', id, 0, 9, 20, Buffer.alloc(10))).status).toBe(200)
    const r = await putChunk(base, 'two.bin', id, 10, 19, 20, Buffer.alloc(10))
    expect([r.status, fabric(r).Code]).toEqual([409, 'FABRIC_E_UPLOAD_SESSION_ID_CONFLICT'])
  })

  test('session-id: missing → FABRIC_E_INVALID_UPLOAD_SESSION_ID, not a GUID → E_INVALIDARG', async () => {
    let r = await request(`${base}/ImageStore/x.bin/$/UploadChunk?${API}`, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 0-0/1' },
      body: 'x',
    })
    expect([r.status, fabric(r).Code]).toEqual([400, 'FABRIC_E_INVALID_UPLOAD_SESSION_ID'])
    r = await request(`${base}/ImageStore/x.bin/$/UploadChunk?${API}&session-id=nope`, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 0-0/1' },
      body: 'x',
    })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    r = await request(`${base}/ImageStore/$/GetUploadSession?${API}`)
    expect(fabric(r).Code).toBe('FABRIC_E_INVALID_UPLOAD_SESSION_ID')
    r = await request(`${base}/ImageStore/$/CommitUploadSession?${API}`, { method: 'POST' })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
  })

  test('unknown sessions: get → 204 no body, commit → 400 E_INVALIDARG, delete → 404', async () => {
    const id = newSessionId()
    let r = await sessionById(base, id)
    expect([r.status, r.body.length]).toEqual([204, 0])
    r = await commit(base, id)
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    r = await request(`${base}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`, {
      method: 'DELETE',
    })
    expect([r.status, fabric(r).Code]).toEqual([404, 'FABRIC_E_FILE_NOT_FOUND'])
  })

  test('commit of an incomplete session → 400 E_INVALIDARG and the session stays open', async () => {
    const id = newSessionId()
    await putChunk(base, 'inc.bin', id, 0, 9, 20, Buffer.alloc(10))
    const r = await commit(base, id)
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    expect((await sessionById(base, id)).status).toBe(200)
    expect(existsSync(storeFile('inc.bin'))).toBe(false)
  })

  test('DeleteUploadSession cancels: temp file removed, session gone, id reusable', async () => {
    const id = newSessionId()
    await putChunk(base, 'cancel.bin', id, 0, 9, 20, Buffer.alloc(10))
    const tmpName = (await srv.app.engine.uploads.getSession(`imagestore:${id}`))!.tempName
    expect(readdirSync(join(srv.dataDir, 'tmp'))).toContain(tmpName)
    const r = await request(`${base}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`, {
      method: 'DELETE',
    })
    expect(r.status).toBe(200)
    expect((await sessionById(base, id)).status).toBe(204)
    expect(existsSync(join(srv.dataDir, 'tmp', tmpName))).toBe(false)
    expect((await putChunk(base, 'other.bin', id, 0, 4, 5, Buffer.alloc(5))).status).toBe(200)
  })

  test('a 0-byte file via a session (bytes */0) and via PUT', async () => {
    const id = newSessionId()
    const r = await request(
      `${base}/ImageStore/empty/a.txt/$/UploadChunk?${API}&session-id=${id}`,
      {
        method: 'PUT',
        headers: { 'Content-Range': 'bytes */0', 'Content-Length': 0 },
      },
    )
    expect(r.status).toBe(200)
    expect(
      (await sessionById(base, id)).json<{ UploadSessions: SessionInfo[] }>().UploadSessions[0]!
        .ExpectedRanges,
    ).toEqual([])
    expect((await commit(base, id)).status).toBe(200)
    expect(readFileSync(storeFile('empty/a.txt')).length).toBe(0)
    expect(
      (
        await request(`${base}/ImageStore/empty/_.dir?${API}`, {
          method: 'PUT',
          headers: { 'Content-Length': 0 },
        })
      ).status,
    ).toBe(200)
    expect(readFileSync(storeFile('empty/_.dir')).length).toBe(0)
  })

  test('two requests for one range at once: the second is refused while the first streams', async () => {
    const id = newSessionId()
    const slow = new PassThrough()
    const held = reserved.next(id)
    const first = request(`${base}/ImageStore/race.bin/$/UploadChunk?${API}&session-id=${id}`, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 0-99/100', 'Content-Length': 100 },
      body: slow,
    })
    slow.write(Buffer.alloc(10, 7))
    await held // the first request holds its reservation
    const second = await putChunk(base, 'race.bin', id, 0, 99, 100, Buffer.alloc(100, 9))
    expect([second.status, fabric(second).Code]).toEqual([
      400,
      'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
    ])
    slow.end(Buffer.alloc(90, 7))
    expect((await first).status).toBe(200)
    expect((await commit(base, id)).status).toBe(200)
    expect(readFileSync(storeFile('race.bin')).equals(Buffer.alloc(100, 7))).toBe(true)
  })

  test('a commit racing a late chunk: commit refused while incomplete, succeeds after; the file is whole', async () => {
    const id = newSessionId()
    const data = seededBytes(2000, 'late')
    await putChunk(base, 'late.bin', id, 0, 999, 2000, data.subarray(0, 1000))
    const slow = new PassThrough()
    const held = reserved.next(id)
    const late = request(`${base}/ImageStore/late.bin/$/UploadChunk?${API}&session-id=${id}`, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 1000-1999/2000', 'Content-Length': 1000 },
      body: slow,
    })
    slow.write(data.subarray(1000, 1500))
    await held // the late chunk holds its reservation
    const early = await commit(base, id)
    expect([early.status, fabric(early).Code]).toEqual([400, 'E_INVALIDARG'])
    slow.end(data.subarray(1500))
    expect((await late).status).toBe(200)
    // Two commits at once: both answer 200 or one is told another commit runs; the file is whole.
    const [c1, c2] = await Promise.all([commit(base, id), commit(base, id)])
    expect([c1.status, c2.status].every((s) => s === 200 || s === 409)).toBe(true)
    expect([c1.status, c2.status]).toContain(200)
    expect((await commit(base, id)).status).toBe(200)
    expect(readFileSync(storeFile('late.bin')).equals(data)).toBe(true)
    // A chunk after the commit is refused, and the file is untouched.
    const after = await putChunk(base, 'late.bin', id, 0, 999, 2000, Buffer.alloc(1000))
    expect(after.status).toBe(400)
    expect(readFileSync(storeFile('late.bin')).equals(data)).toBe(true)
  })

  test('a chunk over the configured limit → 413', async () => {
    const r = await putChunk(
      base,
      'huge.bin',
      newSessionId(),
      0,
      9,
      64 * 1024 * 1024,
      Buffer.alloc(10),
    )
    expect(r.status).toBe(413)
  })
})

describe('ImageStore paths', () => {
  test.each([
    ['dot-dot', 'a/../../etc/passwd'],
    ['encoded dot-dot', 'a%2F..%2F..%2Fetc'],
    ['absolute', '/etc/passwd'],
    ['NUL', 'a%00b'],
    ['backslash', 'a%5Cb'],
    ['empty segment', 'a//b'],
    ['dot', './a'],
  ])('%s → 400 E_INVALIDARG, nothing written', async (_n, p) => {
    for (const r of [
      await request(`${base}/ImageStore/${p}?${API}`, { method: 'PUT', body: 'x' }),
      await putChunk(base, p, newSessionId(), 0, 0, 1, Buffer.from('x')),
    ]) {
      expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    }
    expect(existsSync(join(srv.dataDir, 'etc'))).toBe(false)
  })

  test('an over-long name → 400 FABRIC_E_PATH_TOO_LONG', async () => {
    const r = await request(`${base}/ImageStore/${'n'.repeat(300)}?${API}`, {
      method: 'PUT',
      body: 'x',
    })
    expect([r.status, fabric(r).Code]).toEqual([400, 'FABRIC_E_PATH_TOO_LONG'])
  })

  test('%2F-encoded paths (SDK) and raw paths (sfctl) name the same file', async () => {
    expect(
      (await request(`${base}/ImageStore/enc%2Fsub%2Ff.bin?${API}`, { method: 'PUT', body: 'one' }))
        .status,
    ).toBe(200)
    expect(readFileSync(storeFile('enc/sub/f.bin'), 'utf8')).toBe('one')
    expect(
      (await request(`${base}/ImageStore/enc/sub/f%20g.bin?${API}`, { method: 'PUT', body: 'two' }))
        .status,
    ).toBe(200)
    expect(readFileSync(storeFile('enc/sub/f g.bin'), 'utf8')).toBe('two')
  })
})

describe('ImageStore whole files, listing, copy, delete', () => {
  test('api-version is required (400 E_INVALIDARG) and must be a number', async () => {
    for (const q of ['', '?api-version=', '?api-version=abc']) {
      const r = await request(`${base}/ImageStore${q}`)
      expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    }
    expect((await request(`${base}/ImageStore?api-version=6.2-preview`)).status).not.toBe(400)
  })

  test('PUT stores raw bytes whatever the Content-Type, and overwrites', async () => {
    const body = Buffer.from('{"not":"parsed"}')
    expect(
      (
        await request(`${base}/ImageStore/w/j.json?${API}`, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/json; charset=utf-8' },
          body,
        })
      ).status,
    ).toBe(200)
    expect(readFileSync(storeFile('w/j.json')).equals(body)).toBe(true)
    expect(
      (await request(`${base}/ImageStore/w/j.json?${API}`, { method: 'PUT', body: 'v2' })).status,
    ).toBe(200)
    expect(readFileSync(storeFile('w/j.json'), 'utf8')).toBe('v2')
  })

  test('multipart/form-data with one file part is stored; two files or none are refused', async () => {
    const bnd = 'XyZ'
    const part = (name: string, filename: string, content: string) =>
      `--${bnd}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n${content}\r\n`
    const headers = { 'Content-Type': `multipart/form-data; boundary=${bnd}` }
    let r = await request(`${base}/ImageStore/mp/one.bin?${API}`, {
      method: 'PUT',
      headers,
      body: `${part('file', 'one.bin', 'hello multipart')}--${bnd}--\r\n`,
    })
    expect(r.status).toBe(200)
    expect(readFileSync(storeFile('mp/one.bin'), 'utf8')).toBe('hello multipart')
    r = await request(`${base}/ImageStore/mp/two.bin?${API}`, {
      method: 'PUT',
      headers,
      body: `${part('a', 'a', 'A')}${part('b', 'b', 'B')}--${bnd}--\r\n`,
    })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    expect(existsSync(storeFile('mp/two.bin'))).toBe(false)
    r = await request(`${base}/ImageStore/mp/none.bin?${API}`, {
      method: 'PUT',
      headers,
      body: `--${bnd}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--${bnd}--\r\n`,
    })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
  })

  test('a chunk may come as multipart/form-data too; its file part must fill the range exactly', async () => {
    const id = newSessionId()
    const bnd = 'chunkBoundary'
    const mp = (content: string) =>
      `--${bnd}\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\n${content}\r\n--${bnd}--\r\n`
    const put = (range: string, content: string) =>
      request(`${base}/ImageStore/mpchunk.bin/$/UploadChunk?${API}&session-id=${id}`, {
        method: 'PUT',
        headers: { 'Content-Range': range, 'Content-Type': `multipart/form-data; boundary=${bnd}` },
        body: mp(content),
      })
    expect((await put('bytes 0-4/10', 'hello')).status).toBe(200)
    const short = await put('bytes 5-9/10', 'wor')
    expect([short.status, fabric(short).Code]).toEqual([400, 'E_INVALIDARG'])
    expect((await put('bytes 5-9/10', 'world')).status).toBe(200)
    expect((await commit(base, id)).status).toBe(200)
    expect(readFileSync(storeFile('mpchunk.bin'), 'utf8')).toBe('helloworld')
  })

  test('a whole body over the limit → 413, nothing stored', async () => {
    const r = await request(`${base}/ImageStore/big/x.bin?${API}`, {
      method: 'PUT',
      body: Buffer.alloc(8 * 1024 * 1024 + 1),
    })
    expect(r.status).toBe(413)
    expect(existsSync(storeFile('big/x.bin'))).toBe(false)
  })

  test('listing: files, folders with their direct FileCount, a file path, empty → 204, missing → 404', async () => {
    for (const p of ['lst/B.txt', 'lst/a.txt', 'lst/sub/x', 'lst/sub/deep/y', 'lst/sub/_.dir']) {
      expect(
        (await request(`${base}/ImageStore/${p}?${API}`, { method: 'PUT', body: p })).status,
      ).toBe(200)
    }
    let r = await request(`${base}/ImageStore/lst?api-version=6.2`)
    expect(r.status).toBe(200)
    const c = r.json<{
      StoreFiles: {
        StoreRelativePath: string
        FileSize: string
        FileVersion: Record<string, string>
      }[]
      StoreFolders: { StoreRelativePath: string; FileCount: string }[]
    }>()
    expect(c.StoreFiles.map((f) => f.StoreRelativePath)).toEqual(['lst/a.txt', 'lst/B.txt'])
    expect(c.StoreFiles[0]!.FileSize).toBe(String('lst/a.txt'.length))
    expect(typeof c.StoreFiles[0]!.FileVersion['VersionNumber']).toBe('string')
    // Files directly in lst/sub (x and _.dir), not the whole tree below it (issue 17.12).
    expect(c.StoreFolders).toEqual([{ StoreRelativePath: 'lst/sub', FileCount: '2' }])
    expect(c).not.toHaveProperty('ContinuationToken')
    r = await request(`${base}/ImageStore/lst/a.txt?api-version=6.2`)
    expect(r.json<{ StoreFiles: unknown[] }>().StoreFiles).toHaveLength(1)
    r = await request(`${base}/ImageStore/nothing/here?api-version=6.2`)
    expect([r.status, r.body.length]).toEqual([404, 0])
    r = await request(`${base}/ImageStore?${API}`)
    expect(r.status).toBe(200)
    expect(
      r
        .json<{ StoreFolders: { StoreRelativePath: string }[] }>()
        .StoreFolders.map((f) => f.StoreRelativePath),
    ).toContain('lst')
  })

  test('an empty root answers 204', async () => {
    const s = await startFerry()
    try {
      const r = await request(`${s.url}/ImageStore?${API}`)
      expect([r.status, r.body.length]).toEqual([204, 0])
    } finally {
      await s.close()
      removeDir(s.dataDir)
    }
  })

  test('copy: a file; a marked folder minus SkipFiles; an unmarked folder → 404 unless CheckMarkFile', async () => {
    for (const p of [
      'cp/src/a.bin',
      'cp/src/n/b.bin',
      'cp/src/skip.me',
      'cp/src/_.dir',
      'cp/raw/x',
    ]) {
      await request(`${base}/ImageStore/${p}?${API}`, { method: 'PUT', body: `data:${p}` })
    }
    const copy = (d: unknown) =>
      request(`${base}/ImageStore/$/Copy?${API}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(d),
      })
    expect(
      (await copy({ RemoteSource: 'cp/src/a.bin', RemoteDestination: 'cp/one.bin' })).status,
    ).toBe(200)
    expect(readFileSync(storeFile('cp/one.bin'), 'utf8')).toBe('data:cp/src/a.bin')
    expect(
      (await copy({ RemoteSource: 'cp/src', RemoteDestination: 'cp/dst', SkipFiles: ['SKIP.ME'] }))
        .status,
    ).toBe(200)
    expect(readFileSync(storeFile('cp/dst/n/b.bin'), 'utf8')).toBe('data:cp/src/n/b.bin')
    expect(existsSync(storeFile('cp/dst/_.dir'))).toBe(true)
    expect(existsSync(storeFile('cp/dst/skip.me'))).toBe(false)
    let r = await copy({ RemoteSource: 'cp/raw', RemoteDestination: 'cp/raw2' })
    expect([r.status, fabric(r).Code]).toEqual([404, 'FABRIC_E_FILE_NOT_FOUND'])
    r = await copy({ RemoteSource: 'cp/raw', RemoteDestination: 'cp/raw3', CheckMarkFile: true })
    expect(r.status).toBe(200)
    expect(existsSync(storeFile('cp/raw3'))).toBe(false)
    r = await copy({ RemoteSource: 'cp/missing', RemoteDestination: 'cp/x' })
    expect(r.status).toBe(404)
    for (const bad of [
      {},
      { RemoteSource: 'cp/src' },
      { RemoteSource: 'cp/src', RemoteDestination: '../x' },
      { RemoteSource: 'cp/src', RemoteDestination: 'cp/src/in' },
      { RemoteSource: 'a', RemoteDestination: 'b', SkipFiles: 'x' },
    ]) {
      r = await copy(bad)
      expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    }
    r = await request(`${base}/ImageStore/$/Copy?${API}`, { method: 'POST', body: '{not json' })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
  })

  test('delete: a file, a folder, a missing path (200); reserved names → 400', async () => {
    await request(`${base}/ImageStore/del/a?${API}`, { method: 'PUT', body: 'a' })
    await request(`${base}/ImageStore/del/sub/b?${API}`, { method: 'PUT', body: 'b' })
    expect((await request(`${base}/ImageStore/del/a?${API}`, { method: 'DELETE' })).status).toBe(
      200,
    )
    expect(existsSync(storeFile('del/a'))).toBe(false)
    expect((await request(`${base}/ImageStore/del?${API}`, { method: 'DELETE' })).status).toBe(200)
    expect(existsSync(storeFile('del'))).toBe(false)
    expect((await request(`${base}/ImageStore/del?${API}`, { method: 'DELETE' })).status).toBe(200)
    for (const name of ['Store', 'WindowsFabricStore', 'store']) {
      const r = await request(`${base}/ImageStore/${name}?${API}`, { method: 'DELETE' })
      expect([r.status, fabric(r).Code]).toEqual([
        400,
        'FABRIC_E_IMAGEBUILDER_RESERVED_DIRECTORY_ERROR',
      ])
    }
  })

  test('an unknown operation or method → 400 E_INVALIDARG ("Invalid URL")', async () => {
    let r = await request(`${base}/ImageStore/$/Nope?${API}`, { method: 'POST' })
    expect([r.status, fabric(r).Code]).toEqual([400, 'E_INVALIDARG'])
    r = await request(`${base}/ImageStore/a/$/UploadChunk?${API}`, { method: 'POST' })
    expect(r.status).toBe(400)
  })

  test('a file in the way of a folder → 400, the file stays', async () => {
    await request(`${base}/ImageStore/way/f?${API}`, { method: 'PUT', body: 'keep' })
    const r = await request(`${base}/ImageStore/way/f/child?${API}`, { method: 'PUT', body: 'x' })
    expect(r.status).toBe(400)
    expect(readFileSync(storeFile('way/f'), 'utf8')).toBe('keep')
  })
})

describe('expiry and cleanup', () => {
  test('an expired session is swept with its temp file; orphaned temp files go too', async () => {
    const id = newSessionId()
    await putChunk(base, 'exp.bin', id, 0, 9, 20, Buffer.alloc(10))
    const tmpName = (await srv.app.engine.uploads.getSession(`imagestore:${id}`))!.tempName
    const orphan = join(
      srv.dataDir,
      'tmp',
      `s-${Buffer.from('imagestore:gone').toString('base64url')}.${randomUUID()}.part`,
    )
    writeFileSync(orphan, 'left by a crash')
    const old = new Date(Date.now() - 3600_000)
    utimesSync(orphan, old, old)
    // Not yet expired: kept.
    await srv.app.engine.uploads.sweep(Date.now())
    expect((await sessionById(base, id)).status).toBe(200)
    expect(existsSync(orphan)).toBe(false)
    // 30 minutes (the default TTL) after its last chunk: removed with its temp file.
    const r = await srv.app.engine.uploads.sweep(Date.now() + 1800_000 + 1000)
    expect(r.sessions).toBeGreaterThanOrEqual(1)
    expect((await sessionById(base, id)).status).toBe(204)
    expect(existsSync(join(srv.dataDir, 'tmp', tmpName))).toBe(false)
  })
})

describe('responses', () => {
  test('HEAD-less errors carry JSON; every response has a request id', async () => {
    const r = await request(`${base}/ImageStore`)
    expect(r.headers['content-type']).toMatch(/application\/json/)
    expect(r.headers['x-request-id']).toBeTruthy()
  })

  test('unknown top-level paths → 404; /healthz → 200', async () => {
    expect((await request(`${base}/nope`)).status).toBe(404)
    expect((await request(`${base}/healthz`)).status).toBe(200)
  })

  test('a raw request without Content-Length for a whole file works (chunked transfer)', async () => {
    const r = await new Promise<number>((resolve, reject) => {
      const req = rawRequest(
        `${base}/ImageStore/chunked/t.bin?${API}`,
        { method: 'PUT', headers: { 'Transfer-Encoding': 'chunked' } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.write('abc')
      req.end('def')
    })
    expect(r).toBe(200)
    expect(readFileSync(storeFile('chunked/t.bin'), 'utf8')).toBe('abcdef')
  })
})
