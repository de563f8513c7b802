import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Redis } from 'ioredis'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { signJwt } from '../helpers/jwt.js'
import {
  removeDir,
  spawnFerry,
  startFerry,
  tempDir,
  type ChildServer,
  type TestServer,
} from '../helpers/server.js'
import { waitFor as waitUntil } from '../helpers/wait.js'

const SECRET = 'bulk-ingest-kill-secret-0123456789'
const ISSUER = 'ferry-test'
const AUDIENCE = 'ferry-ingest'
const SC = '0d1e'
const FILES = 300

const waitFor = <T>(what: string, fn: () => Promise<T | null>, timeoutMs = 60_000, everyMs = 25) =>
  waitUntil(what, fn, { timeoutMs, everyMs })

const ASSET_NAME = /^([0-9A-Za-z]{11}-[0-9A-Za-z]{11})\.(info|[A-Za-z0-9]+|[A-Za-z0-9]+\.orig)$/

/** Every file under the project's asset folder, grouped by asset id; throws on any other name. */
function assetsOnDisk(dataDir: string): Map<string, Map<string, Buffer>> {
  const root = join(dataDir, 'ingest', SC, 'assets')
  const out = new Map<string, Map<string, Buffer>>()
  if (!existsSync(root)) return out
  for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue
    const m = ASSET_NAME.exec(e.name)
    if (!m) throw new Error(`unexpected file in the asset folder: ${e.name}`)
    const group = out.get(m[1]!) ?? new Map<string, Buffer>()
    group.set(m[2]!, readFileSync(join(e.parentPath, e.name)))
    out.set(m[1]!, group)
  }
  return out
}

