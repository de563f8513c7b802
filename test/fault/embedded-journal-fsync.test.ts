/**
 * How the embedded journal reaches the disk, counted for real: a small script drives the
 * embedded store in a child process under `strace -f`, printing a marker line when each change is
 * acknowledged; the trace shows, in order, every journal write, fdatasync, rename and directory
 * fsync (issue 17.4). strace is installed when missing (as root), or the test fails saying how.
 */
import { beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from '../helpers/redis.js'
import { newSessionId, putChunk } from '../helpers/imagestore.js'
import { MAIN_JS, removeDir, tempDir } from '../helpers/server.js'
import { type Call, ensureStrace, parseTrace } from '../helpers/strace.js'

const EMBEDDED_JS = new URL('../../src/core/state/embedded.js', import.meta.url).href

/**
 * The child: drives the store as `scenario` says; `ACK <key>` on stdout (synchronous on a pipe)
 * when a change is acknowledged.
 */
const SCRIPT = `
import { createEmbeddedState } from ${JSON.stringify(EMBEDDED_JS)}
const [dir, mode, scenario, n] = process.argv.slice(2)
const mark = (s) => process.stdout.write(s + '\\n')
const rec = (key) => ({ key, incarnation: key, target: 't/' + key, totalBytes: 100, tempName: key + '.part' })
const state = createEmbeddedState(dir, { journalMode: mode })
const s = state.sessions
const count = Number(n)
if (scenario === 'sequential') {
  for (let i = 0; i < count; i++) { await s.open(rec('s:' + i), 0); mark('ACK s:' + i) }
} else if (scenario === 'concurrent') {
  await Promise.all(Array.from({ length: count }, (_, i) => s.open(rec('s:' + i), 0).then(() => mark('ACK s:' + i))))
} else if (scenario === 'background') {
  for (let i = 0; i < count; i++) { await s.open(rec('s:' + i), 0); mark('OPEN s:' + i) }
  mark('OPENED')
  // Idle time in which background mode must flush on its own: the time is the case.
  await new Promise((r) => setTimeout(r, 1000))
  mark('SLEPT')
  await s.remove('s:0')
  mark('ACK s:0')
} else if (scenario === 'compact') {
  for (let i = 0; i < count; i++) await s.open(rec('s:' + i), 0)
  for (let i = 0; i < count - 5; i++) await s.remove('s:' + i)
  mark('COMPACT')
  mark('COMPACTED ' + await s.compactIfWorthwhile())
}
await state.close()
mark('CLOSED')
`

const onJournal = (c: Call) => /^\d+<[^>]*\/sessions\.journal>/.test(c.args)
const isMark = (c: Call, text: string) =>
  /^write/.test(c.name) && /^1</.test(c.args) && c.args.includes(`"${text}\\n"`)
const ok = (c: Call) => /^\d+/.test(c.result) && !c.result.startsWith('-')

function run(scenario: string, mode: 'sync' | 'background', n: number): Call[] {
  const dir = tempDir('ferry-strace-')
  try {
    const script = join(dir, 'drive.mjs')
    writeFileSync(script, SCRIPT)
    const trace = join(dir, 'trace.txt')
    const r = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-y',
        '-s',
        '1000000',
        '-e',
        'trace=write,writev,fdatasync,fsync,rename,renameat,renameat2',
        '-o',
        trace,
        process.execPath,
        script,
        join(dir, 'state'),
        mode,
        scenario,
        String(n),
      ],
      { encoding: 'utf8', timeout: 120_000 },
    )
    if (r.status !== 0) throw new Error(`the driven store failed (${r.status}): ${r.stderr}`)
    expect(r.stdout).toContain('CLOSED')
    return parseTrace(readFileSync(trace, 'utf8'))
  } finally {
    removeDir(dir)
  }
}

/**
 * For an acknowledged key: did an fdatasync of the journal start after its line was written and end
 * before the ack?
 */
function syncedBeforeAck(calls: Call[], key: string, ackText = `ACK ${key}`): boolean {
  const ack = calls.find((c) => isMark(c, ackText))
  if (ack === undefined) throw new Error(`no ${ackText} in the trace`)
  const needle = `\\"k\\":\\"${key}\\"`
  const written = calls.find(
    (c) => c.name === 'write' && onJournal(c) && c.args.includes(needle) && ok(c),
  )
  if (written === undefined || written.end > ack.start) return false
  return calls.some(
    (c) =>
      c.name === 'fdatasync' && onJournal(c) && ok(c) && c.start > written.end && c.end < ack.start,
  )
}

beforeAll(() => ensureStrace(), 600_000)

describe('FERRY_FSYNC=chunk (journal mode sync)', () => {
  test('every acknowledged change was fdatasynced after its line was written and before the ack', () => {
    const calls = run('sequential', 'sync', 30)
    for (let i = 0; i < 30; i++)
      expect([`s:${i}`, syncedBeforeAck(calls, `s:${i}`)]).toEqual([`s:${i}`, true])
  })

  test('concurrent changes share fdatasyncs (group commit), each still synced before its ack', () => {
    const n = 300
    const calls = run('concurrent', 'sync', n)
    for (let i = 0; i < n; i++)
      expect([`s:${i}`, syncedBeforeAck(calls, `s:${i}`)]).toEqual([`s:${i}`, true])
    const syncs = calls.filter((c) => c.name === 'fdatasync' && onJournal(c)).length
    const writes = calls.filter((c) => c.name === 'write' && onJournal(c)).length
    // One write and one fdatasync per batch, far fewer batches than changes.
    expect(syncs).toBeLessThan(n / 4)
    expect(writes).toBeLessThanOrEqual(syncs + 1)
  })
})

