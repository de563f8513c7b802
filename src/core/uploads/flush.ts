/**
 * Background flushing of temp files and the owed ranges it settles (FERRY_FSYNC=commit): chunks
 * written without an fdatasync are owed by this instance in the session record until a flush of
 * their file; after each flush, the ranges completed before it began are marked durable. With
 * FERRY_FSYNC=none (DiskSync.off) nothing is flushed: the ranges stay owed until the commit, so
 * after a reboot of this host the client is asked for them again.
 */
import { addRange, type ByteRange } from '../state/range-set.js'
import type { SessionStore } from '../state/types.js'
import type { DiskSync } from '../storage/disk-sync.js'
import { BackgroundFlusher } from '../storage/files.js'

export class OwedFlusher {
  readonly #sessions: SessionStore
  /**
   * Flushes temp files as bodies arrive; after each flush of a session's file, the ranges this
   * instance completed before the flush began are marked durable in the store (they are no longer
   * owed: a power cut cannot lose them).
   */
  readonly #flusher = new BackgroundFlusher(64 * 1024 * 1024, (path) => this.#flushAndSettle(path))
  /** Ranges this instance completed in a session's temp file and has not flushed yet, by path. */
  readonly #unflushed = new Map<string, { key: string; incarnation: string; ranges: ByteRange[] }>()

  readonly #sync: DiskSync

  constructor(sessions: SessionStore, sync: DiskSync) {
    this.#sessions = sessions
    this.#sync = sync
  }

  async #flushAndSettle(path: string): Promise<void> {
    const owed = this.#unflushed.get(path)
    this.#unflushed.delete(path)
    await this.#sync.file(path)
    if (owed === undefined) return
    await this.#sessions.markDurable(owed.key, owed.incarnation, owed.ranges, Date.now())
  }

  /** Bytes written to `path` that no range is owed for (a whole-file stream). */
  wrote(path: string, bytes: number): void {
    if (!this.#sync.enabled) return
    this.#flusher.wrote(path, bytes)
  }

  /**
   * A completed, not yet flushed range of a session's file. Noted before the flusher may run, so
   * the flush that follows covers it.
   */
  owe(path: string, key: string, incarnation: string, range: ByteRange): void {
    if (!this.#sync.enabled) return
    let u = this.#unflushed.get(path)
    if (u === undefined || u.incarnation !== incarnation) {
      u = { key, incarnation, ranges: [] }
      this.#unflushed.set(path, u)
    }
    u.ranges = addRange(u.ranges, range)
    this.#flusher.wrote(path, range.end - range.start + 1)
  }

  /** Waits for a running flush of `path` and forgets it. */
  settle(path: string): Promise<void> {
    return this.#flusher.settle(path)
  }

  /** The file was committed: what it owed is settled by the commit's own fsync. */
  committed(path: string): void {
    this.#unflushed.delete(path)
  }

  /** The file is going away (cancel, expiry). */
  forget(path: string): void {
    this.#flusher.forget(path)
    this.#unflushed.delete(path)
  }
}
