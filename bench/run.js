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
//
// What the servers are: macro/servers.js. What the scenarios send: macro/scenarios.js.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

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

const { parseCli } = await import('./macro/cli.js')
const { makeData, smallFiles, sha256hex } = await import('./macro/data.js')
const { startLoad } = await import('./macro/load-client.js')
const { cpuSeconds, peakRssMiB } = await import('./macro/procstat.js')
const { freePort, httpStatus, redisPing, startProcess, stopProcess } = await import('./macro/procs.js')
const { writeReport, summarize, formatTable } = await import('./macro/report.js')
const { SCENARIOS, runKindsOf } = await import('./macro/scenarios.js')
const { bindServers, serverByName } = await import('./macro/servers.js')
const { verify } = await import('./macro/verify.js')

const MiB = 1024 * 1024
const { args, cfg } = parseCli(process.argv.slice(2), { benchDir, rootDir })
const bigBytes = Math.max(cfg.sizeBytes, cfg.rssBytes, ...cfg.commitSizes)
const mains = { a: path.resolve(args['ferry-main']), b: cfg.ferryMainB }

// ---- servers -----------------------------------------------------------------------------------
for (const [build, flag] of [['a', '--ferry-main'], ['b', '--ferry-main-b']]) {
  if (cfg.servers.some((s) => serverByName(s).build === build) && !fs.existsSync(mains[build])) {
    console.error(`bench: ${mains[build]} (${flag}) is missing: build Ferry first (npm run build), or pick --servers minimal,tus`)
    process.exit(1)
  }
}
const SERVERS = await bindServers(cfg.servers, mains)
const needRedis = [...SERVERS.values()].some((s) => s.redis)
if (needRedis && spawnSync('redis-server', ['--version']).status !== 0) {
  console.error('bench: redis-server not found (apt-get install redis-server), or drop the ferry-*redis* servers')
  process.exit(1)
}
const runKinds = runKindsOf(cfg.scenarios, cfg)

// ---- the load generator, expected digests (computed here, independently of it) ---------------
const load = startLoad()
console.log(`bench: generating ${(bigBytes / MiB).toFixed(0)} MiB + ${cfg.files} x ${cfg.fileBytes / 1024} KiB of seeded data (seed '${cfg.seed}')`)
const prepared = load.ask({ cmd: 'prepare', seed: cfg.seed, bigBytes, smallCount: cfg.files, smallBytes: cfg.fileBytes, timeoutMs: cfg.timeoutMs }, 600_000)
const big = makeData(cfg.seed, 'big', bigBytes)
const small = smallFiles(cfg.seed, cfg.files, cfg.fileBytes)
const bigSha = new Map()
const expectedSha = (u) => {
  if (u.file !== undefined) return small[u.file].sha
  if (!bigSha.has(u.size)) bigSha.set(u.size, sha256hex(big.subarray(0, u.size)))
  return bigSha.get(u.size)
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
  redis = await startProcess({
    name: 'redis-server',
    cmd: 'redis-server',
    argv: ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', runRoot],
    env: {},
    cwd: rootDir,
    logFile: path.join(logDir, 'redis.log'),
    ready: () => redisPing(redisPort)
  })
  console.log(`bench: redis-server on 127.0.0.1:${redisPort}`)
}

let seq = 0
const startRetries = []
/** Starts every instance of server `name` on one fresh data dir; returns {children, targets, stop}. */
async function startServer (name, dataDir) {
  const sv = SERVERS.get(name)
  const n = ++seq
  const redisEnv = { redisUrl: `redis://127.0.0.1:${redisPort}`, redisPrefix: `ferrybench:${runId}:${n}:` }
  const children = []
  const targets = []
  try {
    for (let i = 0; i < sv.instances; i++) {
      const port = await freePort()
      const opts = {
        name: `${name}#${i}`,
        cmd: process.execPath,
        argv: [sv.script],
        env: sv.env({ port, dataDir, ...redisEnv }),
        cwd: rootDir,
        logFile: path.join(logDir, `${n}-${name}-${i}.log`),
        ready: async () => (await httpStatus(port, sv.readyPath)) === 200
      }
      let child
      try {
        child = await startProcess(opts)
      } catch (err) {
        // Killed by a signal nobody here sent (seen on a shared dev machine: something else
        // signalled the process during start-up): one more try, recorded in the results. A server
        // that exits on its own, or dies twice, still fails the run.
        if (!err.bySignal) throw err
        console.log(`\nbench: WARNING ${err.message.split(';')[0]}; starting it once more`)
        startRetries.push({ server: name, error: err.message.split(';')[0], at: new Date().toISOString() })
        child = await startProcess(opts)
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

// ---- one run -----------------------------------------------------------------------------------
async function runOne (rep, rk, name) {
  const sv = SERVERS.get(name)
  const scenario = SCENARIOS[rk.scenario]
  const dataDir = path.join(runRoot, `r${rep}-${rk.id}-${name}`)
  fs.mkdirSync(dataDir)
  const rec = { rep, scenario: rk.id, kind: rk.kind, server: name, ok: false, rows: [] }
  let server = null
  try {
    server = await startServer(name, dataDir)
    const pids = server.children.map((c) => c.pid)
    const uploads = new Map()
    let commits = null
    for (const step of scenario.steps(rk, sv, cfg)) {
      const cpu0 = pids.map(cpuSeconds)
      const res = await load.ask({ cmd: 'run', kind: step.kind, proto: sv.proto, targets: server.targets, params: step.params },
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
    const fileOf = sv.storedPaths(dataDir)
    const problems = await verify(all, fileOf, expectedSha)
    rec.verified = all.length - problems.length
    if (problems.length) throw new Error(`verification failed (${problems.length} of ${all.length}):\n  ${problems.slice(0, 5).join('\n  ')}`)
    if (commits && scenario.rows) rec.rows = await scenario.rows({ rk, uploads: all, commits, dataDir, fileOf, bigData: big })
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
    const servers = cfg.servers.filter((s) => rk.can(SERVERS.get(s)))
    const k = servers.length ? (rep - 1) % servers.length : 0
    for (const s of [...servers.slice(k), ...servers.slice(0, k)]) plan.push([rep, rk, s])
  }
}
console.log(`bench: ${plan.length} runs (${cfg.reps} rep(s); scenarios ${runKinds.map((r) => r.id).join(',')}; servers ${cfg.servers.join(',')}); data in ${runRoot}`)
for (const [i, [rep, rk, s]] of plan.entries()) {
  process.stdout.write(`[${String(i + 1).padStart(String(plan.length).length)}/${plan.length}] rep ${rep} ${rk.id.padEnd(3)} ${s.padEnd(17)} `)
  const r = await runOne(rep, rk, s)
  runs.push(r)
  console.log(describe(r))
}

await load.close()
if (redis) await stopProcess(redis)

// ---- results -----------------------------------------------------------------------------------
function gitRev () {
  try { return execFileSync('git', ['-C', rootDir, 'rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() } catch { return null }
}
const builtAt = (main) => (main && fs.existsSync(main) ? fs.statSync(main).mtime.toISOString() : null)
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
    ferryBuilt: builtAt(mains.a),
    ...(mains.b ? { ferryBBuilt: builtAt(mains.b) } : {}),
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
