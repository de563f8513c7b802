/**
 * The embedded store's journal on real files, in process: compaction failures, damaged lines,
 * appends racing a compaction, and the journal shrinking after a sweep (issue 17.4, 9.8).
 * fsync counts are checked under strace in test/fault/embedded-journal-fsync.test.ts, full disks
 * on a tmpfs in test/fault/embedded-journal-full-disk.test.ts.
 */
import { afterAll, describe, expect, test } from '@jest/globals'
import {
  appendFileSync,
  mkdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { createEmbeddedState, type EmbeddedSessionStore } from '../../src/core/state/embedded.js'
import { openJournal, type JournalLog } from '../../src/core/state/journal.js'
import type { SessionRecord } from '../../src/core/state/types.js'
import { removeDir, tempDir } from '../helpers/server.js'

const T0 = 1_700_000_000_000
const TTL = 60_000
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

function newDir(): string {
  const d = tempDir('ferry-journal-')
  dirs.push(d)
  return d
}

const newSession = (key: string, total = 100) => ({
  key,
  incarnation: key,
  target: `t/${key}`,
  totalBytes: total,
  tempName: `${key}.part`,
})

/** A logger that keeps what it is told. */
function recorder(): JournalLog & { lines: { level: string; msg: string; obj: object }[] } {
  const lines: { level: string; msg: string; obj: object }[] = []
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => void lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => void lines.push({ level: 'error', msg, obj }),
  }
}

const journalLines = (dir: string) =>
  readFileSync(join(dir, 'sessions.journal'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
const store = (s: ReturnType<typeof createEmbeddedState>) => s.sessions as EmbeddedSessionStore

describe('compaction', () => {
  test('a compaction that cannot write its temp file is logged; the start goes on, the old journal stays, appends continue', async () => {
    const dir = newDir()
    let state = createEmbeddedState(dir)
    for (let i = 0; i < 100; i++) await state.sessions.open(newSession(`c:${i}`), T0)
    for (let i = 0; i < 90; i++) await state.sessions.remove(`c:${i}`)
    await state.close()
    const before = journalLines(dir).length
    expect(before).toBe(190)
    // Something in the way of the temp file: every compaction fails.
    mkdirSync(join(dir, 'sessions.journal.tmp'))
    const log = recorder()
    state = createEmbeddedState(dir, { log }) // compacts at start (in the background): fails
    expect(await store(state).compactIfWorthwhile()).toBe(false)
    expect(log.lines.some((l) => l.level === 'warn' && /compaction failed/.test(l.msg))).toBe(true)
    expect(journalLines(dir).length).toBe(before)
    await state.sessions.open(newSession('c:new'), T0)
    await state.sessions.remove('c:95')
    expect((await state.sessions.get('c:new'))?.key).toBe('c:new')
    await state.close()
    // The old journal plus the new lines replay to the same state.
    state = createEmbeddedState(dir)
    for (let i = 0; i < 100; i++)
      expect((await state.sessions.get(`c:${i}`)) !== null).toBe(i >= 90 && i !== 95)
    expect((await state.sessions.get('c:new'))?.target).toBe('t/c:new')
    await state.close()
    // The way cleared, the next start compacts.
    rmdirSync(join(dir, 'sessions.journal.tmp'))
    state = createEmbeddedState(dir)
    await state.close()
    expect(journalLines(dir)).toHaveLength(10)
  })

  test('after a sweep removed most sessions, compactIfWorthwhile shrinks the journal (issue 9.8)', async () => {
    const dir = newDir()
    const state = createEmbeddedState(dir)
    const s = store(state)
    for (let i = 0; i < 1000; i++) await s.open(newSession(`x:${i}`, 10), T0)
    await s.open(newSession('live', 10), T0 + 10 * TTL)
    // Nothing dead yet: not worth it.
    expect(await s.compactIfWorthwhile()).toBe(false)
    for (let i = 0; i < 1000; i++) {
      await s.reserve(`x:${i}`, { start: 0, end: 4 }, 't', T0, 1000)
      await s.complete(`x:${i}`, 't', T0)
    }
    const grown = statSync(join(dir, 'sessions.journal')).size
    for (const key of await s.listExpired(T0 + 2 * TTL, TTL, 2000))
      await s.removeIfExpired(key, T0 + 2 * TTL, TTL)
    expect(await s.compactIfWorthwhile()).toBe(true)
    const shrunk = statSync(join(dir, 'sessions.journal')).size
    expect(grown).toBeGreaterThan(500_000)
    expect(shrunk).toBeLessThan(1000)
    expect(journalLines(dir).map((l) => (JSON.parse(l) as { k: string }).k)).toEqual(['live'])
    // And it goes on from there.
    await s.open(newSession('after', 10), T0)
    await state.close()
    const again = createEmbeddedState(dir)
    expect((await again.sessions.get('live'))?.key).toBe('live')
    expect((await again.sessions.get('after'))?.key).toBe('after')
    expect(await again.sessions.get('x:1')).toBeNull()
    await again.close()
  })

  test('changes made while a compaction runs are neither lost nor reordered', async () => {
    const dir = newDir()
    let state = createEmbeddedState(dir)
    const s = store(state)
    for (let i = 0; i < 2000; i++) await s.open(newSession(`r:${i}`), T0)
    for (let i = 0; i < 1500; i++) await s.remove(`r:${i}`)
    const expected = new Map<string, number>()
    for (let i = 1500; i < 2000; i++) expected.set(`r:${i}`, 0)
    // Changes queued before, during and after the compaction's snapshot, on old and new keys.
    const work: Promise<unknown>[] = []
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 40; i++) {
        const key = `r:${1500 + round * 40 + i}`
        work.push(
          s
            .reserve(key, { start: round * 10, end: round * 10 + 9 }, `t${round}`, T0, 1000)
            .then(() => s.complete(key, `t${round}`, T0)),
        )
        expected.set(key, 10)
        work.push(s.open(newSession(`n:${round}:${i}`), T0))
        expected.set(`n:${round}:${i}`, 0)
      }
      if (round === 1) work.push(s.compactIfWorthwhile().then((ok) => expect(ok).toBe(true)))
      await new Promise((r) => setImmediate(r))
    }
    await Promise.all(work)
    await state.close()
    state = createEmbeddedState(dir)
    for (const [key, bytes] of expected) {
      const rec = (await state.sessions.get(key)) as SessionRecord
      expect(rec?.key).toBe(key)
      const got = rec.received.reduce((n, r) => n + r.end - r.start + 1, 0)
      expect(got).toBe(bytes)
    }
    expect(await state.sessions.get('r:0')).toBeNull()
    await state.close()
  })
})

