/**
 * A Ferry fleet on one machine, the topology of docker-compose.yml without containers: one
 * redis-server on a private port (its files in a temp dir), N Ferry processes on one data
 * directory, and Debian's haproxy in front balancing round-robin with health checks on
 * `/readyz`. `npm run cluster -- --instances 3` starts it, prints the front URL and stops
 * everything on Ctrl-C or SIGTERM; tests and the benchmark use `startCluster`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** Ferry's entry point beside this file in dist/ (dist/deploy → dist/src/main.js). */
export const DEFAULT_MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url))

export interface ClusterOptions {
  /** Ferry processes (default 3). */
  readonly instances?: number
  /** Ferry's entry point (default: this build's dist/src/main.js). */
  readonly main?: string
  /** The shared data directory (kept); default a new temp dir, removed at stop. */
  readonly dataDir?: string
  /** haproxy's front port on 127.0.0.1 (0 or absent: a free one). */
  readonly frontPort?: number
  /** More environment for every Ferry process (FERRY_*). */
  readonly env?: Readonly<Record<string, string>>
  /**
   * How long a stopping instance keeps serving with `/readyz` at 503 (FERRY_DRAIN_DELAY_MS), ms:
   * longer than haproxy needs to see it (2 checks 500 ms apart). Default 1500.
   */
  readonly drainDelayMs?: number
  /** Where each process's output goes, kept (default: the cluster's temp dir, removed at stop). */
  readonly logDir?: string
}

export interface ClusterInstance {
  readonly url: string
  readonly port: number
  readonly pid: number
}

export interface Cluster {
  /** haproxy's front, `http://127.0.0.1:<port>`. */
  readonly frontUrl: string
  readonly instances: readonly ClusterInstance[]
  readonly redisUrl: string
  readonly dataDir: string
  readonly logDir: string
  /** haproxy's configuration as written. */
  readonly haproxyConfig: string
  /** Stops Ferry (drained), then haproxy, then Redis; removes what the cluster created. */
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => res(port))
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Whether a redis-server answers PING on `port` (RESP by hand: no client library needed). */
function redisPong(port: number): Promise<boolean> {
  return new Promise((res) => {
    const sock = connect(port, '127.0.0.1')
    let got = ''
    const done = (ok: boolean) => {
      sock.destroy()
      res(ok)
    }
    sock.setTimeout(1000, () => done(false))
    sock.once('error', () => done(false))
    sock.on('data', (d) => {
      got += d.toString()
      if (got.includes('\r\n')) done(got.startsWith('+PONG'))
    })
    sock.write('PING\r\n')
  })
}

async function httpStatus(url: string): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) })
    await r.arrayBuffer()
    return r.status
  } catch {
    return 0
  }
}

interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly exited: Promise<void>
}

