#!/usr/bin/env node
// Ferry macro benchmark driver: `npm run bench` (full) or `node bench/run.js --quick` (CI).
//
//   run.js ──spawn──▶ redis-server (private port, no persistence)         [if a redis server runs]
//          ──spawn──▶ server under test (own process, free port, fresh data dir), per run
//          ──fork───▶ macro/load.js (load generator, long-lived, keep-alive node:http)
//          reads /proc/<server>/stat + status around each run, verifies every stored file's
//          sha256 afterwards, writes results/*.json + results/report.md + results/chart.svg.
//
// Runs are interleaved: for each repetition, for each scenario, every server in turn (the server
// order rotates per repetition), so machine noise hits all servers alike. Medians when reps > 1.
// Exit 0 only when every run finished and every upload verified.
import { fork, spawn, spawnSync, execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const benchDir = path.dirname(fileURLToPath(import.meta.url))
const rootDir = path.dirname(benchDir)

// ---- dependencies: a fresh clone has no bench/node_modules ---------------------------------------
if (!fs.existsSync(path.join(benchDir, 'node_modules', '@tus', 'server', 'package.json'))) {
  console.log('bench: installing bench dependencies (npm --prefix bench ci)…')
  const r = spawnSync('npm', ['--prefix', benchDir, 'ci', '--no-audit', '--no-fund'], { stdio: 'inherit' })
  if (r.status !== 0) {
    console.error('bench: npm ci failed')
    process.exit(2)
  }
}

const { makeData, smallFiles, sha256hex } = await import('./macro/data.js')
const { cpuSeconds, peakRssMiB } = await import('./macro/procstat.js')
const { writeReport, summarize, formatTable } = await import('./macro/report.js')

// ---- CLI ---------------------------------------------------------------------------------------
const ALL_SCENARIOS = ['a', 'b', 'c', 'd', 'e', 'f']
const ALL_SERVERS = ['ferry-embedded', 'ferry-redis', 'ferry-redis-x2', 'minimal', 'minimal-durable', 'tus']
const HELP = `usage: node bench/run.js [options]
  --quick                 small sizes, one rep (CI): 64 MiB, 100 files, commit sizes 16,32,64, RSS 8x32 MiB
  --scenarios LIST        ${ALL_SCENARIOS.join(',')} (default all)
                            a  one file as a single stream          b  chunked, 1 and --parallel in flight
                            c  small files, --concurrency clients  d  Shaman: store, then dedup (208)
                            e  commit time vs size                  f  peak RSS, --rss-sessions chunked uploads at once
  --servers LIST          ${ALL_SERVERS.join(',')} (default all)
  --size-mib N            file size for a, b (default 1024; quick 64)
  --chunk-mib N           chunk size (default 8)
  --parallel N            chunks in flight for b's parallel variant (default 4)
  --files N               small files for c, d (default 1000; quick 100)
  --file-kib N            small file size (default 64)
  --concurrency N         clients for c, d (default 8)
  --commit-sizes-mib LIST sizes for e (default 64,256,1024; quick 16,32,64)
  --rss-sessions N        concurrent chunked uploads in f (default 8)
  --rss-size-mib N        size of each upload in f (default --size-mib; quick 32)
  --reps N                repetitions, interleaved (default 3; quick 1)
  --seed S                data seed (default ferry-bench)
  --tmp-dir DIR           where data dirs go (default os.tmpdir(); must be a real disk, not tmpfs)
  --out DIR               results directory (default bench/results)
  --timeout-s N           per-request timeout (default 300)
  --keep                  keep data directories and logs
  --ferry-main PATH       Ferry entry point (default dist/src/main.js; e.g. another build to compare)
  --help`

let args
try {
  args = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      scenarios: { type: 'string' },
      servers: { type: 'string' },
      'size-mib': { type: 'string' },
      'chunk-mib': { type: 'string' },
      parallel: { type: 'string' },
      files: { type: 'string' },
      'file-kib': { type: 'string' },
      concurrency: { type: 'string' },
      'commit-sizes-mib': { type: 'string' },
      'rss-sessions': { type: 'string' },
      'rss-size-mib': { type: 'string' },
      reps: { type: 'string' },
      seed: { type: 'string', default: 'ferry-bench' },
      'tmp-dir': { type: 'string', default: os.tmpdir() },
      out: { type: 'string', default: path.join(benchDir, 'results') },
      'timeout-s': { type: 'string', default: '300' },
      keep: { type: 'boolean', default: false },
      'ferry-main': { type: 'string', default: path.join(rootDir, 'dist', 'src', 'main.js') },
      help: { type: 'boolean', default: false }
    },
    strict: true,
    allowPositionals: false
  }).values
} catch (err) {
  console.error(`bench: ${err.message}\n${HELP}`)
  process.exit(2)
}
if (args.help) {
  console.log(HELP)
  process.exit(0)
}

