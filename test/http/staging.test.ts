import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { makeSignedAddress, presignQuery } from '../../src/core/staging/signing.js'
import { request, seededBytes, type Reply } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { nowSeconds, signJwt } from '../helpers/jwt.js'
import { basicAuth, stagingBackingUrl, type StagingLocation } from '../helpers/staging.js'
import { removeDir, startFerry, tempDir, writeConfig, type TestServer } from '../helpers/server.js'

const SIGNING = 'test-signing-secret'
const JWT_SECRET = 'test-jwt-secret'
const BASIC = basicAuth('AKIAFERRY', 's3cr3t-key')
const LAKEFS = {
  signingSecret: SIGNING,
  jwtSecret: JWT_SECRET,
  credentials: [
    { accessKeyId: 'AKIAFERRY', secretAccessKey: 's3cr3t-key' },
    { accessKeyId: 'AKIAOTHER', secretAccessKey: 'other-secret' },
  ],
  repositories: [
    { name: 'repo1', storageNamespace: 'local://repo1', branches: ['main', 'dev'] },
    { name: 'repo2', storageNamespace: 'local://bucket/repo2/', branches: ['main'] },
  ],
}
const MAX_UPLOAD = 1024 * 1024

let srv: TestServer
let ext: TestServer
let cfgDir: string

const configFile = (name: string, lakefs: object): string => writeConfig(cfgDir, name, { lakefs })

/** The post-finish events a hook receiver got from `srv`. */
const finishedEvents: { event: string; upload: Record<string, unknown> }[] = []
let hookServer: Server

