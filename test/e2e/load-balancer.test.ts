/**
 * The scaled deployment without Docker, as deploy/cluster starts it: two Ferry processes on one
 * Redis and one data directory, behind a real haproxy (Debian's) balancing round-robin per
 * request, as docker-compose.yml describes. No stickiness: chunks of one session land on both
 * instances.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startCluster, type Cluster } from '../../deploy/cluster.js'
import { request, seededBytes, sha256, shuffle } from '../helpers/http.js'
import { API, commit, newSessionId, uploadChunks } from '../helpers/imagestore.js'
import { TEST_DEFAULTS } from '../helpers/server.js'

let cluster: Cluster
let lbUrl: string

/** ImageStore requests instance `i` answered so far (its own /metrics). */
async function served(i: number): Promise<number> {
  const text = (await request(`${cluster.instances[i]!.url}/metrics`)).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith('ferry_requests_total{family="imagestore"'))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
}

beforeAll(async () => {
  // deploy/cluster: one redis-server, the instances, haproxy checking /readyz in front.
  cluster = await startCluster({ instances: 2, env: TEST_DEFAULTS, drainDelayMs: 0 })
  lbUrl = cluster.frontUrl
})

afterAll(async () => {
  await cluster?.stop()
})

describe('behind haproxy, round-robin, no stickiness', () => {
  test('a chunked upload spread over both instances commits to the exact bytes', async () => {
    const data = seededBytes(16 * 1024 * 1024, 'lb')
    const id = newSessionId()
    const before = [await served(0), await served(1)]
    await uploadChunks(
      [lbUrl],
      'lb/file.bin',
      id,
      data,
      1024 * 1024,
      4,
      shuffle(
        Array.from({ length: 16 }, (_, i) => i),
        3,
      ),
    )
    expect((await commit(lbUrl, id)).status).toBe(200)
    expect((await served(0)) - before[0]!).toBeGreaterThan(2)
    expect((await served(1)) - before[1]!).toBeGreaterThan(2)
    expect(sha256(readFileSync(join(cluster.dataDir, 'store/lb/file.bin')))).toBe(sha256(data))
    const listed = await request(`${lbUrl}/ImageStore/lb?api-version=6.2`)
    expect(listed.json<{ StoreFiles: { FileSize: string }[] }>().StoreFiles[0]!.FileSize).toBe(
      String(data.length),
    )
  })

  test('a session opened on one instance is seen, cancelled and reused through the other', async () => {
    const id = newSessionId()
    const [one, two] = [cluster.instances[0]!.url, cluster.instances[1]!.url]
    const r1 = await request(`${one}/ImageStore/lb/c.bin/$/UploadChunk?${API}&session-id=${id}`, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 0-3/8' },
      body: 'abcd',
    })
    expect(r1.status).toBe(200)
    const seen = await request(`${two}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`)
    expect(seen.status).toBe(200)
    const del = `${two}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`
    expect((await request(del, { method: 'DELETE' })).status).toBe(200)
    expect(
      (await request(`${one}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`)).status,
    ).toBe(204)
  })
})