describe('bulk ingest survives SIGKILL', () => {
  let dataDir: string
  let cfgDir: string
  let env: Record<string, string>
  let child: ChildServer | null = null
  let srv: TestServer | null = null
  let auth: Record<string, string>
  const sources = new Map<string, Buffer>()

  beforeAll(async () => {
    dataDir = tempDir()
    cfgDir = tempDir()
    const cfg = join(cfgDir, 'ferry.json')
    // One file at a time, so the run lasts long enough to be cut in the middle.
    writeFileSync(
      cfg,
      JSON.stringify({
        ingest: { jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE }, maxParallel: 1 },
      }),
    )
    env = {
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_DATA_DIR: dataDir,
      FERRY_CONFIG: cfg,
      FERRY_LOCK_TTL_MS: '1000',
      FERRY_LOG_LEVEL: 'warn',
    }
    const token = await signJwt(
      { sub: 'kill-test', scope: `write:project:${SC}` },
      { secret: SECRET, iss: ISSUER, aud: AUDIENCE, exp: '1h' },
    )
    auth = { Authorization: `Bearer ${token}` }
    for (let i = 0; i < FILES; i++) {
      const rel = `batch-${i % 5}/${i % 2 ? 'odd/' : ''}img-${i}.${i % 3 ? 'tif' : 'txt'}`
      const data = seededBytes(32 * 1024 + ((i * 104_729) % (96 * 1024)), rel)
      sources.set(rel, data)
      const full = join(dataDir, 'ingest', SC, 'import', rel)
      mkdirSync(dirname(full), { recursive: true })
      writeFileSync(full, data)
    }
  })
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) {
      child.proc.kill('SIGKILL')
      await child.exited
    }
    await srv?.close()
    removeDir(dataDir)
    removeDir(cfgDir)
  })

  test('a server killed mid-ingest leaves only whole asset files and complete mapping lines; a rerun ingests every file exactly once', async () => {
    const byHash = new Map([...sources].map(([rel, data]) => [sha256(data), rel]))
    child = await spawnFerry(env)
    const start = await request(`${child.url}/projects/${SC}/bulk-ingest`, {
      method: 'POST',
      headers: auth,
    })
    expect(start.status).toBe(202)
    const mappingFile = join(dataDir, 'ingest', SC, `mapping-${SC}.csv`)
    const linesOnDisk = () =>
      existsSync(mappingFile) ? readFileSync(mappingFile, 'utf8').split('\n').length - 2 : 0
    await waitFor(
      'a few files to be ingested',
      async () => (linesOnDisk() >= 40 ? true : null),
      60_000,
      5,
    )
    child.proc.kill('SIGKILL')
    expect(await child.exited).toBe('SIGKILL')
    const mappedAtKill = linesOnDisk()
    expect(mappedAtKill).toBeLessThan(FILES) // really cut in the middle

    // What the kill left: every asset file whole (it hashes to some source), complete assets
    // consistent.
    const left = assetsOnDisk(dataDir)
    for (const [id, group] of left) {
      for (const [kind, bytes] of group) {
        if (kind !== 'info') expect(byHash.has(sha256(bytes))).toBe(true)
      }
      const infoBytes = group.get('info')
      if (infoBytes === undefined) continue
      const info = JSON.parse(infoBytes.toString('utf8')) as Record<string, string>
      const deriv = group.get(info['internalFilename']!.slice(id.length + 1))
      const orig = group.get(info['originalInternalFilename']!.slice(id.length + 1))
      expect(deriv).toBeDefined()
      expect(orig).toBeDefined()
      expect(sha256(orig!)).toBe(info['checksumOriginal'])
      expect(sha256(deriv!)).toBe(info['checksumDerivative'])
    }

    // A new instance (the dead one's lock expires after its TTL) serves only complete mapping
    // lines, each naming a complete asset.
    srv = await startFerry(env)
    const s = srv
    const before = await waitFor('the dead lock to expire', async () => {
      const r = await request(`${s.url}/projects/${SC}/bulk-ingest/mapping.csv`, { headers: auth })
      return r.status === 409 ? null : r
    })
    expect(before.status).toBe(200)
    const beforeLines = before.text().split('\n').slice(1)
    expect(beforeLines.length).toBeGreaterThanOrEqual(40)
    for (const line of beforeLines) {
      const deriv = line.slice(line.lastIndexOf(',') + 1)
      const group = left.get(deriv.slice(0, 23))
      expect(group?.has('info')).toBe(true)
      expect(sources.has(line.slice(0, line.lastIndexOf(',')))).toBe(true)
    }

    // Run again to completion.
    const again = await request(`${s.url}/projects/${SC}/bulk-ingest`, {
      method: 'POST',
      headers: auth,
    })
    expect(again.status).toBe(202)
    const done = await waitFor(
      'the rerun to finish',
      async () => {
        const r = await request(`${s.url}/projects/${SC}/bulk-ingest/mapping.csv`, {
          headers: auth,
        })
        return r.status === 409 ? null : r
      },
      120_000,
    )
    expect(done.status).toBe(200)
    const lines = done.text().split('\n')
    expect(lines[0]).toBe('original,derivative')
    expect(lines.length - 1).toBe(FILES)
    const originals = lines.slice(1).map((l) => l.slice(0, l.lastIndexOf(',')))
    expect(new Set(originals).size).toBe(FILES) // each file exactly once
    expect(new Set(originals)).toEqual(new Set(sources.keys()))
    const final = assetsOnDisk(dataDir)
    expect(final.size).toBe(FILES) // no abandoned or duplicate assets
    for (const line of lines.slice(1)) {
      const original = line.slice(0, line.lastIndexOf(','))
      const deriv = line.slice(line.lastIndexOf(',') + 1)
      const id = deriv.slice(0, 23)
      const group = final.get(id)!
      expect([...group.keys()].sort()).toEqual(
        [deriv.slice(24), `${deriv.slice(24)}.orig`, 'info'].sort(),
      )
      expect(sha256(group.get(deriv.slice(24))!)).toBe(sha256(sources.get(original)!))
      expect(sha256(group.get(`${deriv.slice(24)}.orig`)!)).toBe(sha256(sources.get(original)!))
    }
    const importLeft = readdirSync(join(dataDir, 'ingest', SC, 'import'), {
      recursive: true,
      withFileTypes: true,
    }).filter((e) => e.isFile())
    expect(importLeft).toEqual([])
    expect(readdirSync(join(dataDir, 'ingest', SC, 'journal'))).toEqual([])
  }, 240_000)
})

