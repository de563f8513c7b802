/**
 * The embedded store on a full disk, on a real small tmpfs (issue 9.3): Ferry starts (the start-up
 * compaction fails, is logged, and the old journal stays), and cancelling a session works and frees
 * its temp file — the removal line goes into the room the journal's reserve file kept back. Once
 * even that room is gone, a change that cannot be written is refused and undone, so the store
 * answers what its file says. Mounting needs root: without it these tests fail, saying so.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  rmdirSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { createEmbeddedState, type EmbeddedSessionStore } from '../../src/core/state/embedded.js'
import type { JournalLog } from '../../src/core/state/journal.js'
import { request } from '../helpers/http.js'
import { API, newSessionId, putChunk } from '../helpers/imagestore.js'
import { spawnFerry, tempDir } from '../helpers/server.js'

const MIB = 1024 * 1024
const mounts: string[] = []

beforeAll(() => {
  if (process.getuid?.() !== 0)
    throw new Error(
      'these tests mount a small tmpfs and need root (mount -t tmpfs -o size=4m tmpfs DIR)',
    )
})

afterAll(() => {
  for (const m of mounts) {
    try {
      execFileSync('umount', [m])
    } catch {
      execFileSync('umount', ['-l', m])
    }
    rmdirSync(m)
  }
})

function mountTmpfs(bytes: number): string {
  const dir = tempDir('ferry-tmpfs-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
  mounts.push(dir)
  return dir
}

const free = (dir: string) => {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

/** Fills the filesystem of `dir` until not one more page fits; returns the filler's path. */
function fill(dir: string, name = 'filler'): string {
  const path = join(dir, name)
  const fd = openSync(path, 'a')
  try {
    for (const size of [MIB, 4096, 1]) {
      const buf = Buffer.alloc(size, 7)
      for (;;) {
        try {
          if (writeSync(fd, buf) < size) break
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
          break
        }
      }
    }
  } finally {
    closeSync(fd)
  }
  expect(free(dir)).toBe(0)
  return path
}

function recorder(): JournalLog & { text: () => string } {
  const lines: string[] = []
  const add = (obj: object, msg: string) =>
    void lines.push(
      `${msg} ${JSON.stringify(obj, (_k, v: unknown) => (v instanceof Error ? String(v) : v))}`,
    )
  return { info: add, warn: add, error: add, text: () => lines.join('\n') }
}

const newSession = (key: string) => ({
  key,
  incarnation: key,
  target: 't/x',
  totalBytes: 100,
  tempName: 'x.part',
})
/**
 * Keys so long that a removal line needs a page of its own: no slack at the journal's end can take
 * it.
 */
const longKey = (i: number) => `L:${i}:${'x'.repeat(5000)}`

