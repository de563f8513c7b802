/**
 * The scaled deployment without Docker: two Ferry instances on one Redis and one data directory,
 * behind a real haproxy (Debian's) balancing round-robin per request, as docker-compose.yml
 * describes. No stickiness: chunks of one session land on both instances.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request, seededBytes, sha256, shuffle } from '../helpers/http.js'
import { API, commit, newSessionId, uploadChunks } from '../helpers/imagestore.js'
import { freePort } from '../helpers/redis.js'
import { startCluster, type TestCluster, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

let lb: ChildProcess
let lbUrl: string
let cluster: TestCluster<[TestServer, TestServer]>
const served = [0, 0]

beforeAll(async () => {
  cluster = await startCluster(2)
  cluster.servers.forEach((s, i) => s.app.server.on('request', () => served[i]!++))
  const port = await freePort()
  const cfg = join(cluster.dataDir, 'haproxy.cfg')
  writeFileSync(cfg, [
    'defaults', '  mode http', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s', '  option http-server-close',
    'frontend in', `  bind 127.0.0.1:${port}`, '  default_backend ferry',
    'backend ferry', '  balance roundrobin',
    ...cluster.servers.map((s, i) => `  server f${i} ${new URL(s.url).host}`),
    '',
  ].join('\n'))
  lb = spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' })
  lbUrl = `http://127.0.0.1:${port}`
  await waitFor('haproxy to forward', () => fetch(`${lbUrl}/healthz`).then((r) => r.status === 200, () => false), { timeoutMs: 10_000, everyMs: 50 })
})

afterAll(async () => {
  lb?.kill('SIGKILL')
  await cluster?.close()
})

describe('behind haproxy, round-robin, no stickiness', () => {
  test('a chunked upload spread over both instances commits to the exact bytes', async () => {
    const data = seededBytes(16 * 1024 * 1024, 'lb')
    const id = newSessionId()
    const before = [...served]
    await uploadChunks([lbUrl], 'lb/file.bin', id, data, 1024 * 1024, 4, shuffle(Array.from({ length: 16 }, (_, i) => i), 3))
    expect((await commit(lbUrl, id)).status).toBe(200)
    expect(served[0]! - before[0]!).toBeGreaterThan(2)
    expect(served[1]! - before[1]!).toBeGreaterThan(2)
    expect(sha256(readFileSync(join(cluster.dataDir, 'store/lb/file.bin')))).toBe(sha256(data))
    const listed = await request(`${lbUrl}/ImageStore/lb?api-version=6.2`)
    expect(listed.json<{ StoreFiles: { FileSize: string }[] }>().StoreFiles[0]!.FileSize).toBe(String(data.length))
  })

  test('a session opened on one instance is seen, cancelled and reused through the other', async () => {
    const id = newSessionId()
    const r1 = await request(`${cluster.servers[0].url}/ImageStore/lb/c.bin/$/UploadChunk?${API}&session-id=${id}`, {
      method: 'PUT', headers: { 'Content-Range': 'bytes 0-3/8' }, body: 'abcd',
    })
    expect(r1.status).toBe(200)
    const seen = await request(`${cluster.servers[1].url}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`)
    expect(seen.status).toBe(200)
    expect((await request(`${cluster.servers[1].url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`, { method: 'DELETE' })).status).toBe(200)
    expect((await request(`${cluster.servers[0].url}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`)).status).toBe(204)
  })
})
