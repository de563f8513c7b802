/**
 * Real redis-server processes for tests. The suite shares one private server started by
 * global-setup on a free port (REDIS_URL overrides); each test takes its own key prefix. Tests
 * that restart Redis start their own with `startPrivateRedis`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

/** The suite's Redis (set by global-setup, or REDIS_URL). */
export function testRedisUrl(): string {
  const url = process.env['FERRY_TEST_REDIS_URL'] ?? process.env['REDIS_URL']
  if (!url) throw new Error('no test Redis: global-setup did not run and REDIS_URL is unset')
  return url
}

export function uniquePrefix(): string {
  return `t${randomUUID().slice(0, 8)}:`
}

export interface PrivateRedis {
  readonly url: string
  readonly port: number
  readonly dir: string
  /** SIGKILL the server (its appendonly file keeps what it had). */
  kill(): Promise<void>
  /** Start it again on the same port and directory. */
  restart(): Promise<void>
  stop(): Promise<void>
}

async function waitReady(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const { Redis } = await import('ioredis')
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
    const r = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    r.on('error', () => {})
    try {
      await r.connect()
      if ((await r.ping()) === 'PONG') {
        r.disconnect()
        return
      }
    } catch {
      /* not yet */
    }
    r.disconnect()
    await new Promise((res) => setTimeout(res, 50))
  }
  throw new Error(`redis-server on ${port} did not start`)
}

export async function startPrivateRedis(
  opts: { appendonly?: boolean; port?: number; dir?: string } = {},
): Promise<PrivateRedis> {
  const port = opts.port ?? (await freePort())
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ferry-redis-'))
  let child: ChildProcess
  const start = async () => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        opts.appendonly ? 'yes' : 'no',
        '--appendfsync',
        'always',
      ],
      { stdio: 'ignore' },
    )
    await waitReady(port, child)
  }
  const exit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill(signal)
    })
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    kill: () => exit('SIGKILL'),
    restart: start,
    stop: () => exit('SIGTERM'),
  }
}

function runCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code === 0) resolve(out)
      else reject(new Error(`redis-cli ${args.join(' ')}: ${out}`))
    })
  })
}

async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`)
}

/** A set of redis-server processes (a cluster, or a primary, replica and sentinels). */
export interface RedisGroup {
  readonly url: string
  /** SIGKILL one process by port. */
  kill(port: number): Promise<void>
  stop(): Promise<void>
}

interface Spawned {
  readonly child: ChildProcess
  exit(sig: NodeJS.Signals): Promise<void>
}

function spawnServer(args: string[], dir: string): Spawned {
  const child = spawn('redis-server', args, { stdio: 'ignore', cwd: dir })
  return {
    child,
    exit: (signal) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill(signal)
      }),
  }
}

const base = (port: number, dir: string) => [
  '--port',
  String(port),
  '--bind',
  '127.0.0.1',
  '--dir',
  dir,
  '--save',
  '',
  '--appendonly',
  'no',
]

/** A 3-primary Redis Cluster on loopback ports (`redis-cli --cluster create`, no replicas). */
export async function startRedisCluster(): Promise<RedisGroup & { ports: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-rcluster-'))
  const ports = [await freePort(), await freePort(), await freePort()]
  const procs = new Map<number, Spawned>()
  for (const p of ports) {
    const s = spawnServer(
      [
        ...base(p, dir),
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${p}.conf`,
        // The bus port defaults to port + 10000, past 65535 for a high ephemeral port: its own.
        '--cluster-port',
        String(await freePort()),
        '--cluster-node-timeout',
        '2000',
      ],
      dir,
    )
    procs.set(p, s)
    await waitReady(p, s.child)
  }
  const addrs = ports.map((p) => `127.0.0.1:${p}`)
  await runCli(['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'])
  for (const p of ports) {
    await until(`cluster node ${p}`, async () =>
      (await runCli(['-p', String(p), 'cluster', 'info'])).includes('cluster_state:ok'),
    )
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    ports,
    kill: (port) => procs.get(port)!.exit('SIGKILL'),
    async stop() {
      for (const s of procs.values()) await s.exit('SIGTERM')
    },
  }
}

/** A primary, one replica and three sentinels (quorum 2) on loopback ports; master name `ferry`. */
export async function startRedisSentinel(): Promise<
  RedisGroup & { primary: number; replica: number }
> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-rsentinel-'))
  const primary = await freePort()
  const replica = await freePort()
  const procs = new Map<number, Spawned>()
  const p = spawnServer(base(primary, dir).concat(['--dbfilename', `d-${primary}.rdb`]), dir)
  procs.set(primary, p)
  await waitReady(primary, p.child)
  const r = spawnServer(
    base(replica, dir).concat([
      '--dbfilename',
      `d-${replica}.rdb`,
      '--replicaof',
      '127.0.0.1',
      String(primary),
    ]),
    dir,
  )
  procs.set(replica, r)
  await waitReady(replica, r.child)
  await until('replication', async () =>
    (await runCli(['-p', String(replica), 'info', 'replication'])).includes(
      'master_link_status:up',
    ),
  )
  const sentinels: number[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const conf = join(dir, `sentinel-${port}.conf`)
    const lines = [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ferry 127.0.0.1 ${primary} 2`,
      'sentinel down-after-milliseconds ferry 1000',
      'sentinel failover-timeout ferry 5000',
      'sentinel parallel-syncs ferry 1',
    ]
    writeFileSync(conf, lines.map((l) => `${l}\n`).join(''))
    const s = spawnServer([conf, '--sentinel'], dir)
    procs.set(port, s)
    await waitReady(port, s.child)
    sentinels.push(port)
  }
  // A failover needs every sentinel to know the replica and the other sentinels.
  for (const port of sentinels) {
    await until(`sentinel ${port}`, async () => {
      const out = await runCli(['-p', String(port), 'sentinel', 'master', 'ferry'])
      const lines = out.split('\n').map((l) => l.trim())
      const field = (name: string) => Number(lines[lines.indexOf(name) + 1])
      return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2
    })
  }
  return {
    url: `redis+sentinel://${sentinels.map((p) => `127.0.0.1:${p}`).join(',')}/ferry`,
    primary,
    replica,
    kill: (port) => procs.get(port)!.exit('SIGKILL'),
    async stop() {
      for (const s of procs.values()) await s.exit('SIGTERM')
    },
  }
}