function num (name, dflt) {
  const v = args[name] === undefined ? dflt : Number(args[name])
  if (!Number.isFinite(v) || v <= 0) usage(`--${name} must be a positive number`)
  return v
}
function list (name, all) {
  if (args[name] === undefined) return all
  const l = args[name].split(',').map((s) => s.trim()).filter(Boolean)
  for (const x of l) if (!all.includes(x)) usage(`--${name}: unknown '${x}' (known: ${all.join(',')})`)
  return l
}
function usage (msg) {
  console.error(`bench: ${msg}\n${HELP}`)
  process.exit(2)
}

const MiB = 1024 * 1024
const q = args.quick
const cfg = {
  quick: q,
  scenarios: list('scenarios', ALL_SCENARIOS),
  servers: list('servers', ALL_SERVERS),
  sizeBytes: num('size-mib', q ? 64 : 1024) * MiB,
  chunkBytes: num('chunk-mib', 8) * MiB,
  parallel: num('parallel', 4),
  files: num('files', q ? 100 : 1000),
  fileBytes: num('file-kib', 64) * 1024,
  concurrency: num('concurrency', 8),
  commitSizes: (args['commit-sizes-mib'] ?? (q ? '16,32,64' : '64,256,1024')).split(',').map((s) => Number(s) * MiB),
  rssSessions: num('rss-sessions', 8),
  rssBytes: num('rss-size-mib', q ? 32 : (args['size-mib'] ? Number(args['size-mib']) : 1024)) * MiB,
  reps: num('reps', q ? 1 : 3),
  seed: args.seed,
  timeoutMs: num('timeout-s', 300) * 1000
}
if (cfg.commitSizes.some((s) => !(s > 0))) usage('--commit-sizes-mib must list positive numbers')
const bigBytes = Math.max(cfg.sizeBytes, cfg.rssBytes, ...cfg.commitSizes)

// ---- servers -----------------------------------------------------------------------------------
const ferryMain = path.resolve(args['ferry-main'])
const SERVERS = {
  'ferry-embedded': { proto: 'ferry', instances: 1, ferry: true },
  'ferry-redis': { proto: 'ferry', instances: 1, ferry: true, redis: true },
  'ferry-redis-x2': { proto: 'ferry', instances: 2, ferry: true, redis: true },
  minimal: { proto: 'minimal', instances: 1, script: path.join(benchDir, 'macro', 'servers', 'minimal.js') },
  // The same server, fdatasync + directory fsync before answering a commit or whole-file PUT:
  // the ceiling for a server that, like Ferry, has the bytes on disk when it says 200.
  'minimal-durable': { proto: 'minimal', instances: 1, script: path.join(benchDir, 'macro', 'servers', 'minimal.js'), env: { BENCH_FSYNC: '1' } },
  tus: { proto: 'tus', instances: 1, script: path.join(benchDir, 'macro', 'servers', 'tus.js') }
}

// Each scenario expands into run kinds; `can` says which servers can run it.
function expand (s) {
  switch (s) {
    case 'a': return [{ id: 'a', kind: 'stream', can: () => true }]
    case 'b': {
      const seq = { id: 'b1', kind: 'chunked', parallel: 1, can: () => true }
      if (cfg.parallel === 1) return [seq]
      // tus has no parallel PATCHes to one upload: sequential only.
      return [seq, { id: `b${cfg.parallel}`, kind: 'chunked', parallel: cfg.parallel, can: (sv) => sv.proto !== 'tus' }]
    }
    case 'c': return [{ id: 'c', kind: 'small', can: () => true }]
    case 'd': return [{ id: 'd', kind: 'shaman', can: (sv) => sv.proto !== 'tus' }]
    case 'e': return [{ id: 'e', kind: 'commits', can: (sv) => sv.proto !== 'tus' }]
    case 'f': return [{ id: 'f', kind: 'chunked', parallel: 1, sessions: cfg.rssSessions, can: () => true }]
  }
  return []
}
const runKinds = cfg.scenarios.flatMap(expand)

