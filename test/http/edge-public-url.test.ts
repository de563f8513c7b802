/**
 * Issue 9 item 13: FERRY_PUBLIC_URL is the origin of every URL Ferry hands out (lakeFS
 * `presigned_url`); the request's Host is used only when it is unset. The value is checked at
 * start: an absolute http(s) URL without query, fragment or credentials.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { ConfigError, loadConfig } from '../../src/config/config.js'
import { BASIC_AUTH, writeFamiliesConfig } from '../helpers/edge-families.js'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { RawConn } from '../helpers/raw-http.js'
import { removeDir, tempDir } from '../helpers/server.js'

let dir: string
let pub: EdgeServer
let plain: EdgeServer

beforeAll(async () => {
  dir = tempDir('ferry-edge-puburl-')
  const cfg = writeFamiliesConfig(dir)
  pub = await startEdge({
    FERRY_CONFIG: cfg,
    FERRY_PUBLIC_URL: 'https://uploads.example.org/ferry/',
  })
  plain = await startEdge({ FERRY_CONFIG: cfg })
})
afterAll(async () => {
  await pub.close()
  await plain.close()
  removeDir(pub.dataDir)
  removeDir(plain.dataDir)
  removeDir(dir)
})

/** GET backing?presign=true with the given Host header; answers presigned_url. */
async function presignedUrl(base: string, host: string): Promise<string> {
  const conn = await RawConn.open(base)
  try {
    // RawConn writes its own Host line; a second one would be refused, so send the head by hand.
    await conn.write(
      Buffer.from(
        `GET /api/v1/repositories/repo1/branches/main/staging/backing?path=p%2Fa.bin&presign=true HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${BASIC_AUTH}\r\n\r\n`,
        'latin1',
      ),
    )
    const a = await conn.answer()
    expect(a.status).toBe(200)
    return (JSON.parse(a.body.toString('utf8')) as { presigned_url: string }).presigned_url
  } finally {
    conn.close()
  }
}

describe('FERRY_PUBLIC_URL', () => {
  test('set: presigned URLs start with it whatever the Host header says, and the URL works', async () => {
    const url = await presignedUrl(pub.url, 'internal-name')
    expect(
      url.startsWith('https://uploads.example.org/ferry/api/v1/_ferry/presigned/repo1/data/'),
    ).toBe(true)
    // Behind the proxy that strips /ferry, the path and signature are those Ferry checks.
    const u = new URL(url)
    const path = u.pathname.slice('/ferry'.length) + u.search
    expect((await request(`${pub.url}${path}`, { method: 'PUT', body: 'abc' })).status).toBe(200)
  })

  test('unset: the Host header as sent (a Host without a port gives no port)', async () => {
    expect(
      (await presignedUrl(plain.url, 'ferry.example:8443')).startsWith(
        'http://ferry.example:8443/api/v1/_ferry/presigned/',
      ),
    ).toBe(true)
    expect(
      (await presignedUrl(plain.url, 'ferry.example')).startsWith(
        'http://ferry.example/api/v1/_ferry/presigned/',
      ),
    ).toBe(true)
  })

  test.each([
    ['ftp://x.example', /http:\/\/ or https:\/\//],
    ['uploads.example.org', /absolute/],
    ['https://x.example/?a=1', /query/],
    ['https://x.example/#f', /fragment/],
    ['https://user:pw@x.example', /user name or password/],
  ])('%s is refused at start', (value, why) => {
    let err: unknown = null
    try {
      loadConfig({ FERRY_PUBLIC_URL: value })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(/^FERRY_PUBLIC_URL /)
    expect((err as Error).message).toMatch(why)
    expect((err as Error).message).not.toContain('pw@')
  })

  test('accepted forms are normalised: origin plus path, no trailing slash', () => {
    expect(loadConfig({ FERRY_PUBLIC_URL: 'https://X.example:443/' }).http.publicUrl).toBe(
      'https://x.example',
    )
    expect(loadConfig({ FERRY_PUBLIC_URL: 'http://x.example:8080/a/b/' }).http.publicUrl).toBe(
      'http://x.example:8080/a/b',
    )
    expect(loadConfig({}).http.publicUrl).toBeNull()
  })
})

describe('the other edge settings are validated', () => {
  test('defaults: 1 KiB/s over 60 s, 64 MiB free for readiness; 0 disables; bad values name the key', () => {
    const d = loadConfig({})
    expect([
      d.http.minBodyRateBytesPerSec,
      d.http.minBodyRateWindowSec,
      d.storage.readyMinFreeBytes,
    ]).toEqual([1024, 60, 64 * 1024 * 1024])
    expect(loadConfig({ FERRY_MIN_BODY_RATE_BYTES_PER_SEC: '0' }).http.minBodyRateBytesPerSec).toBe(
      0,
    )
    expect(() => loadConfig({ FERRY_MIN_BODY_RATE_WINDOW_SEC: 'soon' })).toThrow(
      /^FERRY_MIN_BODY_RATE_WINDOW_SEC must be a whole number/,
    )
    expect(() => loadConfig({ FERRY_MIN_BODY_RATE_BYTES_PER_SEC: '-1' })).toThrow(
      /^FERRY_MIN_BODY_RATE_BYTES_PER_SEC /,
    )
    expect(() => loadConfig({ FERRY_READY_MIN_FREE_BYTES: '1e9' })).toThrow(
      /^FERRY_READY_MIN_FREE_BYTES /,
    )
  })
})
