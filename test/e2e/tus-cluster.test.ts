/**
 * tus with real clients across instances: two Ferry instances on one Redis and one data
 * directory behind haproxy (round-robin per request, no stickiness), tus-js-client in this
 * process, and a proxy that cuts connections in front of the balancer.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { Upload, type UploadOptions, type UrlStorage, type PreviousUpload } from 'tus-js-client'
import { ChaosProxy } from '../chaos/proxy.js'
import { request, seededBytes, sha256 } from '../helpers/http.js'
import { freePort } from '../helpers/redis.js'
import { startCluster, type TestCluster, type TestServer } from '../helpers/server.js'

const TUS = { 'Tus-Resumable': '1.0.0' }
const OCTET = 'application/offset+octet-stream'

let lb: ChildProcess
let lbUrl: string
let cluster: TestCluster<[TestServer, TestServer]>
const patches = [0, 0]

beforeAll(async () => {
  cluster = await startCluster(2)
  for (const [i, s] of cluster.servers.entries()) {
    s.app.server.on('request', (req) => {
      if (req.method === 'PATCH') patches[i]!++
    })
  }
  const port = await freePort()
  const cfg = join(cluster.dataDir, 'haproxy.cfg')
  writeFileSync(
    cfg,
    [
      'defaults',
      '  mode http',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  option http-server-close',
      'frontend in',
      `  bind 127.0.0.1:${port}`,
      '  default_backend ferry',
      'backend ferry',
      '  balance roundrobin',
      ...cluster.servers.map((s, i) => `  server f${i} ${new URL(s.url).host}`),
      '',
    ].join('\n'),
  )
  lb = spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' })
  lbUrl = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`${lbUrl}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) break
    await new Promise((r) => setTimeout(r, 50))
  }
})

afterAll(async () => {
  lb?.kill('SIGKILL')
  await cluster?.close()
})

/** tus-js-client's URL storage, in memory (its Node default writes a file). */
class MemoryUrlStorage implements UrlStorage {
  readonly entries = new Map<string, PreviousUpload & { fingerprint: string }>()
  async findAllUploads(): Promise<PreviousUpload[]> {
    return [...this.entries.values()]
  }
  async findUploadsByFingerprint(fp: string): Promise<PreviousUpload[]> {
    return [...this.entries.values()].filter((e) => e.fingerprint === fp)
  }
  async removeUpload(key: string): Promise<void> {
    this.entries.delete(key)
  }
  async addUpload(fp: string, upload: PreviousUpload): Promise<string> {
    const key = `${fp}#${this.entries.size}`
    this.entries.set(key, { ...upload, fingerprint: fp })
    return key
  }
}

function upload(data: Buffer, options: UploadOptions): { done: Promise<string>; u: Upload } {
  let u!: Upload
  const done = new Promise<string>((resolve, reject) => {
    u = new Upload(data, {
      retryDelays: [0, 50, 100, 200, 400, 800, 1000, 1000, 1000, 1000],
      ...options,
      onSuccess: () => resolve(u.url ?? ''),
      onError: reject,
    })
    u.start()
  })
  return { done, u }
}

const idOf = (url: string) => url.split('/').pop()!
const finishedPath = (id: string) => join(cluster.dataDir, 'tus', id.slice(0, 2), id)