beforeAll(async () => {
  cfgDir = tempDir('ferry-lakefs-cfg-')
  hookServer = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => {
      finishedEvents.push(JSON.parse(Buffer.concat(parts).toString()))
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r))
  const hook = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/`
  const common = { REDIS_URL: testRedisUrl(), FERRY_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) }
  srv = await startFerry({
    ...common,
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_CONFIG: configFile('a.json', LAKEFS),
    FERRY_HOOK_URL: hook,
  })
  ext = await startFerry({
    ...common,
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_CONFIG: configFile('b.json', { ...LAKEFS, allowExternalAddresses: true }),
  })
})
afterAll(async () => {
  await srv.close()
  await ext.close()
  await new Promise((r) => hookServer.close(r))
  removeDir(srv.dataDir)
  removeDir(ext.dataDir)
  removeDir(cfgDir)
})

const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex')
const msg = (r: Reply) => r.json<{ message: string }>().message
const backingUrl = stagingBackingUrl

async function getAddress(
  base: string,
  repo: string,
  branch: string,
  path: string,
  presign: boolean,
): Promise<StagingLocation> {
  const r = await request(backingUrl(base, repo, branch, path, presign ? '&presign=true' : ''), {
    headers: { Authorization: BASIC },
  })
  expect(r.status).toBe(200)
  return r.json<StagingLocation>()
}

function putPresigned(
  url: string,
  body: Buffer,
  headers: Record<string, string | number> = {},
): Promise<Reply> {
  return request(url, {
    method: 'PUT',
    body,
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
  })
}

function link(
  base: string,
  repo: string,
  branch: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return request(backingUrl(base, repo, branch, path), {
    method: 'PUT',
    body: JSON.stringify(body),
    headers: { Authorization: BASIC, 'Content-Type': 'application/json', ...headers },
  })
}

/** Address + presigned PUT of `data`; answers the location and the md5 hex. */
async function stage(
  base: string,
  repo: string,
  branch: string,
  path: string,
  data: Buffer,
): Promise<{ loc: StagingLocation; md5: string }> {
  const loc = await getAddress(base, repo, branch, path, true)
  const r = await putPresigned(loc.presigned_url!, data)
  expect(r.status).toBe(200)
  return { loc, md5: md5hex(data) }
}

const dataFileOf = (s: TestServer, repo: string, physical: string) =>
  join(s.dataDir, 'staging', repo, physical.slice(physical.indexOf('/data/') + 1))
const entryFileOf = (s: TestServer, repo: string, branch: string, path: string) => {
  const segs = path.split('/')
  return join(
    s.dataDir,
    'staging',
    repo,
    'branches',
    branch,
    'objects',
    ...segs.map((x, i) => (i === segs.length - 1 ? `${x}.o` : `${x}.d`)),
  )
}
const entryOf = (s: TestServer, repo: string, branch: string, path: string) =>
  JSON.parse(readFileSync(entryFileOf(s, repo, branch, path), 'utf8')) as {
    blob: string | null
    stats: { checksum: string }
  }
const blobBytes = (s: TestServer, repo: string, blob: string) =>
  readFileSync(join(s.dataDir, 'staging', repo, blob))

describe('lakeFS service routes', () => {
  test('GET /api/v1/healthcheck answers 204 without credentials', async () => {
    const r = await request(`${srv.url}/api/v1/healthcheck`)
    expect(r.status).toBe(204)
    expect(r.body.length).toBe(0)
  })

  test('GET /api/v1/config needs auth and offers presigned single-part and multipart uploads', async () => {
    const anon = await request(`${srv.url}/api/v1/config`)
    expect(anon.status).toBe(401)
    expect(anon.text()).toBe('{"message":"error authenticating request"}\n')
    expect(anon.headers['www-authenticate']).toBeUndefined()
    const r = await request(`${srv.url}/api/v1/config`, { headers: { Authorization: BASIC } })
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('application/json')
    expect(r.headers['x-content-type-options']).toBe('nosniff')
    const c = r.json<{
      storage_config: Record<string, unknown>
      storage_config_list: unknown[]
      version_config: { version: string }
    }>()
    expect(c.storage_config).toMatchObject({
      blockstore_type: 'local',
      blockstore_namespace_example: 'local://example-bucket/',
      blockstore_namespace_ValidityRegex: '^local://',
      pre_sign_support: true,
      pre_sign_support_ui: false,
      import_support: false,
      import_validity_regex: '^local://',
      pre_sign_multipart_upload: true,
    })
    expect(c.storage_config_list).toEqual([c.storage_config])
    expect(c.version_config.version).toMatch(/^\d+\.\d+\.\d+$/)
  })

  test('unknown paths under /api/v1 are 404 "invalid API endpoint", wrong methods 405; /api/v1x is not ours', async () => {
    const r = await request(`${srv.url}/api/v1/repositories/repo1/branches/main/objects?path=a`, {
      headers: { Authorization: BASIC },
    })
    expect([r.status, msg(r)]).toEqual([404, 'invalid API endpoint'])
    const m = await request(backingUrl(srv.url, 'repo1', 'main', 'a'), {
      method: 'DELETE',
      headers: { Authorization: BASIC },
    })
    expect(m.status).toBe(405)
    expect(m.headers['allow']).toBe('GET, PUT')
    expect((await request(`${srv.url}/api/v1/healthcheck`, { method: 'POST' })).status).toBe(405)
    const v3 = await request(`${srv.url}/api/v1x/healthcheck`)
    expect(v3.status).toBe(404)
    expect(v3.text()).not.toContain('invalid API endpoint')
  })

  test('without a lakefs section the family is not mounted', async () => {
    const plain = await startFerry({
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
    })
    try {
      const r = await request(`${plain.url}/api/v1/healthcheck`)
      expect(r.status).toBe(404)
      expect(r.text()).not.toContain('invalid API endpoint')
    } finally {
      await plain.close()
      removeDir(plain.dataDir)
    }
  })
})

describe('authentication', () => {
  const cfg = (headers: Record<string, string>) => request(`${srv.url}/api/v1/config`, { headers })
  const jwt = (claims: Record<string, unknown>, secret = JWT_SECRET, alg = 'HS256') =>
    signJwt(claims, { secret, alg })
  const inOneHour = () => nowSeconds() + 3600

  test('basic auth: every configured key works; a bad secret, an unknown key or junk is 401', async () => {
    expect((await cfg({ Authorization: BASIC })).status).toBe(200)
    expect(
      (
        await cfg({
          Authorization: `basic ${Buffer.from('AKIAOTHER:other-secret').toString('base64')}`,
        })
      ).status,
    ).toBe(200)
    for (const bad of [
      `Basic ${Buffer.from('AKIAFERRY:wrong').toString('base64')}`,
      `Basic ${Buffer.from('AKIAFERRY:s3cr3t-key ').toString('base64')}`,
      `Basic ${Buffer.from('AKIAFERRY:other-secret').toString('base64')}`,
      `Basic ${Buffer.from('AKIANOBODY:s3cr3t-key').toString('base64')}`,
      `Basic ${Buffer.from('no-colon').toString('base64')}`,
      'Basic',
      'Digest abc',
    ]) {
      const r = await cfg({ Authorization: bad })
      expect([bad, r.status]).toEqual([bad, 401])
      expect(msg(r)).toBe('error authenticating request')
    }
  })

  test('JWT bearer: HS256 with the secret and exp works; wrong secret, expired, no exp, malformed, wrong aud are 401', async () => {
    expect(
      (await cfg({ Authorization: `Bearer ${await jwt({ sub: 'alice', exp: inOneHour() })}` }))
        .status,
    ).toBe(200)
    expect(
      (
        await cfg({
          Authorization: `Bearer ${await jwt({ sub: 'alice', aud: 'login', iss: 'auth', exp: inOneHour() })}`,
        })
      ).status,
    ).toBe(200)
    const bad = [
      await jwt({ sub: 'alice', exp: inOneHour() }, 'not-the-secret'),
      await jwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 }),
      await jwt({ sub: 'alice' }),
      await jwt({ sub: 'alice', aud: 'someone-else', exp: inOneHour() }),
      await jwt({ exp: inOneHour() }),
      'not.a.jwt',
      'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.',
    ]
    for (const token of bad) {
      const r = await cfg({ Authorization: `Bearer ${token}` })
      expect([token, r.status]).toEqual([token, 401])
      expect(r.text()).toBe('{"message":"error authenticating request"}\n')
    }
  })

  test('staging routes need auth too; the presigned PUT does not', async () => {
    expect((await request(backingUrl(srv.url, 'repo1', 'main', 'x'))).status).toBe(401)
    const l = await request(backingUrl(srv.url, 'repo1', 'main', 'x'), {
      method: 'PUT',
      body: '{}',
      headers: { 'Content-Type': 'application/json' },
    })
    expect(l.status).toBe(401)
    const loc = await getAddress(srv.url, 'repo1', 'main', 'auth/free.bin', true)
    expect((await putPresigned(loc.presigned_url!, Buffer.from('no auth header'))).status).toBe(200)
  })

  test('a page may PUT to a presigned URL: CORS preflight and answer headers', async () => {
    const loc = await getAddress(srv.url, 'repo1', 'main', 'cors/page.bin', true)
    const origin = 'https://ui.example'
    const pre = await request(loc.presigned_url!, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'PUT' },
    })
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe('*')
    expect(String(pre.headers['access-control-allow-methods'])).toContain('PUT')
    expect(String(pre.headers['access-control-allow-headers'])).toContain('Content-MD5')
    const body = Buffer.from('from a page')
    const put = await putPresigned(loc.presigned_url!, body, { Origin: origin })
    expect(put.status).toBe(200)
    expect(put.headers['access-control-allow-origin']).toBe('*')
    expect(String(put.headers['access-control-expose-headers'])).toContain('ETag')
  })
})

describe('GET staging/backing (getPhysicalAddress)', () => {
  test('without presign: a signed address in the namespace, presigned_url null, no expiry', async () => {
    const r = await request(backingUrl(srv.url, 'repo1', 'main', 'dir/file.csv'), {
      headers: { Authorization: BASIC },
    })
    expect(r.status).toBe(200)
    expect(r.text().endsWith('}\n')).toBe(true)
    const loc = r.json<StagingLocation>()
    expect(Object.keys(loc)).toEqual(['physical_address', 'presigned_url'])
    expect(loc.presigned_url).toBeNull()
    expect(loc.physical_address).toMatch(
      /^local:\/\/repo1\/data\/[0-9a-v]{20}\/[0-9a-v]{20},[A-Za-z0-9_-]{43}$/,
    )
    const again = await getAddress(srv.url, 'repo1', 'main', 'dir/file.csv', false)
    expect(again.physical_address).not.toBe(loc.physical_address)
    const ns2 = await getAddress(srv.url, 'repo2', 'main', 'x', false)
    expect(ns2.physical_address).toMatch(/^local:\/\/bucket\/repo2\/data\//)
  })

  test('with presign=true: a URL on the Host the client used, expiring after presignTtlSec', async () => {
    const before = Math.floor(Date.now() / 1000)
    const port = new URL(srv.url).port
    const r = await request(backingUrl(srv.url, 'repo1', 'main', 'p.bin', '&presign=true'), {
      headers: { Authorization: BASIC, Host: `localhost:${port}` },
    })
    expect(r.status).toBe(200)
    const loc = r.json<StagingLocation>()
    expect(Object.keys(loc)).toEqual(['physical_address', 'presigned_url', 'presigned_url_expiry'])
    const u = new URL(loc.presigned_url!)
    expect(u.origin).toBe(`http://localhost:${port}`)
    expect(u.pathname).toBe(
      `/api/v1/_ferry/presigned/repo1/${loc.physical_address.slice('local://repo1/'.length)}`,
    )
    expect(loc.presigned_url_expiry).toBeGreaterThanOrEqual(before + 900)
    expect(loc.presigned_url_expiry).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 900)
    expect(u.searchParams.get('X-Ferry-Expires')).toBe(String(loc.presigned_url_expiry))
    expect((await getAddress(srv.url, 'repo1', 'main', 'p.bin', false)).presigned_url).toBeNull()
  })

  test('unknown repository 404; unknown branch is not checked here (as lakeFS)', async () => {
    const r = await request(backingUrl(srv.url, 'nope', 'main', 'a'), {
      headers: { Authorization: BASIC },
    })
    expect(r.status).toBe(404)
    expect(r.text()).toBe('{"message":"repository not found"}\n')
    expect(
      (
        await request(backingUrl(srv.url, 'repo1', 'ghost', 'a'), {
          headers: { Authorization: BASIC },
        })
      ).status,
    ).toBe(200)
  })

  test('missing path, a bad presign value or an unusable path is 400', async () => {
    const noPath = await request(
      `${srv.url}/api/v1/repositories/repo1/branches/main/staging/backing`,
      { headers: { Authorization: BASIC } },
    )
    expect([noPath.status, msg(noPath)]).toEqual([
      400,
      'parameter "path" in query has an error: value is required but missing',
    ])
    const badBool = await request(backingUrl(srv.url, 'repo1', 'main', 'a', '&presign=maybe'), {
      headers: { Authorization: BASIC },
    })
    expect(badBool.status).toBe(400)
    expect(msg(badBool)).toContain('presign')
    for (const p of [
      '',
      '../x',
      'a/../../x',
      '/abs',
      'a//b',
      'a\\b',
      'x'.repeat(254),
      'a\u0000b',
    ]) {
      const r = await request(backingUrl(srv.url, 'repo1', 'main', p), {
        headers: { Authorization: BASIC },
      })
      expect([p, r.status]).toEqual([p, 400])
    }
  })
})

