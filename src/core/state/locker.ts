/**
 * The Locker both state backends share: waiting, waking and release requests are written once
 * here, over a `LockTable` (the atomic operations on one lock key, per backend) and the `Bus`.
 *
 * A waiter is woken by a message on the bus when the lock is released (or a holder asks its
 * waiters to look again), not by polling. Messages are fire-and-forget, and a holder that died
 * never releases, so each waiter also looks again on its own after `recheckMs` or when the
 * holder's lease runs out, whichever comes first: a lost message costs latency, never a hang.
 *
 * Release requests follow tusd (`pkg/handler`: `Lock(ctx, requestUnlock)`) and @tus/server
 * (`lock(signal, requestRelease)`): the request reaches the holder's callback; it is the
 * holder's choice to stop and release. Unlike them, asking is explicit here (`requestRelease`,
 * or `AcquireOptions.requestRelease`), because most of Ferry's locks guard work that must not be
 * cut short (a GC pass, a bulk-ingest run).
 */
import { randomUUID } from 'node:crypto'
import { UploadError } from '../errors.js'
import { RenewingLock, type LockOps } from './lock-handle.js'
import type { AcquireOptions, Bus, Lock, Locker, WaitOptions } from './types.js'

/** What a backend does atomically on one lock key. */
export interface LockTable extends LockOps {
  /** Sets `key` to `token` for `ttlMs` unless held: null when taken, else the holder's lease. */
  take(key: string, token: string, ttlMs: number): Promise<number | null>
  /** The current holder's lease left, ms, or null when nobody holds `key`. */
  heldFor(key: string): Promise<number | null>
}

/** The lock stayed held for the whole wait. */
export class LockTimeoutError extends UploadError {
  readonly key: string
  constructor(key: string, waitMs: number) {
    super('ERR_LOCKED', `lock ${key} is held by another owner (waited ${waitMs} ms)`)
    this.key = key
  }
}

/** The wait was stopped by its signal (or the locker closed). */
export class LockAbortedError extends UploadError {
  readonly key: string
  constructor(key: string, reason: unknown) {
    super('ERR_CLIENT_ABORTED', `the wait for lock ${key} was stopped`, { cause: reason })
    this.key = key
  }
}

/** Bus channel of lock events: `r <key>` wakes its waiters, `q <key>` asks its holder to let go. */
const CHANNEL = 'lock-events'
/** Default fallback: a waiter looks again this often even without a message, ms. */
export const DEFAULT_LOCK_RECHECK_MS = 1000
/** Past a holder's lease end, so its expiry is seen on the first look, ms. */
const EXPIRY_SLACK_MS = 5

/** One waiter's doorbell: a ring before it waits is kept, so no wake-up falls between two looks. */
class Doorbell {
  #rung = false
  #ring: (() => void) | null = null

  ring(): void {
    this.#rung = true
    this.#ring?.()
  }

  /** Resolves on a ring (or one since the last wait), after `ms`, or on abort. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#rung || signal.aborted) {
      this.#rung = false
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.#ring = null
        this.#rung = false
        resolve()
      }
      const timer = setTimeout(done, Math.max(0, Math.min(ms, 2 ** 31 - 1)))
      signal.addEventListener('abort', done, { once: true })
      this.#ring = done
    })
  }
}

export interface BusLockerOptions {
  /** A waiter looks again at least this often without a message, ms. */
  readonly recheckMs?: number
}

export class BusLocker implements Locker {
  readonly #table: LockTable
  readonly #bus: Bus
  readonly #recheckMs: number
  readonly #closed = new AbortController()
  /** Waiters on this instance, by key. */
  readonly #waiters = new Map<string, Set<Doorbell>>()
  /** Locks held on this instance that listen for release requests, by key. */
  readonly #listeners = new Map<string, Set<() => void>>()
  #subscribed: Promise<(() => Promise<void>) | null> | null = null

  constructor(table: LockTable, bus: Bus, options: BusLockerOptions = {}) {
    this.#table = table
    this.#bus = bus
    this.#recheckMs = options.recheckMs ?? DEFAULT_LOCK_RECHECK_MS
  }

