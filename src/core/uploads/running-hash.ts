/**
 * Running hashes: a pool thread follows a session's temp file as chunks land, so a commit on the
 * instance that opened the session need not read the file again. One per session key, tied to
 * the session's incarnation.
 */
import type { StreamHasher } from '../hashing/hash-pool.js'
import type { SessionRecord } from '../state/types.js'

/** A running hash and the session incarnation it belongs to. */
interface RunningHash {
  readonly hasher: StreamHasher
  readonly incarnation: string
}

export class RunningHashes {
  /** Running hashes of sessions opened on this instance, by session key. */
  readonly #hashers = new Map<string, RunningHash>()

  set(key: string, incarnation: string, hasher: StreamHasher): void {
    this.#hashers.set(key, { hasher, incarnation })
  }

  /** Drops the running hash of `key` (only of that incarnation, when given). */
  drop(key: string, incarnation?: string): void {
    const r = this.#hashers.get(key)
    if (r === undefined || (incarnation !== undefined && r.incarnation !== incarnation)) return
    r.hasher.cancel()
    this.#hashers.delete(key)
  }

  /**
   * This instance's running hash of exactly this incarnation of the session, or null. A hasher
   * left by an earlier session under the same key (aborted or expired on another instance) is
   * dropped: it follows a temp file that no longer exists.
   */
  of(session: SessionRecord): StreamHasher | null {
    const r = this.#hashers.get(session.key)
    if (r === undefined) return null
    if (r.hasher.closed || r.incarnation !== session.incarnation) {
      this.drop(session.key)
      return null
    }
    return r.hasher
  }

  /** Hands the running hash of this incarnation over (it is no longer kept here); null if none. */
  take(key: string, incarnation: string): StreamHasher | null {
    const r = this.#hashers.get(key)
    if (r === undefined || r.hasher.closed || r.incarnation !== incarnation) return null
    this.#hashers.delete(key)
    return r.hasher
  }

  /** Forgets `key`'s hash without cancelling it (the caller finishes or cancels it). */
  forget(key: string): void {
    this.#hashers.delete(key)
  }

  dropAll(): void {
    for (const key of [...this.#hashers.keys()]) this.drop(key)
  }
}
