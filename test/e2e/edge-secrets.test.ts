/**
 * Issue 17 item 11: no configured secret reaches a log. A full scenario — lakeFS with basic auth
 * and JWT, presigned uploads (good and bad signatures), bulk ingest with a valid and a malformed
 * token, credentials in query strings, and Ferry processes whose start fails on a Redis URL with a
 * password — runs with every log line captured (level trace), then the logs and the start-up
 * output are searched for every secret: signing secret, JWT secrets, secret access key, the basic
 * credentials, every token and token signature, every presigned signature, the Redis password.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { createServer, type Server, type Socket } from 'node:net'
import {
  BASIC_AUTH,
  SECRETS,
  ingestToken,
  lakefsToken,
  presignedTarget,
  writeFamiliesConfig,
} from '../helpers/edge-families.js'
import { captureLog, startEdge, type CapturedLog, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { freePort } from '../helpers/redis.js'
import { MAIN_JS, removeDir, spawnFerry, tempDir } from '../helpers/server.js'

const REDIS_PASSWORD = 'edge-redis-pw-5e4d3c2b'

let srv: EdgeServer
let dir: string
let log: CapturedLog
/** Every secret the scenario used; none may appear in any log. */
const secrets = new Set<string>(Object.values(SECRETS).filter((s) => s !== SECRETS.accessKeyId))
/** Start-up output of the Ferry processes that failed on Redis. */
let startupOutput = ''

beforeAll(async () => {
  dir = tempDir('ferry-edge-secrets-')
  log = captureLog('trace')
  srv = await startEdge({ FERRY_CONFIG: writeFamiliesConfig(dir) }, { log: log.logger })
  secrets.add(BASIC_AUTH.slice('Basic '.length))
  secrets.add(REDIS_PASSWORD)
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
  removeDir(dir)
})

const addToken = (t: string) => {
  secrets.add(t)
  secrets.add(t.split('.').at(-1)!) // the signature alone
}

describe('secrets never reach the logs', () => {
  test('lakeFS: basic auth, JWT, presigned uploads with good and bad signatures, link', async () => {
    const jwt = await lakefsToken()
    addToken(jwt)
    expect(
      (await request(`${srv.url}/api/v1/config`, { headers: { Authorization: BASIC_AUTH } }))
        .status,
    ).toBe(200)
    expect(
      (await request(`${srv.url}/api/v1/config`, { headers: { Authorization: `Bearer ${jwt}` } }))
        .status,
    ).toBe(200)
    expect(
      (await request(`${srv.url}/api/v1/config`, { headers: { Authorization: `Bearer ${jwt}x` } }))
        .status,
    ).toBe(401)
    const target = await presignedTarget(srv.url, 'secrets/a.bin')
    const sig = new URLSearchParams(target.split('?')[1]).get('X-Ferry-Signature')!
    secrets.add(sig)
    const put = await request(`${srv.url}${target}`, { method: 'PUT', body: 'hello' })
    expect(put.status).toBe(200)
    const bad = target.replace(sig, `${sig.slice(0, -4)}AAAA`)
    secrets.add(`${sig.slice(0, -4)}AAAA`)
    expect((await request(`${srv.url}${bad}`, { method: 'PUT', body: 'hello' })).status).toBe(403)
    const path = decodeURIComponent(target.split('/_ferry/presigned/repo1/')[1]!.split('?')[0]!)
    const link = await request(
      `${srv.url}/api/v1/repositories/repo1/branches/main/staging/backing?path=secrets/a.bin`,
      {
        method: 'PUT',
        headers: { Authorization: BASIC_AUTH, 'Content-Type': 'application/json' },
        body: JSON.stringify({
          staging: {
            physical_address: `local://repo1/${path}`,
            presigned_url: `${srv.url}${target}`,
          },
          checksum: String(put.headers['etag']).replace(/"/g, ''),
          size_bytes: 5,
        }),
      },
    )
    expect(link.status).toBe(200)
  })

  test('bulk ingest: a valid token, and a malformed one that is not echoed in the answer either', async () => {
    const token = await ingestToken()
    addToken(token)
    const ok = await request(`${srv.url}/projects/0a0b/bulk-ingest/ingest/s.txt`, {
      method: 'POST',
      body: 'x',
      headers: { Authorization: `Bearer ${token}` },
    })
    expect(ok.status).toBe(200)
    // A valid token plus a stray part: logged in full, it would be a working token.
    const malformed = `${token}.x`
    const r = await request(`${srv.url}/projects/0a0b/bulk-ingest/ingest/s.txt`, {
      method: 'POST',
      body: 'x',
      headers: { Authorization: `Bearer ${malformed}` },
    })
    expect(r.status).toBe(401)
    expect(r.text()).not.toContain(token.split('.')[2]!)
    expect(r.text()).not.toContain(token.split('.')[1]!)
  })

  test('credentials in query strings (a client that puts its token or an S3 signature there)', async () => {
    const token = await ingestToken()
    addToken(token)
    secrets.add('s3sig0123456789abcdef')
    secrets.add('AKIAQUERYCREDENTIAL/20261125')
    const q = `token=${token}&X-Amz-Signature=s3sig0123456789abcdef&X-Amz-Credential=${encodeURIComponent('AKIAQUERYCREDENTIAL/20261125')}&access_token=${token}`
    expect((await request(`${srv.url}/ImageStore/q?api-version=6.0&${q}`)).status).toBe(404)
    expect((await request(`${srv.url}/projects/0a0b/bulk-ingest/mapping.csv?${q}`)).status).toBe(
      401,
    )
  })

  test('a Redis URL with a password: neither a refused URL nor a Redis that never answers prints the password', async () => {
    // A bad scheme: the configuration refuses it, naming the key.
    const bad = spawnSync(process.execPath, [MAIN_JS], {
      env: {
        PATH: process.env['PATH'] ?? '',
        REDIS_URL: `http://user:${REDIS_PASSWORD}@127.0.0.1:1/0`,
        FERRY_DATA_DIR: dir,
      },
      encoding: 'utf8',
      timeout: 10_000,
    })
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('REDIS_URL')
    startupOutput += bad.stdout + bad.stderr
    // A server that accepts and never answers: the connection attempt times out (10 s).
    const sockets: Socket[] = []
    const silent: Server = createServer((s) => void sockets.push(s))
    const port = await freePort()
    await new Promise<void>((res) => silent.listen(port, '127.0.0.1', () => res()))
    try {
      let message = ''
      try {
        const child = await spawnFerry({
          REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${port}/0`,
          FERRY_DATA_DIR: dir,
        })
        child.proc.kill('SIGKILL')
        throw new Error('ferry started against a Redis that never answers')
      } catch (err) {
        message = (err as Error).message
      }
      expect(message).toMatch(/ferry exited early \(1\)/)
      expect(message).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1/)
      startupOutput += message
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }
  }, 30_000)

  test('none of the secrets is in any log line or start-up output', async () => {
    // A window for the last requests' lines (written as the server sees their sockets close):
    // what follows asserts an absence, which has no event to wait on.
    await new Promise((res) => setTimeout(res, 200))
    const text = log.text() + startupOutput
    expect(log.lines.length).toBeGreaterThan(10)
    const found = [...secrets].filter((s) => text.includes(s))
    expect(found).toEqual([])
    // The request lines kept the parameter names.
    expect(text).toContain('X-Ferry-Signature=[REDACTED]')
  })
})