describe('replay', () => {
  test('a damaged line in the middle is skipped and logged; the lines after it count', async () => {
    const dir = newDir()
    let state = createEmbeddedState(dir)
    await state.sessions.open(newSession('m:1'), T0)
    await state.close()
    // As a power loss can leave it: a line whose start is lost (zeros) before lines that survived.
    appendFileSync(join(dir, 'sessions.journal'), '\0\0\0\0\0\0"r":{"key":"m:2","target"\n')
    appendFileSync(join(dir, 'sessions.journal'), `${JSON.stringify({ k: 'm:1', r: null })}\n`)
    appendFileSync(
      join(dir, 'sessions.journal'),
      `${JSON.stringify({ k: 'm:3', r: { ...newSession('m:3'), createdAtMs: T0, updatedAtMs: T0, received: [], reservations: [], state: 'open', commitOwner: null, commitLeaseUntilMs: 0, result: null } })}\n`,
    )
    const log = recorder()
    state = createEmbeddedState(dir, { log })
    expect(await state.sessions.get('m:1')).toBeNull()
    expect((await state.sessions.get('m:3'))?.key).toBe('m:3')
    expect(log.lines.some((l) => l.level === 'warn' && /damaged journal line/.test(l.msg))).toBe(
      true,
    )
    await state.close()
    // Compacted at start: the damage is gone, the state kept.
    expect(journalLines(dir).map((l) => (JSON.parse(l) as { k: string }).k)).toEqual(['m:3'])
  })

  test('a last line cut short is cut off, so a line appended after it is not swallowed', async () => {
    const dir = newDir()
    let state = createEmbeddedState(dir)
    await state.sessions.open(newSession('t:1'), T0)
    await state.close()
    appendFileSync(join(dir, 'sessions.journal'), '{"k":"t:2","r":{"key":"t:2","tot')
    // No compaction at start to tidy up after it: the append goes to this very file.
    mkdirSync(join(dir, 'sessions.journal.tmp'))
    const log = recorder()
    state = createEmbeddedState(dir, { log })
    expect(log.lines.some((l) => /cut short/.test(l.msg))).toBe(true)
    await state.sessions.open(newSession('t:3'), T0)
    await state.close()
    state = createEmbeddedState(dir)
    expect((await state.sessions.get('t:1'))?.key).toBe('t:1')
    expect(await state.sessions.get('t:2')).toBeNull()
    expect((await state.sessions.get('t:3'))?.key).toBe('t:3')
    await state.close()
  })

  test('a journal larger than one read is replayed whole, lines split across reads included', async () => {
    const dir = newDir()
    const file = join(dir, 'big.journal')
    // 3 MiB of lines of odd lengths with multi-byte characters, so reads end mid-line and
    // mid-character.
    const lines: string[] = []
    for (let i = 0, total = 0; total < 3 * 1024 * 1024; i++) {
      lines.push(`${i}:${'é'.repeat(i % 97)}`)
      total += Buffer.byteLength(lines[i]!) + 1
    }
    writeFileSync(file, `${lines.join('\n')}\n`)
    const seen: string[] = []
    const j = openJournal(file, {
      mode: 'background',
      replay: (l) => {
        seen.push(l)
        return true
      },
      liveLines: () => 0,
      snapshot: () => [],
    })
    expect(seen).toEqual(lines)
    expect(j.lines).toBe(lines.length)
    expect(j.bytes).toBe(statSync(file).size)
    await j.close()
  })
})

