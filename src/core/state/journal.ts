/**
 * An append-only journal of text lines, the persistence under the embedded state store.
 *
 * Writing. One file descriptor, opened once with O_APPEND, and one writer: appends that arrive
 * while a write (and its fdatasync) is in flight queue up and go out together as the next batch,
 * one write and at most one fdatasync per batch (group commit). Two durability levels:
 *
 * - `sync` mode, and any line appended with `{ durable: true }`: the append resolves only after
 *   fdatasync returned for a batch holding the line, so the line and every line before it are on
 *   stable storage and survive a power loss or kernel crash.
 * - `background` mode (lines not marked durable): the append resolves once the line is in the
 *   file, i.e. in the kernel's page cache. It survives the process dying (SIGKILL, OOM, a crash),
 *   not a power loss: the file is fdatasynced in the background at most `syncIntervalMs` after a
 *   write (200 ms), and at a clean close. After a power loss, lines acknowledged in the last
 *   interval may be missing or damaged; lines are whole records, so a lost line takes its key back
 *   to that key's previous line.
 *
 * A batch that fails (ENOSPC, EIO) is cut off the file again (ftruncate to the last whole batch)
 * and every append in it rejects, so what the callers were told matches the file. Appends marked
 * `freesSpace` (removals, which are followed by deleting temp files) may use a reserve file that
 * the journal keeps beside itself: when such a batch hits a full disk, the reserve is deleted and
 * the batch written again, so that cancels and deletes still work on a full disk and free space.
 *
 * Reading. At open, every whole line is handed to the caller in order. A last line without its
 * newline (a write cut short by a crash) is dropped and cut off the file, so new lines never merge
 * with it; a line the caller cannot parse (damage in the middle, e.g. zeros from a power loss) is
 * skipped and logged.
 *
 * Compaction rewrites the file as the live state: a snapshot taken at a moment when no batch is
 * being written → temp file → fdatasync → rename over the journal → fsync of the directory. It runs
 * in the writer's turn, so never concurrently with a batch: appends queued when it starts are
 * already part of the snapshot (the caller's state includes them) and are acknowledged by it, and
 * appends that arrive while it runs wait and go to the new file. If it fails (a full disk, an
 * unwritable temp path), it is logged, the temp file removed, and the old journal stays in use:
 * a failed compaction never loses a line and never throws past `compact()`.
 */
import {
  close,
  closeSync,
  constants,
  fdatasync,
  ftruncate,
  ftruncateSync,
  open,
  openSync,
  readSync,
  rename,
  statSync,
  unlink,
  unlinkSync,
  write,
  writeSync,
} from 'node:fs'
import { dirname } from 'node:path'
import { promisify } from 'node:util'
import { isNoSpace, isNotFound } from '../storage/errno.js'
import { fsyncDir } from '../storage/files.js'

const writeAsync = promisify(write)
const openAsync = promisify(open)
const closeAsync = promisify(close)
const fdatasyncAsync = promisify(fdatasync)
const ftruncateAsync = promisify(ftruncate)
const renameAsync = promisify(rename)
const unlinkAsync = promisify(unlink)

/**
 * `sync`: every batch is fdatasynced; `background`: durable lines at once, the rest within
 * `syncIntervalMs`; `none` (FERRY_FSYNC=none): never fdatasynced (compaction still replaces the
 * file atomically).
 */
export type JournalMode = 'sync' | 'background' | 'none'

/** What the journal logs through (pino's Logger fits). */
export interface JournalLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface AppendOptions {
  /** fdatasync before resolving, whatever the mode. */
  readonly durable?: boolean
  /** The line leads to freeing disk space (a removal): it may use the reserve on a full disk. */
  readonly freesSpace?: boolean
}

