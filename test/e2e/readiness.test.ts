/**
 * `/readyz` as a load balancer needs it (issue 13): 503 with a JSON reason while Redis is down
 * or the data directory's disk is full (a real 2 MiB tmpfs, filled; needs root) and 200 again
 * once they are back; SIGTERM takes a forked Ferry out of rotation first (`/readyz` 503 while it
 * still serves), lets an upload in flight finish, then exits 0.
 */
import { afterAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  rmdirSync,
  writeSync,
} from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEdge, type EdgeServer } from '../helpers/edge-server.js'
import { request } from '../helpers/http.js'
import { API } from '../helpers/imagestore.js'
import { startPrivateRedis, uniquePrefix, type PrivateRedis } from '../helpers/redis.js'
import { removeDir, spawnFerry, tempDir } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const ROOT_NEEDED = 'this test mounts a tmpfs as a full disk and needs root'

const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const readyz = async (url: string) => {
  const r = await request(`${url}/readyz`)
  return { status: r.status, reasons: r.json<{ reasons?: string[] }>().reasons ?? [] }
}

const metric = async (url: string, name: string) => {
  const text = (await request(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? null : Number(line.slice(name.length + 1))
}

describe('/readyz', () => {
  test('503 while Redis is down (the state store named), 200 once it is back', async () => {
    const redis: PrivateRedis = await startPrivateRedis()
    cleanups.push(() => redis.stop())
    const srv: EdgeServer = await startEdge({
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_REDIS_TIMEOUT_MS: '300',
    })
    cleanups.push(async () => {
      await srv.close()
      removeDir(srv.dataDir)
    })
    expect(await readyz(srv.url)).toEqual({ status: 200, reasons: [] })
    await redis.kill()
    const down = await readyz(srv.url)
    expect(down.status).toBe(503)
    expect(down.reasons.join(' ')).toMatch(/^the state store \(redis at .*\) does not answer/)
    // The client's failed reconnects are counted.
    await waitFor(
      'a Redis error counted',
      async () => ((await metric(srv.url, 'ferry_redis_errors_total')) ?? 0) > 0,
    )
    expect((await request(`${srv.url}/healthz`)).status).toBe(200)
    await redis.restart()
    await waitFor('ready again', async () => (await readyz(srv.url)).status === 200, {
      timeoutMs: 10_000,
    })
  })

  test('503 on a full disk (free bytes and the write probe), 200 once space is freed', async () => {
    if (process.getuid?.() !== 0) throw new Error(ROOT_NEEDED)
    const mnt = mkdtempSync(join(tmpdir(), 'ferry-ready-disk-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt])
    cleanups.push(() => {
      execFileSync('umount', ['-l', mnt])
      rmdirSync(mnt)
    })
    const srv = await startEdge({ FERRY_DATA_DIR: mnt, FERRY_MIN_FREE_BYTES: String(512 * 1024) })
    cleanups.push(() => srv.close())
    expect(srv.config.storage.readyMinFreeBytes).toBe(512 * 1024)
    expect(await readyz(srv.url)).toEqual({ status: 200, reasons: [] })
    const filler = join(mnt, 'filler')
    const fd = openSync(filler, 'w')
    try {
      for (const size of [256 * 1024, 4096, 1]) {
        const buf = Buffer.alloc(size, 1)
        for (;;) {
          try {
            writeSync(fd, buf)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
            throw err
          }
        }
      }
    } finally {
      closeSync(fd)
    }
    const full = await readyz(srv.url)
    expect(full.status).toBe(503)
    expect(full.reasons.join(' ')).toMatch(
      /^data directory cannot be written: ENOSPC; data directory has \d+ bytes free, below 524288$/,
    )
    expect(await metric(srv.url, 'ferry_disk_free_bytes')).toBeLessThan(512 * 1024)
    rmSync(filler)
    expect(await readyz(srv.url)).toEqual({ status: 200, reasons: [] })
    expect(await metric(srv.url, 'ferry_disk_free_bytes')).toBeGreaterThan(1024 * 1024)
  })
})

describe('SIGTERM', () => {
  test('503 first, the upload in flight finishes, then the process exits 0', async () => {
    const dataDir = tempDir('ferry-drain-')
    cleanups.push(() => removeDir(dataDir))
    const child = await spawnFerry({ FERRY_DATA_DIR: dataDir, FERRY_DRAIN_DELAY_MS: '1500' })
    cleanups.push(() => void child.proc.kill('SIGKILL'))
    // An upload whose body arrives in two halves, SIGTERM between them.
    const total = 256 * 1024
    const half = Buffer.alloc(total / 2, 7)
    const req = httpRequest(`${child.url}/ImageStore/drain/file.bin?${API}`, {
      method: 'PUT',
      headers: { 'Content-Length': total },
    })
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      req.on('error', reject)
    })
    req.write(half)
    await waitFor(
      'the first half to arrive',
      async () =>
        ((await metric(child.url, 'ferry_bytes_received_total{family="imagestore"}')) ?? 0) >=
        half.length,
    )
    child.proc.kill('SIGTERM')
    // Out of rotation while still serving: a new connection is answered, 503.
    await waitFor(
      'readyz 503',
      async () => {
        const r = await readyz(child.url).catch(() => null)
        return r !== null && r.status === 503 && r.reasons.includes('starting or draining')
      },
      { timeoutMs: 5000, everyMs: 50 },
    )
    expect(child.proc.exitCode).toBeNull()
    req.end(half)
    expect(await answered).toBe(200)
    expect(await child.exited).toBe(0)
    expect(readFileSync(join(dataDir, 'store/drain/file.bin')).length).toBe(total)
  })
})