const needFerry = cfg.servers.some((s) => SERVERS[s].ferry)
const needRedis = cfg.servers.some((s) => SERVERS[s].redis)
if (needFerry && !fs.existsSync(ferryMain)) {
  console.error(`bench: ${ferryMain} is missing: build Ferry first (npm run build), or pick --servers minimal,tus`)
  process.exit(1)
}
if (needRedis && spawnSync('redis-server', ['--version']).status !== 0) {
  console.error('bench: redis-server not found (apt-get install redis-server), or drop the ferry-redis servers')
  process.exit(1)
}

// ---- process helpers ---------------------------------------------------------------------------
const live = new Set()
process.on('exit', () => { for (const c of live) { try { c.kill('SIGKILL') } catch {} } })
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130))

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function httpStatus (port, p) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

function redisPing (port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.setTimeout(1000, () => s.destroy())
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')) })
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(false))
  })
}

function tail (file, n = 20) {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n') } catch { return '' }
}

/** Spawns a child with output to `logFile`; resolves once `ready()` is true (bounded wait). */
async function startProcess (name, cmd, argv, env, logFile, ready, waitMs = 30_000) {
  const log = fs.openSync(logFile, 'a')
  // Never inherit a developer's FERRY_* or REDIS_URL: each server gets exactly what `env` says.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && k !== 'REDIS_URL'))
  const child = spawn(cmd, argv, { cwd: rootDir, env: { ...base, ...env }, stdio: ['ignore', log, log] })
  fs.closeSync(log)
  live.add(child)
  let exited = null
  child.on('exit', (code, sig) => { exited = sig ?? code; live.delete(child) })
  child.on('error', (err) => { exited = err.message })
  const deadline = Date.now() + waitMs
  while (Date.now() < deadline) {
    if (exited !== null) {
      const err = new Error(`${name} exited (${exited}) before it was ready; log ${logFile}:\n${tail(logFile)}`)
      err.bySignal = typeof exited === 'string' && exited.startsWith('SIG')
      throw err
    }
    if (await ready()) return child
    await sleep(50)
  }
  child.kill('SIGKILL')
  throw new Error(`${name} not ready after ${waitMs} ms; log ${logFile}:\n${tail(logFile)}`)
}

async function stopProcess (child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  let timer
  const late = new Promise((resolve) => { timer = setTimeout(resolve, 10_000, false) })
  const exited = await Promise.race([gone.then(() => true), late])
  clearTimeout(timer)
  if (exited) return
  child.kill('SIGKILL')
  await gone
}

