/**
 * The process entry tunes V8's heap growth (src/main.ts): without it, the socket buffers of
 * request bodies pushed V8 into a full mark-compact every ~16 MiB received, which doubled Ferry's
 * CPU per byte. This counts the full GCs that `--trace-gc` reports while 256 MiB of chunks stream
 * through a forked Ferry: a handful at most with the tuning, 13-15 without it (checked by running
 * this test with `--heap-growing-percent=100` passed to the child). Not a timing assertion: GC
 * counts depend on allocation, not on how fast the machine is.
 */
import { afterAll, expect, test } from '@jest/globals'
import { seededBytes } from '../helpers/http.js'
import { commit, newSessionId, putChunk } from '../helpers/imagestore.js'
import { removeDir, spawnFerry, tempDir } from '../helpers/server.js'

const MIB = 1024 * 1024
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const fullGcs = (log: string) => log.split('\n').filter((l) => l.includes('Mark-Compact')).length

test('256 MiB of chunks cost Ferry a handful of full GCs, not one per 16 MiB', async () => {
  const dir = await tempDir()
  cleanups.push(() => removeDir(dir))
  const ferry = await spawnFerry({ FERRY_DATA_DIR: dir, FERRY_LOG_LEVEL: 'warn' }, undefined, {
    execArgv: ['--trace-gc'],
  })
  cleanups.push(async () => {
    ferry.proc.kill('SIGKILL')
    await ferry.exited
  })
  const chunk = 8 * MIB
  const total = 256 * MIB
  const piece = seededBytes(chunk, 'gc')
  const id = newSessionId()
  const before = fullGcs(ferry.output())
  for (let i = 0; i < total / chunk; i += 4) {
    await Promise.all(
      [0, 1, 2, 3].map(async (k) => {
        const s = (i + k) * chunk
        const r = await putChunk(ferry.url, 'gc/big.bin', id, s, s + chunk - 1, total, piece)
        expect(r.status).toBe(200)
      }),
    )
  }
  expect((await commit(ferry.url, id)).status).toBe(200)
  const during = fullGcs(ferry.output()) - before
  expect(during).toBeLessThanOrEqual(5)
}, 120_000)
