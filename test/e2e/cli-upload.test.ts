/**
 * `ferry upload` end to end: the CLI as a child process against a real Ferry on 127.0.0.1,
 * through a proxy that throttles (so a run can be stopped half way) and cuts connections
 * mid-body (so requests fail and are retried). A stopped run resumes in the next one from what
 * the server holds (`resumedFrom` > 0), and the stored bytes match.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI_JS, lastJson, runCli, runProgram, spawnCli } from '../helpers/cli.js'
import { request } from '../helpers/http.js'
import { API } from '../helpers/imagestore.js'
import { removeDir, startFerry, tempDir, type TestServer } from '../helpers/server.js'
import { freePort } from '../helpers/redis.js'
import { ThrottleProxy } from '../helpers/throttle-proxy.js'
import { waitFor } from '../helpers/wait.js'

const MIB = 1024 * 1024
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at /)

interface Uploaded {
  url: string
  bytes: number
  sha256: string
  resumedFrom: number
}

let server: TestServer
let dir: string
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  dir = tempDir('ferry-cli-')
  server = await startFerry({ FERRY_MIN_CHUNK_BYTES: String(64 * 1024) })
})
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  await server.close()
  removeDir(server.dataDir)
  removeDir(dir)
})

function randomFile(name: string, bytes: number): { path: string; data: Buffer } {
  const data = Buffer.alloc(bytes)
  for (let i = 0; i < bytes; i += 4)
    data.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i)
  const path = join(dir, name)
  writeFileSync(path, data)
  return { path, data }
}

async function proxy(
  bytesPerSec: number,
  cutAfter: (n: number) => number | null,
): Promise<ThrottleProxy> {
  const p = await ThrottleProxy.start(Number(new URL(server.url).port), { bytesPerSec, cutAfter })
  cleanups.push(() => p.close())
  return p
}

/** Bytes the ImageStore session at `path` holds (size minus its expected ranges), or 0. */
async function receivedAt(path: string): Promise<number> {
  const r = await request(`${server.url}/ImageStore/${path}/$/GetUploadSession?${API}`)
  if (r.status !== 200) return 0
  const s = r.json<{
    UploadSessions: {
      FileSize: string
      ExpectedRanges: { StartPosition: string; EndPosition: string }[]
    }[]
  }>().UploadSessions[0]!
  const missing = s.ExpectedRanges.reduce(
    (n, e) => n + Number(e.EndPosition) - Number(e.StartPosition) + 1,
    0,
  )
  return Number(s.FileSize) - missing
}

