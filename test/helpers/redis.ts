/**
 * Real redis-server processes for tests. The suite shares one private server started by
 * global-setup on a free port (REDIS_URL overrides); each test takes its own key prefix. Tests
 * that restart Redis start their own with `startPrivateRedis`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { mkdtempSync } from 'node:fs'
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
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
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

export async function startPrivateRedis(opts: { appendonly?: boolean; port?: number; dir?: string } = {}): Promise<PrivateRedis> {
  const port = opts.port ?? (await freePort())
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ferry-redis-'))
  let child: ChildProcess
  const start = async () => {
    child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--appendonly', opts.appendonly ? 'yes' : 'no', '--appendfsync', 'always',
    ], { stdio: 'ignore' })
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
