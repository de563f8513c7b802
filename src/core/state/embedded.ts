/**
 * The embedded state backend, used when no Redis is configured: sessions in memory, every change
 * appended to one journal file, `<dataDir>/state/sessions.journal`, before the change is
 * acknowledged. A line is the whole record (or null for a removal), or, for a received chunk,
 * only that change (`CompleteDelta`): the bytes written per chunk do not grow with the session.
 * Reservations are never journaled: they die with the process anyway (one process owns the
 * directory), so a reservation, its renewals and its release cost no write. Replaying the journal
 * restores the sessions after a restart. How lines reach the disk (group
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
import { UploadError } from '../errors.js'
import { hostBootId } from './boot.js'
import { lockDirectory } from './dir-lock.js'
import { openJournal, type Journal, type JournalLog, type JournalMode } from './journal.js'
import { BusLocker, type LockTable } from './locker.js'
import {
  applyComplete,
  chunkId,
  isExpired,
  parseRecord,
  settled,
  type CompleteDelta,
  type StepContext,
} from './session-logic.js'
import { StepSessionStore, type StepApplier, type StepFn } from './session-store.js'
import {
  DEFAULT_STATE_LIMITS,
  type Bus,
  type SessionRecord,
  type StateBackend,
  type StateLimits,
} from './types.js'

/** One journal line: a whole record (with its chunks when compacted), or one received chunk. */
type JournalEntry =
  | {
      readonly k: string
      readonly r: SessionRecord | null
      readonly c?: string
      readonly cs?: readonly string[]
    }
  | { readonly k: string; readonly d: CompleteDelta }

export interface EmbeddedOptions {
  /**
   * `sync`: every change is fdatasynced before it is acknowledged (FERRY_FSYNC=chunk);
   * `background` (default): changes reach the page cache before they are acknowledged and the
   * disk within 200 ms; removals and commit records are always fdatasynced first (a temp file
   * is deleted after them).
   */
  readonly journalMode?: JournalMode
  readonly log?: JournalLog
  readonly limits?: StateLimits
  /** This host's boot id (tests simulate a reboot with another). */
  readonly bootId?: string
  /** A lock waiter looks again at least this often without a wake-up, ms. */
  readonly lockRecheckMs?: number
}

/** Sessions in memory, each change journaled: the embedded backend's half of the SessionStore. */
class EmbeddedSteps implements StepApplier {
  readonly #sessions = new Map<string, SessionRecord>()
  /** The last unfinished journal write of each key: readers wait for it. */
  readonly #writes = new Map<string, Promise<void>>()
  /** For each key with writes in flight: its record as the journal file holds it. */
  readonly #onDisk = new Map<string, SessionRecord | null>()
  /** The received chunks of each session (`start-end`): only an exact one may be re-sent. */
  readonly #chunks = new Map<string, Set<string>>()
  /** Keys whose last line failed: their next line is a whole record, never a delta. */
  readonly #wholeNext = new Set<string>()
  readonly #journal: Journal
  readonly #self = randomUUID()
  readonly #boot: string
  readonly #limits: StateLimits
  /**
   * One process owns the directory: every other holder named in a record is a process that died.
   */
  readonly #dead = { has: (id: string) => id !== this.#self }
  /** Fencing tokens: only grow, across restarts too (seeded from the clock and the records). */
  #fence = Date.now()

