#!/usr/bin/env node
// Ferry macro benchmark driver: `npm run bench` (full) or `node bench/run.js --quick` (CI).
//
//   run.js ──spawn──▶ redis-server (private port, no persistence)         [if a redis server runs]
//          ──spawn──▶ server under test (own process, free port, fresh data dir), per run
//          ──fork───▶ macro/load.js (load generator, long-lived, keep-alive node:http)
//          reads /proc/<server>/stat + status around each run, verifies every stored file's
//          sha256 afterwards, writes results/*.json + results/report.md + results/chart-*.svg.
//   run.js ──spawn──▶ macro/disk.js (the disk row: no HTTP, Ferry's write size and fsync cadence)
//          ──spawn──▶ macro/sha-pass.js (one sha256 pass per repetition: goal 5's yardstick)
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

// ---- dependencies: a fresh clone has no bench/node_modules
// ---------------------------------------
/** The installed version of a bench dependency, or null. */
function depVersion(name) {
  try {
    const file = path.join(benchDir, 'node_modules', ...name.split('/'), 'package.json')
    return JSON.parse(fs.readFileSync(file, 'utf8')).version
  } catch {
    return null
  }
}
// Every dependency at its pinned version, or a fresh `npm ci` (a checkout that gained one, or
// changed a pin, since bench/node_modules was installed).
const pinned = JSON.parse(fs.readFileSync(path.join(benchDir, 'package.json'), 'utf8')).dependencies
const stale = ([name, v]) => {
  const have = depVersion(name)
  return have === null || (/^\d+\.\d+\.\d+$/.test(v) && have !== v)
}
if (Object.entries(pinned).some(stale)) {
  console.log('bench: installing bench dependencies (npm --prefix bench ci)…')
  const r = spawnSync('npm', ['--prefix', benchDir, 'ci', '--no-audit', '--no-fund'], {
    stdio: 'inherit',
  })
  if (r.status !== 0) {
    console.error('bench: npm ci failed')
    process.exit(2)
  }
}

const { parseCli } = await import('./macro/cli.js')
const { makeData, smallFiles, sha256hex } = await import('./macro/data.js')
const { startLoad } = await import('./macro/load-client.js')
const { freePort, redisPing, startProcess, stopProcess } = await import('./macro/procs.js')
const { writeReport, summarize, formatTable } = await import('./macro/report.js')
const { createRunner } = await import('./macro/runner.js')
const { runKindsOf, runs: takes } = await import('./macro/scenarios.js')
const { bindServers, serverByName } = await import('./macro/servers.js')

const MiB = 1024 * 1024
const { args, cfg } = parseCli(process.argv.slice(2), { benchDir, rootDir })
const bigBytes = Math.max(cfg.sizeBytes, cfg.rssBytes, ...cfg.commitSizes)
const mains = { a: path.resolve(args['ferry-main']), b: cfg.ferryMainB }

// ---- servers -----------------------------------------------------------------------------------
for (const [build, flag] of [
  ['a', '--ferry-main'],
  ['b', '--ferry-main-b'],
]) {
  if (cfg.servers.some((s) => serverByName(s).build === build) && !fs.existsSync(mains[build])) {
    console.error(
      `bench: ${mains[build]} (${flag}) is missing: build Ferry first (npm run build), or pick --servers minimal,tus`,
    )
    process.exit(1)
  }
}
const SERVERS = await bindServers(cfg.servers, mains)
const needRedis = [...SERVERS.values()].some((s) => s.redis)
if (needRedis && spawnSync('redis-server', ['--version']).status !== 0) {
  console.error(
    'bench: redis-server not found (apt-get install redis-server), or drop the ferry-*redis* servers',
  )
  process.exit(1)
}
// deploy/cluster spawns haproxy for the two-instance servers; without it the spawn error ends
// the driver before it can stop the instances it already started (seen: orphans left running).
const needHaproxy = [...SERVERS.values()].some((s) => s.instances > 1 && !s.redisCluster)
if (needHaproxy && spawnSync('haproxy', ['-v']).status !== 0) {
  console.error(
    'bench: haproxy not found (apt-get install haproxy), or drop the ferry-*redis-x2 servers',
  )
  process.exit(1)
}
const runKinds = runKindsOf(cfg.scenarios, cfg)

// ---- the load generator, expected digests (computed here, independently of it) ---------------
const load = startLoad()
console.log(
  `bench: generating ${(bigBytes / MiB).toFixed(0)} MiB + ${cfg.files} x ${cfg.fileBytes / 1024} KiB of seeded data (seed '${cfg.seed}')`,
)
const prepared = load.ask(
  {
    cmd: 'prepare',
    seed: cfg.seed,
    bigBytes,
    smallCount: cfg.files,
    smallBytes: cfg.fileBytes,
    timeoutMs: cfg.timeoutMs,
  },
  600_000,
)
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
    argv: [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      runRoot,
    ],
    env: {},
    cwd: rootDir,
    logFile: path.join(logDir, 'redis.log'),
    ready: () => redisPing(redisPort),
  })
  console.log(`bench: redis-server on 127.0.0.1:${redisPort}`)
}

