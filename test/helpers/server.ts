/**
 * Ferry under test: in-process on a free port (real HTTP on 127.0.0.1, real worker threads), or
 * forked as its own process (kill and shutdown tests).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createApp, type App, type AppOptions } from '../../src/app.js'
import { loadConfig } from '../../src/config/config.js'
import { createLogger } from '../../src/observability/logger.js'
import { freePort, testRedisUrl, uniquePrefix } from './redis.js'

export function tempDir(prefix = 'ferry-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** Writes `body` as the JSON config file `dir/name`; returns its path (for FERRY_CONFIG). */
export function writeConfig(dir: string, name: string, body: object): string {
  const file = join(dir, name)
  writeFileSync(file, JSON.stringify(body))
  return file
}

export interface TestServer {
  readonly url: string
  readonly app: App
  readonly dataDir: string
  close(): Promise<void>
}

/** Starts Ferry in this process. `env` holds FERRY_* variables as a user would set them. */
/**
 * Settings every test server starts with unless a test says otherwise: tests write chunks of a
 * few bytes for readability, below the 64 KiB minimum of production (tested on its own).
 */
export const TEST_DEFAULTS: Readonly<Record<string, string>> = { FERRY_MIN_CHUNK_BYTES: '0' }

export async function startFerry(
  env: Record<string, string> = {},
  opts: AppOptions = {},
): Promise<TestServer> {
  const dataDir = env['FERRY_DATA_DIR'] ?? tempDir()
  const config = loadConfig({
    FERRY_PORT: '0',
    FERRY_LOG_LEVEL: process.env['FERRY_TEST_LOG'] ?? 'silent',
    ...TEST_DEFAULTS,
    ...env,
    FERRY_DATA_DIR: dataDir,
  })
  const app = await createApp(config, createLogger(config.logLevel), opts)
  const addr = await app.listen()
  return { url: `http://127.0.0.1:${addr.port}`, app, dataDir, close: () => app.close() }
}

/**
 * Several in-process instances as one scaled deployment: one Redis (a fresh key prefix), one data
 * directory.
 */
export interface TestCluster<S extends readonly TestServer[] = readonly TestServer[]> {
  readonly servers: S
  /** The data directory they share (removed by `close`). */
  readonly dataDir: string
  /** Closes every instance, then removes the data directory. */
  close(): Promise<void>
}

/**
 * `n` TestServers as a tuple when `n` is a literal, so that `const [a, b] = servers` needs no `!`.
 */
type Servers<N extends number, Acc extends TestServer[] = []> = number extends N
  ? TestServer[]
  : Acc['length'] extends N
    ? Acc
    : Servers<N, [...Acc, TestServer]>

/**
 * Starts `n` instances on the suite's redis-server under one fresh FERRY_REDIS_PREFIX and one new
 * data directory (named after `dirPrefix`); `env` adds settings (and may not override those three).
 */
export async function startCluster<N extends number>(
  n: N,
  env: Record<string, string> = {},
  dirPrefix = 'ferry-cluster-',
): Promise<TestCluster<Servers<N>>> {
  const dataDir = tempDir(dirPrefix)
  const shared = {
    ...env,
    REDIS_URL: env['REDIS_URL'] ?? testRedisUrl(),
    FERRY_REDIS_PREFIX: uniquePrefix(),
    FERRY_DATA_DIR: dataDir,
  }
  const servers: TestServer[] = []
  const close = async () => {
    for (const s of servers) await s.close()
    removeDir(dataDir)
  }
  try {
    for (let i = 0; i < n; i++) servers.push(await startFerry(shared))
  } catch (err) {
    await close()
    throw err
  }
  return { servers: servers as Servers<N>, dataDir, close }
}

export const MAIN_JS = fileURLToPath(new URL('../../src/main.js', import.meta.url))

export interface ChildServer {
  readonly url: string
  readonly port: number
  readonly proc: ChildProcess
  readonly output: () => string
  /** Resolves with the exit code (or signal name) once the process ends. */
  readonly exited: Promise<number | string>
}

/** Forks dist/src/main.js with `env` and waits for /healthz. */
export async function spawnFerry(
  env: Record<string, string>,
  port?: number,
  opts: { execArgv?: string[] } = {},
): Promise<ChildServer> {
  const p = port ?? (await freePort())
  const proc = fork(MAIN_JS, [], {
    execArgv: opts.execArgv ?? process.execArgv,
    env: {
      PATH: process.env['PATH'] ?? '',
      FERRY_LOG_LEVEL: 'info',
      ...TEST_DEFAULTS,
      ...env,
      FERRY_PORT: String(p),
      FERRY_HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  let out = ''
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, sig) => resolve(code ?? sig ?? -1)),
  )
  const url = `http://127.0.0.1:${p}`
  const until = Date.now() + 15_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`ferry exited early (${proc.exitCode}):\n${out}`)
    try {
      const r = await fetch(`${url}/healthz`)
      if (r.status === 200) break
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) {
      proc.kill('SIGKILL')
      throw new Error(`ferry did not become ready:\n${out}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { url, port: p, proc, output: () => out, exited }
}