  /** Subscribes once, on first need; a failed subscription leaves waiters to their re-checks. */
  #listen(): Promise<unknown> {
    this.#subscribed ??= this.#bus.subscribe(CHANNEL, (m) => this.#onMessage(m)).catch(() => null)
    return this.#subscribed
  }

  #onMessage(message: string): void {
    const key = message.slice(2)
    if (message.startsWith('r ')) for (const d of this.#waiters.get(key) ?? []) d.ring()
    else if (message.startsWith('q ')) {
      for (const cb of this.#listeners.get(key) ?? []) {
        try {
          cb()
        } catch {
          /* the holder's callback failing must not stop the others */
        }
      }
    }
  }

  #publish(kind: 'r' | 'q', key: string): Promise<void> {
    return this.#bus.publish(CHANNEL, `${kind} ${key}`)
  }

  async #take(key: string, o: AcquireOptions): Promise<{ lock: Lock } | { leaseMs: number }> {
    const token = randomUUID()
    const left = await this.#table.take(key, token, o.ttlMs)
    if (left !== null) return { leaseMs: left }
    const lock = new RenewingLock(key, token, o.ttlMs, {
      extend: (k, t, ms) => this.#table.extend(k, t, ms),
      remaining: (k, t) => this.#table.remaining(k, t),
      drop: async (k, t) => {
        const dropped = await this.#table.drop(k, t)
        // Not awaited: the release is done; a lost wake-up costs waiters one re-check.
        if (dropped) this.#publish('r', k).catch(() => {})
        return dropped
      },
    })
    const cb = o.onReleaseRequested
    if (cb !== undefined) {
      let set = this.#listeners.get(key)
      if (set === undefined) {
        set = new Set()
        this.#listeners.set(key, set)
      }
      const mine = () => cb()
      set.add(mine)
      lock.signal.addEventListener(
        'abort',
        () => {
          set.delete(mine)
          if (set.size === 0 && this.#listeners.get(key) === set) this.#listeners.delete(key)
        },
        { once: true },
      )
      // A request sent from now on must reach the holder.
      await this.#listen()
    }
    return { lock }
  }

  async tryAcquire(key: string, ttlMs: number): Promise<Lock | null> {
    const got = await this.#take(key, { ttlMs, waitMs: 0 })
    return 'lock' in got ? got.lock : null
  }

  acquire(key: string, o: AcquireOptions): Promise<Lock> {
    let asked = false
    return this.#wait(key, o, async () => {
      const got = await this.#take(key, o)
      if ('lock' in got) return { done: got.lock }
      if (o.requestRelease === true && !asked) {
        asked = true
        await this.requestRelease(key).catch(() => {})
      }
      return { leaseMs: got.leaseMs }
    })
  }

  waitUntilFree(key: string, o: WaitOptions): Promise<void> {
    return this.#wait(key, o, async () => {
      const left = await this.#table.heldFor(key)
      return left === null ? { done: undefined } : { leaseMs: left }
    })
  }

  /**
   * Looks (`look`) until it answers `done`, the wait runs out or is aborted. The first look needs
   * no subscription (the usual case: free) and answers even under an aborted signal; after it,
   * the waiter's doorbell is hung before every further look (and `recheck`), so a release or a
   * notification between a look and the wait still rings.
   */
  async #wait<T>(
    key: string,
    o: WaitOptions,
    look: () => Promise<{ done: T } | { leaseMs: number }>,
  ): Promise<T> {
    const until = performance.now() + o.waitMs
    let seen = await look()
    if ('done' in seen) return seen.done
    // Made only for a wait: the usual first look answers without it, and AbortSignal.any on the
    // locker's long-lived signal is not free (it registers with both signals).
    const closed = this.#closed.signal
    const signal = o.signal === undefined ? closed : AbortSignal.any([o.signal, closed])
    const aborted = () => new LockAbortedError(key, signal.reason)
    if (signal.aborted) throw aborted()
    if (o.waitMs <= 0) throw new LockTimeoutError(key, o.waitMs)
    await this.#listen()
    const bell = new Doorbell()
    let set = this.#waiters.get(key)
    if (set === undefined) {
      set = new Set()
      this.#waiters.set(key, set)
    }
    set.add(bell)
    try {
      for (;;) {
        if (signal.aborted) throw aborted()
        await o.recheck?.()
        seen = await look()
        if ('done' in seen) return seen.done
        const left = until - performance.now()
        if (left <= 0) throw new LockTimeoutError(key, o.waitMs)
        await bell.wait(Math.min(left, this.#recheckMs, seen.leaseMs + EXPIRY_SLACK_MS), signal)
      }
    } finally {
      set.delete(bell)
      if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key)
    }
  }

  requestRelease(key: string): Promise<void> {
    return this.#publish('q', key)
  }

  notifyWaiters(key: string): Promise<void> {
    return this.#publish('r', key)
  }

  async isHeld(key: string): Promise<boolean> {
    return (await this.#table.heldFor(key)) !== null
  }

  async close(): Promise<void> {
    this.#closed.abort(new Error('the locker was closed'))
    const off = await this.#subscribed
    this.#subscribed = null
    await off?.().catch(() => {})
    this.#listeners.clear()
  }
}
