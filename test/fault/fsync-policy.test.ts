/**
 * FERRY_FSYNC on a real Ferry process under `strace -f`: with `none` a whole-file PUT and a
 * chunked upload's commit make no fsync or fdatasync at all (and the start-up log warns once);
 * with the default `commit` each publication fdatasyncs its data before the rename and fsyncs the
 * target's folder after it, all before the response leaves.
 */
import { beforeAll, describe, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from '../helpers/http.js'
import { API, commit, newSessionId, putChunk } from '../helpers/imagestore.js'
import { freePort } from '../helpers/redis.js'
import { MAIN_JS, removeDir, tempDir } from '../helpers/server.js'
import { type Call, ensureStrace, parseTrace } from '../helpers/strace.js'

interface Traced {
  readonly calls: Call[]
  readonly output: string
  readonly dataDir: string
  readonly dir: string
}

const SYNCS = new Set(['fsync', 'fdatasync'])
/** A sync of a file or folder (not the log's pipe, which pino flushes at exit). */
const isDiskSync = (c: Call) => SYNCS.has(c.name) && /^\d+<\//.test(c.args)
const ok = (c: Call) => /^\d+/.test(c.result)
const isRename = (c: Call) => /^(rename|renameat|renameat2|link|linkat)$/.test(c.name)
/** A response (status line) written to a TCP socket. */
const isResponse = (c: Call) =>
  /^(write|writev)$/.test(c.name) && /<socket:/.test(c.args) && c.args.includes('HTTP/1.1 ')

/** Runs Ferry under strace with `env`, lets `drive` talk to it, stops it; answers the trace. */
async function traced(
  env: Record<string, string>,
  drive: (url: string) => Promise<void>,
): Promise<Traced> {
  const dir = tempDir('ferry-fsync-policy-')
  const trace = join(dir, 'trace.txt')
  const dataDir = join(dir, 'data')
  const port = await freePort()
  const syscalls = 'fsync,fdatasync,rename,renameat,renameat2,link,linkat,read,write,writev'
  const proc = spawn(
    'strace',
    [
      '-f',
      '-qq',
      '-y',
      '-s',
      '64',
      '-e',
      `trace=${syscalls}`,
      '-o',
      trace,
      process.execPath,
      MAIN_JS,
    ],
    {
      env: {
        PATH: process.env['PATH'] ?? '',
        FERRY_DATA_DIR: dataDir,
        FERRY_PORT: String(port),
        FERRY_LOG_LEVEL: 'info',
        FERRY_MIN_CHUNK_BYTES: '0',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()))
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  let pid = 0
  try {
    const url = `http://127.0.0.1:${port}`
    for (const stop = Date.now() + 60_000; ; ) {
      const status = await fetch(`${url}/healthz`).then(
        (r) => r.status,
        () => 0,
      )
      if (status === 200) break
      if (Date.now() > stop) throw new Error(`ferry under strace did not become ready:\n${output}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    await drive(url)
    // The traced Ferry is the first process in the trace.
    pid = Number(/^(\d+)/.exec(readFileSync(trace, 'utf8'))![1])
    process.kill(pid, 'SIGTERM')
    await exited
    return { calls: parseTrace(readFileSync(trace, 'utf8')), output, dataDir, dir }
  } catch (err) {
    // Killing strace would leave the traced Ferry running: end Ferry itself.
    try {
      if (pid > 0) process.kill(pid, 'SIGKILL')
      else proc.kill('SIGKILL')
    } catch {
      /* already gone */
    }
    await exited
    removeDir(dir)
    throw err
  }
}

const WHOLE = Buffer.alloc(200_000, 7)
const CHUNKED = Buffer.concat([Buffer.alloc(100_000, 1), Buffer.alloc(50_000, 2)])

/** A whole-file PUT of whole.bin, then chunked.bin in two chunks and its commit. */
async function putAndCommit(url: string): Promise<void> {
  const put = await request(`${url}/ImageStore/d/whole.bin?${API}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: WHOLE,
  })
  expect(put.status).toBeLessThan(300)
  const id = newSessionId()
  expect(
    (await putChunk(url, 'd/chunked.bin', id, 0, 99_999, 150_000, CHUNKED.subarray(0, 100_000)))
      .status,
  ).toBe(200)
  expect(
    (await putChunk(url, 'd/chunked.bin', id, 100_000, 149_999, 150_000, CHUNKED.subarray(100_000)))
      .status,
  ).toBe(200)
  expect((await commit(url, id)).status).toBeLessThan(300)
}

/**
 * The publication of `name` (a rename or link onto `.../store/d/<name>`): its data fdatasynced
 * before it, the folder `store/d` fsynced after it, both before the next response on a socket.
 */
function publishedDurably(calls: Call[], name: string): void {
  const target = new RegExp(`/store/d/${name.replace('.', '\\.')}"`)
  const pub = calls.find((c) => isRename(c) && ok(c) && target.test(c.args))
  expect([name, pub !== undefined]).toEqual([name, true])
  const answered = calls.find((c) => isResponse(c) && c.start > pub!.end)
  expect([name, answered !== undefined]).toEqual([name, true])
  // The response before this publication's: the request started after it.
  const before = calls.filter((c) => isResponse(c) && c.end < pub!.start).pop()
  const from = before?.end ?? -1
  const dataSynced = calls.some(
    (c) =>
      c.name === 'fdatasync' &&
      ok(c) &&
      /\/tmp\/[^>]*>/.test(c.args) &&
      c.start > from &&
      c.end < pub!.start,
  )
  const dirSynced = calls.some(
    (c) =>
      c.name === 'fsync' &&
      ok(c) &&
      /<[^>]*\/store\/d>/.test(c.args) &&
      c.start > pub!.end &&
      c.end < answered!.start,
  )
  expect([name, 'data synced before publication', dataSynced]).toEqual([
    name,
    'data synced before publication',
    true,
  ])
  expect([name, 'folder synced before the answer', dirSynced]).toEqual([
    name,
    'folder synced before the answer',
    true,
  ])
}

/** A PUT on a connection of its own (so its socket in the trace carries only this request). */
function putAlone(url: string, path: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/ImageStore/${path}?${API}`,
      {
        method: 'PUT',
        agent: false,
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const CONCURRENT = 12
const bodyOf = (i: number) => Buffer.alloc(64 * 1024, i + 1)

/** `CONCURRENT` whole-file PUTs into one folder at once. */
async function concurrentPuts(url: string): Promise<void> {
  const statuses = await Promise.all(
    Array.from({ length: CONCURRENT }, (_, i) => putAlone(url, `d/c${i}.bin`, bodyOf(i))),
  )
  expect(statuses.every((s) => s >= 200 && s < 300)).toBe(true)
}

/**
 * For the PUT of `d/<name>` among concurrent ones: its temp file fdatasynced before its rename,
 * and an fsync of the folder that began after the rename returned before its response was written.
 */
function eachPublishedDurably(calls: Call[], name: string): void {
  const got = calls.find(
    (c) =>
      c.name === 'read' && /<socket:/.test(c.args) && c.args.includes(`/ImageStore/d/${name}?`),
  )
  expect([name, 'request read', got !== undefined]).toEqual([name, 'request read', true])
  const socket = /<(socket:\[\d+\])>/.exec(got!.args)![1]!
  const answered = calls.find(
    (c) => isResponse(c) && c.args.includes(`<${socket}>`) && c.start > got!.end,
  )
  const pub = calls.find(
    (c) => isRename(c) && ok(c) && c.args.includes(`/store/d/${name}"`) && c.start > got!.end,
  )
  expect([name, answered !== undefined, pub !== undefined]).toEqual([name, true, true])
  const temp = /^\d+<([^>]+)>|"([^"]+)"/.exec(pub!.args)
  const tempPath = temp?.[1] ?? temp?.[2]
  const dataSynced = calls.some(
    (c) =>
      c.name === 'fdatasync' && ok(c) && c.args.includes(`<${tempPath}>`) && c.end < pub!.start,
  )
  const dirSynced = calls.some(
    (c) =>
      c.name === 'fsync' &&
      ok(c) &&
      /<[^>]*\/store\/d>/.test(c.args) &&
      c.start > pub!.end &&
      c.end < answered!.start,
  )
  expect([name, pub!.end < answered!.start, dataSynced, dirSynced]).toEqual([
    name,
    true,
    true,
    true,
  ])
}