describe('presigned PUT', () => {
  test('raw body: 200 with ETag "<md5 hex>" and Content-MD5, bytes at the address', async () => {
    const data = seededBytes(200_000, 'raw-put')
    const loc = await getAddress(srv.url, 'repo1', 'main', 'put/raw.bin', true)
    const r = await putPresigned(loc.presigned_url!, data)
    expect(r.status).toBe(200)
    expect(r.headers['etag']).toBe(`"${md5hex(data)}"`)
    expect(r.headers['content-md5']).toBe(createHash('md5').update(data).digest('base64'))
    expect(readFileSync(dataFileOf(srv, 'repo1', loc.physical_address)).equals(data)).toBe(true)
  })

  test('multipart/form-data body: the file part is stored', async () => {
    const data = seededBytes(50_000, 'mp-put')
    const loc = await getAddress(srv.url, 'repo1', 'main', 'put/mp.bin', true)
    const boundary = '----ferryboundary'
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="content"; filename="mp.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ])
    const r = await putPresigned(loc.presigned_url!, body, {
      'Content-Type': `multipart/form-data; boundary=${boundary}`,
    })
    expect(r.status).toBe(200)
    expect(r.headers['etag']).toBe(`"${md5hex(data)}"`)
    expect(readFileSync(dataFileOf(srv, 'repo1', loc.physical_address)).equals(data)).toBe(true)
  })

  test('an empty body is a 0-byte object', async () => {
    const loc = await getAddress(srv.url, 'repo1', 'main', 'put/empty', true)
    const r = await putPresigned(loc.presigned_url!, Buffer.alloc(0))
    expect(r.status).toBe(200)
    expect(r.headers['etag']).toBe('"d41d8cd98f00b204e9800998ecf8427e"')
    expect(readFileSync(dataFileOf(srv, 'repo1', loc.physical_address)).length).toBe(0)
  })

  const s3 = (r: Reply) => {
    expect(r.headers['content-type']).toBe('application/xml')
    return /<Code>([^<]+)<\/Code>/.exec(r.text())?.[1]
  }

  test('a tampered, moved, expired or missing signature is 403 (S3-style XML); nothing is written', async () => {
    const loc = await getAddress(srv.url, 'repo1', 'main', 'put/sig.bin', true)
    const u = new URL(loc.presigned_url!)
    const sig = u.searchParams.get('X-Ferry-Signature')!
    const body = Buffer.from('should not land')

    const tampered = new URL(u)
    tampered.searchParams.set(
      'X-Ferry-Signature',
      `${sig.startsWith('A') ? 'B' : 'A'}${sig.slice(1)}`,
    )
    let r = await putPresigned(tampered.href, body)
    expect(r.status).toBe(403)
    expect(s3(r)).toBe('SignatureDoesNotMatch')

    const longer = new URL(u)
    longer.searchParams.set(
      'X-Ferry-Expires',
      String(Number(u.searchParams.get('X-Ferry-Expires')) + 86400),
    )
    r = await putPresigned(longer.href, body)
    expect([r.status, s3(r)]).toEqual([403, 'SignatureDoesNotMatch'])

    // The same signature on another address (another path's upload) does not carry over.
    const other = await getAddress(srv.url, 'repo1', 'main', 'put/other.bin', true)
    const moved = new URL(other.presigned_url!)
    moved.search = u.search
    r = await putPresigned(moved.href, body)
    expect([r.status, s3(r)]).toEqual([403, 'SignatureDoesNotMatch'])

    // A URL signed with the right key whose expiry has passed.
    const rel = loc.physical_address.slice('local://repo1/'.length)
    const expired = `${u.origin}${u.pathname}?${presignQuery(SIGNING, 'repo1', rel, Math.floor(Date.now() / 1000) - 5)}`
    r = await putPresigned(expired, body)
    expect(r.status).toBe(403)
    expect(s3(r)).toBe('AccessDenied')
    expect(r.text()).toContain('Request has expired')

    r = await putPresigned(`${u.origin}${u.pathname}`, body)
    expect([r.status, s3(r)]).toEqual([403, 'AccessDenied'])
    expect(existsSync(dataFileOf(srv, 'repo1', loc.physical_address))).toBe(false)
    expect(existsSync(dataFileOf(srv, 'repo1', other.physical_address))).toBe(false)
  })

  test('a URL with presignTtlSec: 1 stops working after its second', async () => {
    const short = await startFerry({
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_CONFIG: configFile('short.json', { ...LAKEFS, presignTtlSec: 1 }),
    })
    try {
      const loc = await getAddress(short.url, 'repo1', 'main', 'short.bin', true)
      // Valid through second `expiry`, refused from expiry+1: wait until then (≤ 2.1 s).
      // Past the URL's expiry: the passing of time is the case under test.
      await new Promise((r) =>
        setTimeout(r, (loc.presigned_url_expiry! + 1) * 1000 - Date.now() + 50),
      )
      const r = await putPresigned(loc.presigned_url!, Buffer.from('late'))
      expect(r.status).toBe(403)
      expect(r.text()).toContain('Request has expired')
    } finally {
      await short.close()
      removeDir(short.dataDir)
    }
  })

  test('a wrong Content-MD5 is 400 BadDigest; over the size limit is 413; GET is 405', async () => {
    const loc = await getAddress(srv.url, 'repo1', 'main', 'put/md5.bin', true)
    let r = await putPresigned(loc.presigned_url!, Buffer.from('hello'), {
      'Content-MD5': createHash('md5').update('other').digest('base64'),
    })
    expect([r.status, s3(r)]).toEqual([400, 'BadDigest'])
    expect(existsSync(dataFileOf(srv, 'repo1', loc.physical_address))).toBe(false)
    r = await putPresigned(loc.presigned_url!, Buffer.from('hello'), {
      'Content-MD5': createHash('md5').update('hello').digest('base64'),
    })
    expect(r.status).toBe(200)
    r = await putPresigned(loc.presigned_url!, Buffer.alloc(MAX_UPLOAD + 1))
    expect([r.status, s3(r)]).toEqual([413, 'EntityTooLarge'])
    expect(readFileSync(dataFileOf(srv, 'repo1', loc.physical_address)).toString()).toBe('hello')
    expect((await request(loc.presigned_url!)).status).toBe(405)
  })
})