// ---- the load generator ------------------------------------------------------------------------
const load = fork(path.join(benchDir, 'macro', 'load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
live.add(load)
let loadExit = null
load.on('exit', (code) => { loadExit = code; live.delete(load) })

/** One IPC round trip to the load generator, bounded by `ms`. */
function ask (msg, ms) {
  return new Promise((resolve, reject) => {
    if (loadExit !== null) return reject(new Error(`load generator exited (${loadExit})`))
    const timer = setTimeout(() => { cleanup(); reject(new Error(`load generator: no answer in ${ms} ms`)) }, ms)
    const onMsg = (m) => { cleanup(); m.ok ? resolve(m) : reject(new Error(m.error)) }
    const onExit = (code) => { cleanup(); reject(new Error(`load generator exited (${code})`)) }
    const cleanup = () => { clearTimeout(timer); load.off('message', onMsg); load.off('exit', onExit) }
    load.on('message', onMsg)
    load.on('exit', onExit)
    load.send(msg)
  })
}

// ---- expected digests (computed here, independently of the load generator) --------------------
console.log(`bench: generating ${(bigBytes / MiB).toFixed(0)} MiB + ${cfg.files} x ${cfg.fileBytes / 1024} KiB of seeded data (seed '${cfg.seed}')`)
const prepared = ask({ cmd: 'prepare', seed: cfg.seed, bigBytes, smallCount: cfg.files, smallBytes: cfg.fileBytes, timeoutMs: cfg.timeoutMs }, 600_000)
const big = makeData(cfg.seed, 'big', bigBytes)
const small = smallFiles(cfg.seed, cfg.files, cfg.fileBytes)
const bigSha = new Map()
const shaOfBig = (size) => {
  if (!bigSha.has(size)) bigSha.set(size, sha256hex(big.subarray(0, size)))
  return bigSha.get(size)
}
await prepared

// ---- run directory, redis ----------------------------------------------------------------------
const runId = `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`
const runRoot = fs.mkdtempSync(path.join(args['tmp-dir'], 'ferry-bench-'))
const logDir = path.join(runRoot, 'logs')
fs.mkdirSync(logDir)
let redis = null
let redisPort = 0
if (needRedis) {
  redisPort = await freePort()
  redis = await startProcess('redis-server', 'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', runRoot],
    {}, path.join(logDir, 'redis.log'), () => redisPing(redisPort))
  console.log(`bench: redis-server on 127.0.0.1:${redisPort}`)
}

let seq = 0
const startRetries = []
/** Starts every instance of server `name` on one fresh data dir; returns {pids, targets, stop}. */
async function startServer (name, dataDir) {
  const sv = SERVERS[name]
  const n = ++seq
  const prefix = `ferrybench:${runId}:${n}:`
  const children = []
  const targets = []
  try {
    for (let i = 0; i < sv.instances; i++) {
      const port = await freePort()
      const env = sv.ferry
        ? { FERRY_HOST: '127.0.0.1', FERRY_PORT: String(port), FERRY_DATA_DIR: dataDir }
        : { BENCH_HOST: '127.0.0.1', BENCH_PORT: String(port), BENCH_DATA_DIR: dataDir }
      if (sv.redis) Object.assign(env, { REDIS_URL: `redis://127.0.0.1:${redisPort}`, FERRY_REDIS_PREFIX: prefix })
      if (sv.env) Object.assign(env, sv.env)
      const logFile = path.join(logDir, `${n}-${name}-${i}.log`)
      const script = sv.ferry ? ferryMain : sv.script
      const ready = async () => (await httpStatus(port, '/healthz')) === 200
      let child
      try {
        child = await startProcess(`${name}#${i}`, process.execPath, [script], env, logFile, ready)
      } catch (err) {
        // Killed by a signal nobody here sent (seen on a shared dev machine: something else
        // signalled the process during start-up): one more try, recorded in the results. A server
        // that exits on its own, or dies twice, still fails the run.
        if (!err.bySignal) throw err
        console.log(`\nbench: WARNING ${err.message.split(';')[0]}; starting it once more`)
        startRetries.push({ server: name, error: err.message.split(';')[0], at: new Date().toISOString() })
        child = await startProcess(`${name}#${i}`, process.execPath, [script], env, logFile, ready)
      }
      children.push(child)
      targets.push({ host: '127.0.0.1', port })
    }
  } catch (err) {
    for (const c of children) await stopProcess(c)
    throw err
  }
  return { children, targets, stop: () => Promise.all(children.map(stopProcess)) }
}

// ---- verification ------------------------------------------------------------------------------
async function hashFile (file) {
  const h = createHash('sha256')
  let size = 0
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB })) {
    h.update(chunk)
    size += chunk.length
  }
  return { sha: h.digest('hex'), size }
}

function storedPath (dataDir, u) {
  switch (u.kind) {
    case 'store': return path.join(dataDir, 'store', ...u.path.split('/'))
    case 'tus': return path.join(dataDir, 'tus', u.id)
    case 'cas': return path.join(dataDir, 'cas', u.sha.slice(0, 2), u.sha.slice(2), `${u.size}.blob`)
  }
  throw new Error(`unknown upload kind ${u.kind}`)
}

/** Reads back every stored file; returns the list of problems (empty when all verified). */
async function verify (dataDir, uploads) {
  const problems = []
  for (const u of uploads) {
    const expected = u.file !== undefined ? small[u.file].sha : shaOfBig(u.size)
    if (u.kind === 'cas' && u.sha !== expected) problems.push(`cas ${u.sha}: not the expected digest`)
    const file = storedPath(dataDir, u)
    try {
      const got = await hashFile(file)
      if (got.size !== u.size) problems.push(`${file}: ${got.size} bytes, expected ${u.size}`)
      else if (got.sha !== expected) problems.push(`${file}: sha256 ${got.sha}, expected ${expected}`)
    } catch (err) {
      problems.push(`${file}: ${err.code ?? err.message}`)
    }
  }
  return problems
}

/** Scenario e's yardstick: one sha256 pass over the stored file (page cache) + one fsync of
 *  the same amount of freshly written data on the same filesystem. */
