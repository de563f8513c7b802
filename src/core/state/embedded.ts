/**
 * The embedded state backend, used when no Redis is configured: sessions in memory, every change
 * appended to one journal file, `<dataDir>/state/sessions.journal` (a JSON line per change: the
 * whole record, or null for a removal), before the change is acknowledged. Replaying the journal
 * (last line of a key wins) restores the sessions after a restart; a line cut short by a crash is
 * ignored. The journal is compacted (live records to a temp file, then rename) at start and when
 * it grows past a limit. One Ferry process owns a data directory at a time (a pid lock file);
 * several instances need Redis.
 *
 * Why a journal and not a file per session: appending to one open file costs no directory
 * operation per chunk. A write-then-rename per change measured about 30 % slower uploads (1 GiB
 * in 8 MiB chunks) than the Redis store, its renames waiting behind the ext4 journal commits that
 * the data fsyncs force.
 */
import { EventEmitter } from 'node:events'
import { mkdirSync, readFileSync, renameSync, writeFileSync, unlinkSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { RenewingLock } from './lock-handle.js'
import { UploadError } from '../errors.js'
import { hostBootId } from './boot.js'
import {
  abortCommitStep, beginCommitStep, cancelStep, checkCommitStep, chunkId, completeStep, finishCommitStep, isExpired, markDurableStep,
  openStep, parseRecord, releaseStep, removeIfExpiredStep, removeStep, renewCommitStep, renewStep, reserveStep, settled, type Step,
  type StepContext,
} from './session-logic.js'
import { DEFAULT_STATE_LIMITS, type Bus, type Lock, type Locker, type SessionRecord, type SessionStore, type StateBackend, type StateLimits } from './types.js'
import { appendFile } from 'node:fs/promises'

/** Compact once the journal is this large and holds at least 4× the bytes of the live records. */
const COMPACT_MIN_BYTES = 8 * 1024 * 1024

/** One journal line: the whole (small) record, plus the chunk it added or, compacted, all chunks. */
interface JournalEntry {
  readonly k: string
  readonly r: SessionRecord | null
  readonly c?: string
  readonly cs?: readonly string[]
}

interface Pending {
  readonly line: string
  readonly done: () => void
  readonly fail: (err: unknown) => void
}

export class EmbeddedSessionStore implements SessionStore {
  readonly #file: string
  readonly #sessions = new Map<string, SessionRecord>()
  /** The received chunks of each session (`start-end`): only an exact one may be re-sent. */
  readonly #chunks = new Map<string, Set<string>>()
  readonly #self = randomUUID()
  get instanceId(): string {
    return this.#self
  }
  readonly #limits: StateLimits
  /** Fencing tokens: only grow, across restarts too (seeded from the clock). */
  #fence = Date.now()
  /** The last unfinished journal write of each key: readers wait for it. */
  readonly #writes = new Map<string, Promise<void>>()
  #queue: Pending[] = []
  #pumping: Promise<void> | null = null
  #bytes = 0

  readonly #boot: string
  /** One process owns the directory: every other holder named in a record is a process that died. */
  readonly #dead = { has: (id: string) => id !== this.#self }

  constructor(stateDir: string, limits: StateLimits = DEFAULT_STATE_LIMITS, bootId: string = hostBootId()) {
    this.#limits = limits
    this.#boot = bootId
    this.#file = join(stateDir, 'sessions.journal')
    let text = ''
    try {
      text = readFileSync(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (line === '') continue
      let entry: JournalEntry
      try {
        entry = JSON.parse(line) as JournalEntry
      } catch {
        continue // the last append of a crashed process, cut short
      }
      this.#replay(entry)
    }
    for (const [key, rec] of this.#sessions) {
      // Requests that held reservations, and any commit that ran, died with the previous
      // process (one process owns this directory), so a commit may start again at once.
      const reopened = rec.state === 'committing' ? { state: 'open' as const, commitOwner: null, commitHolder: null, commitLeaseUntilMs: 0 } : {}
      this.#sessions.set(key, { ...rec, ...reopened, reservations: [] })
      this.#fence = Math.max(this.#fence, rec.commitFence)
    }
    this.#compactSync()
  }

  /** Rewrites the journal as one line per live record (temp file, then rename). */
  #compactSync(): void {
    const tmp = `${this.#file}.tmp`
    const text = [...this.#sessions].map(([k, r]) => `${JSON.stringify({ k, r, cs: [...(this.#chunks.get(k) ?? [])] })}\n`).join('')
    writeFileSync(tmp, text)
    renameSync(tmp, this.#file)
    this.#bytes = Buffer.byteLength(text)
  }

  /** Appends one line; resolves once it is in the file. Lines go out in order, batched. */
  #append(line: string): Promise<void> {
    return new Promise((done, fail) => {
      this.#queue.push({ line, done, fail })
      this.#pumping ??= this.#pump().finally(() => {
        this.#pumping = null
      })
    })
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue
      this.#queue = []
      const text = batch.map((p) => p.line).join('')
      try {
        await appendFile(this.#file, text)
        this.#bytes += Buffer.byteLength(text)
        for (const p of batch) p.done()
      } catch (err) {
        for (const p of batch) p.fail(err)
      }
      if (this.#bytes > COMPACT_MIN_BYTES) {
        const live = [...this.#sessions].reduce((n, [k, r]) => n + k.length + JSON.stringify(r).length + 10, 0)
        // Between batches nothing else writes the file, and memory holds every acknowledged change.
        if (this.#bytes > 4 * live) this.#compactSync()
      }
    }
  }

  #replay(e: JournalEntry): void {
    if (e.r === null) {
      this.#sessions.delete(e.k)
      this.#chunks.delete(e.k)
      return
    }
    this.#sessions.set(e.k, parseRecord(JSON.stringify(e.r)))
    const add = e.cs ?? (e.c !== undefined ? [e.c] : [])
    if (add.length > 0) {
      let set = this.#chunks.get(e.k)
      if (set === undefined) this.#chunks.set(e.k, (set = new Set()))
      for (const c of add) set.add(c)
    }
  }

  #ctx(nowMs: number | null): StepContext {
    return { now: nowMs ?? Date.now(), dead: this.#dead, self: this.#self, boot: this.#boot, limits: this.#limits }
  }

  async #apply<T>(key: string, nowMs: number | null, step: (cur: SessionRecord | null, c: StepContext) => Step<T>): Promise<T> {
    const cur = this.#sessions.get(key) ?? null
    const c = this.#ctx(nowMs)
    const { next, out, chunk } = settled(cur, c, (x) => step(x, c))
    if (next === 'same') {
      await this.#writes.get(key) // a reader must not overtake a write not yet on disk
      return out
    }
    if (cur === null && this.#limits.maxSessions > 0 && this.#sessions.size >= this.#limits.maxSessions) {
      throw new UploadError('ERR_UNAVAILABLE', `too many upload sessions are open (at most ${this.#limits.maxSessions}); try again later`)
    }
    const entry: JournalEntry = chunk === undefined ? { k: key, r: next } : { k: key, r: next, c: chunk }
    this.#replay(entry)
    const write = this.#append(`${JSON.stringify(entry)}\n`)
    this.#writes.set(key, write)
    try {
      await write
    } finally {
      if (this.#writes.get(key) === write) this.#writes.delete(key)
    }
    return out
  }

  open(init: Parameters<SessionStore['open']>[0], nowMs: number) {
    return this.#apply(init.key, nowMs, (cur, c) => openStep(cur, init, c))
  }
  async get(key: string) {
    await this.#writes.get(key)
    return this.#sessions.get(key) ?? null
  }
  reserve(key: string, range: { start: number; end: number }, token: string, nowMs: number, leaseMs: number, incarnation?: string) {
    const isChunk = this.#chunks.get(key)?.has(chunkId(range)) ?? false
    return this.#apply(key, nowMs, (cur, c) => reserveStep(cur, range, token, leaseMs, incarnation, isChunk, c))
  }
  renew(key: string, token: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, nowMs, (cur, c) => renewStep(cur, token, leaseMs, c))
  }
  complete(key: string, token: string, nowMs: number, durable = false) {
    return this.#apply(key, nowMs, (cur, c) => completeStep(cur, token, durable, c))
  }
  markDurable(key: string, incarnation: string, ranges: readonly { start: number; end: number }[], nowMs: number) {
    return this.#apply(key, nowMs, (cur, c) => markDurableStep(cur, incarnation, ranges, c))
  }
  release(key: string, token: string) {
    return this.#apply(key, null, (cur) => releaseStep(cur, token))
  }
  beginCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    const fence = ++this.#fence
    return this.#apply(key, nowMs, (cur, c) => beginCommitStep(cur, owner, leaseMs, fence, c))
  }
  renewCommit(key: string, owner: string, nowMs: number, leaseMs: number) {
    return this.#apply(key, nowMs, (cur, c) => renewCommitStep(cur, owner, leaseMs, c))
  }
  checkCommit(key: string, owner: string, nowMs: number, marginMs: number) {
    return this.#apply(key, nowMs, (cur, c) => checkCommitStep(cur, owner, marginMs, c))
  }
  finishCommit(key: string, owner: string, result: string, nowMs: number) {
    return this.#apply(key, nowMs, (cur, c) => finishCommitStep(cur, owner, result, c))
  }
  abortCommit(key: string, owner: string) {
    return this.#apply(key, null, (cur) => abortCommitStep(cur, owner))
  }
  cancel(key: string, nowMs: number) {
    return this.#apply(key, nowMs, (cur, c) => cancelStep(cur, c))
  }
  remove(key: string) {
    return this.#apply(key, null, (cur) => removeStep(cur))
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
    return this.#apply(key, nowMs, (cur, c) => removeIfExpiredStep(cur, ttlMs, c))
  }
  async close() {
    await Promise.all([...this.#writes.values()])
    await this.#pumping
  }
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
      remaining: async (k, t) => {
        const h = this.#live(k)
        return h === undefined || h.token !== t ? -1 : h.expiresAtMs - Date.now()
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Takes `<stateDir>/owner.pid` for this process; refuses while another live process holds it. */
function claimDirectory(stateDir: string): () => void {
  const file = join(stateDir, 'owner.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' })
      return () => {
        try {
          if (readFileSync(file, 'utf8') === String(process.pid)) unlinkSync(file)
        } catch {
          /* already gone */
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(file, 'utf8'))
      if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) {
        throw new Error(
          `the embedded store in ${stateDir} is in use by process ${pid}; several instances need REDIS_URL`,
        )
      }
      unlinkSync(file) // left by a process that died
    }
  }
  throw new Error(`cannot claim ${file}`)
}

export interface EmbeddedStateOptions {
  readonly limits?: StateLimits
  /** This host's boot id (tests simulate a reboot with another). */
  readonly bootId?: string
}

export function createEmbeddedState(stateDir: string, opts: EmbeddedStateOptions = {}): StateBackend {
  mkdirSync(stateDir, { recursive: true })
  const unclaim = claimDirectory(stateDir)
  const sessions = new EmbeddedSessionStore(stateDir, opts.limits ?? DEFAULT_STATE_LIMITS, opts.bootId)
  const locker = new MemoryLocker()
  const bus = new MemoryBus()
  return {
    kind: 'embedded',
    instanceId: sessions.instanceId,
    sessions,
    locker,
    bus,
    async close() {
      await sessions.close()
      await locker.close()
      await bus.close()
      unclaim()
    },
  }
}