// A 3-primary Redis Cluster (no replicas, no persistence) for the redisCluster servers.
const clusterNodes = []
let redisClusterUrl = ''
if ([...SERVERS.values()].some((s) => s.redisCluster)) {
  const ports = [await freePort(), await freePort(), await freePort()]
  for (const p of ports) {
    clusterNodes.push(
      await startProcess({
        name: `redis-cluster-${p}`,
        cmd: 'redis-server',
        argv: [
          '--port',
          String(p),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          runRoot,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${p}.conf`,
          '--cluster-port',
          String(await freePort()),
        ],
        env: {},
        cwd: rootDir,
        logFile: path.join(logDir, `redis-cluster-${p}.log`),
        ready: () => redisPing(p),
      }),
    )
  }
  const create = spawnSync('redis-cli', [
    '--cluster',
    'create',
    ...ports.map((p) => `127.0.0.1:${p}`),
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ])
  if (create.status !== 0)
    throw new Error(`redis-cli --cluster create: ${create.stdout}${create.stderr}`)
  for (const p of ports) {
    while (
      !spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'])
        .stdout.toString()
        .includes('cluster_state:ok')
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  redisClusterUrl = `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`
  console.log(`bench: Redis Cluster on ${ports.join(', ')}`)
}

const { runOne, describe, startRetries } = createRunner({
  servers: SERVERS,
  load,
  cfg,
  runId,
  runRoot,
  logDir,
  rootDir,
  redisPort,
  redisClusterUrl,
  expectedSha,
  big,
  keep: args.keep,
})

// ---- main loop ---------------------------------------------------------------------------------
const started = Date.now()
const runs = []
const plan = []
for (let rep = 1; rep <= cfg.reps; rep++) {
  for (const rk of runKinds) {
    const servers = cfg.servers.filter((s) => takes(rk, SERVERS.get(s)))
    const k = servers.length ? (rep - 1) % servers.length : 0
    for (const s of [...servers.slice(k), ...servers.slice(0, k)]) plan.push([rep, rk, s])
  }
}
console.log(
  `bench: ${plan.length} runs (${cfg.reps} rep(s); scenarios ${runKinds.map((r) => r.id).join(',')}; servers ${cfg.servers.join(',')}); data in ${runRoot}`,
)
// Goal 5's yardstick, once per repetition (before its first run): one sha256 pass of the run's
// file size from memory, in a child process (macro/sha-pass.js).
const sha256 = []
function shaPass(rep) {
  const r = spawnSync(
    process.execPath,
    [path.join(benchDir, 'macro', 'sha-pass.js'), cfg.seed, String(cfg.sizeBytes)],
    { encoding: 'utf8' },
  )
  if (r.status !== 0) throw new Error(`sha-pass.js: ${r.stderr}`)
  const x = JSON.parse(r.stdout)
  sha256.push({ rep, ...x })
  console.log(
    `bench: rep ${rep} sha256 pass ${((x.cpuS * 2 ** 30) / x.bytes).toFixed(2)} CPU-s/GiB (${((x.bytes / x.wallS) * 1e-6).toFixed(0)} MB/s)`,
  )
}
for (const [i, [rep, rk, s]] of plan.entries()) {
  if (i === 0 || plan[i - 1][0] !== rep) shaPass(rep)
  process.stdout.write(
    `[${String(i + 1).padStart(String(plan.length).length)}/${plan.length}] rep ${rep} ${rk.id.padEnd(3)} ${s.padEnd(17)} `,
  )
  const r = await runOne(rep, rk, s)
  runs.push(r)
  console.log(describe(r))
}

await load.close()
if (redis) await stopProcess(redis)
for (const node of clusterNodes) await stopProcess(node)

// ---- results -----------------------------------------------------------------------------------
function gitRev() {
  try {
    return execFileSync('git', ['-C', rootDir, 'rev-parse', 'HEAD'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim()
  } catch {
    return null
  }
}
const builtAt = (main) =>
  main && fs.existsSync(main) ? fs.statSync(main).mtime.toISOString() : null
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
    tusServer: depVersion('@tus/server'),
    tusJsClient: depVersion('tus-js-client'),
  },
  config: { ...cfg, bigBytes },
  runs,
  sha256,
  startRetries,
  ok: failed.length === 0,
}
result.summary = summarize(result)
fs.mkdirSync(args.out, { recursive: true })
const jsonFile = path.join(args.out, `bench-${runId}.json`)
fs.writeFileSync(jsonFile, JSON.stringify(result, null, 2))
const { mdFile } = writeReport(result, args.out)
console.log(`\n${formatTable(result)}`)
console.log(
  `\nbench: ${runs.length - failed.length}/${runs.length} runs ok in ${result.durationS.toFixed(1)} s; wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), mdFile)}`,
)
if (args.keep) console.log(`bench: kept ${runRoot}`)
else if (failed.length) {
  for (const d of fs.readdirSync(runRoot))
    if (d !== 'logs') fs.rmSync(path.join(runRoot, d), { recursive: true, force: true })
  console.log(`bench: server logs kept in ${logDir}`)
} else fs.rmSync(runRoot, { recursive: true, force: true })
if (failed.length) {
  console.error(`bench: ${failed.length} run(s) FAILED:`)
  for (const r of failed) console.error(`  rep ${r.rep} ${r.scenario} ${r.server}: ${r.error}`)
  process.exit(1)
}