describe('FERRY_FSYNC=commit (journal mode background)', () => {
  test('changes are acknowledged without waiting for fdatasync, which follows within the interval; removals are synced before their ack', () => {
    const n = 40
    const calls = run('background', 'background', n)
    const opened = calls.find((c) => isMark(c, 'OPENED'))!
    const slept = calls.find((c) => isMark(c, 'SLEPT'))!
    const journalSyncs = calls.filter((c) => c.name === 'fdatasync' && onJournal(c) && ok(c))
    // Not one fdatasync per change...
    expect(journalSyncs.filter((c) => c.end < opened.start).length).toBeLessThan(n / 4)
    // ...but the last acknowledged line reached the disk within the interval, while idle.
    const lastWrite = calls
      .filter((c) => c.name === 'write' && onJournal(c) && c.end < opened.start)
      .pop()!
    expect(journalSyncs.some((c) => c.start > lastWrite.end && c.end < slept.start)).toBe(true)
    // A removal (its temp file is deleted next) is durable before it is acknowledged.
    expect(syncedBeforeAck(calls, 's:0')).toBe(true)
  })
})

describe('compaction', () => {
  test('temp file written and fdatasynced, renamed over the journal, then the directory fsynced', () => {
    const calls = run('compact', 'background', 200).filter((c) => ok(c))
    const from = calls.findIndex((c) => isMark(c, 'COMPACT'))
    const to = calls.findIndex((c) => isMark(c, 'COMPACTED true'))
    expect(from).toBeGreaterThanOrEqual(0)
    expect(to).toBeGreaterThan(from)
    const window = calls.slice(from, to)
    const tmpWrite = window.findIndex(
      (c) => c.name === 'write' && /sessions\.journal\.tmp>/.test(c.args),
    )
    const tmpSync = window.findIndex(
      (c) => c.name === 'fdatasync' && /sessions\.journal\.tmp>/.test(c.args),
    )
    const renamed = window.findIndex(
      (c) => /^rename/.test(c.name) && /sessions\.journal\.tmp".*sessions\.journal"/.test(c.args),
    )
    const dirSync = window.findIndex(
      (c, i) => i > renamed && c.name === 'fsync' && /<[^>]*\/state>/.test(c.args),
    )
    expect(tmpWrite).toBeGreaterThanOrEqual(0)
    expect(tmpSync).toBeGreaterThan(tmpWrite)
    expect(renamed).toBeGreaterThan(tmpSync)
    expect(dirSync).toBeGreaterThan(renamed)
  })
})

describe('Ferry itself', () => {
  test('FERRY_FSYNC=chunk: every journal write of a chunk upload is fdatasynced before the next', async () => {
    const dir = tempDir('ferry-strace-app-')
    const trace = join(dir, 'trace.txt')
    const port = await freePort()
    const proc = spawn(
      'strace',
      ['-f', '-qq', '-y', '-e', 'trace=write,fdatasync', '-o', trace, process.execPath, MAIN_JS],
      {
        env: {
          PATH: process.env['PATH'] ?? '',
          FERRY_DATA_DIR: join(dir, 'data'),
          FERRY_PORT: String(port),
          FERRY_FSYNC: 'chunk',
          FERRY_LOG_LEVEL: 'warn',
          FERRY_MIN_CHUNK_BYTES: '0',
        },
        stdio: 'ignore',
      },
    )
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    let pid = 0
    try {
      const url = `http://127.0.0.1:${port}`
      for (const stop = Date.now() + 30_000; ; ) {
        if (
          (await fetch(`${url}/healthz`).then(
            (r) => r.status,
            () => 0,
          )) === 200
        )
          break
        if (Date.now() > stop) throw new Error('ferry under strace did not become ready')
        await new Promise((r) => setTimeout(r, 100))
      }
      const id = newSessionId()
      for (let i = 0; i < 5; i++)
        expect(
          (await putChunk(url, 'f.bin', id, i * 10, i * 10 + 9, 50, Buffer.alloc(10, i))).status,
        ).toBe(200)
      // The traced Ferry is the first process in the trace.
      pid = Number(/^(\d+)/.exec(readFileSync(trace, 'utf8'))![1])
      process.kill(pid, 'SIGTERM')
      await exited
      const journal = parseTrace(readFileSync(trace, 'utf8')).filter((c) => onJournal(c) && ok(c))
      const writes = journal.filter((c) => c.name === 'write')
      expect(writes.length).toBeGreaterThanOrEqual(6) // open, then one per chunk (reservations are not journaled)
      for (const [i, w] of writes.entries()) {
        const next = writes[i + 1]?.start ?? Infinity
        expect([
          i,
          journal.some((c) => c.name === 'fdatasync' && c.start > w.end && c.start < next),
        ]).toEqual([i, true])
      }
    } finally {
      // Killing strace would leave the traced Ferry running: end Ferry itself.
      try {
        if (pid > 0) process.kill(pid, 'SIGKILL')
        else proc.kill('SIGKILL')
      } catch {
        /* already gone */
      }
      await exited
      removeDir(dir)
    }
  })
})
