/**
 * Issue 9 item 9: the log says what happened at the level it deserves. A run full of client
 * aborts, refusals (4xx) and lakeFS 501s — none of them our fault — writes no error-level line and
 * no stack; refusals are info with their reason; every line has exactly one `msg`. Only our own
 * faults (a 500) are error lines with a stack. The pino output is read from a stream.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  BASIC_AUTH,
  bodyRoutes,
  ingestToken,
  writeFamiliesConfig,
} from '../helpers/edge-families.js'
import { captureLog, startEdge, type CapturedLog, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { RawConn } from '../helpers/raw-http.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

let srv: EdgeServer
let dir: string
let log: CapturedLog

beforeAll(async () => {
  dir = tempDir('ferry-edge-logs-')
  log = captureLog('debug')
  srv = await startEdge({ FERRY_CONFIG: writeFamiliesConfig(dir) }, { log: log.logger })
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
  removeDir(dir)
})

/** A request's line is written when the server is done with it: wait until `ready` holds. */
const waitLogs = (what: string, ready: () => boolean) =>
  waitFor(what, ready, { timeoutMs: 10_000, everyMs: 20 })
const isRefusal = (l: Record<string, unknown>) =>
  typeof l['msg'] === 'string' && (l['msg'] as string).endsWith('refused')
const isGone = (l: Record<string, unknown>) =>
  String(l['msg']).includes('went away') || l['code'] === 'ERR_CLIENT_ABORTED'

/** Sends half a body, then resets the connection. */
async function abortMidBody(
  method: string,
  target: string,
  headers: Record<string, string>,
): Promise<void> {
  const conn = await RawConn.open(srv.url)
  await conn.head(method, target, { ...headers, 'Content-Length': 1 << 20 })
  await conn.write(Buffer.alloc(64 * 1024, 1))
  await new Promise((res) => setTimeout(res, 50)) // a client that stalls mid-body, then goes: the case
  conn.close()
}

describe('log levels and shape', () => {
  test('client aborts, 4xx and lakeFS 501s: no error-level line, no stack, one msg per line', async () => {
    // Client aborts mid-body on every file route.
    for (const r of bodyRoutes().filter((x) => x.kind === 'file')) {
      const headers = await r.headers()
      if (r.name === 'ImageStore UploadChunk')
        headers['Content-Range'] = `bytes 0-${(1 << 20) - 1}/${1 << 20}`
      const target =
        r.name === 'Shaman file upload'
          ? `/api/v3/shaman/files/${'a'.repeat(64)}/${1 << 20}`
          : await r.target(srv.url)
      await abortMidBody(r.method, target, headers)
    }
    // 4xx of every family.
    expect((await request(`${srv.url}/ImageStore/a?api-version=bad`)).status).toBe(400)
    expect(
      (
        await request(`${srv.url}/api/v3/shaman/checkout/requirements`, {
          method: 'POST',
          body: '{',
        })
      ).status,
    ).toBe(400)
    expect(
      (await request(`${srv.url}/api/v1/config`, { headers: { Authorization: 'Basic eDp5' } }))
        .status,
    ).toBe(401)
    expect((await request(`${srv.url}/projects/0a0b/bulk-ingest/mapping.csv`)).status).toBe(401)
    expect(
      (
        await request(`${srv.url}/projects/0a0b/bulk-ingest/mapping.csv`, {
          headers: { Authorization: `Bearer ${await ingestToken()}` },
        })
      ).status,
    ).toBe(404)
    // lakeFS's 501 (If-Match on link), by its spec.
    const r501 = await request(
      `${srv.url}/api/v1/repositories/repo1/branches/main/staging/backing?path=a`,
      {
        method: 'PUT',
        headers: {
          Authorization: BASIC_AUTH,
          'If-Match': '"x"',
          'Content-Type': 'application/json',
        },
        body: '{}',
      },
    )
    expect(r501.status).toBe(501)
    // A multipart body cut before its closing boundary.
    const mp = '--XB\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nx'
    expect(
      (
        await request(`${srv.url}/ImageStore/mp.bin?api-version=6.0`, {
          method: 'PUT',
          body: mp,
          headers: { 'Content-Type': 'multipart/form-data; boundary=XB' },
        })
      ).status,
    ).toBe(400)
    await waitLogs(
      'the refusals and the aborts',
      () => log.lines.filter(isRefusal).length >= 6 && log.lines.some(isGone),
    )

    const text = log.text()
    const lines = text.split('\n').filter((l) => l.trim() !== '')
    expect(lines.length).toBeGreaterThan(10)
    // One msg per line (JSON.parse keeps the last of two keys; the raw text shows both).
    expect(lines.filter((l) => (l.match(/"msg":/g) ?? []).length !== 1)).toEqual([])
    expect(log.lines.filter((l) => (l['level'] as number) >= 50)).toEqual([])
    expect(lines.filter((l) => l.includes('"stack"'))).toEqual([])
    // The refusals are there, at info, with their reason under `reason`.
    const refused = log.lines.filter(isRefusal)
    expect(refused.length).toBeGreaterThanOrEqual(6)
    for (const l of refused)
      expect([l['msg'], l['level'], typeof l['reason']]).toEqual([l['msg'], 30, 'string'])
    const r501line = refused.find((l) => l['status'] === 501)
    expect(r501line).toMatchObject({ level: 30, code: 'ERR_NOT_IMPLEMENTED' })
    // The aborts were seen, and logged below error.
    const gone = log.lines.filter(isGone)
    expect(gone.length).toBeGreaterThan(0)
  })

  test('our own fault (not an UploadError) is an error line with its stack', async () => {
    const before = log.lines.length
    // What every family's sendError runs on a failure that is not an UploadError (a bug).
    const { classifyFailure } = await import('../../src/http/errors.js')
    classifyFailure({ log: log.logger }, new TypeError('a bug'), () => 400, 'x request')
    await waitLogs('the error line', () => log.lines.length > before)
    const added = log.lines.slice(before)
    expect(added).toHaveLength(1)
    expect(added[0]).toMatchObject({ level: 50, msg: 'x request failed' })
    expect((added[0]!['err'] as { stack?: string }).stack).toContain('TypeError: a bug')
  })
})
