// The load generator: a long-lived child process driven over IPC by run.js. It holds the source
// data in memory (so reading it costs the client nothing), speaks node:http with keep-alive
// agents and spreads requests round-robin across the targets it is given. Every loop is bounded
// by a count fixed before it starts; every request has a timeout.
//
//   run.js ──fork──▶ load.js ──HTTP/1.1 keep-alive──▶ server(s) on 127.0.0.1
//          ◀─IPC: {elapsed, uploads[], clientCpu}─┘
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import { DefaultHttpStack, DetailedError, Upload } from 'tus-js-client'
import { makeData, smallFiles } from './data.js'

let big = Buffer.alloc(0)
let small = []
let timeoutMs = 300_000

class Targets {
  #list
  #next = 0
  constructor(list) {
    this.#list = list.map((t) => ({
      ...t,
      agent: new http.Agent({ keepAlive: true, maxSockets: 64 }),
    }))
  }

  pick() {
    return this.#list[this.#next++ % this.#list.length]
  }
  /** host:port of the first target: the one address a client behind a load balancer sees. */
  get front() {
    return `${this.#list[0].host}:${this.#list[0].port}`
  }
  close() {
    for (const t of this.#list) t.agent.destroy()
  }
}

/** One request with a Buffer body; resolves {status, headers, body} once the response ended.
 *  A server may answer before reading the body (Shaman 208) and drop the connection: errors
 *  after a complete response are ignored. */
function request(target, method, path, headers, body, expect) {
  return new Promise((resolve, reject) => {
    let done = false
    const fail = (err) => {
      if (done) return
      done = true
      reject(new Error(`${method} ${path}: ${err.message}`))
    }
    const h = { ...headers, 'content-length': body ? body.length : 0 }
    const req = http.request({
      host: target.host,
      port: target.port,
      method,
      path,
      headers: h,
      agent: target.agent,
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)))
    req.on('error', fail)
    req.on('response', (res) => {
      const parts = []
      res.on('data', (c) => {
        if (parts.length < 64) parts.push(c)
      })
      res.on('error', fail)
      res.on('end', () => {
        if (done) return
        done = true
        const text = Buffer.concat(parts).toString('utf8')
        if (expect && !expect.includes(res.statusCode)) {
          const hdr = JSON.stringify(res.headers)
          reject(
            new Error(
              `${method} ${path} → ${res.statusCode} (expected ${expect.join('|')}) headers ${hdr} body ${JSON.stringify(text.slice(0, 400))}`,
            ),
          )
        } else {
          resolve({ status: res.statusCode, headers: res.headers, body: text })
        }
      })
    })
    req.end(body ?? undefined)
  })
}

/** Runs `count` jobs with at most `conc` in flight; job(i) gets indices in order. */
async function pool(count, conc, job) {
  let next = 0
  let failed = false
  const worker = async () => {
    while (next < count && !failed) {
      const i = next++
      try {
        await job(i)
      } catch (err) {
        failed = true // the other workers stop taking jobs
        throw err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(conc, count) }, worker))
}

const ISQ = 'api-version=6.0'
const enc = (p) => p.split('/').map(encodeURIComponent).join('/')

async function tusCreate(t, size, body) {
  const headers = { 'tus-resumable': '1.0.0', 'upload-length': String(size) }
  if (body) headers['content-type'] = 'application/offset+octet-stream'
  const res = await request(t, 'POST', '/files', headers, body, [201])
  const loc = new URL(res.headers.location, `http://${t.host}:${t.port}`).pathname
  return { loc, id: loc.split('/').pop() }
}

function tusPatch(t, loc, offset, body) {
  const headers = {
    'tus-resumable': '1.0.0',
    'upload-offset': String(offset),
    'content-type': 'application/offset+octet-stream',
  }
  return request(t, 'PATCH', loc, headers, body, [204])
}

// ---- scenarios -------------------------------------------------------------------------------

async function stream(targets, proto, p) {
  const buf = big.subarray(0, p.size)
  const t0 = process.hrtime.bigint()
  let upload
  if (proto === 'tus') {
    const t = targets.pick()
    const { loc, id } = await tusCreate(t, p.size)
    await tusPatch(targets.pick(), loc, 0, buf)
    upload = { kind: 'tus', id, size: p.size }
  } else {
    const path = `${p.prefix}/stream.bin`
    await request(targets.pick(), 'PUT', `/ImageStore/${enc(path)}?${ISQ}`, {}, buf, [200, 201])
    upload = { kind: 'store', path, size: p.size }
  }
  return { elapsedNs: Number(process.hrtime.bigint() - t0), bytes: p.size, uploads: [upload] }
}

/**
 * One chunked upload of `size` bytes; `parallel` chunks in flight. Returns upload + commit time.
 */