function start(
  name: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  log: string,
): Child {
  const fd = openSync(log, 'a')
  const proc = spawn(cmd, args, { env, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  const exited = once(proc, 'exit').then(() => undefined)
  return { name, proc, exited }
}

async function until(what: string, child: Child, ok: () => Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      const how = child.proc.exitCode ?? child.proc.signalCode
      throw new Error(`${child.name} exited (${how}) before ${what}`)
    }
    if (Date.now() > end) throw new Error(`${child.name}: timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stopChild(c: Child, graceMs: number): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return
  c.proc.kill('SIGTERM')
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), graceMs)
  await c.exited
  clearTimeout(timer)
}

/** haproxy's configuration: round-robin, no stickiness (any instance takes any request). */
export function haproxyConfig(frontPort: number, ports: readonly number[]): string {
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  option http-server-close',
    'frontend ferry_in',
    `  bind 127.0.0.1:${frontPort}`,
    '  default_backend ferry',
    'backend ferry',
    '  balance roundrobin',
    // Out of rotation after two failed checks (a draining instance answers 503), back after one.
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    '  default-server inter 500ms fall 2 rise 1',
    ...ports.map((p, i) => `  server ferry${i + 1} 127.0.0.1:${p} check`),
    '',
  ].join('\n')
}

export interface Balancer {
  /** `http://127.0.0.1:<port>`. */
  readonly frontUrl: string
  /** haproxy's configuration as written. */
  readonly config: string
  /** Stops haproxy and removes its files. */
  stop(): Promise<void>
}

/**
 * Debian's haproxy on 127.0.0.1 in front of Ferry instances listening on 127.0.0.1 `ports`
 * (in this process or not), checking their `/readyz`; resolves once a request through the front
 * is answered 200. `logDir`: where its output goes (default: its temp dir, removed at stop).
 */
export async function startBalancer(
  ports: readonly number[],
  opts: { frontPort?: number; logDir?: string } = {},
): Promise<Balancer> {
  const work = mkdtempSync(join(tmpdir(), 'ferry-haproxy-'))
  const frontPort = opts.frontPort || (await freePort())
  const cfgFile = join(work, 'haproxy.cfg')
  const config = haproxyConfig(frontPort, ports)
  writeFileSync(cfgFile, config)
  const path = { PATH: process.env['PATH'] ?? '' }
  const log = join(opts.logDir ?? work, 'haproxy.log')
  const child = start('haproxy', 'haproxy', ['-f', cfgFile, '-db'], path, log)
  const stop = async () => {
    await stopChild(child, 5000)
    rmSync(work, { recursive: true, force: true })
  }
  const frontUrl = `http://127.0.0.1:${frontPort}`
  try {
    // An instance answered through the front: haproxy runs and its checks have passed.
    const front = `${frontUrl}/readyz`
    await until('haproxy to forward', child, async () => (await httpStatus(front)) === 200)
  } catch (err) {
    await stop()
    throw err
  }
  return { frontUrl, config, stop }
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const n = opts.instances ?? 3
  if (!Number.isInteger(n) || n < 1) throw new Error('instances must be a whole number >= 1')
  const work = mkdtempSync(join(tmpdir(), 'ferry-cluster-'))
  const dataDir = opts.dataDir ?? join(work, 'data')
  mkdirSync(dataDir, { recursive: true })
  const logDir = opts.logDir ?? join(work, 'logs')
  mkdirSync(logDir, { recursive: true })
  const ferry: Child[] = []
  let haproxy: Balancer | null = null
  let redis: Child | null = null
  const drainDelayMs = opts.drainDelayMs ?? 1500
  let stopping: Promise<void> | null = null
  const stop = () => {
    stopping ??= (async () => {
      // Ferry first (each goes out of rotation, drains, exits), then the balancer, then Redis.
      await Promise.all(ferry.map((c) => stopChild(c, drainDelayMs + 15_000)))
      if (haproxy) await haproxy.stop()
      if (redis) await stopChild(redis, 5000)
      // Redis's files, the logs kept here and a data dir made here go.
      rmSync(work, { recursive: true, force: true })
    })()
    return stopping
  }
  try {
    const redisPort = await freePort()
    const redisDir = join(work, 'redis')
    mkdirSync(redisDir)
    redis = start('redis-server', 'redis-server', [
      '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', redisDir,
      '--save', '', '--appendonly', 'no',
    ], { PATH: process.env['PATH'] ?? '' }, join(logDir, 'redis.log'))
    await until('Redis to answer', redis, () => redisPong(redisPort))
    const redisUrl = `redis://127.0.0.1:${redisPort}`
    const main = resolve(opts.main ?? DEFAULT_MAIN)
    const ports: number[] = []
    for (let i = 0; i < n; i++) ports.push(await freePort())
    for (const [i, port] of ports.entries()) {
      const env = {
        PATH: process.env['PATH'] ?? '',
        ...opts.env,
        FERRY_HOST: '127.0.0.1',
        FERRY_PORT: String(port),
        FERRY_DATA_DIR: dataDir,
        REDIS_URL: redisUrl,
        FERRY_DRAIN_DELAY_MS: String(drainDelayMs),
      }
      const name = `ferry${i + 1}`
      const c = start(name, process.execPath, [main], env, join(logDir, `${name}.log`))
      ferry.push(c)
    }
    for (const [i, c] of ferry.entries()) {
      const readyz = `http://127.0.0.1:${ports[i]}/readyz`
      await until('/readyz 200', c, async () => (await httpStatus(readyz)) === 200)
    }
    haproxy = await startBalancer(ports, {
      logDir,
      ...(opts.frontPort ? { frontPort: opts.frontPort } : {}),
    })
    return {
      frontUrl: haproxy.frontUrl,
      instances: ports.map((port, i) => ({
        url: `http://127.0.0.1:${port}`,
        port,
        pid: ferry[i]!.proc.pid!,
      })),
      redisUrl,
      dataDir,
      logDir,
      haproxyConfig: haproxy.config,
      stop,
    }
  } catch (err) {
    await stop().catch(() => {})
    throw err
  }
}

/** `node dist/deploy/cluster.js [--instances N] [--port P] [--data-dir D]` (npm run cluster). */
async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      instances: { type: 'string', default: '3' },
      port: { type: 'string', default: '0' },
      'data-dir': { type: 'string' },
      'drain-delay-ms': { type: 'string' },
    },
  })
  const cluster = await startCluster({
    instances: Number(values.instances),
    frontPort: Number(values.port),
    ...(values['data-dir'] ? { dataDir: resolve(values['data-dir']) } : {}),
    ...(values['drain-delay-ms'] ? { drainDelayMs: Number(values['drain-delay-ms']) } : {}),
  })
  let stopping = false
  const onSignal = (sig: string) => {
    if (stopping) return
    stopping = true
    process.stdout.write(`cluster: ${sig}, stopping\n`)
    cluster.stop().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`cluster: stop failed: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  for (const [i, inst] of cluster.instances.entries()) {
    process.stdout.write(`cluster: ferry${i + 1} ${inst.url} (pid ${inst.pid})\n`)
  }
  const { redisUrl, dataDir, logDir } = cluster
  process.stdout.write(`cluster: redis ${redisUrl}; data ${dataDir}; logs ${logDir}\n`)
  process.stdout.write(`cluster: front ${cluster.frontUrl}\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli().catch((err: unknown) => {
    process.stderr.write(`cluster: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
