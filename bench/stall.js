// Event-loop stalls and work per request on the routes whose cost grows with the request or the
// store (issue 9 item 6, issue 17 item 12): while N heavy requests run, /healthz is probed
// back-to-back and its latency recorded. Ferry runs as its own process (dist/, built).
//
//   node bench/stall.js [--scenario requirements|requirements-stored|checkout|listing]
//                       [--files N] [--concurrent N] [--reps N] [--dist DIR] [--env K=V]...
// [--node-arg=ARG]... (e.g. --node-arg=--cpu-prof to find what holds the loop)
//
// requirements          N files none of which is stored (the most work: every one is looked up)
// requirements-stored   N files all stored (touched, settled, touched again)
// checkout              N stored files linked into a new checkout per request
// listing               GET /ImageStore at the root of a store holding N files in 100 folders
//
// Prints one JSON line per rep: the heavy requests' status and wall time, and /healthz latency
// (count, p50, p99, max in ms) measured while they ran. The same line before and after a change
// is the figure for the report.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { loadFerryLayout } from './ferry-layout.js'
import { freePort } from './macro/procs.js'

const { values: a } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'requirements' },
    files: { type: 'string', default: '80000' },
    concurrent: { type: 'string', default: '4' },
    reps: { type: 'string', default: '1' },
    dist: { type: 'string', default: 'dist' },
    env: { type: 'string', multiple: true, default: [] },
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
})
const nFiles = Number(a.files)
const concurrent = Number(a.concurrent)

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
function req(port, method, p, body = null, headers = {}) {
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: p,
        agent,
        headers: { ...headers, 'content-length': body ? body.length : 0 },
      },
      (res) => {
        const parts = []
        res.on('data', (c) => parts.push(c))
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }))
        res.on('error', reject)
      },
    )
    r.on('error', reject)
    r.end(body ?? undefined)
  })
}

const sha = (i) => createHash('sha256').update(`stall-${i}`).digest('hex')
// Where the build under test keeps a CAS object (its own code, not a copy of its layout).
const layoutOf = await loadFerryLayout(path.resolve(a.dist))

/** Writes what the scenario needs straight into the data directory, before Ferry starts. */
function prepare(dir) {
  if (a.scenario === 'requirements-stored' || a.scenario === 'checkout') {
    const { casBlob } = layoutOf(dir)
    for (let i = 0; i < nFiles; i++) {
      const blob = casBlob(sha(i), i % 1000)
      fs.mkdirSync(path.dirname(blob), { recursive: true })
      fs.writeFileSync(blob, '')
    }
  }
  if (a.scenario === 'listing') {
    for (let i = 0; i < nFiles; i++) {
      const d = path.join(dir, 'store', `folder-${i % 100}`, `sub-${i % 7}`)
      if (i < 700) fs.mkdirSync(d, { recursive: true })
      fs.writeFileSync(path.join(d, `file-${i}.bin`), '')
    }
  }
}

function filesBody(extra = {}) {
  const files = []
  for (let i = 0; i < nFiles; i++)
    files.push({ sha: sha(i), size: i % 1000, path: `p${i.toString(36)}` })
  return Buffer.from(JSON.stringify({ ...extra, files }))
}

function pct(sorted, p) {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

async function once(rep) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-stall-'))
  fs.mkdirSync(path.join(dir, 'store'), { recursive: true })
  prepare(dir)
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && k !== 'REDIS_URL'),
  )
  Object.assign(env, {
    FERRY_HOST: '127.0.0.1',
    FERRY_PORT: String(port),
    FERRY_DATA_DIR: dir,
    FERRY_LOG_LEVEL: 'warn',
    FERRY_SHAMAN_GC_INTERVAL_SEC: '0',
  })
  for (const kv of a.env) {
    const i = kv.indexOf('=')
    env[kv.slice(0, i)] = kv.slice(i + 1)
  }
  const child = spawn(process.execPath, [...a['node-arg'], path.resolve(a.dist, 'src/main.js')], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  child.once('exit', (code, sig) => {
    if (code !== 0) console.error(`ferry exited: ${code ?? sig}`)
  })
  try {
    for (let t = Date.now(); ; ) {
      try {
        if ((await req(port, 'GET', '/healthz')).status === 200) break
      } catch {
        /* not yet */
      }
      if (Date.now() - t > 20_000) throw new Error('ferry did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
    const bodies = Array.from({ length: concurrent }, (_, i) =>
      a.scenario === 'checkout' ? filesBody({ checkoutPath: `jobs/r${rep}-${i}` }) : filesBody(),
    )
    const route =
      a.scenario === 'checkout'
        ? '/api/v3/shaman/checkout/create'
        : '/api/v3/shaman/checkout/requirements'
    const lat = []
    let running = true
    const probe = (async () => {
      while (running) {
        const t = process.hrtime.bigint()
        await req(port, 'GET', '/healthz')
        lat.push(Number(process.hrtime.bigint() - t) / 1e6)
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    const t0 = Date.now()
    const heavy = await Promise.all(
      bodies.map(async (body) => {
        const t = Date.now()
        const r =
          a.scenario === 'listing'
            ? await req(port, 'GET', '/ImageStore?api-version=6.0')
            : await req(port, 'POST', route, body, { 'content-type': 'application/json' })
        return { status: r.status, ms: Date.now() - t, bytes: r.body.length }
      }),
    )
    const wallMs = Date.now() - t0
    running = false
    await probe
    lat.sort((x, y) => x - y)
    const round = (x) => Math.round(x * 10) / 10
    console.log(
      JSON.stringify({
        scenario: a.scenario,
        files: nFiles,
        concurrent,
        requestBytes: bodies[0].length,
        statuses: [...new Set(heavy.map((h) => h.status))],
        heavyMs: heavy.map((h) => h.ms),
        wallMs,
        healthz: {
          n: lat.length,
          p50: round(pct(lat, 0.5)),
          p99: round(pct(lat, 0.99)),
          max: round(lat.at(-1) ?? 0),
        },
        node: process.version,
      }),
    )
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

for (let r = 0; r < Number(a.reps); r++) await once(r)
