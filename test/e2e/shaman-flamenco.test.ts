/**
 * The Flamenco Blender add-on's Shaman flow, replayed with the requests the real client sends
 * (Flamenco's addon/flamenco/bat/shaman.py, `Transferrer._run`): requirements → for each file GET
 * its status, POST it with `X-Shaman-Can-Defer-Upload: True|False` and an RFC 2047 filename → query
 * again → checkout. Two artists submit overlapping jobs to two instances at once. Then checkout
 * atomicity, watched by another process.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { request as httpRequest, Agent } from 'node:http'
import { join } from 'node:path'
import { seededBytes, sha256, shuffle } from '../helpers/http.js'
import { startCluster, type TestCluster, type TestServer } from '../helpers/server.js'
import { storedBlobs } from '../helpers/shaman.js'
import { waitFor } from '../helpers/wait.js'

const API = '/api/v3/shaman'

interface Spec {
  sha: string
  size: number
  path: string
}
interface Answer {
  status: number
  body: Buffer
}

// What the generated Python client (urllib3) puts on every request.
const CLIENT_HEADERS = {
  Accept: 'application/json',
  'Accept-Encoding': 'identity',
  'User-Agent': 'Flamenco/3.9 (Blender add-on)',
}

function call(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method, agent, headers: { ...CLIENT_HEADERS, ...headers } },
      (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const postJson = (agent: Agent, url: string, obj: unknown) => {
  const body = Buffer.from(JSON.stringify(obj))
  return call(
    agent,
    url,
    'POST',
    { 'Content-Type': 'application/json', 'Content-Length': body.length },
    body,
  )
}

/** Python's email.header.Header(name, 'utf-8', maxlinelen=0).encode(): q for ASCII, b otherwise. */
function rfc2047(name: string): string {
  const bytes = Buffer.from(name, 'utf8')
  if (/^[\x20-\x7e]*$/.test(name)) {
    let q = ''
    for (const c of bytes)
      q += /[A-Za-z0-9\-!*+/]/.test(String.fromCharCode(c))
        ? String.fromCharCode(c)
        : c === 0x20
          ? '_'
          : `=${c.toString(16).toUpperCase().padStart(2, '0')}`
    return `=?utf-8?q?${q}?=`
  }
  return `=?utf-8?b?${bytes.toString('base64')}?=`
}

interface RunLog {
  rounds: number
  statuses: number[]
  checkout: Answer
}

/**
 * The add-on's loop: requirements with all files; unknown ones first, uploading ones last; for
 * each: GET, skip if stored, POST with defer; 425 → deferred and the rest shuffled; 417 ends the
 * round; query again until nothing is needed (at most 50 rounds); then check out everything.
 */
async function submitJob(
  base: string,
  files: Spec[],
  content: Map<string, Buffer>,
  checkoutPath: string,
  seed: number,
): Promise<RunLog> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const statuses: number[] = []
  let rounds = 0
  try {
    for (; rounds < 50; rounds++) {
      const req = await postJson(agent, `${base}${API}/checkout/requirements`, { files })
      expect(req.status).toBe(200)
      const needed = JSON.parse(req.body.toString()).files as (Spec & { status: string })[]
      const asked = new Set(files.map((f) => f.path))
      for (const f of needed) expect(asked.has(f.path)).toBe(true)
      if (needed.length === 0) break
      let queue = [
        ...needed.filter((f) => f.status === 'unknown'),
        ...needed.filter((f) => f.status === 'uploading'),
      ]
      const deferred = new Set<string>()
      while (queue.length > 0) {
        const f = queue.shift()!
        const st = await call(agent, `${base}${API}/files/${f.sha}/${f.size}`, 'GET', {})
        if (JSON.parse(st.body.toString()).status === 'stored') continue
        const canDefer = deferred.size < 8 && !deferred.has(f.path) && queue.length > 0
        const body = content.get(`${f.sha}:${f.size}`)!
        const up = await call(
          agent,
          `${base}${API}/files/${f.sha}/${f.size}`,
          'POST',
          {
            'Content-Type': 'application/octet-stream',
            'Content-Length': body.length,
            'X-Shaman-Can-Defer-Upload': canDefer ? 'True' : 'False',
            'X-Shaman-Original-Filename': rfc2047(f.path),
          },
          body,
        )
        statuses.push(up.status)
        if (up.status === 425) {
          deferred.add(f.path)
          queue = shuffle(queue, seed + queue.length)
          continue
        }
        expect(up.status >= 200 && up.status < 300).toBe(true)
      }
    }
    const checkout = await postJson(agent, `${base}${API}/checkout/create`, { files, checkoutPath })
    return { rounds, statuses, checkout }
  } finally {
    agent.destroy()
  }
}

