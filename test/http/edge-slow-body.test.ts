/**
 * Issue 9 item 7: a request body that trickles in holds its connection no longer than the minimum
 * body rate allows: below FERRY_MIN_BODY_RATE_BYTES_PER_SEC averaged over
 * FERRY_MIN_BODY_RATE_WINDOW_SEC, the request is answered 408 in its family's error shape and the
 * connection is closed. Here with a short window (1 s) so the test is quick.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { bodyRoutes, familyErrorProblem, writeFamiliesConfig } from '../helpers/edge-families.js'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { RawConn } from '../helpers/raw-http.js'
import { removeDir, tempDir } from '../helpers/server.js'

let srv: EdgeServer
let off: EdgeServer
let dir: string

beforeAll(async () => {
  dir = tempDir('ferry-edge-slow-')
  const common = { FERRY_CONFIG: writeFamiliesConfig(dir), FERRY_MIN_BODY_RATE_WINDOW_SEC: '1' }
  srv = await startEdge({ ...common, FERRY_MIN_BODY_RATE_BYTES_PER_SEC: '1000' })
  off = await startEdge({ ...common, FERRY_MIN_BODY_RATE_BYTES_PER_SEC: '0' })
})
afterAll(async () => {
  await srv.close()
  await off.close()
  removeDir(srv.dataDir)
  removeDir(off.dataDir)
  removeDir(dir)
})

/** Sends the head, then one byte every `everyMs` until an answer comes or `bytes` are sent. */
async function trickle(
  base: string,
  method: string,
  target: string,
  headers: Record<string, string>,
  bytes: number,
  everyMs: number,
) {
  const conn = await RawConn.open(base, { answerTimeoutMs: 15_000 })
  const started = Date.now()
  await conn.head(method, target, { ...headers, 'Content-Length': bytes })
  let sent = 0
  const timer = setInterval(() => {
    if (sent < bytes && !conn.closed && !conn.hasAnswer()) {
      sent++
      conn.write(Buffer.from('{')).catch(() => {})
    }
  }, everyMs)
  try {
    const a = await conn.answerOrClose(15_000)
    return { answer: a, ms: Date.now() - started, sent, conn }
  } finally {
    clearInterval(timer)
  }
}

describe('minimum body rate (1000 B/s over a 1 s window)', () => {
  const routes = bodyRoutes()
  test.concurrent.each(routes.map((r) => [r.name, r] as const))(
    "%s: a body at 5 B/s is answered 408 in the family's shape after about one window, and closed",
    async (_n, r) => {
      const target = await r.target(srv.url)
      const headers = await r.headers()
      if (r.name === 'ImageStore UploadChunk') headers['Content-Range'] = 'bytes 0-999/1000'
      const bytes = r.name === 'Shaman file upload' ? 64 : 1000
      const { answer, ms, conn } = await trickle(srv.url, r.method, target, headers, bytes, 200)
      expect(answer).not.toBeNull()
      expect(familyErrorProblem(r.family, answer!, [408])).toBeNull()
      expect(answer!.headers['connection']).toBe('close')
      // Not before a whole window of slow arrival, and not much after.
      expect(ms).toBeGreaterThanOrEqual(900)
      expect(ms).toBeLessThan(5000)
      // The server closes the connection after the answer.
      const until = Date.now() + 3000
      while (!conn.closed && Date.now() < until) await new Promise((res) => setTimeout(res, 20))
      expect(conn.closed).toBe(true)
      conn.close()
      expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    },
  )

  test('an early answer (401 before the body) does not let the rest trickle forever: the connection is closed after a window', async () => {
    const { answer, conn } = await trickle(
      srv.url,
      'POST',
      '/projects/0a0b/bulk-ingest/ingest/f.txt',
      {},
      1000,
      200,
    )
    expect(answer?.status).toBe(401)
    const t0 = Date.now()
    const timer = setInterval(() => void conn.write(Buffer.from('x')).catch(() => {}), 200)
    try {
      while (!conn.closed && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 20))
    } finally {
      clearInterval(timer)
    }
    expect(conn.closed).toBe(true)
    conn.close()
  })

  test('a body that keeps the rate is not cut: 256 KiB in 16 KiB pieces every 50 ms (~320 KB/s) stores', async () => {
    const conn = await RawConn.open(srv.url, { pieceBytes: 16 * 1024 })
    const data = Buffer.alloc(256 * 1024, 7)
    await conn.head('PUT', '/ImageStore/edge/steady.bin?api-version=6.0', {
      'Content-Length': data.length,
    })
    for (let off = 0; off < data.length; off += 16 * 1024) {
      await conn.write(data.subarray(off, off + 16 * 1024))
      await new Promise((res) => setTimeout(res, 50)) // the client's steady rate: the case
    }
    const a = await conn.answer()
    conn.close()
    expect(a.status).toBe(200)
  })

  test('FERRY_MIN_BODY_RATE_BYTES_PER_SEC=0 turns the check off: 12 bytes over 2.4 s are taken', async () => {
    const { answer, ms, conn } = await trickle(
      off.url,
      'PUT',
      '/ImageStore/edge/slow-ok.bin?api-version=6.0',
      {},
      12,
      200,
    )
    conn.close()
    expect(answer?.status).toBe(200)
    expect(ms).toBeGreaterThanOrEqual(2000)
  })
})
