// One chunked upload against one server process, with the server's CPU split per thread: the tool
// that found where Ferry's CPU per byte went (bench/README.md, "Profiling"). Not part of run.js.
//
//   node bench/probe.js [--server ferry|minimal|minimal-durable] [--dist DIR] [--mib N]
//                       [--parallel N] [--sessions N] [--node-arg=ARG]... [--env K=V]... [--reps N]
//
// `--sessions N` runs N such uploads at once (the same bytes, distinct sessions and paths).
// Prints one JSON line per run: MB/s (10^6 B, all chunks + commits), commit ms (the slowest), CPU s
// per GiB of the whole process, and per thread in creation order: `main`, V8's platform workers,
// libuv's thread pool, then worker threads (Ferry's hash pool). `--node-arg=--trace-gc` plus
// `--gc-log FILE` counts the full and young GCs of every isolate since the server started.
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { freePort } from './macro/procs.js'

const { values: a } = parseArgs({
  options: {
    server: { type: 'string', default: 'ferry' },
    dist: { type: 'string', default: 'dist' },
    mib: { type: 'string', default: '1024' },
    parallel: { type: 'string', default: '1' },
    sessions: { type: 'string', default: '1' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    env: { type: 'string', multiple: true, default: [] },
    'gc-log': { type: 'string' },
    reps: { type: 'string', default: '1' },
  },
})
const MiB = 1024 * 1024
const CHUNK = 8 * MiB
const total = Number(a.mib) * MiB
const parallel = Number(a.parallel)
const sessions = Number(a.sessions)
if (!(total >= CHUNK && total % CHUNK === 0) || !(parallel >= 1) || !(sessions >= 1))
  throw new Error('--mib must be a multiple of 8, --parallel and --sessions >= 1')
const benchDir = path.dirname(new URL(import.meta.url).pathname)

// Deterministic, incompressible enough, and cheap to make.
const data = Buffer.allocUnsafe(total)
for (let i = 0; i < total; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i)

function threadCpu(pid) {
  const out = new Map()
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')
      out.set(Number(t), (Number(f[11]) + Number(f[12])) / 100) // utime + stime in clock ticks (USER_HZ = 100 on Linux)
    } catch {
      /* the thread ended */
    }
  }
  return out
}

async function once() {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-probe-'))
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && k !== 'REDIS_URL'),
  )
  Object.assign(env, {
    FERRY_HOST: '127.0.0.1',
    FERRY_PORT: String(port),
    FERRY_DATA_DIR: dir,
    FERRY_LOG_LEVEL: 'warn',
  })
  let script
  if (a.server === 'ferry') script = path.resolve(a.dist, 'src/main.js')
  else if (a.server === 'minimal' || a.server === 'minimal-durable') {
    script = path.join(benchDir, 'macro/servers/minimal.js')
    if (a.server === 'minimal-durable') env.BENCH_FSYNC = '1'
  } else throw new Error(`unknown --server ${a.server}`)
  for (const kv of a.env) {
    const i = kv.indexOf('=')
    env[kv.slice(0, i)] = kv.slice(i + 1)
  }
  const out = a['gc-log'] ? fs.openSync(a['gc-log'], 'w') : 'ignore'
  const child = spawn(process.execPath, [...a['node-arg'], script], {
    env,
    stdio: ['ignore', out, 'inherit'],
  })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  const req = (method, p, headers = {}, body = null) =>
    new Promise((resolve, reject) => {
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
          res.on('end', () =>
            res.statusCode < 300
              ? resolve(res.statusCode)
              : reject(new Error(`${method} ${p} → ${res.statusCode} ${Buffer.concat(parts)}`)),
          )
        },
      )
      r.on('error', reject)
      r.end(body ?? undefined)
    })
  try {
    for (let i = 0; ; i++) {
      try {
        await req('GET', '/healthz')
        break
      } catch {
        if (i > 300 || child.exitCode !== null) throw new Error('the server did not start')
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    const c0 = threadCpu(child.pid)
    const t0 = performance.now()
    let commitMs = 0
    await Promise.all(
      Array.from({ length: sessions }, async (_, k) => {
        const sid = randomUUID()
        let next = 0
        await Promise.all(
          Array.from({ length: parallel }, async () => {
            while (next < total / CHUNK) {
              const s = next++ * CHUNK
              await req(
                'PUT',
                `/ImageStore/probe/f${k}.bin/$/UploadChunk?api-version=6.0&session-id=${sid}`,
                { 'content-range': `bytes ${s}-${s + CHUNK - 1}/${total}` },
                data.subarray(s, s + CHUNK),
              )
            }
          }),
        )
        const tUp = performance.now()
        await req('POST', `/ImageStore/$/CommitUploadSession?api-version=6.0&session-id=${sid}`)
        commitMs = Math.max(commitMs, performance.now() - tUp)
      }),
    )
    const t1 = performance.now()
    const c1 = threadCpu(child.pid)
    const gib = (total * sessions) / 2 ** 30
    const tids = [...c1.keys()].sort((x, y) => x - y)
    const per = tids.map((t) => [
      t === child.pid ? 'main' : String(t - child.pid),
      (c1.get(t) - (c0.get(t) ?? 0)) / gib,
    ])
    const line = {
      server: a.server,
      MBs: +((total * sessions) / 1e6 / ((t1 - t0) / 1000)).toFixed(1),
      commitMs: Math.round(commitMs),
      // The server's peak resident set since it started (VmHWM), MiB.
      hwmMiB: Math.round(
        Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) /
          1024,
      ),
      cpuPerGiB: +per.reduce((s, [, v]) => s + v, 0).toFixed(2),
      threads: per
        .filter(([, v]) => v >= 0.005)
        .map(([k, v]) => `${k}:${v.toFixed(2)}`)
        .join(' '),
    }
    if (a['gc-log']) {
      await new Promise((r) => setTimeout(r, 100))
      const log = fs.readFileSync(a['gc-log'], 'utf8')
      line.fullGcs = log.split('\n').filter((l) => l.includes('Mark-Compact')).length
      line.youngGcs = log.split('\n').filter((l) => l.includes('Scavenge')).length
    }
    console.log(JSON.stringify(line))
  } finally {
    child.kill('SIGTERM')
    agent.destroy()
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r))
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

for (let r = 0; r < Number(a.reps); r++) await once()
