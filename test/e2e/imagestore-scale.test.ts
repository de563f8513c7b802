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
import { removeDir, startCluster, startFerry } from '../helpers/server.js'

const SIZE = 64 * 1024 * 1024
const CHUNK = 2 * 1024 * 1024
const data = seededBytes(SIZE, 'sixty-four')
const want = sha256(data)
const order = shuffle(
  Array.from({ length: SIZE / CHUNK }, (_, i) => i),
  7,
)

async function fileSha(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) h.update(c as Buffer)
  return h.digest('hex')
}

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const clean of cleanups) await clean()
})

describe('64 MiB in shuffled chunks, 4 in flight', () => {
  test('embedded store: committed file hashes to the source', async () => {
    const s = await startFerry()
    cleanups.push(async () => {
      await s.close()
      removeDir(s.dataDir)
    })
    const id = newSessionId()
    await uploadChunks([s.url], 'big/embedded.bin', id, data, CHUNK, 4, order)
    expect((await commit(s.url, id)).status).toBe(200)
    expect(await fileSha(join(s.dataDir, 'store/big/embedded.bin'))).toBe(want)
  })

  test('Redis, chunks spread over two instances sharing the data directory', async () => {
    const cluster = await startCluster(2)
    cleanups.push(cluster.close)
    const [a, b] = cluster.servers
    const id = newSessionId()
    await uploadChunks([a.url, b.url], 'big/redis.bin', id, data, CHUNK, 4, order)
    // Either instance sees the whole session.
    const seen = await sessionById(b.url, id)
    expect(
      seen.json<{ UploadSessions: { ExpectedRanges: unknown[] }[] }>().UploadSessions[0]!
        .ExpectedRanges,
    ).toEqual([])
    // Commit on the instance that did not open the session (no running hash there: full pass).
    expect((await commit(b.url, id)).status).toBe(200)
    expect((await commit(a.url, id)).status).toBe(200)
    expect(await fileSha(join(cluster.dataDir, 'store/big/redis.bin'))).toBe(want)
  })
})