async function chunkedOne(targets, proto, p, n) {
  const buf = big.subarray(0, p.size)
  const chunk = p.chunk
  const count = Math.ceil(p.size / chunk)
  if (proto === 'tus') {
    const { loc, id } = await tusCreate(targets.pick(), p.size)
    for (let i = 0; i < count; i++) {
      await tusPatch(
        targets.pick(),
        loc,
        i * chunk,
        buf.subarray(i * chunk, Math.min(p.size, (i + 1) * chunk)),
      )
    }
    return { upload: { kind: 'tus', id, size: p.size }, commitNs: 0 }
  }
  const path = `${p.prefix}/chunked-${n}.bin`
  const sid = randomUUID()
  await pool(count, p.parallel, async (i) => {
    const a = i * chunk
    const b = Math.min(p.size, a + chunk) - 1
    const url = `/ImageStore/${enc(path)}/$/UploadChunk?${ISQ}&session-id=${sid}`
    await request(
      targets.pick(),
      'PUT',
      url,
      { 'content-range': `bytes ${a}-${b}/${p.size}` },
      buf.subarray(a, b + 1),
      [200],
    )
  })
  const c0 = process.hrtime.bigint()
  await request(
    targets.pick(),
    'POST',
    `/ImageStore/$/CommitUploadSession?${ISQ}&session-id=${sid}`,
    {},
    null,
    [200],
  )
  return {
    upload: { kind: 'store', path, size: p.size },
    commitNs: Number(process.hrtime.bigint() - c0),
  }
}

/** `sessions` chunked uploads at once (1 for scenario b, 8 for the RSS scenario). */
async function chunked(targets, proto, p) {
  const t0 = process.hrtime.bigint()
  const res = await Promise.all(
    Array.from({ length: p.sessions }, (_, n) => chunkedOne(targets, proto, p, n)),
  )
  return {
    elapsedNs: Number(process.hrtime.bigint() - t0),
    bytes: p.size * p.sessions,
    uploads: res.map((r) => r.upload),
    commitNs: res.map((r) => r.commitNs),
  }
}

/** Scenario e: one chunked upload per size, one after another; the commit is timed apart. */
async function commits(targets, proto, p) {
  // Warm-up (not reported): one single-chunk upload + commit, so the first measured commit
  // does not pay for JIT, pool start-up or first-use of the state store.
  const warm = await chunkedOne(
    targets,
    proto,
    { ...p, size: Math.min(p.chunk, p.sizes[0]), parallel: 1, prefix: `${p.prefix}/warmup` },
    0,
  )
  const out = []
  for (const size of p.sizes) {
    const r = await chunkedOne(
      targets,
      proto,
      { ...p, size, parallel: 1, prefix: `${p.prefix}/${size}` },
      0,
    )
    out.push({ size, commitNs: r.commitNs, upload: r.upload })
  }
  return {
    elapsedNs: 0,
    bytes: 0,
    uploads: [...out.map((o) => o.upload), warm.upload],
    commits: out.map(({ size, commitNs }) => ({ size, commitNs })),
  }
}

async function smallUploads(targets, proto, p) {
  const files = small.slice(0, p.count)
  const uploads = new Array(files.length)
  const latencyNs = new Array(files.length)
  const t0 = process.hrtime.bigint()
  await pool(files.length, p.conc, async (i) => {
    const f = files[i]
    const s0 = process.hrtime.bigint()
    if (proto === 'tus') {
      const { id } = await tusCreate(targets.pick(), f.buf.length, f.buf)
      uploads[i] = { kind: 'tus', id, size: f.buf.length, file: i }
    } else {
      const path = `${p.prefix}/f${String(i).padStart(5, '0')}.bin`
      await request(targets.pick(), 'PUT', `/ImageStore/${enc(path)}?${ISQ}`, {}, f.buf, [200, 201])
      uploads[i] = { kind: 'store', path, size: f.buf.length, file: i }
    }
    latencyNs[i] = Number(process.hrtime.bigint() - s0)
  })
  const elapsedNs = Number(process.hrtime.bigint() - t0)
  return { elapsedNs, count: files.length, uploads, latencyNs }
}

async function shaman(targets, _proto, p) {
  const files = small.slice(0, p.count)
  const statuses = {}
  const t0 = process.hrtime.bigint()
  const latencyNs = new Array(files.length)
  await pool(files.length, p.conc, async (i) => {
    const f = files[i]
    const s0 = process.hrtime.bigint()
    const r = await request(
      targets.pick(),
      'POST',
      `/api/v3/shaman/files/${f.sha}/${f.buf.length}`,
      { 'content-type': 'application/octet-stream' },
      f.buf,
      p.expect,
    )
    latencyNs[i] = Number(process.hrtime.bigint() - s0)
    statuses[r.status] = (statuses[r.status] ?? 0) + 1
  })
  const elapsedNs = Number(process.hrtime.bigint() - t0)
  const uploads = files.map((f, i) => ({ kind: 'cas', sha: f.sha, size: f.buf.length, file: i }))
  return { elapsedNs, count: files.length, statuses, uploads, latencyNs }
}