  constructor(stateDir: string, opts: EmbeddedOptions = {}) {
    this.#limits = opts.limits ?? DEFAULT_STATE_LIMITS
    this.#boot = opts.bootId ?? hostBootId()
    this.#journal = openJournal(join(stateDir, 'sessions.journal'), {
      mode: opts.journalMode ?? 'background',
      ...(opts.log ? { log: opts.log } : {}),
      replay: (line) => {
        try {
          this.#replay(JSON.parse(line) as JournalEntry)
        } catch {
          return false
        }
        return true
      },
      liveLines: () => this.#sessions.size,
      snapshot: () => {
        // Records are replaced, never changed, so this copy is the state of this moment.
        const entries = [...this.#sessions].map(([k, r]) => ({
          k,
          r,
          cs: [...(this.#chunks.get(k) ?? [])],
        }))
        return (function* () {
          for (const e of entries) yield JSON.stringify(e)
        })()
      },
    })
    for (const [key, rec] of this.#sessions) {
      // Requests that held reservations, and any commit that ran, died with the previous
      // process (one process owns this directory), so a commit may start again at once.
      const reopened =
        rec.state === 'committing'
          ? { state: 'open' as const, commitOwner: null, commitHolder: null, commitLeaseUntilMs: 0 }
          : {}
      this.#sessions.set(key, { ...rec, ...reopened, reservations: [] })
      this.#fence = Math.max(this.#fence, rec.commitFence)
    }
    // In the background, failures logged, never fatal: Ferry must start on a full disk.
    void this.#journal.compactIfWorthwhile(1)
  }

  compactIfWorthwhile(): Promise<boolean> {
    return this.#journal.compactIfWorthwhile()
  }

  get instanceId(): string {
    return this.#self
  }

  #replay(e: JournalEntry): void {
    if ('d' in e) {
      const cur = this.#sessions.get(e.k)
      if (cur === undefined) return
      this.#sessions.set(e.k, applyComplete(cur, e.d))
      if (e.d.end >= e.d.start) this.#addChunks(e.k, [chunkId(e.d)])
      return
    }
    if (e.r === null) {
      this.#sessions.delete(e.k)
      this.#chunks.delete(e.k)
      return
    }
    this.#sessions.set(e.k, parseRecord(JSON.stringify(e.r)))
    this.#addChunks(e.k, e.cs ?? (e.c !== undefined ? [e.c] : []))
  }

  #addChunks(key: string, ids: readonly string[]): void {
    if (ids.length === 0) return
    let set = this.#chunks.get(key)
    if (set === undefined) {
      set = new Set()
      this.#chunks.set(key, set)
    }
    for (const c of ids) set.add(c)
  }

  #ctx(nowMs: number | null): StepContext {
    return {
      now: nowMs ?? Date.now(),
      dead: this.#dead,
      self: this.#self,
      boot: this.#boot,
      limits: this.#limits,
    }
  }

  async apply<T>(key: string, nowMs: number | null, step: StepFn<T>, member?: string): Promise<T> {
    const cur = this.#sessions.get(key) ?? null
    const c = this.#ctx(nowMs)
    const isChunk = member !== undefined && (this.#chunks.get(key)?.has(member) ?? false)
    let settledRec: SessionRecord | null = cur
    const { next, out, chunk, complete } = settled(cur, c, (x) => {
      settledRec = x
      return step(x, c, isChunk)
    })
    if (next === 'same') {
      await this.#writes.get(key)?.catch(() => {}) // a reader must not overtake a write not yet on disk
      return out
    }
    if (
      cur === null &&
      next !== null &&
      this.#limits.maxSessions > 0 &&
      this.#sessions.size >= this.#limits.maxSessions
    ) {
      throw new UploadError(
        'ERR_UNAVAILABLE',
        `too many upload sessions are open (at most ${this.#limits.maxSessions}); try again later`,
      )
    }
    // Reservations die with the process: a change of them alone is kept in memory only.
    if (cur !== null && next !== null && sameButReservations(cur, next)) {
      this.#sessions.set(key, next)
      await this.#writes.get(key)?.catch(() => {})
      return out
    }
    if (!this.#writes.has(key)) this.#onDisk.set(key, cur)
    if (next === null) {
      this.#sessions.delete(key)
      this.#chunks.delete(key)
    } else this.#sessions.set(key, next)
    if (chunk !== undefined) this.#addChunks(key, [chunk])
    // A received chunk is written as its delta when the record on disk is the one it applies to.
    const delta = complete !== undefined && settledRec === cur && !this.#wholeNext.has(key)
    const entry: JournalEntry = delta
      ? { k: key, d: complete }
      : chunk === undefined
        ? { k: key, r: next }
        : { k: key, r: next, c: chunk }
    // A removal or a commit's record is followed by deleting the temp file: it must be on disk
    // first, or a restart would bring back an open session whose bytes are gone. A removal may
    // use the journal's reserve on a full disk.
    const line = JSON.stringify(entry)
    const write = this.#journal.append(line, {
      durable: next === null || next.state === 'committed',
      freesSpace: next === null,
    })
    this.#wholeNext.delete(key)
    this.#writes.set(key, write)
    const latest = () => this.#writes.get(key) === write
    try {
      await write
    } catch (err) {
      // Not in the file: memory goes back to what the file says (unless a later change is still
      // in flight and settles it). A release on a full disk never gets here: reservations are
      // not journaled, so it always frees its range at once.
      this.#wholeNext.add(key)
      if (!latest()) throw err
      const disk = this.#onDisk.get(key) ?? null
      this.#writes.delete(key)
      this.#onDisk.delete(key)
      if (disk === null) this.#sessions.delete(key)
      else this.#sessions.set(key, disk)
      if (chunk !== undefined) this.#chunks.get(key)?.delete(chunk)
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

  async read(key: string) {
    await this.#writes.get(key)?.catch(() => {})
    return this.#sessions.get(key) ?? null
  }
  nextFence() {
    return ++this.#fence
  }
  async listByTarget(keyPrefix: string, target: string) {
    return [...this.#sessions.values()].filter(
      (r) => r.key.startsWith(keyPrefix) && r.target === target,
    )
  }
  async count() {
    return this.#sessions.size
  }
  async listExpired(nowMs: number, ttlMs: number, limit: number) {
    return [...this.#sessions.values()]
      .filter((r) => isExpired(r, nowMs, ttlMs))
      .sort((a, b) => a.updatedAtMs - b.updatedAtMs)
      .slice(0, limit)
      .map((r) => r.key)
  }
  async close() {
    await Promise.allSettled([...this.#writes.values()])
    await this.#journal.close()
  }
}

/**
 * Records equal in everything but their reservations (records are never mutated: compare fields).
 */
function sameButReservations(a: SessionRecord, b: SessionRecord): boolean {
  for (const k of Object.keys(b) as (keyof SessionRecord)[]) {
    if (k !== 'reservations' && a[k] !== b[k]) return false
  }
  return true
}

/**
 * The journaled SessionStore of one process; `compactIfWorthwhile` and `instanceId` are the
 * embedded backend's own.
 */
export class EmbeddedSessionStore extends StepSessionStore {
  readonly #steps: EmbeddedSteps

  constructor(stateDir: string, opts: EmbeddedOptions = {}) {
    const steps = new EmbeddedSteps(stateDir, opts)
    super(steps)
    this.#steps = steps
  }

  /** Rewrites the journal as the live sessions when most of it is dead (call after sweeps). */
  compactIfWorthwhile(): Promise<boolean> {
    return this.#steps.compactIfWorthwhile()
  }

  get instanceId(): string {
    return this.#steps.instanceId
  }
}

/** Locks of this process: one process owns the data directory, so they need no other store. */
export class MemoryLockTable implements LockTable {
  readonly #held = new Map<string, { token: string; expiresAtMs: number }>()

  #live(key: string) {
    const h = this.#held.get(key)
    if (h !== undefined && h.expiresAtMs <= Date.now()) {
      this.#held.delete(key)
      return undefined
    }
    return h
  }

  async take(key: string, token: string, ttlMs: number) {
    const h = this.#live(key)
    if (h !== undefined) return h.expiresAtMs - Date.now()
    this.#held.set(key, { token, expiresAtMs: Date.now() + ttlMs })
    return null
  }

  async heldFor(key: string) {
    const h = this.#live(key)
    return h === undefined ? null : h.expiresAtMs - Date.now()
  }

  async extend(key: string, token: string, ttlMs: number) {
    const h = this.#live(key)
    if (h === undefined || h.token !== token) return false
    h.expiresAtMs = Date.now() + ttlMs
    return true
  }

  async remaining(key: string, token: string) {
    const h = this.#live(key)
    return h === undefined || h.token !== token ? -1 : h.expiresAtMs - Date.now()
  }

  async drop(key: string, token: string) {
    if (this.#held.get(key)?.token !== token) return false
    this.#held.delete(key)
    return true
  }

  clear(): void {
    this.#held.clear()
  }
}

/** The embedded Locker: in-process locks, waiters woken over the in-process bus. */
export class MemoryLocker extends BusLocker {
  readonly #table: MemoryLockTable

  constructor(bus: Bus = new MemoryBus(), options: { recheckMs?: number } = {}) {
    const table = new MemoryLockTable()
    super(table, bus, options)
    this.#table = table
  }

  override async close() {
    await super.close()
    this.#table.clear()
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
  const bus = new MemoryBus()
  const recheck = opts.lockRecheckMs === undefined ? {} : { recheckMs: opts.lockRecheckMs }
  const locker = new MemoryLocker(bus, recheck)
  return {
    peers: null,
    describe: () => `embedded journal in ${stateDir}`,
    instanceId: sessions.instanceId,
    // One process owns the directory: any other instance is a process that ended.
    isAlive: async (id) => id === sessions.instanceId,
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
