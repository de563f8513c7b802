import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { request, seededBytes, sha256, type Reply } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { nowSeconds, signJwt } from '../helpers/jwt.js'
import { removeDir, startFerry, tempDir, writeConfig, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const SECRET = 'bulk-ingest-test-secret-0123456789'
const ISSUER = '0.0.0.0:3333'
const AUDIENCE = 'http://localhost:3340'

async function jwt(
  claims: Record<string, unknown> = { scope: 'admin' },
  o: { secret?: string; exp?: number | null; iss?: string; aud?: string } = {},
): Promise<string> {
  const now = nowSeconds()
  const exp = o.exp === null ? null : (o.exp ?? now + 3600)
  return signJwt(
    { sub: 'tester', ...claims },
    {
      secret: o.secret ?? SECRET,
      iss: o.iss ?? ISSUER,
      aud: o.aud ?? AUDIENCE,
      iat: now - 60,
      exp,
    },
  )
}

function configFile(dir: string, extra: Record<string, unknown> = {}): string {
  return writeConfig(dir, 'ferry-config.json', {
    ingest: { jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE }, ...extra },
  })
}

const rec = <T>(r: Reply) => r.json<T>()

describe('bulk-ingest API (one instance, embedded state)', () => {
  let srv: TestServer
  let cfgDir: string
  let auth: Record<string, string>
  const url = (sc: string, rest = '') => `${srv.url}/projects/${sc}/bulk-ingest${rest}`
  const importDir = (sc: string) => join(srv.dataDir, 'ingest', sc, 'import')
  const post = (u: string, body?: Buffer | string, headers: Record<string, string> = {}) =>
    request(u, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/octet-stream', ...headers },
      ...(body !== undefined ? { body } : {}),
    })
  const mappingOf = (sc: string) => request(url(sc, '/mapping.csv'), { headers: auth })
  const idleMapping = (sc: string) =>
    waitFor('the ingest to end', async () => {
      const r = await mappingOf(sc)
      return r.status === 409 ? null : r
    })

  // A FERRY_HOOK_URL receiver: every family's finished file fires post-finish.
  const hookEvents: { event: string; upload: Record<string, unknown> }[] = []
  let hooks: Server

  beforeAll(async () => {
    cfgDir = tempDir()
    hooks = createServer((req, res) => {
      const parts: Buffer[] = []
      req.on('data', (d: Buffer) => parts.push(d))
      req.on('end', () => {
        hookEvents.push(JSON.parse(Buffer.concat(parts).toString()))
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r))
    const hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`
    srv = await startFerry({
      FERRY_CONFIG: configFile(cfgDir),
      FERRY_MAX_UPLOAD_BYTES: String(1024 * 1024),
      FERRY_HOOK_URL: hookUrl,
    })
    auth = { Authorization: `Bearer ${await jwt()}` }
  })
  afterAll(async () => {
    await new Promise((r) => hooks.close(r))
    await srv.close()
    removeDir(srv.dataDir)
    removeDir(cfgDir)
  })

  test('upload: 200 {"status":"ok"}, %2F sub-folders land in the import folder, overwrite allowed, empty body allowed', async () => {
    let r = await post(url('0001', '/ingest/one%2Ftwo%2Fout.txt'), 'first')
    expect(r.status).toBe(200)
    expect(r.json()).toEqual({ status: 'ok' })
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(readFileSync(join(importDir('0001'), 'one/two/out.txt'), 'utf8')).toBe('first')
    r = await post(url('0001', '/ingest/one%2Ftwo%2Fout.txt'), 'second, longer')
    expect(r.status).toBe(200)
    expect(readFileSync(join(importDir('0001'), 'one/two/out.txt'), 'utf8')).toBe('second, longer')
    r = await post(url('0001', '/ingest/empty.csv'), '')
    expect(r.status).toBe(200)
    expect(statSync(join(importDir('0001'), 'empty.csv')).size).toBe(0)
    // NFD in the URL (a + combining macron) is stored NFC, as dsp-ingest's AssetFilename does.
    r = await post(url('0001', '/ingest/a%CC%84.mp3'), 'x')
    expect(r.status).toBe(200)
    expect(existsSync(join(importDir('0001'), '\u0101.mp3'))).toBe(true)
    // No temp file left behind in the import folder.
    expect(readdirSync(importDir('0001')).sort()).toEqual(['empty.csv', 'one', '\u0101.mp3'].sort())
  })

  test('an upload fires post-finish with family ingest, its project path, size and sha256', async () => {
    const data = seededBytes(3000, 'ingest-hook')
    expect((await post(url('0a0b', '/ingest/hooked%2Fa.txt'), data)).status).toBe(200)
    const ev = await waitFor(
      'the post-finish event',
      async () =>
        hookEvents.find(
          (e) => e.upload['family'] === 'ingest' && e.upload['id'] === '0a0b/hooked/a.txt',
        ) ?? null,
    )
    expect(ev.event).toBe('post-finish')
    expect(ev.upload['size']).toBe(data.length)
    expect(ev.upload['sha256']).toBe(sha256(data))
  })

  test('upload: a multipart/form-data file part is stored as its bytes', async () => {
    const data = seededBytes(5000, 'multipart')
    const boundary = 'ferryBoundary42'
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ])
    const r = await post(url('0002', '/ingest/mp%2Fpart.tif'), body, {
      'Content-Type': `multipart/form-data; boundary=${boundary}`,
    })
    expect(r.status).toBe(200)
    expect(sha256(readFileSync(join(importDir('0002'), 'mp/part.tif')))).toBe(sha256(data))
  })

  test.each([
    ['..%2Fescape.txt', 'Cannot traverse out of the upload directory'],
    ['a%2F..%2F..%2Fescape.txt', 'Cannot traverse out of the upload directory'],
    ['%2Fabsolute.txt', 'relative'],
    ['a%5Cb.txt', 'backslash'],
    ['a%00.txt', 'control character'],
    ['a%2F%2Fb.txt', 'empty'],
    ['noextension', 'valid file extension'],
    ['evil.exe', 'valid file extension'],
    ['hash%23tag.txt', 'invalid characters'],
    ['%E0%A4%A', 'percent-encoding'],
  ])('upload of %j answers 400 BadRequest (%s) and writes nothing', async (file, reason) => {
    const r = await post(url('0003', `/ingest/${file}`), 'data')
    expect(r.status).toBe(400)
    const b = rec<{ errors: { argument: string; reason: string }[] }>(r)
    expect(b.errors).toHaveLength(1)
    expect(b.errors[0]!.argument).toBe("Path variable: 'filename''")
    expect(b.errors[0]!.reason).toContain(reason)
    expect(existsSync(join(srv.dataDir, 'ingest', 'escape.txt'))).toBe(false)
    expect(existsSync(join(srv.dataDir, 'ingest', '0003', 'escape.txt'))).toBe(false)
    expect(
      existsSync(importDir('0003')) ? readdirSync(importDir('0003'), { recursive: true }) : [],
    ).toEqual([])
  })

  test('upload: a folder in the way is 400; a raw multi-segment path matches no route (404)', async () => {
    expect((await post(url('0004', '/ingest/d%2Ff.txt'), 'x')).status).toBe(200)
    const r = await post(url('0004', '/ingest/d'), 'x')
    expect(r.status).toBe(400)
    // `d` has no extension, so the name check refuses it first; with a folder named like a file:
    mkdirSync(join(importDir('0004'), 'dir.txt'))
    const r2 = await post(url('0004', '/ingest/dir.txt'), 'x')
    expect(r2.status).toBe(400)
    expect(rec<{ errors: { reason: string }[] }>(r2).errors[0]!.reason).toContain('in the way')
    expect((await post(url('0004', '/ingest/one/two.txt'), 'x')).status).toBe(404)
  })

  test('upload over the size limit answers 413 {reason}', async () => {
    const r = await post(url('0005', '/ingest/big.bin.zip'), seededBytes(1024 * 1024 + 1))
    expect(r.status).toBe(413)
    expect(typeof rec<{ reason: string }>(r).reason).toBe('string')
    expect(existsSync(join(importDir('0005'), 'big.bin.zip'))).toBe(false)
  })

  test('a bad shortcode is 400; an unknown route 404; a wrong method 405', async () => {
    for (const sc of ['000G', '12345', '123', 'zz%2F1']) {
      const r = await post(url(sc), undefined)
      expect(r.status).toBe(400)
      expect(rec<{ errors: { argument: string }[] }>(r).errors[0]!.argument).toBe(
        "Path variable: 'shortcode'",
      )
    }
    expect((await post(`${srv.url}/projects/0001/bulk-ingest/nope`)).status).toBe(404)
    expect((await post(`${srv.url}/projects/0001`)).status).toBe(404)
    const r = await request(url('0001', '/finalize'), { method: 'GET', headers: auth })
    expect(r.status).toBe(405)
    expect(r.headers['allow']).toBe('POST')
  })

  test('start and finalize without an import folder: 404 {id, type:"Import folder not found."}; mapping: 404 {id, type:"project"}', async () => {
    for (const rest of ['', '/finalize']) {
      const r = await post(url('0bad', rest))
      expect(r.status).toBe(404)
      expect(r.json()).toEqual({ id: '0bad', type: 'Import folder not found.' })
    }
    const m = await mappingOf('0bad')
    expect(m.status).toBe(404)
    expect(m.json()).toEqual({ id: '0bad', type: 'project' })
  })

  test('a broken data directory is 500 {errorMessage} without internals', async () => {
    writeFileSync(join(srv.dataDir, 'ingest', '0e00'), 'a file where the project folder should be')
    const r = await mappingOf('0e00')
    expect(r.status).toBe(500)
    expect(r.json()).toEqual({ errorMessage: 'internal error' })
  })

  test('ingest → 202 {"id"} as sent (lower case kept); mapping.csv, assets, info; finalize → 200 and cleans up', async () => {
    const sc = '00ff'
    const files: Record<string, Buffer> = {
      'a.txt': seededBytes(1000, 'a'),
      'sub/b,c.tif': seededBytes(70_000, 'b'),
      'sub/"deeper"/q.json': seededBytes(10, 'q'),
      'empty.csv': Buffer.alloc(0),
    }
    for (const [p, data] of Object.entries(files)) {
      expect((await post(url(sc, `/ingest/${encodeURIComponent(p)}`), data)).status).toBe(200)
    }
    // Left in place: hidden files and unsupported types.
    writeFileSync(join(importDir(sc), '.hidden.txt'), 'h')
    writeFileSync(join(importDir(sc), 'notes.xyz'), 'n')
    let r = await post(url(sc))
    expect(r.status).toBe(202)
    expect(r.json()).toEqual({ id: '00ff' })
    r = await idleMapping(sc)
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toMatch(/^text\/csv/)
    expect(r.headers['content-disposition']).toBe('attachment; filename=mapping.csv')
    const text = r.text()
    expect(text.endsWith('\n')).toBe(false)
    const lines = text.split('\n')
    expect(lines[0]).toBe('original,derivative')
    expect(lines).toHaveLength(5)
    const originals = lines
      .slice(1)
      .map((l) => l.slice(0, l.lastIndexOf(',')))
      .sort()
    expect(originals).toEqual(
      ['a.txt', 'empty.csv', '"sub/b,c.tif"', '"sub/""deeper""/q.json"'].sort(),
    )
    for (const line of lines.slice(1)) {
      const deriv = line.slice(line.lastIndexOf(',') + 1)
      const id = deriv.slice(0, 23)
      expect(id).toMatch(/^[0-9A-Za-z]{11}-[0-9A-Za-z]{11}$/)
      const dir = join(
        srv.dataDir,
        'ingest',
        sc,
        'assets',
        id.slice(0, 2).toLowerCase(),
        id.slice(2, 4).toLowerCase(),
      )
      const info = JSON.parse(readFileSync(join(dir, `${id}.info`), 'utf8')) as Record<
        string,
        string
      >
      expect(Object.keys(info)).toEqual([
        'internalFilename',
        'originalInternalFilename',
        'originalFilename',
        'checksumOriginal',
        'checksumDerivative',
      ])
      expect(info['internalFilename']).toBe(deriv)
      expect(info['originalInternalFilename']).toBe(`${deriv}.orig`)
      const orig = readFileSync(join(dir, `${deriv}.orig`))
      const derived = readFileSync(join(dir, deriv))
      const source = Object.entries(files).find(([p]) => p.endsWith(info['originalFilename']!))!
      expect(info['originalFilename']).toBe(source[0].slice(source[0].lastIndexOf('/') + 1))
      expect(sha256(orig)).toBe(sha256(source[1]))
      expect(info['checksumOriginal']).toBe(sha256(source[1]))
      expect(info['checksumDerivative']).toBe(sha256(derived))
      expect(sha256(derived)).toBe(sha256(source[1]))
    }
    // Sources are gone; skipped files stay.
    const left = readdirSync(importDir(sc), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort()
    expect(left).toEqual(['.hidden.txt', 'notes.xyz'])
    // The upper-case shortcode is another folder: nothing to ingest there.
    expect((await post(url('00FF'))).status).toBe(404)

    r = await post(url(sc, '/finalize'))
    expect(r.status).toBe(200)
    expect(r.json()).toEqual({ id: '00ff' })
    const gone = await waitFor('finalize to finish', async () => {
      const m = await mappingOf(sc)
      return m.status === 409 ? null : m
    })
    expect(gone.status).toBe(404)
    expect(existsSync(importDir(sc))).toBe(false)
    expect(existsSync(join(srv.dataDir, 'ingest', sc, `mapping-${sc}.csv`))).toBe(false)
    // Completed assets stay after finalize.
    expect(
      readdirSync(join(srv.dataDir, 'ingest', sc, 'assets'), { recursive: true }).filter((n) =>
        String(n).endsWith('.info'),
      ),
    ).toHaveLength(4)
  })

  test('a file that fails to ingest stays in the import folder, is retried by the next run, and no asset is half-made', async () => {
    const sc = '0fa1'
    for (let i = 0; i < 5; i++)
      expect((await post(url(sc, `/ingest/f${i}.txt`), `file ${i}`)).status).toBe(200)
    // Block every asset folder (ids start with [0-9A-Za-z], folders are lower-cased): each copy
    // fails.
    const assets = join(srv.dataDir, 'ingest', sc, 'assets')
    mkdirSync(assets, { recursive: true })
    const chars = '0123456789abcdefghijklmnopqrstuvwxyz'
    for (const a of chars) for (const b of chars) writeFileSync(join(assets, a + b), '')
    expect((await post(url(sc))).status).toBe(202)
    let r = await idleMapping(sc)
    expect(r.text()).toBe('original,derivative')
    expect(readdirSync(importDir(sc)).sort()).toEqual([
      'f0.txt',
      'f1.txt',
      'f2.txt',
      'f3.txt',
      'f4.txt',
    ])
    expect(readdirSync(join(srv.dataDir, 'ingest', sc, 'journal'))).toEqual([])
    rmSync(assets, { recursive: true })
    expect((await post(url(sc))).status).toBe(202)
    r = await idleMapping(sc)
    expect(r.text().split('\n')).toHaveLength(6)
    expect(readdirSync(importDir(sc))).toEqual([])
  })

  describe('JWT', () => {
    const tryWith = (authorization: string | undefined) =>
      request(url('0001', '/mapping.csv'), {
        headers: authorization === undefined ? {} : { Authorization: authorization },
      })
    const reason = (r: Reply) => rec<{ reason: string }>(r).reason

    test('missing or malformed Authorization header: 401 {reason} with a Bearer challenge', async () => {
      for (const h of [undefined, 'Basic dXNlcjpwdw==', 'Bearer', 'Bearer  ', 'Token abc']) {
        const r = await tryWith(h)
        expect(r.status).toBe(401)
        expect(r.headers['www-authenticate']).toBe('Bearer')
        expect(reason(r).length).toBeGreaterThan(0)
      }
      const r = await tryWith('Bearer not-a-jwt')
      expect(r.status).toBe(401)
      expect(reason(r)).toBe('Expected the token to be composed of 2 or 3 parts separated by dots.')
    })
    test('wrong secret, unsigned or other algorithm: 401 invalid signature', async () => {
      expect(
        reason(
          await tryWith(
            `Bearer ${await jwt({ scope: 'admin' }, { secret: 'another-secret-entirely' })}`,
          ),
        ),
      ).toBe('Invalid signature for this token or wrong algorithm.')
      const good = await jwt()
      const [h, p] = good.split('.')
      const none = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${p}.`
      expect(reason(await tryWith(`Bearer ${none}`))).toBe(
        'Invalid signature for this token or wrong algorithm.',
      )
      expect(reason(await tryWith(`Bearer ${h}.${p}`))).toBe(
        'Invalid signature for this token or wrong algorithm.',
      )
      const hs512 = await signJwt(
        { sub: 's', scope: 'admin' },
        { secret: SECRET, alg: 'HS512', iss: ISSUER, aud: AUDIENCE },
      )
      expect((await tryWith(`Bearer ${hs512}`)).status).toBe(401)
    })
    test('expired and not-yet-valid tokens: 401', async () => {
      const r = await tryWith(`Bearer ${await jwt({ scope: 'admin' }, { exp: 1_700_000_000 })}`)
      expect(r.status).toBe(401)
      expect(reason(r)).toBe('The token is expired since 2023-11-14T22:13:20Z')
      const nbf = await jwt({ scope: 'admin', nbf: Math.floor(Date.now() / 1000) + 3600 })
      expect(reason(await tryWith(`Bearer ${nbf}`))).toMatch(/^The token will only be valid after /)
    })
    test('a token without exp is refused by default: 401 (issue 9.11)', async () => {
      const r = await tryWith(`Bearer ${await jwt({ scope: 'admin' }, { exp: null })}`)
      expect(r.status).toBe(401)
      expect(reason(r)).toBe('Invalid contents: the token has no expiry (exp).')
    })
    test('wrong issuer, wrong audience, no subject: 401, all reasons together', async () => {
      expect(
        reason(await tryWith(`Bearer ${await jwt({ scope: 'admin' }, { iss: 'elsewhere' })}`)),
      ).toBe(`Invalid issuer: expected ${ISSUER}`)
      expect(
        reason(await tryWith(`Bearer ${await jwt({ scope: 'admin' }, { aud: 'other' })}`)),
      ).toBe(`Invalid audience: expected ${AUDIENCE}`)
      const both = await jwt({ scope: 'admin', sub: undefined }, { iss: 'x', aud: 'y' })
      expect(reason(await tryWith(`Bearer ${both}`))).toBe(
        `Invalid audience: expected ${AUDIENCE}, Invalid issuer: expected ${ISSUER}, Subject is missing.`,
      )
      // An audience array that contains ours is accepted.
      const arr = await signJwt(
        { sub: 's', scope: 'admin' },
        { secret: SECRET, iss: ISSUER, aud: ['x', AUDIENCE], exp: '1h' },
      )
      expect((await tryWith(`Bearer ${arr}`)).status).not.toBe(401)
    })
    test('missing scope, read-only scope, another project\'s scope: 401 "No project access."', async () => {
      for (const claims of [
        {},
        { scope: '' },
        { scope: 'read:project:0001' },
        { scope: 'write:project:0002' },
        { scope: 'something:else' },
      ]) {
        const r = await tryWith(`Bearer ${await jwt(claims)}`)
        expect(r.status).toBe(401)
        expect(reason(r)).toBe('No project access.')
      }
    })
    test('a malformed scope fails the whole token', async () => {
      const r = await tryWith(`Bearer ${await jwt({ scope: 'admin write:project:12345' })}`)
      expect(r.status).toBe(401)
      expect(reason(r)).toMatch(/^Invalid contents: Predicate failed/)
      expect((await tryWith(`Bearer ${await jwt({ scope: ['admin'] })}`)).status).toBe(401)
    })
    test('write:project:<sc> (any case) and admin are let in', async () => {
      for (const scope of [
        'write:project:0001',
        'read:project:0001 write:project:0001',
        'admin',
        'write:project:00ab',
      ]) {
        const r = await request(url(scope.endsWith('00ab') ? '00AB' : '0001', '/mapping.csv'), {
          headers: { Authorization: `Bearer ${await jwt({ scope })}` },
        })
        expect([200, 404]).toContain(r.status)
      }
    })
  })
})