async function hashAndFsyncMs (dataDir, file, size) {
  const t0 = process.hrtime.bigint()
  await hashFile(file)
  const shaMs = Number(process.hrtime.bigint() - t0) / 1e6
  const probe = path.join(dataDir, 'fsync-probe.bin')
  fs.writeFileSync(probe, big.subarray(0, size))
  const fd = fs.openSync(probe, 'r+')
  const t1 = process.hrtime.bigint()
  fs.fsyncSync(fd)
  const fsyncMs = Number(process.hrtime.bigint() - t1) / 1e6
  fs.closeSync(fd)
  fs.unlinkSync(probe)
  return { shaMs, fsyncMs }
}

// ---- one run -----------------------------------------------------------------------------------
/** The steps of one run on one server start; each step is one row of the report, with its own
 *  CPU window. Scenario d has two steps on the same server: store, then the same files again. */
function stepsFor (rk, sv) {
  const base = { prefix: `bench/${rk.id}`, chunk: cfg.chunkBytes, conc: cfg.concurrency, count: cfg.files }
  switch (rk.kind) {
    case 'stream': return [{ row: rk.id, kind: 'stream', params: { ...base, size: cfg.sizeBytes } }]
    case 'chunked': return [{
      row: rk.id,
      kind: 'chunked',
      params: rk.sessions
        ? { ...base, size: cfg.rssBytes, parallel: 1, sessions: rk.sessions }
        : { ...base, size: cfg.sizeBytes, parallel: rk.parallel, sessions: 1 }
    }]
    case 'small': return [{ row: rk.id, kind: 'small', params: base }]
    case 'shaman': return [
      { row: 'd-store', kind: 'shaman', params: { ...base, expect: [204] } },
      // Ferry knows every file now and answers 208 before reading the body; the ceiling just
      // writes the file again.
      { row: 'd-dedup', kind: 'shaman', params: { ...base, expect: sv.proto === 'ferry' ? [208] : [204] } }
    ]
    case 'commits': return [{ row: rk.id, kind: 'commits', params: { ...base, sizes: cfg.commitSizes } }]
  }
  return []
}

async function runOne (rep, rk, name) {
  const sv = SERVERS[name]
  const dataDir = path.join(runRoot, `r${rep}-${rk.id}-${name}`)
  fs.mkdirSync(dataDir)
  const rec = { rep, scenario: rk.id, kind: rk.kind, server: name, ok: false, rows: [] }
  let server = null
  try {
    server = await startServer(name, dataDir)
    const pids = server.children.map((c) => c.pid)
    const uploads = new Map()
    let commits = null
    for (const step of stepsFor(rk, sv)) {
      const cpu0 = pids.map(cpuSeconds)
      const res = await ask({ cmd: 'run', kind: step.kind, proto: sv.proto, targets: server.targets, params: step.params },
        cfg.timeoutMs * 4 + 600_000)
      const cpu = pids.map((p, i) => cpuSeconds(p) - cpu0[i])
      const row = {
        row: step.row,
        serverCpuS: cpu.reduce((x, y) => x + y, 0),
        serverCpuPerInstanceS: cpu,
        clientCpuS: res.clientCpuS,
        elapsedS: res.elapsedNs / 1e9
      }
      if (res.bytes) Object.assign(row, { bytes: res.bytes, mbps: res.bytes / 1e6 / row.elapsedS })
      if (res.count) Object.assign(row, { count: res.count, ups: res.count / row.elapsedS })
      if (res.statuses) row.statuses = res.statuses
      if (res.commitNs) row.commitMs = res.commitNs.map((n) => n / 1e6)
      if (res.commits) commits = res.commits
      rec.rows.push(row)
      for (const u of res.uploads) uploads.set(JSON.stringify(u), u)
    }
    rec.peakRssMiB = pids.map(peakRssMiB)
    await server.stop()
    server = null
    const all = [...uploads.values()]
    const problems = await verify(dataDir, all)
    rec.verified = all.length - problems.length
    if (problems.length) throw new Error(`verification failed (${problems.length} of ${all.length}):\n  ${problems.slice(0, 5).join('\n  ')}`)
    if (commits) {
      rec.rows = []
      for (const [i, { size, commitNs }] of commits.entries()) {
        const u = all.find((x) => x.size === size && x.path?.startsWith(`bench/${rk.id}/${size}/`)) ?? all[i]
        const y = await hashAndFsyncMs(dataDir, storedPath(dataDir, u), size)
        rec.rows.push({ row: `e-${size / MiB}MiB`, size, commitMs: commitNs / 1e6, ...y })
      }
    }
    rec.ok = true
  } catch (err) {
    rec.error = err.message
  } finally {
    if (server) await server.stop()
    if (!args.keep) fs.rmSync(dataDir, { recursive: true, force: true })
    spawnSync('sync') // flush what this run left dirty before the next one starts (not timed)
  }
  return rec
}