export interface JournalOptions {
  readonly mode: JournalMode
  readonly log?: JournalLog
  /** `background` mode: the longest a written line waits for its fdatasync, ms. Default 200. */
  readonly syncIntervalMs?: number
  /**
   * Bytes kept back in `<file>.reserve` for `freesSpace` lines on a full disk. Default 256 KiB; 0:
   * none.
   */
  readonly reserveBytes?: number
  /**
   * Called at open with each whole line (no newline), in order; false marks it damaged (skipped,
   * logged).
   */
  readonly replay: (line: string) => boolean
  /** How many lines the live state takes now (cheap): the rest of the file is dead. */
  readonly liveLines: () => number
  /**
   * The live state as lines, taken synchronously when a compaction starts (no batch in flight):
   * it must include every change whose line was appended, written or not.
   */
  readonly snapshot: () => Iterable<string>
}

export interface Journal {
  /** Appends one line (without its newline). Lines reach the file in the order of the calls. */
  append(line: string, opts?: AppendOptions): Promise<void>
  /** Rewrites the file as the live state; false when that failed and the old file stays in use. */
  compact(): Promise<boolean>
  /**
   * Compacts when at least `minDeadLines` lines of the file are dead and they are at least as many
   * as the live ones (or the file had damaged lines at open); else resolves false at once. The
   * journal also calls it by itself a second after the last of a run of `freesSpace` lines.
   */
  compactIfWorthwhile(minDeadLines?: number): Promise<boolean>
  /** Bytes of whole lines in the file. */
  readonly bytes: number
  /** Lines in the file, live or dead. */
  readonly lines: number
  /** Writes what is queued, fdatasyncs, closes the file. Appends after it reject. */
  close(): Promise<void>
}

const DEFAULT_SYNC_INTERVAL_MS = 200
const DEFAULT_RESERVE_BYTES = 256 * 1024
/** Without a sweep asking, compact once the file is this large and at least 3/4 of it is dead. */
const AUTO_COMPACT_BYTES = 8 * 1024 * 1024
/**
 * After lines that free space (removals: cancels, deletes, a sweep's expiries), compactIfWorthwhile
 * runs once they have stopped coming for this long, so a sweep's journal shrinks when it is done.
 */
const AFTER_REMOVALS_MS = 1000
/** A compaction writes its temp file in pieces of about this size, yielding between them. */
const COMPACT_WRITE_BYTES = 1024 * 1024
const READ_BYTES = 1024 * 1024

interface Pending {
  readonly text: string
  readonly durable: boolean
  readonly freesSpace: boolean
  readonly done: () => void
  readonly fail: (err: unknown) => void
}

const silent: JournalLog = { info() {}, warn() {}, error() {} }

async function writeAll(fd: number, buf: Buffer): Promise<void> {
  let off = 0
  while (off < buf.length) {
    const { bytesWritten } = await writeAsync(fd, buf, off, buf.length - off, null)
    if (bytesWritten <= 0)
      throw Object.assign(new Error('the journal write made no progress'), { code: 'EIO' })
    off += bytesWritten
  }
}

/**
 * Opens (creating) the journal at `file`, replays it through `opts.replay`, and returns it ready to
 * append.
 */
export function openJournal(file: string, opts: JournalOptions): Journal {
  return new LineJournal(file, opts)
}

class LineJournal implements Journal {
  readonly #file: string
  readonly #tmp: string
  readonly #reserve: string
  readonly #dir: string
  readonly #o: JournalOptions
  readonly #log: JournalLog
  readonly #reserveBytes: number
  #fd: number
  /** Bytes of whole, acknowledged lines: the file's length unless a failed write left more. */
  #size = 0
  #lines = 0
  /** The file may hold bytes past #size (a failed write whose cut-off failed too). */
  #tailDirty = false
  /** Lines were damaged at open: the next compaction is worth it whatever the counts. */
  #damaged = false
  #queue: Pending[] = []
  #pumping: Promise<void> | null = null
  #compactWaiters: ((ok: boolean) => void)[] = []
  /** Written since the last fdatasync. */
  #dirty = false
  #bgSync: Promise<void> | null = null
  #timer: NodeJS.Timeout | null = null
  #removalsTimer: NodeJS.Timeout | null = null
  #hasReserve = false
  #closed = false