beforeAll(() => ensureStrace(), 600_000)

describe('FERRY_FSYNC', () => {
  test('none: no fsync or fdatasync for a whole-file PUT and a chunked commit; files published; one warning at start', async () => {
    const t = await traced({ FERRY_FSYNC: 'none' }, putAndCommit)
    try {
      const syncs = t.calls.filter(isDiskSync)
      expect(syncs.map((c) => `${c.name}(${c.args})`)).toEqual([])
      // Still published by rename, whole.
      expect(t.calls.some((c) => isRename(c) && /\/store\/d\/whole\.bin"/.test(c.args))).toBe(true)
      expect(readFileSync(join(t.dataDir, 'store/d/whole.bin')).equals(WHOLE)).toBe(true)
      expect(readFileSync(join(t.dataDir, 'store/d/chunked.bin')).equals(CHUNKED)).toBe(true)
      const warnings = t.output.split('\n').filter((l) => l.includes('FERRY_FSYNC=none'))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/"level":40/)
      expect(warnings[0]).toMatch(/power loss/)
    } finally {
      removeDir(t.dir)
    }
  }, 180_000)

  test('commit (default): each publication fdatasyncs its data before the rename and fsyncs the folder before the answer', async () => {
    const t = await traced({}, putAndCommit)
    try {
      publishedDurably(t.calls, 'whole.bin')
      publishedDurably(t.calls, 'chunked.bin')
      expect(t.output).not.toContain('FERRY_FSYNC=none')
      expect(readFileSync(join(t.dataDir, 'store/d/chunked.bin')).equals(CHUNKED)).toBe(true)
    } finally {
      removeDir(t.dir)
    }
  }, 180_000)

  test('commit: concurrent PUTs into one folder each answer only after their data and the folder were synced; all are there', async () => {
    const t = await traced({}, concurrentPuts)
    try {
      for (let i = 0; i < CONCURRENT; i++) {
        eachPublishedDurably(t.calls, `c${i}.bin`)
        expect(readFileSync(join(t.dataDir, `store/d/c${i}.bin`)).equals(bodyOf(i))).toBe(true)
      }
    } finally {
      removeDir(t.dir)
    }
  }, 180_000)
})