describe('ferry upload --protocol imagestore', () => {
  test('Ctrl-C half way; the same command resumes through a cutting proxy, verifies', async () => {
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    const { path, data } = randomFile('big.bin', 6 * MIB)
    // One proxy for both runs: the target (its URL) is part of what the resume state is kept by.
    const link = await proxy(1.5 * MIB, () => null)
    const args = [
      'upload',
      path,
      '--protocol',
      'imagestore',
      '--path',
      'cli/big.bin',
      '--chunk-size',
      '256K',
      '--parallel',
      '3',
      '--retry-delay',
      '20',
      '--json',
    ]
    const first = spawnCli([...args, '--to', link.url], { XDG_CACHE_HOME: cache })
    await waitFor(
      'a quarter of the file on the server',
      async () => (await receivedAt('cli/big.bin')) >= 1.5 * MIB,
    )
    first.proc.kill('SIGINT')
    const stopped = await first.done
    expect(stopped.code).toBe(130)
    expect(stopped.stderr.trim().split('\n').pop()).toBe(
      'ferry: interrupted; run the same command again to resume',
    )
    const held = await receivedAt('cli/big.bin')
    expect(held).toBeGreaterThan(0)
    expect(held).toBeLessThan(data.length)
    expect(readdirSync(join(cache, 'ferry', 'uploads'))).toHaveLength(1)

    // Now every third connection is cut 100 KiB into its request bytes: chunks fail, are retried.
    link.plan.bytesPerSec = 0
    link.plan.cutAfter = (n) => (n % 3 === 1 ? 100 * 1024 : null)
    const second = await runCli([...args, '--to', link.url], { XDG_CACHE_HOME: cache })
    expect(second.stderr).toContain('retry')
    expect(second.code).toBe(0)
    const out = lastJson<Uploaded>(second.stdout)
    expect(out.bytes).toBe(data.length)
    expect(out.sha256).toBe(sha256(data))
    // Resumed where the server was, not from zero (chunks in flight at the stop may have landed).
    expect(out.resumedFrom).toBeGreaterThanOrEqual(held)
    expect(out.resumedFrom).toBeLessThan(data.length)
    expect(out.url).toBe(`${link.url}/ImageStore/cli/big.bin?${API}`)
    expect(link.cuts).toBeGreaterThan(0)
    expect(sha256(readFileSync(join(server.dataDir, 'store', 'cli', 'big.bin')))).toBe(sha256(data))
    // Verified and done: the resume state is gone.
    expect(readdirSync(join(cache, 'ferry', 'uploads'))).toHaveLength(0)
  })

  test('a directory: every file below it, two at a time, under --path', async () => {
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    const root = join(dir, 'photos')
    mkdirSync(join(root, '2026', 'nov'), { recursive: true })
    const files: Record<string, Buffer> = {
      'photos/a.jpg': Buffer.from('first file'),
      'photos/2026/b.jpg': randomFile('photos/2026/b.jpg', 300 * 1024).data,
      'photos/2026/nov/c.jpg': randomFile('photos/2026/nov/c.jpg', 700 * 1024).data,
      'photos/2026/nov/empty': Buffer.alloc(0),
    }
    writeFileSync(join(dir, 'photos/a.jpg'), files['photos/a.jpg']!)
    writeFileSync(join(dir, 'photos/2026/nov/empty'), Buffer.alloc(0))
    const r = await runCli(
      [
        'upload',
        root,
        '--to',
        server.url,
        '--protocol',
        'imagestore',
        '--path',
        'albums',
        '--chunk-size',
        '128K',
        '--jobs',
        '2',
        '--json',
      ],
      { XDG_CACHE_HOME: cache },
    )
    expect(r.stderr).not.toContain('ferry:')
    expect(r.code).toBe(0)
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Uploaded)
    expect(lines.map((l) => l.url).sort()).toEqual(
      Object.keys(files)
        .map((k) => `${server.url}/ImageStore/albums/${k}?${API}`)
        .sort(),
    )
    for (const [rel, body] of Object.entries(files)) {
      expect(sha256(readFileSync(join(server.dataDir, 'store', 'albums', rel)))).toBe(sha256(body))
      expect(lines.find((l) => l.url.includes(`/albums/${rel}?`))?.sha256).toBe(sha256(body))
    }
  })
})

/** The tus upload a state file in `cache` points at: its URL and the offset the server holds. */
async function tusProgress(cache: string): Promise<{ url: string; offset: number } | null> {
  const folder = join(cache, 'ferry', 'uploads')
  let names: string[]
  try {
    names = readdirSync(folder).filter((n) => n.endsWith('.json'))
  } catch {
    return null
  }
  if (names.length === 0) return null
  const state = JSON.parse(readFileSync(join(folder, names[0]!), 'utf8')) as {
    upload: { uploadUrl: string | null }
  }
  const url = state.upload.uploadUrl
  if (!url) return null
  const r = await request(url.replace(/^http:\/\/[^/]+/, server.url), {
    method: 'HEAD',
    headers: { 'Tus-Resumable': '1.0.0' },
  })
  return r.status === 200 ? { url, offset: Number(r.headers['upload-offset']) } : null
}

