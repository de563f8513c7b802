/**
 * Large Shaman requests do not freeze the server (issue 9, item 6): while four requirements
 * requests of 80,000 files each (8 MiB of JSON, the size limit) are answered, /healthz keeps
 * answering. The bound is generous on purpose (behaviour, not speed; the speed figures are in
 * bench/stall.js). Ferry runs in its own process so the probe does not share its event loop.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { removeDir, spawnFerry, tempDir, type ChildServer } from '../helpers/server.js'

const FILES = 80_000
let srv: ChildServer
let dataDir: string

beforeAll(async () => {
  dataDir = tempDir('ferry-stall-')
  srv = await spawnFerry({
    FERRY_DATA_DIR: dataDir,
    FERRY_LOG_LEVEL: 'warn',
    FERRY_SHAMAN_GC_INTERVAL_SEC: '0',
  })
})
afterAll(async () => {
  srv.proc.kill('SIGTERM')
  await srv.exited
  removeDir(dataDir)
})

function post(agent: Agent, path: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: '127.0.0.1',
        port: srv.port,
        path,
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
      },
      (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }))
        res.on('error', reject)
      },
    )
    r.on('error', reject)
    r.end(body)
  })
}

describe('/healthz during large Shaman requests', () => {
  test('four 80,000-file requirements at once: every file answered, and no /healthz waits more than 1 s', async () => {
    const bodies = Array.from({ length: 4 }, (_, r) => {
      const files = Array.from({ length: FILES }, (_, i) => ({
        sha: createHash('sha256').update(`${r}-${i}`).digest('hex'),
        size: i % 1000,
        path: `p${i.toString(36)}`,
      }))
      return Buffer.from(JSON.stringify({ files }))
    })
    expect(bodies[0]!.length).toBeLessThanOrEqual(8 * 1024 * 1024)
    const waits: number[] = []
    let running = true
    const probe = (async () => {
      while (running) {
        const t = performance.now()
        const r = await fetch(`${srv.url}/healthz`)
        await r.arrayBuffer()
        waits.push(performance.now() - t)
        await new Promise((res) => setTimeout(res, 10)) // the probe's rate, not a gate
      }
    })()
    const agent = new Agent({ keepAlive: false })
    const answers = await Promise.all(
      bodies.map((b) => post(agent, '/api/v3/shaman/checkout/requirements', b)),
    )
    running = false
    await probe
    for (const a of answers) {
      expect(a.status).toBe(200)
      const files = (JSON.parse(a.body.toString('utf8')) as { files: { status: string }[] }).files
      expect(files).toHaveLength(FILES)
      expect(files.every((f) => f.status === 'unknown')).toBe(true)
    }
    expect(waits.length).toBeGreaterThan(3)
    expect(Math.max(...waits)).toBeLessThan(1000)
  })
})
