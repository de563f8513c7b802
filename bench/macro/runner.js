// One run: start a server on a fresh data directory, drive each step of the scenario through
// the load generator with a CPU window around it, stop the server, read every upload back.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { percentile } from './goals.js'
import { startIpcChild } from './load-client.js'
import { cpuSeconds, peakRssMiB } from './procstat.js'
import { freePort, httpStatus, startProcess, stopProcess } from './procs.js'
import { SCENARIOS } from './scenarios.js'
import { verify } from './verify.js'

const MiB = 1024 * 1024

/**
 * `servers`: the bound registry (macro/servers.js bindServers); `load`: the load generator
 * client; `expectedSha(upload)`: digests from the seeded data; `big`: that data.
 */
export function createRunner({
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
  keep,
}) {
  let seq = 0
  const startRetries = []
  /**
   * Starts every instance of server `name` on one fresh data dir; returns {children, targets,
   * stop}.
   */
  async function startServer(name, dataDir) {
    const sv = SERVERS.get(name)
    const n = ++seq
    const redisUrl = sv.redisCluster ? redisClusterUrl : `redis://127.0.0.1:${redisPort}`
    const redisEnv = { redisUrl, redisPrefix: `ferrybench:${runId}:${n}:` }
    const children = []
    const targets = []
    if (sv.proto === 'disk') return startDisk(dataDir)
    // deploy/cluster brings its own single redis-server: a Redis Cluster server starts its
    // instances here instead, and the load generator alternates between them.
    if (sv.proto === 'ferry' && sv.instances > 1 && !sv.redisCluster) {
      return startFleet(sv, name, n, dataDir, redisEnv)
    }
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
          ready: async () => (await httpStatus(port, sv.readyPath)) === 200,
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
          startRetries.push({
            server: name,
            error: err.message.split(';')[0],
            at: new Date().toISOString(),
          })
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

  /**
   * The disk row (macro/disk.js): no HTTP; the same process writes the run's data, so it gets
   * the data first (not timed) and then the steps the load generator would get.
   */
  async function startDisk(dataDir) {
    const disk = startIpcChild('disk.js', { BENCH_DATA_DIR: dataDir })
    try {
      await disk.ask(
        {
          cmd: 'prepare',
          seed: cfg.seed,
          bigBytes: big.length,
          smallCount: cfg.files,
          smallBytes: cfg.fileBytes,
        },
        600_000,
      )
    } catch (err) {
      await disk.close()
      throw err
    }
    return { children: [{ pid: disk.pid }], targets: [], driver: disk, stop: () => disk.close() }
  }

  /**
   * Several Ferry instances as operators run them: deploy/cluster (this checkout's build) starts
   * its own redis-server, the instances of the build under test and haproxy in front; the load
   * goes through haproxy's front.
   */
  async function startFleet(sv, name, n, dataDir, redisEnv) {
    const { startCluster } = await import(path.join(rootDir, 'dist', 'deploy', 'cluster.js'))
    const cluster = await startCluster({
      instances: sv.instances,
      main: sv.script,
      dataDir,
      env: sv.env({ port: 0, dataDir, ...redisEnv }),
      drainDelayMs: 0,
      logDir: path.join(logDir, `${n}-${name}`),
    })
    const front = new URL(cluster.frontUrl)
    return {
      children: cluster.instances.map((i) => ({ pid: i.pid })),
      targets: [{ host: front.hostname, port: Number(front.port) }],
      stop: () => cluster.stop(),
    }
  }

  // ---- one run
  // -----------------------------------------------------------------------------------
  async function runOne(rep, rk, name) {
    const sv = SERVERS.get(name)
    const scenario = SCENARIOS[rk.scenario]
    const dataDir = path.join(runRoot, `r${rep}-${rk.id}-${name}`)
    fs.mkdirSync(dataDir)
    const rec = { rep, scenario: rk.id, kind: rk.kind, server: name, ok: false, rows: [] }
    let server = null
    try {
      try {
        server = await startServer(name, dataDir)
      } catch (err) {
        // A build from before FERRY_FSYNC=none (goal 2's rows) refuses the policy at start: a
        // cell saying so, not a failed run. Any other start failure fails the run.
        const policy = sv.env?.FERRY_FSYNC
        if (!policy || !/FERRY_FSYNC must be one of/.test(err.message)) throw err
        const why = `this build refuses FERRY_FSYNC=${policy}`
        rec.rows = scenario.steps(rk, sv, cfg).map((st) => ({ row: st.row, unsupported: why }))
        rec.ok = true
        rec.verified = 0
        rec.peakRssMiB = []
        return rec
      }
      const pids = server.children.map((c) => c.pid)
      const uploads = new Map()
      let commits = null
      for (const step of scenario.steps(rk, sv, cfg)) {
        const cpu0 = pids.map(cpuSeconds)
        const res = await (server.driver ?? load).ask(
          {
            cmd: 'run',
            kind: step.kind,
            proto: sv.proto,
            targets: server.targets,
            params: step.params,
          },
          cfg.timeoutMs * 4 + 600_000,
        )
        const cpu = pids.map((p, i) => cpuSeconds(p) - cpu0[i])
        if (res.unsupported) {
          // The server cannot take this step (scenario g: no tus endpoint, no concatenation):
          // a cell of the report saying why, not a failed run.
          rec.rows.push({ row: step.row, unsupported: res.unsupported, detail: res.detail })
          continue
        }
        const row = {
          row: step.row,
          serverCpuS: cpu.reduce((x, y) => x + y, 0),
          serverCpuPerInstanceS: cpu,
          clientCpuS: res.clientCpuS,
          elapsedS: res.elapsedNs / 1e9,
        }
        if (res.bytes)
          Object.assign(row, { bytes: res.bytes, mbps: res.bytes / 1e6 / row.elapsedS })
        if (res.count) Object.assign(row, { count: res.count, ups: res.count / row.elapsedS })
        if (res.statuses) row.statuses = res.statuses
        // Per-upload latency (small files): the client's time from request to response.
        if (res.latencyNs?.length) {
          const ms = res.latencyNs.map((n) => n / 1e6)
          Object.assign(row, {
            p50Ms: percentile(ms, 50),
            p99Ms: percentile(ms, 99),
            maxMs: Math.max(...ms),
          })
        }
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
      if (problems.length)
        throw new Error(
          `verification failed (${problems.length} of ${all.length}):\n  ${problems.slice(0, 5).join('\n  ')}`,
        )
      if (commits && scenario.rows)
        rec.rows = await scenario.rows({ rk, uploads: all, commits, dataDir, fileOf, bigData: big })
      rec.ok = true
    } catch (err) {
      rec.error = err.message
    } finally {
      if (server) await server.stop()
      if (!keep) fs.rmSync(dataDir, { recursive: true, force: true })
      spawnSync('sync') // flush what this run left dirty before the next one starts (not timed)
    }
    return rec
  }

  function describe(r) {
    if (!r.ok) return `FAILED: ${r.error}`
    const parts = r.rows.map((x) => {
      if (x.unsupported) return `${x.row} ${x.unsupported}${x.detail ? `: ${x.detail}` : ''}`
      if (x.commitMs !== undefined && x.shaMs !== undefined)
        return `${x.size / MiB} MiB commit ${x.commitMs.toFixed(1)} ms (sha ${x.shaMs.toFixed(0)} + fsync ${x.fsyncMs.toFixed(0)} ms)`
      const v = x.mbps ? `${x.mbps.toFixed(1)} MB/s` : `${x.ups.toFixed(0)} uploads/s`
      return `${x.row} ${v} cpu ${x.serverCpuS.toFixed(2)} s`
    })
    if (r.peakRssMiB.length)
      parts.push(
        `peak rss ${r.peakRssMiB.map((m) => m.toFixed(0)).join('+')} MiB`,
        `verified ${r.verified}`,
      )
    return parts.join(', ')
  }

  return { runOne, describe, startRetries }
}
