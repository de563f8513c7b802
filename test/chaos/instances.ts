/**
 * Ferry processes the chaos run kills, pauses and restarts: each one is `dist/src/main.js` forked
 * on a fixed port (its proxy keeps pointing there across restarts), with the last lines of its
 * output kept for the report when it dies on its own.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { rmSync, readdirSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { startPrivateRedis, type PrivateRedis } from '../helpers/redis.js'
import { MAIN_JS } from '../helpers/server.js'
import { sleep } from './rng.js'

const TAIL_LINES = 60

export interface ExitRecord {
  readonly instance: string
  readonly code: number | string
  readonly atMs: number
  readonly tail: string
}

export function healthy(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: timeoutMs },
      (res) => {
        res.resume()
        resolve(res.statusCode === 200)
      },
    )
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
    req.end()
  })
}

export class FerryInstance {
  readonly name: string
  readonly port: number
  readonly #env: Record<string, string>
  #proc: ChildProcess | null = null
  #lines: string[] = []
  #expectExit = false
  #stopped = false
  /** The process exited without being told to (a crash): what it printed last. */
  readonly crashes: ExitRecord[] = []
  /** Starts that ended before /healthz answered 200 (for example a full disk at start). */
  readonly failedStarts: ExitRecord[] = []

  constructor(name: string, port: number, env: Record<string, string>) {
    this.name = name
    this.port = port
    this.#env = env
  }

  get running(): boolean {
    return this.#proc !== null && this.#proc.exitCode === null && this.#proc.signalCode === null
  }

  /** True while SIGSTOPped. */
  get paused(): boolean {
    return this.#stopped
  }

  tail(): string {
    return this.#lines.join('\n')
  }

  /** Overrides some settings for the next starts (e.g. a short sweep interval at the end). */
  setEnv(extra: Record<string, string>): void {
    Object.assign(this.#env, extra)
  }

  /**
   * Forks the process and waits for /healthz; throws (and records) when it exits first or takes
   * over `timeoutMs`.
   */
  async start(timeoutMs = 20_000): Promise<number> {
    const t0 = performance.now()
    this.#expectExit = false
    this.#stopped = false
    this.#lines = []
    const proc = fork(MAIN_JS, [], {
      execArgv: [],
      env: {
        PATH: process.env['PATH'] ?? '',
        FERRY_LOG_LEVEL: 'warn',
        ...this.#env,
        FERRY_PORT: String(this.port),
        FERRY_HOST: '127.0.0.1',
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    })
    this.#proc = proc
    const keep = (d: Buffer) => {
      for (const l of d.toString().split('\n'))
        if (l.trim() !== '') this.#lines.push(l.length > 600 ? `${l.slice(0, 600)}…` : l)
      if (this.#lines.length > TAIL_LINES) this.#lines.splice(0, this.#lines.length - TAIL_LINES)
    }
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    let ready = false
    proc.once('exit', (code, sig) => {
      if (this.#proc === proc) this.#stopped = false
      if (this.#expectExit) return
      const rec = {
        instance: this.name,
        code: code ?? sig ?? -1,
        atMs: Date.now(),
        tail: this.tail(),
      }
      if (ready) this.crashes.push(rec)
      else this.failedStarts.push(rec)
    })
    const until = performance.now() + timeoutMs
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`${this.name} exited during start (${proc.exitCode ?? proc.signalCode})`)
      if (await healthy(this.port, 500)) break
      if (performance.now() > until) {
        this.#expectExit = true
        proc.kill('SIGKILL')
        this.failedStarts.push({
          instance: this.name,
          code: 'start timeout',
          atMs: Date.now(),
          tail: this.tail(),
        })
        throw new Error(`${this.name} did not become healthy in ${timeoutMs} ms`)
      }
      await sleep(40)
    }
    ready = true
    return performance.now() - t0
  }

  /**
   * Starts until healthy, retrying failed starts every 500 ms until `deadlineMs` (epoch); the time
   * from the first try.
   */
  async startUntilHealthy(deadlineMs: number): Promise<number> {
    const t0 = performance.now()
    for (;;) {
      try {
        await this.start()
        return performance.now() - t0
      } catch (err) {
        if (Date.now() > deadlineMs) throw err
        await sleep(500)
      }
    }
  }

  async kill(): Promise<void> {
    const proc = this.#proc
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return
    this.#expectExit = true
    const gone = new Promise<void>((r) => proc.once('exit', () => r()))
    proc.kill('SIGKILL')
    await gone
    this.#stopped = false
  }

  /** A whole-process pause (SIGSTOP): the event loop, the workers, the timers, everything. */
  pause(): boolean {
    if (!this.running || this.#stopped) return false
    this.#stopped = this.#proc!.kill('SIGSTOP')
    return this.#stopped
  }

  resume(): void {
    if (this.#stopped && this.running) this.#proc!.kill('SIGCONT')
    this.#stopped = false
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    const proc = this.#proc
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return
    this.#expectExit = true
    this.resume()
    const gone = new Promise<void>((r) => proc.once('exit', () => r()))
    proc.kill('SIGTERM')
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
    await gone
    clearTimeout(t)
  }
}

/**
 * The Redis of a chaos phase: killed and restarted with its appendonly file, or with everything
 * lost.
 */
export class ChaosRedis {
  readonly #redis: PrivateRedis

  private constructor(redis: PrivateRedis) {
    this.#redis = redis
  }

  static async start(): Promise<ChaosRedis> {
    return new ChaosRedis(await startPrivateRedis({ appendonly: true }))
  }

  get url(): string {
    return this.#redis.url
  }

  /**
   * SIGKILL, down for `downMs`, back with (appendonly file kept) or without (files removed) its
   * data.
   */
  async restart(persist: boolean, downMs: number): Promise<void> {
    await this.#redis.kill()
    if (!persist)
      for (const f of readdirSync(this.#redis.dir))
        rmSync(join(this.#redis.dir, f), { recursive: true, force: true })
    await sleep(downMs)
    await this.#redis.restart()
  }

  async stop(): Promise<void> {
    await this.#redis.stop()
    rmSync(this.#redis.dir, { recursive: true, force: true })
  }
}
