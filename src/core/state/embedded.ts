/**
 * The embedded state backend, used when no Redis is configured: sessions in memory, every change
 * appended to one journal file, `<dataDir>/state/sessions.journal` (a JSON line per change: the
 * whole record, or null for a removal), before the change is acknowledged. Replaying the journal
 * (last line of a key wins) restores the sessions after a restart. How lines reach the disk (group
 * commit, fdatasync per mode, damaged lines, compaction) is journal.ts's; one Ferry process owns a
 * data directory at a time (an OS lock, dir-lock.ts); several instances need Redis.
 *
 * Why a journal and not a file per session: appending to one open file costs no directory
 * operation per chunk. A write-then-rename per change measured about 30 % slower uploads (1 GiB
 * in 8 MiB chunks) than the Redis store, its renames waiting behind the ext4 journal commits that
 * the data fsyncs force.
 */
import { EventEmitter } from 'node:events'
import { mkdirSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { lockDirectory } from './dir-lock.js'
import { openJournal, type Journal, type JournalLog, type JournalMode } from './journal.js'
import { RenewingLock } from './lock-handle.js'
import {
  abortCommitStep, beginCommitStep, renewCommitStep, completeStep, finishCommitStep, isExpired, openStep, parseRecord,
  releaseStep, removeIfExpiredStep, removeStep, renewStep, reserveStep, type Step,
} from './session-logic.js'
import type { Bus, Lock, Locker, SessionRecord, SessionStore, StateBackend } from './types.js'

export interface EmbeddedOptions {
  /**
   * `sync`: every change is fdatasynced before it is acknowledged (FERRY_FSYNC=chunk);
   * `background` (default): changes reach the page cache before they are acknowledged and the
   * disk within 200 ms; removals and commit records are always fdatasynced first (a temp file
   * is deleted after them).
   */
  readonly journalMode?: JournalMode
  readonly log?: JournalLog
}

export class EmbeddedSessionStore implements SessionStore {
  readonly #sessions = new Map<string, SessionRecord>()
  /** The last unfinished journal write of each key: readers wait for it. */
  readonly #writes = new Map<string, Promise<void>>()
  /** For each key with writes in flight: its record as the journal file holds it. */
  readonly #onDisk = new Map<string, SessionRecord | null>()
  readonly #journal: Journal

  constructor(stateDir: string, opts: EmbeddedOptions = {}) {
    this.#journal = openJournal(join(stateDir, 'sessions.journal'), {
      mode: opts.journalMode ?? 'background',
      ...(opts.log ? { log: opts.log } : {}),
      replay: (line) => {
        let entry: { k: string; r: SessionRecord | null }
        try {
          entry = JSON.parse(line) as { k: string; r: SessionRecord | null }
          if (entry.r === null) this.#sessions.delete(entry.k)
          else this.#sessions.set(entry.k, parseRecord(JSON.stringify(entry.r)))
        } catch {
          return false
        }
        return true
      },
      liveLines: () => this.#sessions.size,
      snapshot: () => {
        // Records are replaced, never changed, so this copy is the state of this moment.
        const entries = [...this.#sessions]
        return (function* () {
          for (const [k, r] of entries) yield JSON.stringify({ k, r })
        })()
      },
    })
    for (const [key, rec] of this.#sessions) {
      // Requests that held reservations, and any commit that ran, died with the previous
      // process (one process owns this directory), so a commit may start again at once.
      const reopened = rec.state === 'committing' ? { state: 'open' as const, commitOwner: null, commitLeaseUntilMs: 0 } : {}
      this.#sessions.set(key, { ...rec, ...reopened, reservations: [] })
    }
    // In the background, failures logged, never fatal: Ferry must start on a full disk.
    void this.#journal.compactIfWorthwhile(1)
  }

  /** Rewrites the journal as the live sessions when most of it is dead (call after sweeps). */
  compactIfWorthwhile(): Promise<boolean> {
    return this.#journal.compactIfWorthwhile()
  }

  async #apply<T>(key: string, step: (cur: SessionRecord | null) => Step<T>): Promise<T> {
    const { next, out } = step(this.#sessions.get(key) ?? null)
    if (next === 'same') {
      await this.#writes.get(key)?.catch(() => {}) // a reader must not overtake a write not yet on disk
      return out
    }
    if (!this.#writes.has(key)) this.#onDisk.set(key, this.#sessions.get(key) ?? null)
    if (next === null) this.#sessions.delete(key)
    else this.#sessions.set(key, next)
    // A removal or a commit's record is followed by deleting the temp file: it must be on disk
    // first, or a restart would bring back an open session whose bytes are gone. A removal may
    // use the journal's reserve on a full disk.
    const line = JSON.stringify({ k: key, r: next })
    const write = this.#journal.append(line, { durable: next === null || next.state === 'committed', freesSpace: next === null })
    this.#writes.set(key, write)
    const latest = () => this.#writes.get(key) === write
    try {
      await write
    } catch (err) {
      // Not in the file: memory goes back to what the file says (unless a later change is still
      // in flight, whose line carries the whole record and settles it) — except a change that
      // only drops reservations (a release on a full disk): a restart drops them anyway, and
      // keeping one would block its range for a whole lease.
      if (!latest()) throw err
      const disk = this.#onDisk.get(key) ?? null
      this.#writes.delete(key)
      this.#onDisk.delete(key)
      if (onlyDropsReservations(disk, next)) return out
      if (disk === null) this.#sessions.delete(key)
      else this.#sessions.set(key, disk)
      throw err
    }
    if (latest()) {
      this.#writes.delete(key)
      this.#onDisk.delete(key)
    } else {
      this.#onDisk.set(key, next)
    }
    return out
  }

  open(init: Parameters<SessionStore['open']>[0], nowMs: number) {
    return this.#apply(init.key, (c) => openStep(c, init, nowMs))
  }
  async get(key: string) {
    await this.#writes.get(key)?.catch(() => {})
    return this.#sessions.get(key) ?? null
  }
  reserve(key: string, range: Parameters<SessionStore['reserve']>[1], token: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => reserveStep(c, range, token, nowMs, leaseMs))
  }
  renew(key: string, token: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => renewStep(c, token, nowMs, leaseMs))
  }
  complete(key: string, token: string, nowMs: number) {
    return this.#apply(key, (c) => completeStep(c, token, nowMs))
  }
  release(key: string, token: string) {
    return this.#apply(key, (c) => releaseStep(c, token))
  }
  beginCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => beginCommitStep(c, owner, nowMs, leaseMs))
  }
  renewCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, (c) => renewCommitStep(c, owner, nowMs, leaseMs))
  }
  finishCommit(key: string, owner: string, result: string, nowMs: number) {
    return this.#apply(key, (c) => finishCommitStep(c, owner, result, nowMs))
  }
  abortCommit(key: string, owner: string) {
    return this.#apply(key, (c) => abortCommitStep(c, owner))
  }
  remove(key: string) {
    return this.#apply(key, (c) => removeStep(c))
  }
  async listByTarget(keyPrefix: string, target: string) {
    return [...this.#sessions.values()].filter((r) => r.key.startsWith(keyPrefix) && r.target === target)
  }
  async listExpired(nowMs: number, ttlMs: number, limit: number) {
    return [...this.#sessions.values()]
      .filter((r) => isExpired(r, nowMs, ttlMs))
      .sort((a, b) => a.updatedAtMs - b.updatedAtMs)
      .slice(0, limit)
      .map((r) => r.key)
  }
  removeIfExpired(key: string, nowMs: number, ttlMs: number) {
    return this.#apply(key, (c) => removeIfExpiredStep(c, nowMs, ttlMs))
  }
  async close() {
    await Promise.allSettled([...this.#writes.values()])
    await this.#journal.close()
  }
}

/** `next` is `before` less some of its reservations, nothing else changed. */
function onlyDropsReservations(before: SessionRecord | null, next: SessionRecord | null): boolean {
  if (before === null || next === null || next.reservations.length >= before.reservations.length) return false
  if (!next.reservations.every((r) => before.reservations.some((b) => b.token === r.token))) return false
  return JSON.stringify({ ...before, reservations: [] }) === JSON.stringify({ ...next, reservations: [] })
}

export class MemoryLocker implements Locker {
  readonly #held = new Map<string, { token: string; expiresAtMs: number }>()

  #live(key: string) {
    const h = this.#held.get(key)
    if (h !== undefined && h.expiresAtMs <= Date.now()) {
      this.#held.delete(key)
      return undefined
    }
    return h
  }

  async tryAcquire(key: string, ttlMs: number): Promise<Lock | null> {
    if (this.#live(key) !== undefined) return null
    const token = randomUUID()
    this.#held.set(key, { token, expiresAtMs: Date.now() + ttlMs })
    return new RenewingLock(key, token, ttlMs, {
      extend: async (k, t, ms) => {
        const h = this.#live(k)
        if (h === undefined || h.token !== t) return false
        h.expiresAtMs = Date.now() + ms
        return true
      },
      drop: async (k, t) => {
        if (this.#held.get(k)?.token === t) this.#held.delete(k)
      },
    })
  }

  async isHeld(key: string) {
    return this.#live(key) !== undefined
  }

  async close() {
    this.#held.clear()
  }
}

export class MemoryBus implements Bus {
  readonly #ee = new EventEmitter().setMaxListeners(0)

  async publish(channel: string, message: string) {
    // Delivered on a later tick, as Redis would, never inside the publisher's call stack.
    setImmediate(() => this.#ee.emit(channel, message))
  }

  async subscribe(channel: string, handler: (message: string) => void) {
    this.#ee.on(channel, handler)
    return async () => {
      this.#ee.off(channel, handler)
    }
  }

  async close() {
    this.#ee.removeAllListeners()
  }
}

export function createEmbeddedState(stateDir: string, opts: EmbeddedOptions = {}): StateBackend {
  mkdirSync(stateDir, { recursive: true })
  const lock = lockDirectory(stateDir, { onWarning: (msg, err) => opts.log?.warn({ err }, msg) })
  let sessions: EmbeddedSessionStore
  try {
    sessions = new EmbeddedSessionStore(stateDir, opts)
  } catch (err) {
    lock.release()
    throw err
  }
  const locker = new MemoryLocker()
  const bus = new MemoryBus()
  return {
    kind: 'embedded',
    sessions,
    locker,
    bus,
    async close() {
      await sessions.close()
      await locker.close()
      await bus.close()
      lock.release()
    },
  }
}
