/**
 * The content-addressed store: objects known by sha256 + size, kept at
 * `<dataDir>/cas/<sha[0:2]>/<sha[2:]>/<size>.blob`, and the in-flight claims that tell every
 * instance an object is being uploaded.
 *
 * upload on instance A ──claim cas:<sha>:<size> (Locker, renewed)──▶ status "uploading" everywhere
 *        │ verified + linked into cas/ (link-if-absent: one copy, never overwritten)
 *        └──bus "cas:stored" <sha>:<size>──▶ every instance: cache it, cut its own duplicate
 *                                             uploads of that object short (they answer 208)
 *   GC (gc.ts) ──bus "cas:removed"──▶ every instance forgets the object
 *
 * Anything that vouches for an object to a client (requirements omits it, a checkout links it,
 * an upload answers "already stored") first makes its use visible to the garbage collector
 * (touch the blob, or put a symlink under checkouts/), then calls `settle()` — which waits while
 * a GC pass holds its cross-instance lock — and only then checks the blob is still there. A GC
 * pass that started after the use became visible keeps the blob; one that ran before has
 * finished, and its deletion is seen by the final check. See gc.ts for the other half.
 */
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import { LockAbortedError, LockTimeoutError } from '../state/locker.js'
import type { Bus, Lock, Locker } from '../state/types.js'
import type { LocalPaths, ObjectStore, Toucher } from '../storage/object-store.js'
import { removeIfPresent } from '../storage/remove.js'

/**
 * An object's identity. `sha256` is 64 lowercase hex digits, `size` a non-negative safe integer.
 */
export interface CasKey {
  readonly sha256: string
  readonly size: number
}

export type CasStatus = 'stored' | 'uploading' | 'unknown'

export const SHA256_HEX = /^[0-9a-f]{64}$/

/** The Locker key held by a GC pass; see gc.ts. */
export const GC_LOCK_KEY = 'cas:gc'

const STORED_CHANNEL = 'cas:stored'
const REMOVED_CHANNEL = 'cas:removed'

/**
 * What the content-addressed store needs of its ObjectStore: touching (GC spares recently used
 * blobs) and local paths (checkouts link to blobs; the file-list workers stat them by path).
 */
export type CasObjects = ObjectStore & Toucher & LocalPaths

export interface CasStoreOptions {
  /** The store of blobs (keys from `blobKey`). */
  readonly objects: CasObjects
  readonly locker: Locker
  readonly bus: Bus
  /** Lifetime of an in-flight claim unless renewed (it renews itself every third), ms. */
  readonly claimTtlMs: number
  readonly log: Logger
  /** Objects remembered as stored, per instance. */
  readonly cacheMax?: number
  /**
   * How long a remembered "stored" stays trusted, ms. Blobs never change, but GC may remove
   * one; its bus message evicts it everywhere, and this bounds the damage of a lost message.
   */
  readonly cacheTtlMs?: number
  /** How long `settle()` waits for a running GC pass before giving up with ERR_UNAVAILABLE, ms. */
  readonly settleTimeoutMs?: number
}

export function checkCasKey(key: CasKey): void {
  if (!SHA256_HEX.test(key.sha256))
    throw new UploadError('ERR_INVALID_ARGUMENT', 'sha256 must be 64 lowercase hex digits')
  if (!Number.isSafeInteger(key.size) || key.size < 0)
    throw new UploadError('ERR_INVALID_ARGUMENT', 'size must be a non-negative integer')
}

const idOf = (k: CasKey) => `${k.sha256}:${k.size}`

/** The object key of a blob: `<sha[0:2]>/<sha[2:]>/<size>.blob` (the on-disk layout). */
export function blobKey(k: CasKey): string {
  return `${k.sha256.slice(0, 2)}/${k.sha256.slice(2)}/${k.size}.blob`
}

/** The blob a key names, or null for a key that is not a blob's. */
export function casKeyOfBlob(key: string): CasKey | null {
  const m = /^([0-9a-f]{2})\/([0-9a-f]{62})\/(\d{1,16})\.blob$/.exec(key)
  return m ? { sha256: m[1]! + m[2]!, size: Number(m[3]) } : null
}