describe('appends', () => {
  test('many appends at once reach the file in the order of the calls, all acknowledged', async () => {
    const dir = newDir()
    const file = join(dir, 'order.journal')
    for (const mode of ['sync', 'background'] as const) {
      writeFileSync(file, '')
      const j = openJournal(file, {
        mode,
        replay: () => true,
        liveLines: () => 0,
        snapshot: () => [],
      })
      const all = Array.from({ length: 500 }, (_, i) =>
        j.append(`line ${i}`, { durable: i % 7 === 0 }),
      )
      await Promise.all(all)
      await j.close()
      expect(readFileSync(file, 'utf8')).toBe(
        Array.from({ length: 500 }, (_, i) => `line ${i}\n`).join(''),
      )
    }
  })

  test('a compaction takes in the appends queued when it starts and the later ones go to the new file, each line once', async () => {
    const dir = newDir()
    const file = join(dir, 'fold.journal')
    const state: string[] = []
    const later: Promise<unknown>[] = []
    let folded = -1
    const j = openJournal(file, {
      mode: 'sync',
      replay: () => true,
      liveLines: () => state.length,
      snapshot: () => {
        // Lines applied but not yet in the file at this moment: the compaction must take them in.
        folded = state.length - j.lines
        // Changes while it writes: they wait, then go to the new file.
        setImmediate(() => {
          for (let i = 0; i < 50; i++) later.push(change(`c${String(i).padStart(3, '0')}`))
        })
        return [...state]
      },
    })
    const change = (line: string) => {
      state.push(line)
      return j.append(line)
    }
    const all: Promise<unknown>[] = []
    for (let i = 0; i < 100; i++) all.push(change(`a${String(i).padStart(3, '0')}`))
    all.push(j.compact().then((ok) => expect(ok).toBe(true)))
    for (let i = 0; i < 100; i++) all.push(change(`b${String(i).padStart(3, '0')}`))
    await Promise.all(all)
    expect(later).toHaveLength(50)
    await Promise.all(later)
    await j.close()
    expect(folded).toBeGreaterThan(0)
    expect(readFileSync(file, 'utf8')).toBe(state.map((l) => `${l}\n`).join(''))
  })

  test('an append after close is refused, not lost silently', async () => {
    const dir = newDir()
    const j = openJournal(join(dir, 'c.journal'), {
      mode: 'sync',
      replay: () => true,
      liveLines: () => 0,
      snapshot: () => [],
    })
    await j.append('a')
    await j.close()
    await expect(j.append('b')).rejects.toThrow(/closed/)
  })
})