describe('bulk ingest across two instances (shared Redis and data directory)', () => {
  let a: TestServer
  let b: TestServer
  let shared: string
  let cfgDir: string
  let auth: Record<string, string>

  beforeAll(async () => {
    shared = tempDir()
    cfgDir = tempDir()
    const env = {
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_DATA_DIR: shared,
      FERRY_CONFIG: configFile(cfgDir),
    }
    a = await startFerry(env)
    b = await startFerry(env)
    auth = { Authorization: `Bearer ${await jwt({ scope: 'write:project:0ABC' })}` }
  })
  afterAll(async () => {
    await a.close()
    await b.close()
    removeDir(shared)
    removeDir(cfgDir)
  })

  test('200 files in nested folders: a complete mapping, derivatives hash to originals, 409 everywhere while it runs', async () => {
    const sc = '0abc'
    const base = (s: TestServer, rest = '') => `${s.url}/projects/${sc}/bulk-ingest${rest}`
    const files = new Map<string, Buffer>()
    for (let i = 0; i < 200; i++) {
      const p = `set-${i % 4}/part ${i % 7}/${i % 3 === 0 ? 'deep/' : ''}file-${i}.${['tif', 'txt', 'jp2', 'pdf'][i % 4]}`
      files.set(p, seededBytes(4096 + ((i * 7919) % 60_000), p))
    }
    const entries = [...files]
    // Uploads alternate between the instances, four at a time.
    for (let i = 0; i < entries.length; i += 4) {
      const batch = entries.slice(i, i + 4).map(([p, data], j) =>
        request(base((i + j) % 2 === 0 ? a : b, `/ingest/${encodeURIComponent(p)}`), {
          method: 'POST',
          headers: { ...auth, 'Content-Type': 'application/octet-stream' },
          body: data,
        }),
      )
      for (const r of await Promise.all(batch)) expect(r.status).toBe(200)
    }
    let r = await request(base(a), { method: 'POST', headers: auth })
    expect(r.status).toBe(202)
    expect(r.json()).toEqual({ id: sc })
    // While A runs it, every bulk route of the project on B (and on A) answers 409.
    const busy = await Promise.all([
      request(base(b), { method: 'POST', headers: auth }),
      request(base(b, '/mapping.csv'), { headers: auth }),
      request(base(b, '/finalize'), { method: 'POST', headers: auth }),
      request(base(b, '/ingest/late.txt'), { method: 'POST', headers: auth, body: 'late' }),
      request(base(a), { method: 'POST', headers: auth }),
    ])
    for (const x of busy) {
      expect(x.status).toBe(409)
      expect(x.json()).toEqual({
        reason: `A bulk ingest is currently in progress for project ${sc}.`,
      })
    }
    r = await waitFor(
      'the ingest to end',
      async () => {
        const m = await request(base(b, '/mapping.csv'), { headers: auth })
        return m.status === 409 ? null : m
      },
      { timeoutMs: 120_000 },
    )
    expect(r.status).toBe(200)
    const lines = r.text().split('\n')
    expect(lines[0]).toBe('original,derivative')
    expect(lines).toHaveLength(201)
    const seen = new Set<string>()
    for (const line of lines.slice(1)) {
      const original = line.slice(0, line.lastIndexOf(','))
      const deriv = line.slice(line.lastIndexOf(',') + 1)
      expect(seen.has(original)).toBe(false)
      seen.add(original)
      const data = files.get(original)
      expect(data).toBeDefined()
      const id = deriv.slice(0, 23)
      const dir = join(
        shared,
        'ingest',
        sc,
        'assets',
        id.slice(0, 2).toLowerCase(),
        id.slice(2, 4).toLowerCase(),
      )
      expect(sha256(readFileSync(join(dir, deriv)))).toBe(sha256(data!))
      expect(sha256(readFileSync(join(dir, `${deriv}.orig`)))).toBe(sha256(data!))
      const info = JSON.parse(readFileSync(join(dir, `${id}.info`), 'utf8')) as Record<
        string,
        string
      >
      expect(info['checksumDerivative']).toBe(sha256(data!))
      expect(info['checksumOriginal']).toBe(sha256(data!))
    }
    expect(seen.size).toBe(200)
    const leftFiles = readdirSync(join(shared, 'ingest', sc, 'import'), {
      recursive: true,
      withFileTypes: true,
    }).filter((e) => e.isFile())
    expect(leftFiles).toEqual([])
    // The lock is free again: B may upload, and finalize from B cleans up for both.
    expect(
      (await request(base(b, '/ingest/late.txt'), { method: 'POST', headers: auth, body: 'late' }))
        .status,
    ).toBe(200)
    expect((await request(base(b, '/finalize'), { method: 'POST', headers: auth })).status).toBe(
      200,
    )
    const after = await waitFor('finalize to finish', async () => {
      const m = await request(base(a, '/mapping.csv'), { headers: auth })
      return m.status === 409 ? null : m
    })
    expect(after.status).toBe(404)
    expect(existsSync(join(shared, 'ingest', sc, 'import'))).toBe(false)
  }, 180_000)
})