describe('PUT staging/backing (linkPhysicalAddress)', () => {
  test('links the staged bytes and answers ObjectStats; the entry keeps its bytes when the address is re-uploaded', async () => {
    const data = seededBytes(70_000, 'link-ok')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'main', 'docs/report.pdf', data)
    const r = await link(srv.url, 'repo1', 'main', 'docs/report.pdf', {
      staging: loc,
      checksum: md5,
      size_bytes: data.length,
      user_metadata: { owner: 'alice' },
      content_type: 'application/pdf',
      mtime: 1700000000,
    })
    expect(r.status).toBe(200)
    expect(r.text().endsWith('}\n')).toBe(true)
    const stats = r.json<Record<string, unknown>>()
    expect(stats).toEqual({
      checksum: md5,
      content_type: 'application/pdf',
      metadata: { owner: 'alice' },
      mtime: 1700000000,
      path: 'docs/report.pdf',
      path_type: 'object',
      physical_address: loc.physical_address,
      size_bytes: data.length,
    })
    // The link is the lakeFS family's success point: post-finish reaches FERRY_HOOK_URL.
    for (let i = 0; i < 100 && !finishedEvents.some((e) => e.upload['family'] === 'lakefs'); i++) {
      await new Promise((res) => setTimeout(res, 20))
    }
    expect(finishedEvents.find((e) => e.upload['family'] === 'lakefs')).toMatchObject({
      event: 'post-finish',
      upload: { id: 'repo1/main/docs/report.pdf', size: data.length, metadata: { owner: 'alice' } },
    })
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
    const entry = entryOf(srv, 'repo1', 'main', 'docs/report.pdf')
    expect(blobBytes(srv, 'repo1', entry.blob!).equals(data)).toBe(true)
    // A second PUT to the still-valid URL replaces the address, not the linked object.
    const other = seededBytes(70_000, 'link-ok-2')
    expect((await putPresigned(loc.presigned_url!, other)).status).toBe(200)
    expect(blobBytes(srv, 'repo1', entry.blob!).equals(data)).toBe(true)
    expect(readFileSync(dataFileOf(srv, 'repo1', loc.physical_address)).equals(other)).toBe(true)
  })

  test('defaults: metadata {}, content type application/octet-stream, mtime now; quoted checksum and base64 Content-MD5 accepted', async () => {
    const data = Buffer.from('defaults')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'main', 'd/one', data)
    const before = Math.floor(Date.now() / 1000)
    let r = await link(srv.url, 'repo1', 'main', 'd/one', {
      staging: loc,
      checksum: ` "${md5}" `,
      size_bytes: data.length,
    })
    expect(r.status).toBe(200)
    const s = r.json<{ metadata: object; content_type: string; mtime: number; checksum: string }>()
    expect(s.metadata).toEqual({})
    expect(s.content_type).toBe('application/octet-stream')
    expect(s.checksum).toBe(md5)
    expect(s.mtime).toBeGreaterThanOrEqual(before)
    const st2 = await stage(srv.url, 'repo1', 'main', 'd/two', data)
    r = await link(srv.url, 'repo1', 'main', 'd/two', {
      staging: st2.loc,
      checksum: Buffer.from(md5, 'hex').toString('base64'),
      size_bytes: data.length,
    })
    expect(r.status).toBe(200)
  })

  test('a path and a path below it can both be objects', async () => {
    for (const p of ['tree', 'tree/leaf', 'tree.o', 'tree.d/x']) {
      const data = Buffer.from(`content of ${p}`)
      const { loc, md5 } = await stage(srv.url, 'repo1', 'main', p, data)
      expect(
        (
          await link(srv.url, 'repo1', 'main', p, {
            staging: loc,
            checksum: md5,
            size_bytes: data.length,
          })
        ).status,
      ).toBe(200)
    }
    for (const p of ['tree', 'tree/leaf', 'tree.o', 'tree.d/x']) {
      expect(blobBytes(srv, 'repo1', entryOf(srv, 'repo1', 'main', p).blob!).toString()).toBe(
        `content of ${p}`,
      )
    }
  })

  test('without a digest sidecar (another writer, a crash) the link hashes the bytes itself', async () => {
    const data = seededBytes(30_000, 'no-sidecar')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'main', 'side/car', data)
    rmSync(`${dataFileOf(srv, 'repo1', loc.physical_address)}.digests`)
    expect(
      (
        await link(srv.url, 'repo1', 'main', 'side/car', {
          staging: loc,
          checksum: '0'.repeat(32),
          size_bytes: data.length,
        })
      ).status,
    ).toBe(400)
    expect(
      (
        await link(srv.url, 'repo1', 'main', 'side/car', {
          staging: loc,
          checksum: md5,
          size_bytes: data.length,
        })
      ).status,
    ).toBe(200)
  })

  test('link trusts a sidecar naming the staged bytes, old or new form; else hashes', async () => {
    const pool = srv.app.engine.pool
    const hashFile = pool.hashFile.bind(pool)
    let hashed = 0
    pool.hashFile = (...args: Parameters<typeof hashFile>) => {
      hashed++
      return hashFile(...args)
    }
    try {
      type Rewrite = (d: Record<string, string>) => object | null
      const linkOf = async (path: string, sidecar: Rewrite) => {
        const data = seededBytes(20_000, path)
        const { loc, md5 } = await stage(srv.url, 'repo1', 'main', path, data)
        const file = `${dataFileOf(srv, 'repo1', loc.physical_address)}.digests`
        const d = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>
        const next = sidecar(d)
        if (next !== null) writeFileSync(file, JSON.stringify(next))
        const before = hashed
        const body = { staging: loc, checksum: md5, size_bytes: data.length }
        expect((await link(srv.url, 'repo1', 'main', path, body)).status).toBe(200)
        return hashed - before
      }
      expect(await linkOf('trust/etag', () => null)).toBe(0)
      const legacy = (d: Record<string, string>) => {
        const [ino, size, mtimeNs] = d['etag']!.split(':')
        return { ino, size, mtimeNs, md5: d['md5'], sha256: d['sha256'] }
      }
      expect(await linkOf('trust/legacy', legacy)).toBe(0)
      expect(await linkOf('trust/other', (d) => ({ ...d, etag: '1:2:3' }))).toBe(1)
    } finally {
      pool.hashFile = hashFile
    }
  })

  test('If-None-Match: * creates only; a plain link replaces and drops the old blob; If-Match and other If-None-Match are 501', async () => {
    const a = Buffer.from('first version')
    const b = Buffer.from('second version!')
    const sa = await stage(srv.url, 'repo1', 'main', 'cond/x', a)
    let r = await link(
      srv.url,
      'repo1',
      'main',
      'cond/x',
      { staging: sa.loc, checksum: sa.md5, size_bytes: a.length },
      { 'If-None-Match': '*' },
    )
    expect(r.status).toBe(200)
    const firstBlob = entryOf(srv, 'repo1', 'main', 'cond/x').blob!
    const sb = await stage(srv.url, 'repo1', 'main', 'cond/x', b)
    r = await link(
      srv.url,
      'repo1',
      'main',
      'cond/x',
      { staging: sb.loc, checksum: sb.md5, size_bytes: b.length },
      { 'If-None-Match': '*' },
    )
    expect(r.status).toBe(412)
    expect(r.text()).toBe('{"message":"Precondition failed"}\n')
    expect(blobBytes(srv, 'repo1', entryOf(srv, 'repo1', 'main', 'cond/x').blob!).equals(a)).toBe(
      true,
    )
    // The refused link left no blob behind.
    const blobCount = () =>
      readdirSync(join(srv.dataDir, 'staging', 'repo1', 'blobs'), { recursive: true }).filter(
        (n) => String(n).length > 10,
      ).length
    const n = blobCount()
    r = await link(srv.url, 'repo1', 'main', 'cond/x', {
      staging: sb.loc,
      checksum: sb.md5,
      size_bytes: b.length,
    })
    expect(r.status).toBe(200)
    expect(blobBytes(srv, 'repo1', entryOf(srv, 'repo1', 'main', 'cond/x').blob!).equals(b)).toBe(
      true,
    )
    expect(existsSync(join(srv.dataDir, 'staging', 'repo1', firstBlob))).toBe(false)
    expect(blobCount()).toBe(n)
    for (const h of [
      { 'If-Match': '*' },
      { 'If-Match': '"abc"', 'If-None-Match': '*' },
      { 'If-None-Match': '"abc"' },
    ]) {
      r = await link(
        srv.url,
        'repo1',
        'main',
        'cond/y',
        { staging: sb.loc, checksum: sb.md5, size_bytes: b.length },
        h,
      )
      expect([r.status, msg(r)]).toEqual([501, 'Not Implemented'])
    }
  })

  test('unknown repository or branch is 404', async () => {
    const data = Buffer.from('x')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'ghost', 'g', data)
    let r = await link(srv.url, 'repo1', 'ghost', 'g', {
      staging: loc,
      checksum: md5,
      size_bytes: 1,
    })
    expect([r.status, msg(r)]).toEqual([404, 'branch not found'])
    r = await link(srv.url, 'nope', 'main', 'g', { staging: loc, checksum: md5, size_bytes: 1 })
    expect([r.status, msg(r)]).toEqual([404, 'repository not found'])
  })

  test('unsigned, malformed, tampered, other-path, other-branch and expired addresses are 400 with lakeFS messages', async () => {
    const data = Buffer.from('signed')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'main', 'sig/a', data)
    const send = (addr: string, path = 'sig/a', branch = 'main') =>
      link(srv.url, 'repo1', branch, path, {
        staging: { physical_address: addr },
        checksum: md5,
        size_bytes: data.length,
      })
    const [unsigned, sig] = loc.physical_address.split(',') as [string, string]
    const cases: [string, Promise<Reply>][] = [
      ['address is not signed: link address invalid', send(unsigned)],
      ['malformed address signature: link address invalid', send(`${unsigned},%%%`)],
      [
        'invalid address signature: link address invalid',
        send(`${unsigned},${sig.startsWith('A') ? 'B' : 'A'}${sig.slice(1)}`),
      ],
      ['invalid address signature: link address invalid', send(loc.physical_address, 'sig/b')],
      [
        'invalid address signature: link address invalid',
        send(loc.physical_address, 'sig/a', 'dev'),
      ],
      [
        'link address expired',
        send(
          `local://repo1/${makeSignedAddress(SIGNING, { repository: 'repo1', branch: 'main', path: 'sig/a' }, Date.now() - 25 * 3600_000)}`,
        ),
      ],
    ]
    for (const [message, p] of cases) {
      const r = await p
      expect([message, r.status, msg(r)]).toEqual([message, 400, message])
    }
    expect((await send(loc.physical_address)).status).toBe(200)
  })

  test('wrong size, wrong or empty checksum are 400; nothing uploaded is 409; a bad body is 400', async () => {
    const data = Buffer.from('0123456789')
    const { loc, md5 } = await stage(srv.url, 'repo1', 'main', 'chk/a', data)
    let r = await link(srv.url, 'repo1', 'main', 'chk/a', {
      staging: loc,
      checksum: md5,
      size_bytes: 11,
    })
    expect(r.status).toBe(400)
    expect(msg(r)).toContain('size_bytes 11 does not match the 10 bytes')
    r = await link(srv.url, 'repo1', 'main', 'chk/a', {
      staging: loc,
      checksum: md5hex(Buffer.from('9876543210')),
      size_bytes: 10,
    })
    expect(r.status).toBe(400)
    expect(msg(r)).toContain('checksum does not match')
    r = await link(srv.url, 'repo1', 'main', 'chk/a', {
      staging: loc,
      checksum: ' "" ',
      size_bytes: 10,
    })
    expect([r.status, msg(r)]).toEqual([400, 'checksum is required'])
    expect(existsSync(entryFileOf(srv, 'repo1', 'main', 'chk/a'))).toBe(false)

    const unused = await getAddress(srv.url, 'repo1', 'main', 'chk/none', false)
    r = await link(srv.url, 'repo1', 'main', 'chk/none', {
      staging: unused,
      checksum: md5,
      size_bytes: 10,
    })
    expect([r.status, msg(r)]).toEqual([409, 'no object was uploaded to this physical address'])

    for (const body of ['{', '[]', '{"staging":{"physical_address":"x"},"checksum":"a"}']) {
      r = await request(backingUrl(srv.url, 'repo1', 'main', 'chk/a'), {
        method: 'PUT',
        body,
        headers: { Authorization: BASIC },
      })
      expect([body, r.status]).toEqual([body, 400])
    }
    r = await link(srv.url, 'repo1', 'main', '../escape', {
      staging: loc,
      checksum: md5,
      size_bytes: 10,
    })
    expect(r.status).toBe(400)
  })

  test('an external address is refused unless allowExternalAddresses; then it is recorded as given', async () => {
    const body = {
      staging: { physical_address: 's3://elsewhere/bucket/key.bin' },
      checksum: 'etag-from-s3',
      size_bytes: 42,
    }
    let r = await link(srv.url, 'repo1', 'main', 'ext/a', body)
    expect(r.status).toBe(400)
    expect(msg(r)).toContain('external addresses are not allowed')
    r = await link(srv.url, 'repo1', 'main', 'ext/a', {
      ...body,
      staging: { physical_address: 'local://repo1/other/key' },
    })
    expect(r.status).toBe(400)
    r = await link(ext.url, 'repo1', 'main', 'ext/a', body)
    expect(r.status).toBe(200)
    expect(r.json()).toMatchObject({
      physical_address: 's3://elsewhere/bucket/key.bin',
      checksum: 'etag-from-s3',
      size_bytes: 42,
      path: 'ext/a',
    })
    expect(entryOf(ext, 'repo1', 'main', 'ext/a').blob).toBeNull()
    // Addresses inside the namespace's data/ are still checked on that server.
    r = await link(ext.url, 'repo1', 'main', 'ext/b', {
      ...body,
      staging: { physical_address: 'local://repo1/data/abc' },
    })
    expect([r.status, msg(r)]).toEqual([400, 'address is not signed: link address invalid'])
  })

  test('refused uploads and links leave no temp files behind', () => {
    expect(readdirSync(join(srv.dataDir, 'tmp'))).toEqual([])
    expect(readdirSync(join(ext.dataDir, 'tmp'))).toEqual([])
  })
})
