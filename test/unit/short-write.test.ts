/**
 * A disk that fills in the middle of a batch: the kernel writes part of it and says so (a short
 * write). The rest must be tried, so that the real cause (ENOSPC, answered 507) comes out, not
 * a generic I/O error (500). Needs root for a small tmpfs; tests here run as root.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { writeStreamAt } from '../../src/core/storage/files.js'
import { removeDir, tempDir } from '../helpers/server.js'

let dir: string
beforeAll(() => {
  if (process.getuid?.() !== 0)
    throw new Error('this test mounts a tmpfs: run it as root (the CI and dev machines do)')
  dir = tempDir('ferry-short-write-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir])
})
afterAll(() => {
  execFileSync('umount', [dir])
  removeDir(dir)
})

test('a write that runs out of space mid-batch fails with ENOSPC after writing what fit', async () => {
  // Leave ~100 KiB free, then write 1 MiB in one batch.
  writeFileSync(join(dir, 'filler'), Buffer.alloc(1024 * 1024 - 100 * 1024))
  const body = Readable.from([Buffer.alloc(512 * 1024, 1), Buffer.alloc(512 * 1024, 2)])
  const err = await writeStreamAt(join(dir, 'target'), 0, body, {
    expectedBytes: 1024 * 1024,
  }).then(
    () => null,
    (e: unknown) => e,
  )
  expect((err as NodeJS.ErrnoException | null)?.code).toBe('ENOSPC')
})
