/**
 * `GET /metrics` (issue 13): Prometheus text from the app's own registry. Uploads in each family
 * (ImageStore chunked and whole, Shaman stored and deduplicated, a lakeFS presigned PUT, a bulk
 * ingest upload) move that family's counters by exactly what was sent; requests are counted by
 * family, method and status; Node's process metrics are there; two apps in one process keep
 * apart; an optional bearer token guards the endpoint.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import {
  SHA_OF_64_X,
  ingestToken,
  presignedTarget,
  writeFamiliesConfig,
} from '../helpers/edge-families.js'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { API, commit, newSessionId, putChunk } from '../helpers/imagestore.js'
import { removeDir, tempDir } from '../helpers/server.js'

let srv: EdgeServer
let other: EdgeServer
let cfgDir: string

beforeAll(async () => {
  cfgDir = tempDir('ferry-metrics-cfg-')
  srv = await startEdge({ FERRY_CONFIG: writeFamiliesConfig(cfgDir) })
  other = await startEdge({ FERRY_METRICS_TOKEN: 'scrape-token-5e1f' })
})
afterAll(async () => {
  await srv?.close()
  await other?.close()
  for (const s of [srv, other]) if (s) removeDir(s.dataDir)
  if (cfgDir) removeDir(cfgDir)
})

/** Every sample of a scrape: `name{labels}` (labels sorted as prom-client writes them) → value. */
async function scrape(
  s: EdgeServer,
  headers: Record<string, string> = {},
): Promise<Map<string, number>> {
  const r = await request(`${s.url}/metrics`, { headers })
  expect(r.status).toBe(200)
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  const out = new Map<string, number>()
  for (const line of r.text().split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

const FAMILY_SERIES = [
  'ferry_bytes_received_total',
  'ferry_uploads_created_total',
  'ferry_uploads_finished_total',
  'ferry_uploads_terminated_total',
  'ferry_chunk_duration_seconds_count',
  'ferry_commit_duration_seconds_count',
  'ferry_dedup_hits_total',
] as const

/** The family's counters in one scrape (0 when a series is absent). */
function familyOf(m: Map<string, number>, family: string): Record<string, number> {
  return Object.fromEntries(FAMILY_SERIES.map((n) => [n, m.get(`${n}{family="${family}"}`) ?? 0]))
}

/** What moved between two scrapes, per series (only those that moved). */
function moved(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(after)) if (v !== before[k]) out[k] = v - (before[k] ?? 0)
  return out
}

const requests = (m: Map<string, number>, family: string, method: string, status: string) =>
  m.get(`ferry_requests_total{family="${family}",method="${method}",status="${status}"}`) ?? 0

describe('GET /metrics', () => {
  test("Prometheus text with Node's process metrics and Ferry's gauges", async () => {
    const m = await scrape(srv)
    expect(m.get('process_cpu_user_seconds_total')).toBeGreaterThan(0)
    expect(m.get('nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
    expect(m.get('ferry_disk_free_bytes')).toBeGreaterThan(0)
    expect(m.get('ferry_hash_queue_depth')).toBe(0)
    expect(m.get('ferry_connections_open')).toBeGreaterThanOrEqual(1)
    expect(m.has('ferry_upload_sessions_open')).toBe(true)
    expect(m.get('ferry_redis_errors_total')).toBe(0)
  })

  test('ImageStore: two sessions (one committed, one cancelled) and a whole-file PUT', async () => {
    const before = await scrape(srv)
    const a = newSessionId()
    expect(
      (await putChunk(srv.url, 'm/a.bin', a, 0, 999, 2000, Buffer.alloc(1000, 1))).status,
    ).toBe(200)
    expect(
      (await putChunk(srv.url, 'm/a.bin', a, 1000, 1999, 2000, Buffer.alloc(1000, 2))).status,
    ).toBe(200)
    const open = await scrape(srv)
    expect(open.get('ferry_upload_sessions_open')).toBe(
      (before.get('ferry_upload_sessions_open') ?? 0) + 1,
    )
    expect((await commit(srv.url, a)).status).toBe(200)
    // A repeated commit answers the first result: not a second finished upload.
    expect((await commit(srv.url, a)).status).toBe(200)
    const b = newSessionId()
    expect((await putChunk(srv.url, 'm/b.bin', b, 0, 99, 300, Buffer.alloc(100, 3))).status).toBe(
      200,
    )
    const del = await request(
      `${srv.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${b}`,
      { method: 'DELETE' },
    )
    expect(del.status).toBe(200)
    const put = await request(`${srv.url}/ImageStore/m/whole.bin?${API}`, {
      method: 'PUT',
      body: Buffer.alloc(500, 4),
    })
    expect(put.status).toBe(200)
    const after = await scrape(srv)
    expect(moved(familyOf(before, 'imagestore'), familyOf(after, 'imagestore'))).toEqual({
      ferry_bytes_received_total: 1000 + 1000 + 100 + 500,
      ferry_uploads_created_total: 3,
      ferry_uploads_finished_total: 2,
      ferry_uploads_terminated_total: 1,
      ferry_chunk_duration_seconds_count: 4,
      ferry_commit_duration_seconds_count: 1,
    })
    expect(
      requests(after, 'imagestore', 'PUT', '200') - requests(before, 'imagestore', 'PUT', '200'),
    ).toBe(4)
    expect(
      requests(after, 'imagestore', 'POST', '200') - requests(before, 'imagestore', 'POST', '200'),
    ).toBe(2)
    expect(
      requests(after, 'imagestore', 'DELETE', '200') -
        requests(before, 'imagestore', 'DELETE', '200'),
    ).toBe(1)
    // The committed session stays in the store (a repeated commit answers from it) until it
    // expires; the cancelled one is gone.
    expect(after.get('ferry_upload_sessions_open')).toBe(
      (before.get('ferry_upload_sessions_open') ?? 0) + 1,
    )
  })

  test('Shaman: a stored file, then the same file answered 208 (a dedup hit)', async () => {
    const url = `${srv.url}/api/v3/shaman/files/${SHA_OF_64_X}/64`
    const body = Buffer.alloc(64, 'x')
    const before = await scrape(srv)
    expect((await request(url, { method: 'POST', body })).status).toBe(204)
    const stored = await scrape(srv)
    expect(moved(familyOf(before, 'shaman'), familyOf(stored, 'shaman'))).toEqual({
      ferry_bytes_received_total: 64,
      ferry_uploads_created_total: 1,
      ferry_uploads_finished_total: 1,
      ferry_chunk_duration_seconds_count: 1,
    })
    expect((await request(url, { method: 'POST', body })).status).toBe(208)
    const after = await scrape(srv)
    const d = moved(familyOf(stored, 'shaman'), familyOf(after, 'shaman'))
    // Answered before its body was read: the body may still have arrived with the head.
    expect(d.ferry_bytes_received_total ?? 0).toBeLessThanOrEqual(64)
    delete d.ferry_bytes_received_total
    expect(d).toEqual({ ferry_dedup_hits_total: 1 })
    expect(requests(after, 'shaman', 'POST', '208')).toBe(
      requests(before, 'shaman', 'POST', '208') + 1,
    )
  })

  test('lakeFS: a presigned PUT', async () => {
    const target = await presignedTarget(srv.url)
    const before = await scrape(srv)
    expect(
      (await request(`${srv.url}${target}`, { method: 'PUT', body: Buffer.alloc(300, 5) })).status,
    ).toBe(200)
    const after = await scrape(srv)
    expect(moved(familyOf(before, 'lakefs'), familyOf(after, 'lakefs'))).toEqual({
      ferry_bytes_received_total: 300,
      ferry_uploads_created_total: 1,
      ferry_uploads_finished_total: 1,
      ferry_chunk_duration_seconds_count: 1,
    })
  })

  test('bulk ingest: one upload', async () => {
    const before = await scrape(srv)
    const r = await request(`${srv.url}/projects/0a0b/bulk-ingest/ingest/${randomUUID()}.txt`, {
      method: 'POST',
      body: Buffer.alloc(200, 6),
      headers: { Authorization: `Bearer ${await ingestToken()}` },
    })
    expect(r.status).toBe(200)
    const after = await scrape(srv)
    expect(moved(familyOf(before, 'ingest'), familyOf(after, 'ingest'))).toEqual({
      ferry_bytes_received_total: 200,
      ferry_uploads_created_total: 1,
      ferry_uploads_finished_total: 1,
      ferry_chunk_duration_seconds_count: 1,
    })
    expect(requests(after, 'ingest', 'POST', '200')).toBe(
      requests(before, 'ingest', 'POST', '200') + 1,
    )
  })

  test("requests no family takes, and the server's own, have their labels", async () => {
    const before = await scrape(srv)
    expect((await request(`${srv.url}/nowhere`)).status).toBe(404)
    expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    const after = await scrape(srv)
    expect(requests(after, 'none', 'GET', '404')).toBe(requests(before, 'none', 'GET', '404') + 1)
    // The scrape itself is counted once it has been answered: the one between these two.
    expect(requests(after, 'edge', 'GET', '200')).toBe(requests(before, 'edge', 'GET', '200') + 2)
  })

  test('two apps in one process count apart (each its own registry)', async () => {
    const auth = { Authorization: 'Bearer scrape-token-5e1f' }
    const o = await scrape(other, auth)
    expect(o.get('ferry_bytes_received_total{family="imagestore"}') ?? 0).toBe(0)
    expect(
      (await scrape(srv)).get('ferry_bytes_received_total{family="imagestore"}'),
    ).toBeGreaterThan(0)
  })

  test('FERRY_METRICS_TOKEN: 401 without the bearer token or with another one', async () => {
    const none = await request(`${other.url}/metrics`)
    expect([none.status, none.headers['www-authenticate']]).toEqual([
      401,
      'Bearer realm="ferry-metrics"',
    ])
    const wrong = await request(`${other.url}/metrics`, {
      headers: { Authorization: 'Bearer scrape-token-5e1' },
    })
    expect(wrong.status).toBe(401)
    const right = await scrape(other, { Authorization: 'Bearer scrape-token-5e1f' })
    expect(right.get('ferry_requests_total{family="edge",method="GET",status="401"}')).toBe(2)
  })
})