  constructor(file: string, opts: JournalOptions) {
    this.#file = file
    this.#tmp = `${file}.tmp`
    this.#reserve = `${file}.reserve`
    this.#dir = dirname(file)
    this.#o = opts
    this.#log = opts.log ?? silent
    this.#reserveBytes = opts.reserveBytes ?? DEFAULT_RESERVE_BYTES
    this.#fd = openSync(file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o644)
    try {
      this.#replay()
    } catch (err) {
      closeSync(this.#fd)
      throw err
    }
    this.#makeReserveSync()
  }

  get bytes() {
    return this.#size
  }

  get lines() {
    return this.#lines
  }

  /** Reads the file in pieces (it may be larger than a string can hold) and hands on each line. */
  #replay(): void {
    const buf = Buffer.allocUnsafe(READ_BYTES)
    let carry: Buffer = Buffer.alloc(0)
    let pos = 0
    let lineNo = 0
    const damagedAt: number[] = []
    for (;;) {
      const n = readSync(this.#fd, buf, 0, buf.length, pos)
      if (n === 0) break
      pos += n
      let data = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n)
      let start = 0
      for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
        const line = data.toString('utf8', start, nl)
        this.#size += nl + 1 - start
        start = nl + 1
        if (line === '') continue
        lineNo++
        this.#lines++
        if (!this.#o.replay(line)) damagedAt.push(lineNo)
      }
      // The unfinished line is copied: `buf` is reused by the next read.
      data = data.subarray(start)
      carry = Buffer.from(data)
    }
    if (damagedAt.length > 0) {
      this.#damaged = true
      this.#log.warn(
        { file: this.#file, lines: damagedAt.slice(0, 20), count: damagedAt.length },
        'skipped damaged journal lines',
      )
    }
    if (carry.length > 0) {
      // A write cut short by a crash: never acknowledged as durable. Cut it off so that the next
      // line starts on a line of its own.
      this.#damaged = true
      this.#log.warn(
        { file: this.#file, bytes: carry.length },
        'dropped a journal line cut short by a crash',
      )
      try {
        ftruncateSync(this.#fd, this.#size)
      } catch (err) {
        this.#tailDirty = true
        this.#log.warn(
          { err, file: this.#file },
          'could not cut off the damaged journal tail; it is retried before the next write',
        )
      }
    }
  }

  /** Creates the reserve file when missing (best effort: a full disk just means no reserve yet). */
  #makeReserveSync(): void {
    if (this.#reserveBytes === 0) return
    try {
      if (statSync(this.#reserve).size >= this.#reserveBytes) {
        this.#hasReserve = true
        return
      }
    } catch {
      /* missing: made below */
    }
    let fd: number | null = null
    try {
      fd = openSync(this.#reserve, 'w', 0o644)
      // Written, not sparse: only written blocks are really taken from the filesystem.
      if (writeSync(fd, Buffer.alloc(this.#reserveBytes)) < this.#reserveBytes) {
        throw Object.assign(new Error('short write of the journal reserve'), { code: 'ENOSPC' })
      }
      this.#hasReserve = true
    } catch (err) {
      this.#hasReserve = false
      if (fd !== null) closeSync(fd)
      fd = null
      unlinkSyncQuiet(this.#reserve)
      this.#log.info(
        { err, file: this.#reserve },
        'no room for the journal reserve now; retried after compactions',
      )
    } finally {
      if (fd !== null) closeSync(fd)
    }
  }

  append(line: string, opts: AppendOptions = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`the journal ${this.#file} is closed`))
    return new Promise((done, fail) => {
      this.#queue.push({
        text: `${line}\n`,
        durable: opts.durable === true,
        freesSpace: opts.freesSpace === true,
        done,
        fail,
      })
      this.#kick()
    })
  }

  compact(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false)
    return new Promise((resolve) => {
      this.#compactWaiters.push(resolve)
      this.#kick()
    })
  }

  compactIfWorthwhile(minDeadLines = 64): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false)
    if (!this.#hasReserve && this.#reserveBytes > 0) this.#makeReserveSync()
    const live = this.#o.liveLines()
    const dead = this.#lines - live
    if (this.#damaged || (dead >= Math.max(1, minDeadLines) && dead >= live)) return this.compact()
    return Promise.resolve(false)
  }

  #kick(): void {
    this.#pumping ??= this.#pump()
      // #pump handles its own failures; this only keeps a bug in it from ending the process.
      .catch((err: unknown) => this.#log.error({ err, file: this.#file }, 'journal writer failed'))
      .finally(() => {
        this.#pumping = null
        // Work that arrived between the loop's last look and here.
        if (this.#queue.length > 0 || this.#compactWaiters.length > 0) this.#kick()
      })
  }

  /** The one writer: batches and compactions, one at a time, in order. Never rejects. */
  async #pump(): Promise<void> {
    for (;;) {
      if (this.#compactWaiters.length > 0) {
        await this.#compactNow()
        continue
      }
      if (this.#queue.length === 0) return
      const batch = this.#queue
      this.#queue = []
      await this.#writeBatch(batch)
      const dead = this.#lines - this.#o.liveLines()
      if (this.#size > AUTO_COMPACT_BYTES && dead >= 3 * (this.#lines - dead))
        this.#compactWaiters.push(() => {})
    }
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    const buf = Buffer.from(batch.map((p) => p.text).join(''))
    const mode = this.#o.mode
    const sync = mode === 'sync' || (mode === 'background' && batch.some((p) => p.durable))
    try {
      if (this.#tailDirty) await this.#cutTo(this.#size)
      try {
        await writeAll(this.#fd, buf)
      } catch (err) {
        const canFree = isNoSpace(err) && batch.some((p) => p.freesSpace)
        if (!canFree || !(await this.#releaseReserve())) throw err
        await this.#cutTo(this.#size) // the part written before the disk filled
        await writeAll(this.#fd, buf)
      }
      if (sync) {
        await fdatasyncAsync(this.#fd)
        this.#dirty = false
      }
    } catch (err) {
      // Nothing of a failed batch may stay: its callers are told it failed and undo its change.
      await this.#cutTo(this.#size).catch((cutErr: unknown) => {
        this.#tailDirty = true
        this.#log.error(
          { err: cutErr, file: this.#file },
          'could not cut a failed batch off the journal; retried before the next write',
        )
      })
      this.#log.warn({ err, file: this.#file, lines: batch.length }, 'journal append failed')
      for (const p of batch) p.fail(err)
      return
    }
    this.#size += buf.length
    this.#lines += batch.length
    if (!sync) this.#markDirty()
    if (batch.some((p) => p.freesSpace)) this.#afterRemovals()
    for (const p of batch) p.done()
  }

  #afterRemovals(): void {
    if (this.#closed) return
    if (this.#removalsTimer !== null) clearTimeout(this.#removalsTimer)
    this.#removalsTimer = setTimeout(() => {
      this.#removalsTimer = null
      void this.compactIfWorthwhile()
    }, AFTER_REMOVALS_MS)
    this.#removalsTimer.unref()
  }

  async #cutTo(size: number): Promise<void> {
    await ftruncateAsync(this.#fd, size)
    this.#tailDirty = false
  }

  /** Deletes the reserve to make room; true when there was one. */
  async #releaseReserve(): Promise<boolean> {
    if (!this.#hasReserve) return false
    this.#hasReserve = false
    try {
      await unlinkAsync(this.#reserve)
    } catch (err) {
      if (!isNotFound(err)) throw err
      return false
    }
    // Filesystems with a journal (ext4) hand freed blocks out again only after the deletion has
    // been committed; a directory fsync commits it.
    await fsyncDir(this.#dir).catch(() => {})
    this.#log.warn(
      { file: this.#reserve },
      'disk full: released the journal reserve to record a removal',
    )
    return true
  }

  #markDirty(): void {
    if (this.#o.mode === 'none') return
    this.#dirty = true
    if (this.#timer !== null || this.#closed) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#syncInBackground()
    }, this.#o.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS)
    this.#timer.unref()
  }

  #syncInBackground(): void {
    if (!this.#dirty || this.#closed) return
    if (this.#bgSync !== null) {
      this.#markDirty() // one sync at a time; this one comes after it
      return
    }
    this.#dirty = false
    // Concurrent with the writer on purpose: appends do not wait behind a background sync.
    this.#bgSync = fdatasyncAsync(this.#fd)
      .catch((err: unknown) => {
        this.#dirty = true
        this.#log.error({ err, file: this.#file }, 'background fdatasync of the journal failed')
      })
      .finally(() => {
        this.#bgSync = null
        if (this.#dirty) this.#markDirty()
      })
  }

  async #compactNow(): Promise<void> {
    const waiters = this.#compactWaiters
    this.#compactWaiters = []
    // A failed batch's callers undo their changes in the continuations of the rejected appends;
    // let them run so that the snapshot holds no change that is not going to be in the file.
    await new Promise((resolve) => setImmediate(resolve))
    // Appends queued now are part of the caller's state, so of the snapshot: the new file holds
    // them. If the compaction fails they are appended to the old file as usual.
    const folded = this.#queue
    this.#queue = []
    const ok = await this.#rewrite()
    if (ok) {
      for (const p of folded) p.done()
      if (!this.#hasReserve) await this.#makeReserve()
    } else {
      this.#queue = folded.concat(this.#queue)
    }
    for (const w of waiters) w(ok)
  }

  /** temp file → fdatasync → rename → directory fsync; false (logged) when the old file stays. */
  async #rewrite(): Promise<boolean> {
    let fd: number | null = null
    let size = 0
    let count = 0
    try {
      const lines = this.#o.snapshot()
      fd = await openAsync(
        this.#tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND,
        0o644,
      )
      let parts: string[] = []
      let partLen = 0
      for (const line of lines) {
        parts.push(line, '\n')
        partLen += line.length + 1
        count++
        if (partLen >= COMPACT_WRITE_BYTES) {
          const buf = Buffer.from(parts.join(''))
          await writeAll(fd, buf)
          size += buf.length
          parts = []
          partLen = 0
        }
      }
      if (parts.length > 0) {
        const buf = Buffer.from(parts.join(''))
        await writeAll(fd, buf)
        size += buf.length
      }
      await fdatasyncAsync(fd)
      await renameAsync(this.#tmp, this.#file)
    } catch (err) {
      if (fd !== null) await closeAsync(fd).catch(() => {})
      await unlinkAsync(this.#tmp).catch(() => {})
      this.#log.warn(
        { err, file: this.#file },
        'journal compaction failed; the old journal stays in use',
      )
      return false
    }
    // The new file is in place under the journal's name: from here on it is the journal.
    const old = this.#fd
    this.#fd = fd
    this.#size = size
    this.#lines = count
    this.#tailDirty = false
    this.#damaged = false
    this.#dirty = false
    await this.#bgSync // it may still be syncing the old file
    await closeAsync(old).catch(() => {})
    try {
      await fsyncDir(this.#dir)
    } catch (err) {
      this.#log.error(
        { err, dir: this.#dir },
        'fsync of the state directory failed: the compacted journal may not survive a power loss',
      )
    }
    return true
  }

  async #makeReserve(): Promise<void> {
    if (this.#reserveBytes === 0) return
    let fd: number | null = null
    try {
      fd = await openAsync(this.#reserve, 'w', 0o644)
      await writeAll(fd, Buffer.alloc(this.#reserveBytes))
      this.#hasReserve = true
    } catch {
      await unlinkAsync(this.#reserve).catch(() => {})
    } finally {
      if (fd !== null) await closeAsync(fd).catch(() => {})
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    while (this.#pumping !== null) await this.#pumping
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    if (this.#removalsTimer !== null) clearTimeout(this.#removalsTimer)
    this.#removalsTimer = null
    await this.#bgSync
    if (this.#dirty) {
      await fdatasyncAsync(this.#fd).catch((err: unknown) => {
        this.#log.error({ err, file: this.#file }, 'final fdatasync of the journal failed')
      })
    }
    closeSync(this.#fd)
  }
}

function unlinkSyncQuiet(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    /* nothing to remove */
  }
}