describe('ferry upload (tus, the default)', () => {
  test('killed half way; the same command resumes through a cutting proxy, verifies', async () => {
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    const { path, data } = randomFile('tus.bin', 6 * MIB)
    const link = await proxy(1.5 * MIB, () => null)
    const args = [
      'upload',
      path,
      '--to',
      link.url,
      '--chunk-size',
      '512K',
      '--retry-delay',
      '20',
      '--json',
    ]
    const first = spawnCli(args, { XDG_CACHE_HOME: cache })
    const seen = await waitFor('a quarter of the file on the server', async () => {
      const p = await tusProgress(cache)
      return p !== null && p.offset >= 1.5 * MIB ? p : null
    })
    first.proc.kill('SIGKILL')
    expect((await first.done).signal).toBe('SIGKILL')

    // tus-js-client keeps one connection alive: cut every connection after 1 MiB of requests.
    link.plan.bytesPerSec = 0
    link.plan.cutAfter = () => MIB
    const second = await runCli(args, { XDG_CACHE_HOME: cache })
    expect(second.stderr).toContain('retry')
    expect(second.code).toBe(0)
    const out = lastJson<Uploaded>(second.stdout)
    expect(out).toEqual({
      url: seen.url,
      bytes: data.length,
      sha256: sha256(data),
      resumedFrom: out.resumedFrom,
    })
    expect(out.resumedFrom).toBeGreaterThanOrEqual(seen.offset)
    expect(out.resumedFrom).toBeLessThan(data.length)
    expect(link.cuts).toBeGreaterThan(0)
    const stored = await request(out.url.replace(link.url, server.url))
    expect(sha256(stored.body)).toBe(sha256(data))
    expect(readdirSync(join(cache, 'ferry', 'uploads'))).toHaveLength(0)
  })

  test('one PATCH for the whole file (the default): a kill keeps what arrived', async () => {
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    const { path, data } = randomFile('one-patch.bin', 6 * MIB)
    const link = await proxy(1.5 * MIB, () => null)
    const args = ['upload', path, '--to', link.url, '--retry-delay', '20', '--json']
    const first = spawnCli(args, { XDG_CACHE_HOME: cache })
    // The server counts a PATCH's bytes when it ends: watch them land in its session temp file
    // instead (what the client has sent may still sit in socket buffers).
    const landed = await waitFor('a quarter of the file on the server', () => {
      const tmp = join(server.dataDir, 'tmp')
      const sizes = readdirSync(tmp).map(
        (n) => statSync(join(tmp, n), { throwIfNoEntry: false })?.size ?? 0,
      )
      return sizes.find((n) => n >= 1.5 * MIB && n < data.length) ?? null
    })
    first.proc.kill('SIGKILL')
    await first.done
    link.plan.bytesPerSec = 0
    const second = await runCli(args, { XDG_CACHE_HOME: cache })
    expect(second.code).toBe(0)
    const out = lastJson<Uploaded>(second.stdout)
    expect(out.sha256).toBe(sha256(data))
    expect(out.resumedFrom).toBeGreaterThanOrEqual(landed)
    expect(out.resumedFrom).toBeLessThan(data.length)
    expect(second.stderr).toContain(`one-patch.bin: resuming at`)
  })

  test("a directory, --parallel (tus concatenation), the server's sha256 checked", async () => {
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    mkdirSync(join(dir, 'tusdir', 'sub'), { recursive: true })
    const a = randomFile('tusdir/a.bin', 900 * 1024).data
    const b = randomFile('tusdir/sub/b.bin', 2 * MIB).data
    const r = await runCli(
      [
        'upload',
        join(dir, 'tusdir'),
        '--to',
        `${server.url}/files/`,
        '--parallel',
        '3',
        '--jobs',
        '2',
        '--json',
      ],
      { XDG_CACHE_HOME: cache },
    )
    expect(r.code).toBe(0)
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Uploaded)
    expect(lines.map((l) => l.sha256).sort()).toEqual([sha256(a), sha256(b)].sort())
    for (const l of lines) {
      const head = await request(l.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
      expect(head.headers['x-ferry-sha256']).toBe(l.sha256)
      expect(sha256((await request(l.url)).body)).toBe(l.sha256)
    }
  })
})