function keyOf(id: string): CasKey | null {
  const m = /^([0-9a-f]{64}):(\d{1,16})$/.exec(id)
  return m ? { sha256: m[1]!, size: Number(m[2]) } : null
}

/** Entries of the "is stored" cache. */
export const DEFAULT_CACHE_MAX = 4096

export class CasStore {
  /** Where the blobs are kept. */
  readonly objects: CasObjects
  readonly #o: CasStoreOptions
  readonly #stored: LRUCache<string, true>
  /** Local watchers per object id: in-flight uploads to cut short when the object lands. */
  readonly #watchers = new Map<string, Set<() => void>>()
  #unsubscribe: (() => Promise<void>)[] = []
  #started: Promise<void> | null = null

  constructor(options: CasStoreOptions) {
    this.#o = options
    this.objects = options.objects
    // Keep `max` small: lru-cache preallocates its arrays for `max` entries, and in a bisection
    // harness an idle cache of 100,000 slots raised the CPU cost of every upload in the process
    // (1 GiB of chunks: median 3.8 instead of 2.3 CPU-s over 5 runs; 4,096 slots: 2.35). A miss
    // only costs one stat.
    this.#stored = new LRUCache({
      max: options.cacheMax ?? DEFAULT_CACHE_MAX,
      ttl: options.cacheTtlMs ?? 60_000,
    })
  }

  /** Subscribes to the bus (idempotent). Call before relying on `watch`. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      this.#unsubscribe.push(
        await this.#o.bus.subscribe(STORED_CHANNEL, (m) => void this.#onStored(m)),
      )
      this.#unsubscribe.push(
        await this.#o.bus.subscribe(REMOVED_CHANNEL, (m) => {
          this.#stored.delete(m)
        }),
      )
    })()
    return this.#started
  }

  async close(): Promise<void> {
    await this.#started?.catch(() => {})
    for (const u of this.#unsubscribe) await u().catch(() => {})
    this.#unsubscribe = []
    this.#watchers.clear()
  }

  /** The blob's local file (checkout links point at it; tests look at it). */
  blobPath(k: CasKey): string {
    return this.objects.localPath(blobKey(k))
  }

  claimKey(k: CasKey): string {
    return `cas:${idOf(k)}`
  }

  /** True when the blob exists. Only "stored" is remembered: absence can change any moment. */
  async isStored(k: CasKey): Promise<boolean> {
    const id = idOf(k)
    if (this.#stored.get(id) === true) return true
    if ((await this.objects.head(blobKey(k))) === null) return false
    this.#stored.set(id, true)
    return true
  }

  /**
   * Sets the blob's mtime to now so GC keeps it (GC removes only blobs untouched for its max
   * age). Answers false, and forgets the object, when the blob does not exist.
   */
  async touch(k: CasKey): Promise<boolean> {
    if (await this.objects.touch(blobKey(k))) {
      this.#stored.set(idOf(k), true)
      return true
    }
    this.#stored.delete(idOf(k))
    return false
  }

  /** Whether another upload holds the in-flight claim, on any instance. */
  isClaimed(k: CasKey): Promise<boolean> {
    return this.#o.locker.isHeld(this.claimKey(k))
  }

  /** stored > uploading > unknown, as Flamenco resolves a file. */
  async status(k: CasKey): Promise<CasStatus> {
    if (await this.isStored(k)) return 'stored'
    return (await this.isClaimed(k)) ? 'uploading' : 'unknown'
  }

  /**
   * Takes the in-flight claim for one upload of `k` (null when another upload holds it). The
   * lock renews itself until released; a crashed instance's claim lapses after `claimTtlMs`.
   */
  claim(k: CasKey): Promise<Lock | null> {
    return this.#o.locker.tryAcquire(this.claimKey(k), this.#o.claimTtlMs)
  }

  /**
   * Takes the claim of `k` as soon as its holder lets go; rejects (LockAbortedError) when
   * `signal` aborts.
   */
  claimWhenFree(k: CasKey, signal: AbortSignal): Promise<Lock> {
    const o = { ttlMs: this.#o.claimTtlMs, waitMs: Infinity, signal }
    return this.#o.locker.acquire(this.claimKey(k), o)
  }

  /**
   * Waits while a GC pass holds its lock (on any instance). Callers make their use of a blob
   * visible to GC first (touch or symlink), then settle, then check the blob still exists.
   * Throws ERR_UNAVAILABLE after `settleTimeoutMs`.
   */
  async settle(signal?: AbortSignal): Promise<void> {
    const waitMs = this.#o.settleTimeoutMs ?? 60_000
    try {
      // Woken when the pass releases its lock (or its lease lapses), not by polling.
      await this.#o.locker.waitUntilFree(GC_LOCK_KEY, { waitMs, ...(signal ? { signal } : {}) })
    } catch (err) {
      if (err instanceof LockTimeoutError) {
        throw new UploadError('ERR_UNAVAILABLE', 'garbage collection is running; try again shortly')
      }
      if (err instanceof LockAbortedError) {
        throw new UploadError('ERR_CLIENT_ABORTED', 'the client went away')
      }
      throw err
    }
  }

  /** touch → settle → touch again: true when the blob is there and safe from a GC pass. */
  async touchSettled(k: CasKey, signal?: AbortSignal): Promise<boolean> {
    if (!(await this.touch(k))) return false
    await this.settle(signal)
    return this.touch(k)
  }

  /**
   * Publishes a verified temp file as the blob of `k`, create-if-absent (link + unlink): two
   * uploads of the same bytes keep one copy and a stored blob is never replaced. Answers
   * `stored` when this call created it and `existed` when it was already there (the temp file is
   * then removed). Then tells every instance, so their duplicate uploads stop.
   */
  async publish(tempPath: string, k: CasKey): Promise<'stored' | 'existed'> {
    const key = blobKey(k)
    for (let attempt = 0; ; attempt++) {
      try {
        // The store retries when a GC pass removes the emptied folders between mkdir and link.
        await this.objects.put(key, tempPath, { mode: 'if-absent', alreadySynced: attempt > 0 })
        this.#stored.set(idOf(k), true)
        await this.announce(k)
        return 'stored'
      } catch (err) {
        if (!(err instanceof UploadError && err.code === 'ERR_ALREADY_EXISTS')) {
          await removeIfPresent(tempPath)
          throw err
        }
      }
      // Someone else's copy is there. Keep ours until theirs is proven safe from a GC pass that
      // may be deleting it right now; if it vanished, link ours instead.
      if ((await this.touchSettled(k)) || attempt >= 2) {
        await removeIfPresent(tempPath)
        if (attempt >= 2 && !(await this.isStored(k)))
          throw new UploadError('ERR_IO', 'the object vanished while it was being stored')
        await this.announce(k)
        return 'existed'
      }
    }
  }

  /** Tells every instance (this one too) that `k` is stored. */
  async announce(k: CasKey): Promise<void> {
    await this.#o.bus.publish(STORED_CHANNEL, idOf(k)).catch((err: unknown) => {
      this.#o.log.warn({ err }, 'could not announce a stored object')
    })
  }

  /** Tells every instance that GC removed `k`. */
  async announceRemoved(k: CasKey): Promise<void> {
    this.#stored.delete(idOf(k))
    await this.#o.bus.publish(REMOVED_CHANNEL, idOf(k)).catch(() => {})
  }

  /**
   * Calls `onStored` once `k` is announced stored by any instance and its blob is seen on disk
   * here (a message never cuts an upload short unless the object really is stored). Returns the
   * function that stops watching.
   */
  watch(k: CasKey, onStored: () => void): () => void {
    const id = idOf(k)
    let set = this.#watchers.get(id)
    if (set === undefined) {
      set = new Set()
      this.#watchers.set(id, set)
    }
    set.add(onStored)
    return () => {
      set.delete(onStored)
      if (set.size === 0 && this.#watchers.get(id) === set) this.#watchers.delete(id)
    }
  }

  async #onStored(id: string): Promise<void> {
    // Every instance hears every stored object: the disk is looked at only where an upload of
    // it is running here (a look per message and instance was pure cost for the others).
    if (!this.#watchers.has(id)) return
    const k = keyOf(id)
    if (k === null) return
    this.#stored.delete(id) // re-proven below, from the disk
    try {
      if (!(await this.isStored(k))) return
    } catch {
      return
    }
    for (const fn of [...(this.#watchers.get(id) ?? [])]) fn()
  }
}