describe('embedded store on a full disk', () => {
  test('starts although its start-up compaction cannot write, and serves what its journal holds', async () => {
    const mnt = mountTmpfs(4 * MIB)
    const dir = join(mnt, 'state')
    let state = createEmbeddedState(dir)
    for (let i = 0; i < 50; i++) await state.sessions.open(newSession(`s:${i}`), 0)
    for (let i = 0; i < 45; i++) await state.sessions.remove(`s:${i}`)
    await state.close()
    fill(mnt)
    const log = recorder()
    state = createEmbeddedState(dir, { log })
    expect(await (state.sessions as EmbeddedSessionStore).compactIfWorthwhile()).toBe(false)
    expect(log.text()).toMatch(/journal compaction failed.*ENOSPC/)
    expect(existsSync(join(dir, 'sessions.journal.tmp'))).toBe(false)
    for (let i = 40; i < 50; i++)
      expect((await state.sessions.get(`s:${i}`)) !== null).toBe(i >= 45)
    await state.close()
  })

  test('a removal is recorded through the reserve; past it, a change that cannot be written is refused and undone', async () => {
    const mnt = mountTmpfs(4 * MIB)
    const dir = join(mnt, 'state')
    let state = createEmbeddedState(dir)
    for (let i = 1; i <= 3; i++) await state.sessions.open(newSession(longKey(i)), 0)
    expect(existsSync(join(dir, 'sessions.journal.reserve'))).toBe(true)
    const filler = fill(mnt)
    // Recorded: the reserve made the room.
    expect(await state.sessions.remove(longKey(1))).not.toBeNull()
    expect(existsSync(join(dir, 'sessions.journal.reserve'))).toBe(false)
    fill(mnt, 'filler2')
    // No room at all: refused, and the store still answers as its file says.
    await expect(state.sessions.remove(longKey(2))).rejects.toThrow(/ENOSPC/)
    expect((await state.sessions.get(longKey(2)))?.key).toBe(longKey(2))
    await expect(state.sessions.open(newSession(longKey(4)), 0)).rejects.toThrow(/ENOSPC/)
    expect(await state.sessions.get(longKey(4))).toBeNull()
    // Room again: it goes on.
    unlinkSync(filler)
    unlinkSync(`${filler}2`)
    expect(await state.sessions.remove(longKey(3))).not.toBeNull()
    await state.close()
    state = createEmbeddedState(dir)
    expect(await state.sessions.get(longKey(1))).toBeNull()
    expect((await state.sessions.get(longKey(2)))?.key).toBe(longKey(2))
    expect(await state.sessions.get(longKey(3))).toBeNull()
    expect(await state.sessions.get(longKey(4))).toBeNull()
    await state.close()
  })

  test('a release that cannot be written still frees its range at once (a restart drops reservations anyway)', async () => {
    const mnt = mountTmpfs(4 * MIB)
    const dir = join(mnt, 'state')
    const state = createEmbeddedState(dir)
    const key = longKey(1)
    await state.sessions.open(newSession(key), 0)
    expect((await state.sessions.reserve(key, { start: 0, end: 9 }, 'tok', 0, 60_000)).status).toBe(
      'reserved',
    )
    fill(mnt)
    await state.sessions.release(key, 'tok')
    expect((await state.sessions.get(key))?.reservations).toEqual([])
    // Reservations are never journaled (they die with the process): one is taken and released
    // on the full disk too; what cannot be written is the chunk's bytes, answered 507.
    expect(
      (await state.sessions.reserve(key, { start: 0, end: 9 }, 'tok2', 0, 60_000)).status,
    ).toBe('reserved')
    await state.sessions.release(key, 'tok2')
    expect((await state.sessions.get(key))?.reservations).toEqual([])
    await state.close()
  })

  test('Ferry restarted on a full disk starts, and DeleteUploadSession answers 200 and frees the temp file', async () => {
    const mnt = mountTmpfs(16 * MIB)
    const id = newSessionId()
    const first = await spawnFerry({ FERRY_DATA_DIR: mnt })
    try {
      const r = await putChunk(first.url, 'big.bin', id, 0, MIB - 1, 4 * MIB, Buffer.alloc(MIB, 1))
      expect(r.status).toBe(200)
    } finally {
      first.proc.kill('SIGTERM')
      await first.exited
    }
    const temps = () => readdirSync(join(mnt, 'tmp')).filter((n) => n.endsWith('.part'))
    expect(temps()).toHaveLength(1)
    fill(mnt)
    const second = await spawnFerry({ FERRY_DATA_DIR: mnt })
    try {
      // Its start-up compaction (in the background) meets the full disk, and that does not stop it.
      const failed = /ENOSPC.*journal compaction failed/
      for (const stop = Date.now() + 10_000; !failed.test(second.output()) && Date.now() < stop; )
        await new Promise((r) => setTimeout(r, 20))
      expect(second.output()).toMatch(failed)
      const r = await request(
        `${second.url}/ImageStore/$/DeleteUploadSession?${API}&session-id=${id}`,
        { method: 'DELETE' },
      )
      expect([r.status, r.text()]).toEqual([200, ''])
      expect(temps()).toHaveLength(0)
      expect(free(mnt)).toBeGreaterThanOrEqual(MIB - 64 * 1024)
      // The removal was recorded: the session stays gone.
      const again = await request(
        `${second.url}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`,
      )
      expect(again.status).toBe(204)
    } finally {
      second.proc.kill('SIGTERM')
      await second.exited
    }
  })
})