describe('ferry upload: bad input ends in one clear line and an exit code', () => {
  test('a missing file: exit 2, no stack', async () => {
    const r = await runCli(['upload', join(dir, 'nope.bin'), '--to', server.url], {
      XDG_CACHE_HOME: dir,
    })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe(`ferry: ${join(dir, 'nope.bin')}: no such file or directory`)
  })

  test('no server there: retried with backoff, then exit 1', async () => {
    const { path } = randomFile('lonely.bin', 1000)
    for (const protocol of ['imagestore', 'tus']) {
      const r = await runCli(
        [
          'upload',
          path,
          '--to',
          'http://127.0.0.1:9',
          '--protocol',
          protocol,
          '--retries',
          '2',
          '--retry-delay',
          '10',
        ],
        { XDG_CACHE_HOME: tempDir('ferry-cli-cache-') },
      )
      expect(r.code).toBe(1)
      const last = r.stderr.trim().split('\n').pop()!
      expect(last).toMatch(/^ferry: lonely\.bin: .*connection refused \(gave up after 2 retries\)$/)
      expect(r.stderr.match(/retry \d: connection refused/g)).toHaveLength(2)
      noStack(r.stderr)
    }
  })

  test('a file over the server limit: 413 named, exit 1', async () => {
    const small = await startFerry({ FERRY_MAX_UPLOAD_BYTES: '4096' })
    cleanups.push(async () => {
      await small.close()
      removeDir(small.dataDir)
    })
    const { path } = randomFile('too-big.bin', 10_000)
    const r = await runCli(
      ['upload', path, '--to', small.url, '--protocol', 'imagestore', '--path', 'x.bin'],
      { XDG_CACHE_HOME: tempDir('ferry-cli-cache-') },
    )
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(
      /^ferry: too-big\.bin: sending a chunk: the server answered 413 /,
    )
    noStack(r.stderr)
    const t = await runCli(['upload', path, '--to', small.url], {
      XDG_CACHE_HOME: tempDir('ferry-cli-cache-'),
    })
    expect(t.code).toBe(1)
    expect(t.stderr.trim().split('\n').pop()).toMatch(
      /^ferry: too-big\.bin: the server answered 413/,
    )
    expect(t.stderr).not.toContain('retry')
    noStack(t.stderr)
  })

  test("a bad option value: exit 2 with commander's message", async () => {
    const r = await runCli(['upload', 'x', '--to', server.url, '--chunk-size', 'lots'], {})
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("option '--chunk-size <size>' argument 'lots' is invalid")
  })
})

describe('ferry upload on a terminal', () => {
  test('a progress bar (bytes, rate, ETA, retries), the result printed above it', async () => {
    const { path, data } = randomFile('bar.bin', 3 * MIB)
    const cache = tempDir('ferry-cli-cache-')
    cleanups.push(async () => removeDir(cache))
    // util-linux script(1) gives the command a pseudo-terminal, as a person's shell would.
    const command = `stty cols 200; ${process.execPath} ${CLI_JS} upload ${path} --to ${server.url}`
    const r = await runProgram('script', ['-qec', command, '/dev/null'], { XDG_CACHE_HOME: cache })
    expect(r.code).toBe(0)
    // Terminal control sequences (ESC [ … letter) out, then one entry per redraw or line.
    const esc = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g')
    const screen = r.stdout.replace(esc, '').split(/[\r\n]+/)
    const bar = screen.filter((l) => l.startsWith('bar.bin ['))
    expect(bar.at(-1)).toMatch(
      /^bar\.bin \[█{40}\] 100% \| 3\.0 MiB\/3\.0 MiB \| [\d.]+ \w+\/s \| ETA 0s \| retries 0$/,
    )
    expect(
      screen.some(
        (l) =>
          l.includes(`uploaded 3.0 MiB to ${server.url}/files/`) &&
          l.includes(`sha256 ${sha256(data)} verified`),
      ),
    ).toBe(true)
  })
})

describe('ferry serve', () => {
  test('starts the server with its flags and FERRY_* settings, stops on SIGTERM', async () => {
    const port = await freePort()
    const data = tempDir('ferry-cli-serve-')
    cleanups.push(async () => removeDir(data))
    const run = spawnCli(['serve', '--port', String(port), '--host', '127.0.0.1'], {
      FERRY_DATA_DIR: data,
      FERRY_LOG_LEVEL: 'warn',
    })
    await waitFor('ferry serve to answer /healthz', async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200
      } catch {
        return false
      }
    })
    run.proc.kill('SIGTERM')
    expect((await run.done).code).toBe(0)
  })
})