describe('bulk ingest stops when its lock is lost', () => {
  test('another owner taking the lock stops the run at its next step; a later run finishes exactly once', async () => {
    const dataDir = tempDir()
    const cfgDir = tempDir()
    const cfg = join(cfgDir, 'ferry.json')
    writeFileSync(
      cfg,
      JSON.stringify({
        ingest: { jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE }, maxParallel: 1 },
      }),
    )
    const prefix = uniquePrefix()
    const srv = await startFerry({
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: prefix,
      FERRY_DATA_DIR: dataDir,
      FERRY_CONFIG: cfg,
      FERRY_LOCK_TTL_MS: '600',
    })
    const redis = new Redis(testRedisUrl())
    try {
      const token = await signJwt(
        { sub: 'lock-test', scope: 'admin' },
        { secret: SECRET, iss: ISSUER, aud: AUDIENCE, exp: '1h' },
      )
      const auth = { Authorization: `Bearer ${token}` }
      const n = 200
      for (let i = 0; i < n; i++) {
        const full = join(dataDir, 'ingest', SC, 'import', `d${i % 3}`, `f-${i}.txt`)
        mkdirSync(dirname(full), { recursive: true })
        writeFileSync(full, seededBytes(48 * 1024, `lock-${i}`))
      }
      expect(
        (await request(`${srv.url}/projects/${SC}/bulk-ingest`, { method: 'POST', headers: auth }))
          .status,
      ).toBe(202)
      const mappingFile = join(dataDir, 'ingest', SC, `mapping-${SC}.csv`)
      const lines = () =>
        existsSync(mappingFile) ? readFileSync(mappingFile, 'utf8').split('\n').length - 2 : 0
      await waitFor('some progress', async () => (lines() >= 20 ? true : null), 60_000, 5)
      const jobKey = `${prefix}lock:ingest:job:${SC}`
      expect(await redis.exists(jobKey)).toBe(1) // the run's job marker, held while it runs
      // Steal the lock: the owner's next renewal (every ttl/3) finds it gone and the run stops.
      await redis.set(`${prefix}lock:ingest:project:${SC}`, 'thief', 'PX', 60_000)
      // The run has ended once it let its job marker go (released after its last append).
      await waitFor(
        'the run to stop',
        async () => ((await redis.exists(jobKey)) === 0 ? true : null),
        10_000,
        10,
      )
      const atStop = lines()
      expect(atStop).toBeLessThan(n)
      // The thief's lock counts as a running ingest.
      expect(
        (await request(`${srv.url}/projects/${SC}/bulk-ingest/mapping.csv`, { headers: auth }))
          .status,
      ).toBe(409)
      expect(lines()).toBe(atStop)
      await redis.del(`${prefix}lock:ingest:project:${SC}`)
      expect(
        (await request(`${srv.url}/projects/${SC}/bulk-ingest`, { method: 'POST', headers: auth }))
          .status,
      ).toBe(202)
      const done = await waitFor(
        'the rerun to finish',
        async () => {
          const r = await request(`${srv.url}/projects/${SC}/bulk-ingest/mapping.csv`, {
            headers: auth,
          })
          return r.status === 409 ? null : r
        },
        120_000,
      )
      const rows = done.text().split('\n').slice(1)
      expect(rows).toHaveLength(n)
      expect(new Set(rows.map((l) => l.slice(0, l.lastIndexOf(',')))).size).toBe(n)
      expect(assetsOnDisk(dataDir).size).toBe(n)
    } finally {
      redis.disconnect()
      await srv.close()
      removeDir(dataDir)
      removeDir(cfgDir)
    }
  }, 180_000)
})