describe('tus-js-client', () => {
  test('a whole upload whose PATCHes alternate instances', async () => {
    const data = seededBytes(3 * 1024 * 1024 + 17, 'whole')
    const before = [...patches]
    const { done } = upload(data, {
      endpoint: `${lbUrl}/files/`,
      chunkSize: 256 * 1024,
      metadata: { filename: 'whole.bin' },
    })
    const url = await done
    expect(patches[0]! - before[0]!).toBeGreaterThan(2)
    expect(patches[1]! - before[1]!).toBeGreaterThan(2)
    expect(sha256(readFileSync(finishedPath(idOf(url))))).toBe(sha256(data))
    const g = await request(url)
    expect(sha256(g.body)).toBe(sha256(data))
  })

  test('parallelUploads: 4 concatenates partials written on both instances', async () => {
    const data = seededBytes(2 * 1024 * 1024 + 5, 'parallel')
    const before = [...patches]
    const { done } = upload(data, {
      endpoint: `${lbUrl}/files/`,
      parallelUploads: 4,
      metadata: { filename: 'parallel.bin' },
    })
    const url = await done
    expect(patches[0]! - before[0]!).toBeGreaterThan(0)
    expect(patches[1]! - before[1]!).toBeGreaterThan(0)
    const h = await request(url, { method: 'HEAD', headers: TUS })
    expect(h.headers['upload-length']).toBe(String(data.length))
    expect(String(h.headers['upload-concat'])).toMatch(/^final;/)
    expect(sha256(readFileSync(finishedPath(idOf(url))))).toBe(sha256(data))
  })

  test('resume from a stored fingerprint after abort()', async () => {
    const data = seededBytes(4 * 1024 * 1024, 'resume')
    const urlStorage = new MemoryUrlStorage()
    const common: UploadOptions = {
      endpoint: `${lbUrl}/files/`,
      chunkSize: 256 * 1024,
      urlStorage,
      fingerprint: async () => 'fp-resume',
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: false,
    }
    let first!: Upload
    await new Promise<void>((resolve, reject) => {
      first = new Upload(data, {
        ...common,
        onChunkComplete: (_n, sent) => {
          if (sent >= 1024 * 1024) {
            void first.abort().then(resolve)
          }
        },
        onError: reject,
        onSuccess: () => reject(new Error('the first attempt should have been aborted')),
      })
      first.start()
    })
    const stored = await urlStorage.findUploadsByFingerprint('fp-resume')
    expect(stored.length).toBe(1)
    const head = await request(first.url!, { method: 'HEAD', headers: TUS })
    const offset = Number(head.headers['upload-offset'])
    expect(offset).toBeGreaterThanOrEqual(1024 * 1024)
    expect(offset).toBeLessThan(data.length)
    let firstProgress = -1
    const second = await new Promise<Upload>((resolve, reject) => {
      const u: Upload = new Upload(data, {
        ...common,
        onProgress: (sent) => {
          if (firstProgress < 0) firstProgress = sent
        },
        onError: reject,
        onSuccess: () => resolve(u),
      })
      void u.findPreviousUploads().then((prev) => {
        expect(prev.length).toBe(1)
        u.resumeFromPreviousUpload(prev[0]!)
        u.start()
      })
    })
    expect(second.url).toBe(first.url)
    // The second run started where the first left off, not at 0.
    expect(firstProgress).toBeGreaterThanOrEqual(offset)
    expect(sha256(readFileSync(finishedPath(idOf(second.url!))))).toBe(sha256(data))
  })

  test('through a proxy that cuts connections mid-body, the upload completes', async () => {
    const lbPort = Number(new URL(lbUrl).port)
    let n = 0
    const proxy = await ChaosProxy.start(lbPort, () => {
      n++
      // The client keeps its connection alive: the first two are cut 1.5 MiB into what it sends
      // (inside a PATCH body), the rest pass.
      return n <= 2 ? { kind: 'cut', dir: 'up', afterBytes: 1536 * 1024 } : { kind: 'pass' }
    })
    try {
      const data = seededBytes(3 * 1024 * 1024, 'cutting')
      const { done } = upload(data, { endpoint: `${proxy.url}/files/`, chunkSize: 1024 * 1024 })
      const url = await done
      expect(proxy.counts.cut).toBe(2)
      expect(sha256(readFileSync(finishedPath(idOf(url))))).toBe(sha256(data))
    } finally {
      await proxy.close()
    }
  })
})

/** A PATCH whose body arrives in pieces, so two of them overlap in time. */
function slowPatch(url: string, body: Buffer, pieces: number, gapMs: number) {
  const u = new URL(url)
  return new Promise<number>((resolve) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'PATCH',
        headers: {
          ...TUS,
          'Content-Type': OCTET,
          'Upload-Offset': 0,
          'Content-Length': body.length,
        },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', () => resolve(-1))
    const size = Math.ceil(body.length / pieces)
    let i = 0
    const next = () => {
      if (req.destroyed) return
      if (i >= pieces) {
        req.end()
        return
      }
      req.write(body.subarray(i * size, (i + 1) * size))
      i++
      setTimeout(next, gapMs)
    }
    next()
  })
}

