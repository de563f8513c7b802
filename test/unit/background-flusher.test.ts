/**
 * BackgroundFlusher's policy on real files: one background flush at a time in the process, for
 * the file with the most unflushed bytes once it has the threshold; a commit's `settle` waits for
 * its file's running flush. The flush function wraps the real fsync to record the order.
 */
import { afterAll, expect, test } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BackgroundFlusher, fsyncFile } from '../../src/core/storage/files.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const dir = tempDir('ferry-flusher-')
afterAll(() => removeDir(dir))

/** Waits (bounded) for a condition that a real fsync makes true, however slow the disk is. */
const until = (cond: () => boolean) =>
  waitFor('the flusher', cond, { timeoutMs: 10_000, everyMs: 5 })

function file(name: string): string {
  const p = join(dir, name)
  writeFileSync(p, Buffer.alloc(4096, 1))
  return p
}

test('one flush at a time, the file with the most unflushed bytes next', async () => {
  const [a, b, c, small] = ['a', 'b', 'c', 'small'].map(file) as [string, string, string, string]
  const order: string[] = []
  let running = 0
  let most = 0
  const gates = new Map<string, () => void>()
  const flusher = new BackgroundFlusher(100, async (p) => {
    order.push(p)
    running++
    most = Math.max(most, running)
    await new Promise<void>((release) => gates.set(p, release))
    await fsyncFile(p)
    running--
  })
  flusher.wrote(a, 150) // a passes the threshold: its flush starts at once
  flusher.wrote(b, 120)
  flusher.wrote(c, 300)
  flusher.wrote(small, 99) // under the threshold: never flushed in the background
  expect(order).toEqual([a])
  gates.get(a)!()
  await until(() => order.length === 2)
  expect(order).toEqual([a, c]) // c has the most pending bytes
  const settled = flusher.settle(c) // a commit of c waits for c's running flush
  let done = false
  void settled.then(() => (done = true))
  await new Promise((r) => setTimeout(r, 20)) // a window for a wrong early settle (no event to wait on)
  expect(done).toBe(false)
  gates.get(c)!()
  await settled
  await until(() => order.length === 3)
  expect(order).toEqual([a, c, b])
  gates.get(b)!()
  await until(() => running === 0)
  await new Promise((r) => setTimeout(r, 20)) // nothing else is due: `small` stays under the threshold
  expect(order).toEqual([a, c, b])
  expect(most).toBe(1)
})

test('a flush of a file that went away is not an error, and the next one still runs', async () => {
  const gone = join(dir, 'never-there')
  const there = file('there')
  const flushed: string[] = []
  const flusher = new BackgroundFlusher(10, async (p) => {
    await fsyncFile(p)
    flushed.push(p)
  })
  flusher.wrote(gone, 50)
  flusher.wrote(there, 20)
  await until(() => flushed.length === 1)
  expect(flushed).toEqual([there])
  await flusher.settle(there)
})
