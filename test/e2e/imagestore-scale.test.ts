/**
 * A 64 MiB random file as shuffled chunks, several in flight: on the embedded store, and on
 * Redis with the chunks spread across two Ferry instances sharing one data directory.
 */
import { afterAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import { seededBytes, sha256, shuffle } from '../helpers/http.js'
import { commit, newSessionId, sessionById, uploadChunks } from '../helpers/imagestore.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'

const SIZE = 64 * 1024 * 1024
const CHUNK = 2 * 1024 * 1024
const data = seededBytes(SIZE, 'sixty-four')
const want = sha256(data)
const order = shuffle(Array.from({ length: SIZE / CHUNK }, (_, i) => i), 7)

async function fileSha(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) h.update(c as Buffer)
  return h.digest('hex')
}

const servers: TestServer[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const s of servers) await s.close()
  for (const d of dirs) removeDir(d)
})

describe('64 MiB in shuffled chunks, 4 in flight', () => {
  test('embedded store: committed file hashes to the source', async () => {
    const s = await startFerry()
    servers.push(s)
    dirs.push(s.dataDir)
    const id = newSessionId()
    await uploadChunks([s.url], 'big/embedded.bin', id, data, CHUNK, 4, order)
    expect((await commit(s.url, id)).status).toBe(200)
    expect(await fileSha(join(s.dataDir, 'store/big/embedded.bin'))).toBe(want)
  })

  test('Redis, chunks spread over two instances sharing the data directory', async () => {
    const shared = tempDir()
    dirs.push(shared)
    const env = { REDIS_URL: testRedisUrl(), FERRY_REDIS_PREFIX: uniquePrefix(), FERRY_DATA_DIR: shared }
    const a = await startFerry(env)
    const b = await startFerry(env)
    servers.push(a, b)
    const id = newSessionId()
    await uploadChunks([a.url, b.url], 'big/redis.bin', id, data, CHUNK, 4, order)
    // Either instance sees the whole session.
    const seen = await sessionById(b.url, id)
    expect(seen.json<{ UploadSessions: { ExpectedRanges: unknown[] }[] }>().UploadSessions[0]!.ExpectedRanges).toEqual([])
    // Commit on the instance that did not open the session (no running hash there: full pass).
    expect((await commit(b.url, id)).status).toBe(200)
    expect((await commit(a.url, id)).status).toBe(200)
    expect(await fileSha(join(shared, 'store/big/redis.bin'))).toBe(want)
  })
})
