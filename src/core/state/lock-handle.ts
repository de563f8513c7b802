import { UploadError } from '../errors.js'
import type { Lock } from './types.js'

/**
 * Why a lease is no longer ours: taken by another holder, renewals failing, or this process
 * stalled.
 */
export type LeaseLoss = 'taken' | 'unreachable' | 'stalled'

/**
 * Keeps a lease (a lock, a range reservation, a commit) renewed every third of its lifetime and
 * says as soon as it may be lost: a renewal answers "not yours" (`taken`), renewals fail until
 * the lease is at risk (`unreachable`: a passing store error is tolerated while two thirds of the
 * lease remain), or the timer itself fired too late because the process stalled (GC, a paused
 * VM) for longer than the lease (`stalled`) — then another holder may already have it.
 */
export class LeaseRenewal {
  readonly #ttlMs: number
  readonly #timer: NodeJS.Timeout
  #onLost: ((why: LeaseLoss, cause?: unknown) => void) | null
  /** performance.now() when the lease was last known to be ours for `ttlMs` more. */
  #confirmedAt = performance.now()

  constructor(
    ttlMs: number,
    renew: () => Promise<boolean>,
    onLost: (why: LeaseLoss, cause?: unknown) => void,
  ) {
    this.#ttlMs = ttlMs
    this.#onLost = onLost
    this.#timer = setInterval(
      () => {
        const asked = performance.now()
        if (asked - this.#confirmedAt >= ttlMs) return this.#lose('stalled')
        renew().then(
          (ok) => {
            if (ok) this.#confirmedAt = asked
            else this.#lose('taken')
          },
          (err: unknown) => {
            if (performance.now() - this.#confirmedAt >= (ttlMs * 2) / 3)
              this.#lose('unreachable', err)
          },
        )
      },
      Math.max(50, Math.floor(ttlMs / 3)),
    )
    this.#timer.unref()
  }

  /**
   * True while the lease was confirmed within three quarters of its lifetime and not lost: safe
   * to do one more step (write a batch) under it. Synchronous, for hot paths.
   */
  get fresh(): boolean {
    return this.#onLost !== null && performance.now() - this.#confirmedAt < this.#ttlMs * 0.75
  }

  #lose(why: LeaseLoss, cause?: unknown): void {
    const cb = this.#onLost
    this.stop()
    cb?.(why, cause)
  }

  /** Stops renewing (the lease is released or consumed); `onLost` is not called after this. */
  stop(): void {
    clearInterval(this.#timer)
    this.#onLost = null
  }
}

/** How a backend extends, checks and drops a lock it holds. */
export interface LockOps {
  /** false when the lock is not ours any more. */
  extend(key: string, token: string, ttlMs: number): Promise<boolean>
  /** Milliseconds the lock has left if it is ours, else a negative number. */
  remaining(key: string, token: string): Promise<number>
  /** Deletes the lock if it is ours; true when it was. */
  drop(key: string, token: string): Promise<boolean>
}

/**
 * A held lock, renewed by a LeaseRenewal. When the lease may be lost, `signal` aborts so the
 * holder stops its work; `check()` is the fence before an irreversible step.
 */
export class RenewingLock implements Lock {
  readonly key: string
  readonly token: string
  readonly #ops: LockOps
  readonly #ttlMs: number
  readonly #ctl = new AbortController()
  readonly #renewal: LeaseRenewal

  constructor(key: string, token: string, ttlMs: number, ops: LockOps) {
    this.key = key
    this.token = token
    this.#ops = ops
    this.#ttlMs = ttlMs
    this.#renewal = new LeaseRenewal(
      ttlMs,
      () => ops.extend(key, token, ttlMs),
      (why, cause) => this.#abort(cause ?? new Error(`lock ${key} was lost (${why})`)),
    )
  }

  get signal(): AbortSignal {
    return this.#ctl.signal
  }

  async check(): Promise<void> {
    if (this.#ctl.signal.aborted)
      throw new UploadError('ERR_LOCKED', `lock ${this.key} is no longer held`)
    const left = await this.#ops.remaining(this.key, this.token)
    if (left < this.#ttlMs / 3) {
      this.#renewal.stop()
      this.#abort(new Error(`lock ${this.key} is about to expire or was lost`))
      throw new UploadError('ERR_LOCKED', `lock ${this.key} is no longer held`)
    }
  }

  #abort(reason: unknown): void {
    if (!this.#ctl.signal.aborted) this.#ctl.abort(reason)
  }

  async release(): Promise<void> {
    this.#renewal.stop()
    this.#abort(new Error('released'))
    await this.#ops.drop(this.key, this.token)
  }
}