function describe (r) {
  if (!r.ok) return `FAILED: ${r.error}`
  const parts = r.rows.map((x) => {
    if (x.commitMs !== undefined && x.shaMs !== undefined) return `${x.size / MiB} MiB commit ${x.commitMs.toFixed(1)} ms (sha ${x.shaMs.toFixed(0)} + fsync ${x.fsyncMs.toFixed(0)} ms)`
    const v = x.mbps ? `${x.mbps.toFixed(1)} MB/s` : `${x.ups.toFixed(0)} uploads/s`
    return `${x.row} ${v} cpu ${x.serverCpuS.toFixed(2)} s`
  })
  parts.push(`peak rss ${r.peakRssMiB.map((m) => m.toFixed(0)).join('+')} MiB`, `verified ${r.verified}`)
  return parts.join(', ')
}

// ---- main loop ---------------------------------------------------------------------------------
const started = Date.now()
const runs = []
const plan = []
for (let rep = 1; rep <= cfg.reps; rep++) {
  for (const rk of runKinds) {
    const servers = cfg.servers.filter((s) => rk.can(SERVERS[s]))
    const k = servers.length ? (rep - 1) % servers.length : 0
    for (const s of [...servers.slice(k), ...servers.slice(0, k)]) plan.push([rep, rk, s])
  }
}
console.log(`bench: ${plan.length} runs (${cfg.reps} rep(s); scenarios ${runKinds.map((r) => r.id).join(',')}; servers ${cfg.servers.join(',')}); data in ${runRoot}`)
for (const [i, [rep, rk, s]] of plan.entries()) {
  process.stdout.write(`[${String(i + 1).padStart(String(plan.length).length)}/${plan.length}] rep ${rep} ${rk.id.padEnd(3)} ${s.padEnd(15)} `)
  const r = await runOne(rep, rk, s)
  runs.push(r)
  console.log(describe(r))
}

await ask({ cmd: 'exit' }, 5000).catch(() => {})
if (redis) await stopProcess(redis)

// ---- results -----------------------------------------------------------------------------------
function gitRev () {
  try { return execFileSync('git', ['-C', rootDir, 'rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() } catch { return null }
}
const failed = runs.filter((r) => !r.ok)
const result = {
  runId,
  date: new Date().toISOString(),
  durationS: (Date.now() - started) / 1000,
  env: {
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(),
    gitRev: gitRev(),
    ferryBuilt: fs.existsSync(ferryMain) ? fs.statSync(ferryMain).mtime.toISOString() : null,
    tusServer: JSON.parse(fs.readFileSync(path.join(benchDir, 'node_modules', '@tus', 'server', 'package.json'), 'utf8')).version
  },
  config: { ...cfg, bigBytes },
  runs,
  startRetries,
  ok: failed.length === 0
}
result.summary = summarize(result)
fs.mkdirSync(args.out, { recursive: true })
const jsonFile = path.join(args.out, `bench-${runId}.json`)
fs.writeFileSync(jsonFile, JSON.stringify(result, null, 2))
const { mdFile } = writeReport(result, args.out)
console.log('\n' + formatTable(result))
console.log(`\nbench: ${runs.length - failed.length}/${runs.length} runs ok in ${result.durationS.toFixed(1)} s; wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), mdFile)}`)
if (args.keep) console.log(`bench: kept ${runRoot}`)
else if (failed.length) {
  for (const d of fs.readdirSync(runRoot)) if (d !== 'logs') fs.rmSync(path.join(runRoot, d), { recursive: true, force: true })
  console.log(`bench: server logs kept in ${logDir}`)
} else fs.rmSync(runRoot, { recursive: true, force: true })
if (failed.length) {
  console.error(`bench: ${failed.length} run(s) FAILED:`)
  for (const r of failed) console.error(`  rep ${r.rep} ${r.scenario} ${r.server}: ${r.error}`)
  process.exit(1)
}
