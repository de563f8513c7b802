/**
 * Issue 9.8, the journal part: after a sweep removed expired sessions, the embedded store's
 * journal shrinks back (it compacts by itself once the removals stop), instead of keeping every
 * line of every session it ever had.
 */
import { afterAll, expect, test } from '@jest/globals'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { newSessionId, putChunk } from '../helpers/imagestore.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'

let server: TestServer | null = null
const dir = tempDir('ferry-sweep-journal-')
afterAll(async () => {
  await server?.close()
  removeDir(dir)
})

test('after a sweep removed 300 expired sessions, the journal is compacted to the live ones', async () => {
  server = await startFerry({
    FERRY_DATA_DIR: dir,
    FERRY_SESSION_TTL_SEC: '1',
    FERRY_SWEEP_INTERVAL_SEC: '1',
  })
  const journal = join(dir, 'state/sessions.journal')
  for (let i = 0; i < 300; i++) {
    const r = await putChunk(
      server.url,
      `sweep/${i}.bin`,
      newSessionId(),
      0,
      4,
      10,
      Buffer.from('hello'),
    )
    expect(r.status).toBe(200)
  }
  const grown = statSync(journal).size
  expect(grown).toBeGreaterThan(100_000)
  // Expiry after 1 s, sweeps every second, compaction a second after the last removal.
  let size = grown
  for (const stop = Date.now() + 20_000; size > 1000 && Date.now() < stop; ) {
    await new Promise((r) => setTimeout(r, 100))
    size = statSync(journal).size
  }
  expect(size).toBeLessThan(1000)
})
