/**
 * `GET /readyz` (whether this instance should get traffic, as a load balancer asks): 200 when
 * every check passes; 503 with Retry-After and the reasons while the instance drains, while the
 * data directory's filesystem has less free space than FERRY_READY_MIN_FREE_BYTES, or while a
 * pluggable check (the state backend's, hooked in by the composition root) fails, throws or does
 * not answer. `/healthz` stays what it was: the process is up.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { removeDir } from '../helpers/server.js'

let srv: EdgeServer
let huge: EdgeServer
let check: () => Promise<{ ok: boolean; reason?: string }> = async () => ({ ok: true })

beforeAll(async () => {
  srv = await startEdge({}, { readyChecks: [() => check()] })
  // No disk here has 4 PiB free.
  huge = await startEdge({ FERRY_READY_MIN_FREE_BYTES: String(2 ** 52) })
})
afterAll(async () => {
  await srv.close()
  await huge.close()
  removeDir(srv.dataDir)
  removeDir(huge.dataDir)
})

const readyz = async (s: EdgeServer) => {
  const r = await request(`${s.url}/readyz`)
  return {
    status: r.status,
    retry: r.headers['retry-after'],
    body: r.json<{ status: string; reasons?: string[] }>(),
  }
}

describe('GET /readyz', () => {
  test('every check passes: 200 {"status":"ready"}', async () => {
    expect(await readyz(srv)).toEqual({ status: 200, retry: undefined, body: { status: 'ready' } })
  })

  test('a pluggable check that fails, throws or hangs: 503 with its reason and Retry-After; /healthz stays 200', async () => {
    check = async () => ({ ok: false, reason: 'state backend unreachable' })
    expect(await readyz(srv)).toEqual({
      status: 503,
      retry: '1',
      body: { status: 'not ready', reasons: ['state backend unreachable'] },
    })
    check = async () => {
      throw new Error('boom')
    }
    expect((await readyz(srv)).body.reasons).toEqual(['a readiness check failed: boom'])
    check = () => new Promise(() => {})
    const t0 = Date.now()
    expect((await readyz(srv)).body.reasons).toEqual(['a readiness check did not answer in time'])
    expect(Date.now() - t0).toBeLessThan(5000)
    expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    check = async () => ({ ok: true })
    expect((await readyz(srv)).status).toBe(200)
  })

  test('draining (the app is stopping): 503 "starting or draining"', async () => {
    srv.setReady(false)
    try {
      const r = await readyz(srv)
      expect([r.status, r.body.reasons]).toEqual([503, ['starting or draining']])
    } finally {
      srv.setReady(true)
    }
  })

  test('less free space than FERRY_READY_MIN_FREE_BYTES: 503 naming the free bytes', async () => {
    const r = await readyz(huge)
    expect(r.status).toBe(503)
    expect(r.body.reasons?.[0]).toMatch(
      /^data directory has \d+ bytes free, below 4503599627370496$/,
    )
  })
})
