import { UploadError } from '../errors.js'
import type { Lock } from './types.js'

/** How a backend extends, checks and drops a lock it holds. */
export interface LockOps {
  /** false when the lock is not ours any more. */
  extend(key: string, token: string, ttlMs: number): Promise<boolean>
  /** Milliseconds the lock has left if it is ours, else a negative number. */
  remaining(key: string, token: string): Promise<number>
  drop(key: string, token: string): Promise<void>
}

/**
 * A held lock that renews itself every third of its lifetime. If a renewal fails, finds the lock
 * gone, or comes too late (the process stalled past the lifetime, so another owner may have taken
 * it), `signal` aborts so the holder stops its work; `check()` is the fence before an
 * irreversible step.
 */
export class RenewingLock implements Lock {
  readonly key: string
  readonly token: string
  readonly #ops: LockOps
  readonly #ttlMs: number
  readonly #ctl = new AbortController()
  readonly #timer: NodeJS.Timeout
  /** performance.now() when the lock was last known to be ours for `ttlMs` more. */
  #confirmedAt = performance.now()

  constructor(key: string, token: string, ttlMs: number, ops: LockOps) {
    this.key = key
    this.token = token
    this.#ops = ops
    this.#ttlMs = ttlMs
    this.#timer = setInterval(() => {
      if (performance.now() - this.#confirmedAt >= ttlMs) {
        this.#lost(new Error(`lock ${key} was not renewed within its lifetime`))
        return
      }
      const asked = performance.now()
      ops.extend(key, token, ttlMs).then(
        (ok) => {
          if (!ok) this.#lost(new Error(`lock ${key} was lost`))
          else this.#confirmedAt = asked
        },
        (err: unknown) => this.#lost(err),
      )
    }, Math.max(50, Math.floor(ttlMs / 3)))
    this.#timer.unref()
  }

  get signal(): AbortSignal {
    return this.#ctl.signal
  }

  async check(): Promise<void> {
    if (this.#ctl.signal.aborted) throw new UploadError('ERR_LOCKED', `lock ${this.key} is no longer held`)
    const left = await this.#ops.remaining(this.key, this.token)
    if (left < this.#ttlMs / 3) {
      this.#lost(new Error(`lock ${this.key} is about to expire or was lost`))
      throw new UploadError('ERR_LOCKED', `lock ${this.key} is no longer held`)
    }
  }

  #lost(reason: unknown): void {
    clearInterval(this.#timer)
    if (!this.#ctl.signal.aborted) this.#ctl.abort(reason)
  }

  async release(): Promise<void> {
    clearInterval(this.#timer)
    if (!this.#ctl.signal.aborted) this.#ctl.abort(new Error('released'))
    await this.#ops.drop(this.key, this.token)
  }
}