// ---- tus-js-client (scenario g): the same client against every tus server ----------------------

const TUS_PATH = '/files/'

/**
 * tus-js-client's own Node HTTP stack, spread round-robin over the targets like every other
 * request here. Every request carries the first target's Host, as behind a load balancer: the
 * upload URLs a server builds from Host (Location, the partials named in `Upload-Concat: final`)
 * then stay valid on every instance.
 */
class RoundRobinStack {
  #targets
  #stacks = new Map()
  constructor(targets) {
    this.#targets = targets
  }

  createRequest(method, url) {
    const t = this.#targets.pick()
    if (!this.#stacks.has(t)) this.#stacks.set(t, new DefaultHttpStack({ agent: t.agent }))
    const u = new URL(url)
    u.host = `${t.host}:${t.port}`
    const req = this.#stacks.get(t).createRequest(method, u.href)
    req.setHeader('Host', this.#targets.front)
    return req
  }

  getName() {
    return 'RoundRobinStack'
  }
}

/** Resolves the upload's URL once tus-js-client reports success; rejects with its error. */
function tusJsUpload(buf, options) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(buf, {
      ...options,
      onSuccess: () => resolve(upload.url),
      onError: (err) => {
        upload.abort().catch(() => {}) // stop the other partials of a parallel upload
        reject(err)
      },
    })
    upload.start()
  })
}

/**
 * Scenario g: one upload of `size` bytes by tus-js-client in `chunk`-byte PATCHes,
 * `parallel` partial uploads + a final concatenation when > 1. A server without a tus endpoint
 * at /files/ (404 on OPTIONS), or one that answers 501 to the concatenation a parallel upload
 * needs, gives `unsupported` (a cell of the report) instead of a failed run.
 */
async function tusJs(targets, _proto, p) {
  const probe = await request(targets.pick(), 'OPTIONS', TUS_PATH, { 'tus-resumable': '1.0.0' })
  if (probe.status === 404) {
    return { unsupported: `server has no tus endpoint (404 on OPTIONS ${TUS_PATH})`, uploads: [] }
  }
  if (![200, 204].includes(probe.status)) {
    const body = JSON.stringify(probe.body.slice(0, 200))
    throw new Error(`OPTIONS ${TUS_PATH} → ${probe.status} ${body}`)
  }
  const extensions = String(probe.headers['tus-extension'] ?? '')
    .split(',')
    .map((x) => x.trim())
  const buf = big.subarray(0, p.size)
  const t0 = process.hrtime.bigint()
  let url
  try {
    url = await tusJsUpload(buf, {
      endpoint: `http://${targets.front}${TUS_PATH}`,
      chunkSize: p.chunk,
      parallelUploads: p.parallel,
      metadata: { filename: `g${p.parallel}.bin` },
      // A benchmark must not hide a failed request behind a retry: the first error ends the run.
      retryDelays: null,
      storeFingerprintForResuming: false,
      httpStack: new RoundRobinStack(targets),
    })
  } catch (err) {
    const status = err instanceof DetailedError ? err.originalResponse?.getStatus() : undefined
    // @tus/server has no concatenation: "Concatenation extension is not (yet) supported" (501).
    if (p.parallel > 1 && status === 501) {
      const body = err.originalResponse.getBody().slice(0, 200).trim()
      const listed = extensions.includes('concatenation') ? 'listed' : 'not listed'
      return {
        unsupported: 'not supported (501 on Upload-Concat: partial)',
        detail: `${JSON.stringify(body)}; concatenation ${listed} in Tus-Extension`,
        uploads: [],
      }
    }
    throw new Error(`tus-js-client (parallelUploads ${p.parallel}): ${err.message}`)
  }
  const elapsedNs = Number(process.hrtime.bigint() - t0)
  const id = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop())
  return { elapsedNs, bytes: p.size, uploads: [{ kind: 'tus', id, size: p.size }] }
}

const scenarios = { stream, chunked, commits, small: smallUploads, shaman, tusjs: tusJs }

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'prepare') {
      timeoutMs = msg.timeoutMs
      big = makeData(msg.seed, 'big', msg.bigBytes)
      small = smallFiles(msg.seed, msg.smallCount, msg.smallBytes)
      process.send({ ok: true })
    } else if (msg.cmd === 'run') {
      const targets = new Targets(msg.targets)
      const cpu0 = process.cpuUsage()
      try {
        const res = await scenarios[msg.kind](targets, msg.proto, msg.params)
        const cpu = process.cpuUsage(cpu0)
        process.send({ ok: true, ...res, clientCpuS: (cpu.user + cpu.system) / 1e6 })
      } finally {
        targets.close()
      }
    } else if (msg.cmd === 'exit') {
      process.exit(0)
    }
  } catch (err) {
    process.send({ ok: false, error: err instanceof Error ? err.message : String(err) })
  }
})
