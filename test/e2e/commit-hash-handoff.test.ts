/**
 * Two instances on one Redis and one data directory. The instance that opens a session runs its
 * sha256 as the chunks land; a commit that reaches the other instance asks for that digest over
 * the bus instead of reading the whole file again, and falls back to a full pass when nobody
 * has it. Every case checks the digest the commit hands to `publish` against the bytes. The last
 * case: one instance follows eight uploads at once.
 */
import { afterAll, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import { seededBytes, sha256 } from '../helpers/http.js'
import { removeDir, startCluster, startFerry, type TestServer } from '../helpers/server.js'
import { PEER_HASH_MIN_BYTES, type UploadService } from '../../src/core/uploads/uploads.js'

const MIB = 1024 * 1024
const CHUNK = 8 * MIB
const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function pair(): Promise<[TestServer, TestServer]> {
  const cluster = await startCluster(2)
  cleanups.push(() => cluster.close())
  return cluster.servers
}

const uploadsOf = (s: TestServer): UploadService => s.app.engine.uploads

/** Writes chunk `i` of `data` through `via`. */
async function chunk(via: UploadService, key: string, data: Buffer, i: number): Promise<void> {
  const start = i * CHUNK
  const end = Math.min(data.length, start + CHUNK) - 1
  const r = await via.writeChunk({
    key,
    target: `handoff/${key}.bin`,
    totalBytes: data.length,
    range: { start, end },
    body: Readable.from([data.subarray(start, end + 1)]),
  })
  expect(r.status).toBe('written')
}

/** Commits through `via` and answers the sha256 that `publish` was given. */
async function commitDigest(via: UploadService, key: string): Promise<string> {
  let seen = ''
  await via.commit(key, async ({ tempPath, digests }) => {
    seen = digests['sha256'] ?? ''
    await via.discard(tempPath)
    return '{}'
  })
  return seen
}

test('a commit on the other instance gets the running hash from the instance that opened the session', async () => {
  const [a, b] = await pair()
  const data = seededBytes(PEER_HASH_MIN_BYTES, 'handoff')
  const key = `t:${randomUUID()}`
  await chunk(uploadsOf(a), key, data, 0) // opens the session: a runs its hash
  for (let i = 1; i < data.length / CHUNK; i++) await chunk(uploadsOf(b), key, data, i)
  expect(await commitDigest(uploadsOf(b), key)).toBe(sha256(data))
  expect(uploadsOf(b).hashCounts).toEqual({ local: 0, peer: 1, fullPass: 0 })
})

/** Counts the peer-hash requests published on `s`'s bus (every instance's, this one's too). */
async function hashRequests(s: TestServer): Promise<{ readonly count: () => number }> {
  let n = 0
  const stop = await s.app.engine.state.bus.subscribe('uploads:hash-request', () => n++)
  cleanups.push(() => stop().catch(() => {}))
  return { count: () => n }
}

test('when the instance with the running hash is gone, the commit hashes the file at once', async () => {
  const [a, b] = await pair()
  const data = seededBytes(PEER_HASH_MIN_BYTES, 'handoff-gone')
  const key = `t:${randomUUID()}`
  await chunk(uploadsOf(a), key, data, 0)
  await a.close()
  const asked = await hashRequests(b)
  for (let i = 1; i < data.length / CHUNK; i++) await chunk(uploadsOf(b), key, data, i)
  expect(await commitDigest(uploadsOf(b), key)).toBe(sha256(data))
  expect(uploadsOf(b).hashCounts).toEqual({ local: 0, peer: 0, fullPass: 1 })
  // The record names a as the session's hasher and a is not alive: nobody to ask, no wait.
  expect(asked.count()).toBe(0)
})

test('an instance that lost the running hash it ran (idle timeout) does not ask the others', async () => {
  // Running hashes that hear nothing for 300 ms give up.
  const cluster = await startCluster(2, { FERRY_POOL_STREAM_IDLE_MS: '300' })
  cleanups.push(() => cluster.close())
  const [a, b] = cluster.servers
  const data = seededBytes(PEER_HASH_MIN_BYTES, 'handoff-lost')
  const key = `t:${randomUUID()}`
  for (let i = 0; i < data.length / CHUNK; i++) await chunk(uploadsOf(a), key, data, i)
  expect((await uploadsOf(a).getSession(key))?.hasher).toBe(a.app.engine.state.instanceId)
  await new Promise((r) => setTimeout(r, 1500)) // a's running hash times out; a stays alive
  const asked = await hashRequests(b)
  expect(await commitDigest(uploadsOf(a), key)).toBe(sha256(data))
  expect(uploadsOf(a).hashCounts).toEqual({ local: 0, peer: 0, fullPass: 1 })
  expect(asked.count()).toBe(0)
})

test('a running hash left by an aborted session of the same id never answers for its successor', async () => {
  const cluster = await startCluster(3)
  cleanups.push(() => cluster.close())
  const [a, b, c] = cluster.servers
  const key = `t:${randomUUID()}`
  const first = seededBytes(PEER_HASH_MIN_BYTES, 'first incarnation')
  // All of it through a, so a's running hash covers the whole first file.
  for (let i = 0; i < first.length / CHUNK; i++) await chunk(uploadsOf(a), key, first, i)
  expect(await uploadsOf(b).abort(key)).toBe(true) // a never hears of it
  await new Promise((r) => setTimeout(r, 5)) // a later creation time, whatever the clock's grain
  const second = seededBytes(PEER_HASH_MIN_BYTES, 'second incarnation')
  await chunk(uploadsOf(b), key, second, 0) // b opens the successor and runs its hash ...
  await b.close() // ... and is gone
  for (let i = 1; i < second.length / CHUNK; i++) await chunk(uploadsOf(c), key, second, i)
  // c asks; only a's stale hash of the first file could answer, and it must not.
  expect(await commitDigest(uploadsOf(c), key)).toBe(sha256(second))
  expect(uploadsOf(c).hashCounts).toEqual({ local: 0, peer: 0, fullPass: 1 })
})

test('an instance holding a stale running hash does not use it for a commit of the successor', async () => {
  const [a, b] = await pair()
  const key = `t:${randomUUID()}`
  const first = seededBytes(PEER_HASH_MIN_BYTES, 'stale local')
  for (let i = 0; i < first.length / CHUNK; i++) await chunk(uploadsOf(a), key, first, i)
  expect(await uploadsOf(b).abort(key)).toBe(true)
  await new Promise((r) => setTimeout(r, 5)) // a later creation time, whatever the clock's grain
  const second = seededBytes(PEER_HASH_MIN_BYTES, 'fresh remote')
  for (let i = 0; i < second.length / CHUNK; i++) await chunk(uploadsOf(b), key, second, i)
  // a drops its stale hash and gets the successor's from b, which opened it.
  expect(await commitDigest(uploadsOf(a), key)).toBe(sha256(second))
  expect(uploadsOf(a).hashCounts).toEqual({ local: 0, peer: 1, fullPass: 0 })
})

test('below the size threshold a commit does not wait for the other instances', async () => {
  const [a, b] = await pair()
  const data = seededBytes(2 * CHUNK, 'small')
  const key = `t:${randomUUID()}`
  await chunk(uploadsOf(a), key, data, 0)
  await chunk(uploadsOf(b), key, data, 1)
  expect(await commitDigest(uploadsOf(b), key)).toBe(sha256(data))
  expect(uploadsOf(b).hashCounts).toEqual({ local: 0, peer: 0, fullPass: 1 })
})

test('eight uploads at once are all hashed as they arrive, none by a full pass at commit', async () => {
  const s = await startFerry({ FERRY_WORKERS: '2' })
  cleanups.push(async () => {
    await s.close()
    removeDir(s.dataDir)
  })
  const files = Array.from({ length: 8 }, (_, i) => ({
    key: `t:${randomUUID()}`,
    data: seededBytes(2 * CHUNK, `eight-${i}`),
  }))
  for (const f of files) await chunk(uploadsOf(s), f.key, f.data, 0) // all eight open before any commit
  for (const f of files) await chunk(uploadsOf(s), f.key, f.data, 1)
  for (const f of files) expect(await commitDigest(uploadsOf(s), f.key)).toBe(sha256(f.data))
  expect(uploadsOf(s).hashCounts).toEqual({ local: 8, peer: 0, fullPass: 0 })
})
