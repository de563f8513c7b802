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
import {
  abortCommitStep, beginCommitStep, renewCommitStep, completeStep, finishCommitStep, isExpired, openStep, parseRecord,
  releaseStep, removeIfExpiredStep, removeStep, renewStep, reserveStep, type Step,
} from './session-logic.js'
import type { Bus, Lock, Locker, SessionRecord, SessionStore, StateBackend } from './types.js'
import { appendFile } from 'node:fs/promises'

/** Compact once the journal is this large and holds at least 4× the bytes of the live records. */
const COMPACT_MIN_BYTES = 8 * 1024 * 1024

interface Pending {
  readonly line: string
  readonly done: () => void
  readonly fail: (err: unknown) => void
}

export class EmbeddedSessionStore implements SessionStore {
  readonly #file: string
  readonly #sessions = new Map<string, SessionRecord>()
  /** The last unfinished journal write of each key: readers wait for it. */
  readonly #writes = new Map<string, Promise<void>>()
  #queue: Pending[] = []
  #pumping: Promise<void> | null = null
  #bytes = 0

  constructor(stateDir: string) {
    this.#file = join(stateDir, 'sessions.journal')
    let text = ''
    try {
      text = readFileSync(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (line === '') continue
      let entry: { k: string; r: SessionRecord | null }
      try {
        entry = JSON.parse(line) as { k: string; r: SessionRecord | null }
      } catch {
        continue // the last append of a crashed process, cut short
      }
      if (entry.r === null) this.#sessions.delete(entry.k)
      else this.#sessions.set(entry.k, parseRecord(JSON.stringify(entry.r)))
    }
    for (const [key, rec] of this.#sessions) {
      // Requests that held reservations, and any commit that ran, died with the previous
      // process (one process owns this directory), so a commit may start again at once.
      const reopened = rec.state === 'committing' ? { state: 'open' as const, commitOwner: null, commitLeaseUntilMs: 0 } : {}
      this.#sessions.set(key, { ...rec, ...reopened, reservations: [] })
    }
    this.#compactSync()
  }

  /** Rewrites the journal as one line per live record (temp file, then rename). */
  #compactSync(): void {
    const tmp = `${this.#file}.tmp`
    const text = [...this.#sessions].map(([k, r]) => `${JSON.stringify({ k, r })}\n`).join('')
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

  async #apply<T>(key: string, step: (cur: SessionRecord | null) => Step<T>): Promise<T> {
    const { next, out } = step(this.#sessions.get(key) ?? null)
    if (next === 'same') {
      await this.#writes.get(key) // a reader must not overtake a write not yet on disk
      return out
    }
    if (next === null) this.#sessions.delete(key)
    else this.#sessions.set(key, next)
    const write = this.#append(`${JSON.stringify({ k: key, r: next })}\n`)
    this.#writes.set(key, write)
    try {
      await write
    } finally {
      if (this.#writes.get(key) === write) this.#writes.delete(key)
    }
    return out
  }

  open(init: Parameters<SessionStore['open']>[0], nowMs: number) {
    return this.#apply(init.key, (c) => openStep(c, init, nowMs))
  }
  async get(key: string) {
    await this.#writes.get(key)
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

export function createEmbeddedState(stateDir: string): StateBackend {
  mkdirSync(stateDir, { recursive: true })
  const unclaim = claimDirectory(stateDir)
  const sessions = new EmbeddedSessionStore(stateDir)
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
      unclaim()
    },
  }
}