describe('across instances (raw HTTP)', () => {
  test('the same PATCH raced on both instances: one 204, one 409/423, no mixed bytes', async () => {
    const [a, b] = cluster.servers
    const len = 2 * 1024 * 1024
    const created = await request(`${a.url}/files/`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': len },
    })
    const path = new URL(String(created.headers.location)).pathname
    const one = seededBytes(len, 'race-a')
    const two = seededBytes(len, 'race-b')
    const statuses = await Promise.all([
      slowPatch(`${a.url}${path}`, one, 8, 40),
      slowPatch(`${b.url}${path}`, two, 8, 40),
    ])
    const ok = statuses.filter((s) => s === 204)
    expect(ok.length).toBe(1)
    expect(statuses.filter((s) => s === 409 || s === 423).length).toBe(1)
    const winner = statuses[0] === 204 ? one : two
    const got = readFileSync(finishedPath(idOf(path)))
    expect(sha256(got)).toBe(sha256(winner))
  })

  test('a hung PATCH is asked to let go: the other instance resumes within a second', async () => {
    const [a, b] = cluster.servers
    const data = seededBytes(1024 * 1024, 'hung')
    const created = await request(`${a.url}/files/`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': data.length },
    })
    const path = new URL(String(created.headers.location)).pathname
    const half = 400 * 1024
    // A client that sends part of its body and then neither sends nor closes (a dead link).
    const u = new URL(a.url)
    const hung = httpRequest({
      host: u.hostname,
      port: u.port,
      path,
      method: 'PATCH',
      headers: {
        ...TUS,
        'Content-Type': OCTET,
        'Upload-Offset': 0,
        'Content-Length': data.length,
      },
    })
    hung.on('error', () => {})
    await new Promise<void>((resolve) => hung.write(data.subarray(0, half), () => resolve()))
    await new Promise((r) => setTimeout(r, 300))
    try {
      const t0 = Date.now()
      const h = await request(`${b.url}${path}`, { method: 'HEAD', headers: TUS })
      expect(h.status).toBe(200)
      const offset = Number(h.headers['upload-offset'])
      expect(offset).toBe(half)
      const r = await request(`${b.url}${path}`, {
        method: 'PATCH',
        headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': offset },
        body: data.subarray(offset),
      })
      expect(r.status).toBe(204)
      expect(Date.now() - t0).toBeLessThan(2000)
      expect(sha256(readFileSync(finishedPath(idOf(path))))).toBe(sha256(data))
    } finally {
      hung.destroy()
    }
  })

  test('a final upload concatenates partials written on different instances', async () => {
    const [a, b] = cluster.servers
    const parts = [seededBytes(700_000, 'p1'), seededBytes(300_001, 'p2')]
    const urls: string[] = []
    for (const [i, p] of parts.entries()) {
      const s = i === 0 ? a : b
      const c = await request(`${s.url}/files/`, {
        method: 'POST',
        headers: { ...TUS, 'Upload-Length': p.length, 'Upload-Concat': 'partial' },
      })
      const url = String(c.headers.location)
      const r = await request(url, {
        method: 'PATCH',
        headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': 0 },
        body: p,
      })
      expect(r.status).toBe(204)
      urls.push(new URL(url).pathname)
    }
    // The final is created on the instance that wrote neither partial's first byte... both.
    const f = await request(`${b.url}/files/`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Concat': `final;${urls.join(' ')}` },
    })
    expect(f.status).toBe(201)
    const finalUrl = `${a.url}${new URL(String(f.headers.location)).pathname}`
    const h = await request(finalUrl, { method: 'HEAD', headers: TUS })
    expect(h.headers['upload-length']).toBe(String(parts[0]!.length + parts[1]!.length))
    expect(sha256((await request(finalUrl)).body)).toBe(sha256(Buffer.concat(parts)))
    const p = await request(finalUrl, {
      method: 'PATCH',
      headers: { ...TUS, 'Content-Type': OCTET, 'Upload-Offset': 0 },
      body: Buffer.from('x'),
    })
    expect(p.status).toBe(403)
  })
})
