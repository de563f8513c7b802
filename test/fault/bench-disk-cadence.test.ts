/**
 * The benchmark's `disk` row (bench/macro/disk.js) is the ceiling for goal 1 of issue 14 only if
 * it writes and syncs the way Ferry's default durability does. Under `strace -f`: a chunked upload
 * is written in 1 MiB positional writes, fdatasynced in the background every 64 MiB while it is
 * written, and published by an fdatasync of the temp file, a rename, then an fsync of the target's
 * folder; a small file by one write, fdatasync, rename and folder fsync.
 */
import { beforeAll, describe, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { removeDir, tempDir } from '../helpers/server.js'
import { type Call, ensureStrace, parseTrace } from '../helpers/strace.js'

const DISK_JS = new URL('../../../bench/macro/disk.js', import.meta.url).pathname
const MiB = 1024 * 1024

interface Reply {
  ok: boolean
  error?: string
  uploads?: { path: string }[]
}

/** Runs disk.js under strace, sends it `runs` after a prepare; answers the calls it made. */
async function traced(runs: object[]): Promise<{ calls: Call[]; dataDir: string }> {
  const dir = tempDir('ferry-bench-disk-')
  const dataDir = join(dir, 'data')
  const trace = join(dir, 'trace.txt')
  const syscalls =
    'pwrite64,pwritev,write,writev,fsync,fdatasync,rename,renameat,renameat2,link,linkat'
  const child = spawn(
    'strace',
    [
      '-f',
      '-qq',
      '-y',
      '-s',
      '200',
      '-e',
      `trace=${syscalls}`,
      '-o',
      trace,
      process.execPath,
      DISK_JS,
    ],
    {
      env: { ...process.env, BENCH_DATA_DIR: dataDir },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  )
  const ask = (msg: object) =>
    new Promise<Reply>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Reply))
      child.once('exit', (code) => reject(new Error(`disk.js exited ${code}`)))
      child.send(msg)
    })
  try {
    const prepared = await ask({
      cmd: 'prepare',
      seed: 'cadence',
      bigBytes: 160 * MiB,
      smallCount: 4,
      smallBytes: 64 * 1024,
    })
    expect(prepared.error).toBeUndefined()
    for (const r of runs) {
      const res = await ask(r)
      expect(res.error).toBeUndefined()
      expect(res.ok).toBe(true)
    }
  } finally {
    const gone = new Promise((resolve) => child.once('exit', resolve))
    child.send({ cmd: 'exit' })
    await gone
  }
  const calls = parseTrace(readFileSync(trace, 'utf8'))
  removeDir(dir)
  return { calls, dataDir }
}

/** The path strace -y printed for a call's first (fd) argument. */
const fdPath = (c: Call) => /^\d+<([^>]*)>/.exec(c.args)?.[1] ?? ''
const underTmp = (dataDir: string) => (c: Call) => fdPath(c).startsWith(join(dataDir, 'tmp'))

beforeAll(() => ensureStrace())

describe('the disk row writes and syncs as Ferry does (FERRY_FSYNC=commit)', () => {
  test('a chunked upload of 160 MiB: 1 MiB writes, background fdatasyncs, then the publish', async () => {
    const { calls, dataDir } = await traced([
      {
        cmd: 'run',
        kind: 'chunked',
        params: { size: 160 * MiB, chunk: 8 * MiB, parallel: 1, sessions: 1, prefix: 'b' },
      },
    ])
    const tmp = underTmp(dataDir)
    const writes = calls.filter((c) => /^pwrite/.test(c.name) && tmp(c))
    expect(writes).toHaveLength(160)
    expect(writes.every((c) => c.result === String(MiB))).toBe(true)
    const syncs = calls.filter((c) => c.name === 'fdatasync' && tmp(c))
    // At least one background flush while writing (at 64 MiB; at 128 MiB too unless the first
    // was still running), then the commit's.
    expect(syncs.length).toBeGreaterThanOrEqual(2)
    expect(syncs.length).toBeLessThanOrEqual(3)
    const lastWrite = writes.at(-1)!.start
    expect(syncs[0]!.start).toBeLessThan(lastWrite)
    const rename = calls.find((c) => /^rename/.test(c.name))!
    expect(rename.args).toContain('b/chunked-0.bin')
    const commitSync = syncs.at(-1)!
    expect(commitSync.start).toBeGreaterThan(lastWrite)
    expect(commitSync.end).toBeLessThan(rename.start)
    const dirSync = calls.find(
      (c) => c.name === 'fsync' && fdPath(c) === join(dataDir, 'store', 'b'),
    )
    expect(dirSync).toBeDefined()
    expect(dirSync!.start).toBeGreaterThan(rename.end)
  }, 120_000)

  test('small files: one write, fdatasync, rename, folder fsync each', async () => {
    const { calls, dataDir } = await traced([
      { cmd: 'run', kind: 'small', params: { count: 4, conc: 1, prefix: 'c' } },
    ])
    const tmp = underTmp(dataDir)
    const writes = calls.filter((c) => /^pwrite/.test(c.name) && tmp(c))
    expect(writes.map((c) => c.result)).toEqual(['65536', '65536', '65536', '65536'])
    const syncs = calls.filter((c) => c.name === 'fdatasync' && tmp(c))
    const renames = calls.filter((c) => /^rename/.test(c.name))
    const dirSyncs = calls.filter(
      (c) => c.name === 'fsync' && fdPath(c) === join(dataDir, 'store', 'c'),
    )
    expect([syncs.length, renames.length, dirSyncs.length]).toEqual([4, 4, 4])
    for (let i = 0; i < 4; i++) {
      expect(writes[i]!.end).toBeLessThan(syncs[i]!.start)
      expect(syncs[i]!.end).toBeLessThan(renames[i]!.start)
      expect(renames[i]!.end).toBeLessThan(dirSyncs[i]!.start)
    }
  }, 120_000)
})