describe('the Flamenco add-on flow on two instances', () => {
  let cluster: TestCluster<[TestServer, TestServer]>
  let dir: string
  let a: TestServer
  let b: TestServer

  beforeAll(async () => {
    cluster = await startCluster(2, { FERRY_SHAMAN_GC_INTERVAL_SEC: '0' }, 'ferry-shaman-flamenco-')
    ;[a, b] = cluster.servers
    dir = cluster.dataDir
  })
  afterAll(() => cluster.close())

  test('two artists submit overlapping jobs at once; both checkouts hold every file, each stored once', async () => {
    const content = new Map<string, Buffer>()
    const make = (path: string, size: number, seed: string): Spec => {
      const buf = seededBytes(size, seed)
      content.set(`${sha256(buf)}:${size}`, buf)
      return { sha: sha256(buf), size, path }
    }
    const shared: Spec[] = [
      make('scene.blend', 3 * 1024 * 1024, 'scene'),
      make('textures/wood.png', 700_000, 'wood'),
      make('textures/á hausinn á þér.png', 250_000, 'icelandic'),
      make('scripts/много ликова.py', 5_000, 'cyrillic'),
      make('corrupt/ßad.bin', 1_234, 'sz'),
      make('empty.txt', 0, 'empty'),
      ...Array.from({ length: 14 }, (_, i) =>
        make(`lib/part-${i}.bin`, 20_000 + i * 7_000, `part-${i}`),
      ),
    ]
    const jobA = [
      ...shared,
      make('only-a/notes.txt', 900, 'only-a'),
      { ...shared[1]!, path: 'udim/wood-copy.png' },
    ]
    const jobB = [...shared.slice().reverse(), make('only-b/notes.txt', 901, 'only-b')]
    const [ra, rb] = await Promise.all([
      submitJob(a.url, jobA, content, 'Sprite-Fright/jobs/job-a', 1),
      submitJob(b.url, jobB, content, 'Sprite-Fright/jobs/job-b', 2),
    ])
    for (const [r, job, path] of [
      [ra, jobA, 'Sprite-Fright/jobs/job-a'],
      [rb, jobB, 'Sprite-Fright/jobs/job-b'],
    ] as const) {
      expect(r.checkout.status).toBe(200)
      expect(JSON.parse(r.checkout.body.toString())).toEqual({ checkoutPath: path })
      expect(r.rounds).toBeLessThan(50)
      expect(r.statuses.every((s) => s === 204 || s === 208 || s === 425)).toBe(true)
      for (const f of job) {
        const link = join(dir, 'checkouts', path, f.path)
        expect(lstatSync(link).isSymbolicLink()).toBe(true)
        expect(readlinkSync(link).startsWith('../')).toBe(true)
        expect(readFileSync(link).equals(content.get(`${f.sha}:${f.size}`)!)).toBe(true)
      }
    }
    // Every distinct object is stored exactly once.
    const blobs = (await storedBlobs(dir)).map(({ key }) => `${key.sha256}:${key.size}`)
    expect(blobs.sort()).toEqual([...content.keys()].sort())
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
  })

  test('a checkout is never seen half-built by a reader in another process; a racing create of the same path is 409', async () => {
    const content = new Map<string, Buffer>()
    const files: Spec[] = []
    for (let i = 0; i < 40; i++) {
      const buf = seededBytes(64 + i, `atom-${i}`)
      content.set(`${sha256(buf)}:${buf.length}`, buf)
      const agent = new Agent({ keepAlive: false })
      const up = await call(
        agent,
        `${a.url}${API}/files/${sha256(buf)}/${buf.length}`,
        'POST',
        { 'Content-Length': buf.length },
        buf,
      )
      expect([204, 208]).toContain(up.status)
      for (let j = 0; j < 50; j++)
        files.push({
          sha: sha256(buf),
          size: buf.length,
          path: `d${j % 25}/sub${i % 4}/f-${i}-${j}.bin`,
        })
    }
    const target = join(dir, 'checkouts', 'atomic', 'job')
    const total = files.length + 25 + 25 * 4 + 1 // links + d*/ + d*/sub*/ + the checkout's mark file
    // The reader polls as fast as it can and reports every entry count it saw while the path
    // existed.
    const reader = spawn(
      process.execPath,
      [
        '-e',
        `
      const fs = require('fs')
      const seen = new Set()
      process.stdout.write('ready\\n')
      const until = Date.now() + 30000
      while (Date.now() < until) {
        let n
        try { n = fs.readdirSync(${JSON.stringify(target)}, { recursive: true }).length } catch { continue }
        seen.add(n)
        if (n === ${total}) break
      }
      process.stdout.write(JSON.stringify([...seen]) + '\\n')
    `,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    // Listen for the exit now: the reader may finish before the checkout calls answer.
    const readerExited = new Promise((r) => reader.once('exit', r))
    let out = ''
    reader.stdout.on('data', (d: Buffer) => (out += d.toString()))
    await waitFor('the reader to start', () => out.includes('ready'), { everyMs: 10 })
    const agentA = new Agent({ keepAlive: false })
    const agentB = new Agent({ keepAlive: false })
    const [ca, cb] = await Promise.all([
      postJson(agentA, `${a.url}${API}/checkout/create`, { files, checkoutPath: 'atomic/job' }),
      postJson(agentB, `${b.url}${API}/checkout/create`, { files, checkoutPath: 'atomic/job' }),
    ])
    expect([ca.status, cb.status].sort()).toEqual([200, 409])
    await readerExited
    const seen = JSON.parse(out.trim().split('\n').pop()!) as number[]
    expect(readdirSync(target, { recursive: true }).length).toBe(total)
    expect(seen).toEqual([total])
    expect(readdirSync(join(dir, 'checkouts', 'atomic'))).toEqual(['job'])
  })
})
