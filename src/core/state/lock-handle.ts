import type { Lock } from './types.js'

/** How a backend extends and drops a lock it holds; both answer false when the lock is not ours. */
export interface LockOps {
  extend(key: string, token: string, ttlMs: number): Promise<boolean>
  drop(key: string, token: string): Promise<void>
}

/**
 * A held lock that renews itself every third of its lifetime. If a renewal finds the lock gone
 * (expired and taken by someone else), `signal` aborts so the holder stops its work.
 */
export class RenewingLock implements Lock {
  readonly key: string
  readonly token: string
  readonly #ops: LockOps
  readonly #ctl = new AbortController()
  readonly #timer: NodeJS.Timeout

  constructor(key: string, token: string, ttlMs: number, ops: LockOps) {
    this.key = key
    this.token = token
    this.#ops = ops
    this.#timer = setInterval(() => {
      ops.extend(key, token, ttlMs).then(
        (ok) => {
          if (!ok) this.#lost(new Error(`lock ${key} was lost`))
        },
        (err: unknown) => this.#lost(err),
      )
    }, Math.max(50, Math.floor(ttlMs / 3)))
    this.#timer.unref()
  }

  get signal(): AbortSignal {
    return this.#ctl.signal
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
