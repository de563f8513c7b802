/**
 * Garbage collection of the content-addressed store (after Flamenco's pkg/shaman/cleanup.go,
 * Flamenco pkg/shaman/cleanup.go): a blob goes when no checkout links to it and nobody touched it
 * for `maxAgeMs`.
 *
 * Safety against concurrent requirements / checkout / upload calls, on any instance:
 * - A pass holds the cross-instance lock GC_LOCK_KEY from its scan to its last unlink; it stops
 *   at once if that lock is lost. Nothing else deletes blobs.
 * - Callers that vouch for a blob make that visible first (touch it: mtime now; or create the
 *   checkout's symlinks, in a temp directory under checkouts/ that is renamed into place), then
 *   wait until no pass holds the lock (`CasStore.settle`), then check the blob still exists.
 *   A pass that starts after the use is visible sees either the fresh mtime or the symlink;
 *   one that was running has finished, so its deletions show in the final check.
 * - We chose this over "checkout re-verifies after linking" alone because that leaves a window
 *   between GC's last look and its unlink; and over requests holding a shared (reader) lock
 *   against the pass's exclusive one: that would cost every upload and checkout a lock taken,
 *   renewed and released in the store, where settling costs one read while no pass runs (the
 *   wait itself is woken by the pass's release, `Locker.waitUntilFree`), and making the use
 *   visible first already closes the race a reader lock would close.
 * - Belt and braces: each candidate is re-stat'ed just before unlink and kept if its mtime moved,
 *   and a checkout directory that vanishes during the walk (renamed into place, or erased) makes
 *   the walk start over, so a checkout renamed mid-walk is never missed.
 */
import type { Logger } from 'pino'
import type { Locker } from '../state/types.js'
import type { ObjectStore, SymlinkTrees } from '../storage/object-store.js'
import { TreeChangedError } from '../storage/walk.js'
import {
  casKeyOfBlob,
  GC_LOCK_KEY,
  type CasKey,
  type CasObjects,
  type CasStore,
} from './cas-store.js'

export interface GcOptions {
  readonly cas: CasStore
  /** The checkouts: every symlink in them that points into the blob store keeps its blob. */
  readonly checkouts: ObjectStore & SymlinkTrees
  readonly locker: Locker
  readonly lockTtlMs: number
  /** Blobs whose mtime is older than now minus this are candidates, ms. */
  readonly maxAgeMs: number
  readonly log: Logger
  readonly nowMs?: number
  /** Report what would go, delete nothing. */
  readonly dryRun?: boolean
}

export interface GcResult {
  /** false when another pass held the lock; nothing was done. */
  readonly ran: boolean
  readonly blobs: number
  readonly old: number
  readonly symlinks: number
  readonly usedOld: number
  readonly touchedMeanwhile: number
  readonly removed: number
  readonly removedBytes: number
}

/** Every blob of the store with its mtime, by object key. */
type Scanned = Map<string, { key: CasKey; mtimeMs: number }>

async function scanStore(objects: CasObjects): Promise<Scanned> {
  const out: Scanned = new Map()
  for await (const e of objects.list('')) {
    const key = casKeyOfBlob(e.key)
    if (e.kind !== 'object' || key === null) continue
    const info = await objects.head(e.key)
    if (info !== null) out.set(e.key, { key, mtimeMs: info.mtimeMs })
  }
  return out
}

/** Blob keys that some checkout symlink points at, and how many symlinks there are. */
async function walkCheckouts(
  checkouts: SymlinkTrees,
  objects: CasObjects,
): Promise<{ used: Set<string>; symlinks: number }> {
  const used = new Set<string>()
  let symlinks = 0
  for await (const l of checkouts.links('', objects)) {
    symlinks++
    if (l.target !== null) used.add(l.target)
  }
  return { used, symlinks }
}

/** One GC pass. Answers `ran: false` when another instance's pass holds the lock. */
export async function collectGarbage(o: GcOptions): Promise<GcResult> {
  const lock = await o.locker.tryAcquire(GC_LOCK_KEY, o.lockTtlMs)
  const result = {
    ran: false,
    blobs: 0,
    old: 0,
    symlinks: 0,
    usedOld: 0,
    touchedMeanwhile: 0,
    removed: 0,
    removedBytes: 0,
  }
  if (lock === null) return result
  result.ran = true
  try {
    const cutoff = (o.nowMs ?? Date.now()) - o.maxAgeMs
    const objects = o.cas.objects
    const { checkouts } = o
    const blobs = await scanStore(objects)
    result.blobs = blobs.size
    const old = [...blobs].filter(([, b]) => b.mtimeMs < cutoff)
    result.old = old.length
    if (old.length === 0) return result
    let walked: { used: Set<string>; symlinks: number } | null = null
    for (let attempt = 0; walked === null; attempt++) {
      if (lock.signal.aborted) return result
      try {
        walked = await walkCheckouts(checkouts, objects)
      } catch (err) {
        if (!(err instanceof TreeChangedError) || attempt >= 20) throw err
      }
    }
    result.symlinks = walked.symlinks
    for (const [blob, b] of old) {
      if (walked.used.has(blob)) {
        result.usedOld++
        continue
      }
      if (lock.signal.aborted) {
        o.log.warn('garbage collection stopped: its lock was lost')
        break
      }
      const now = await objects.head(blob)
      if (now === null) continue
      if (now.mtimeMs !== b.mtimeMs || now.mtimeMs >= cutoff) {
        result.touchedMeanwhile++
        continue
      }
      if (o.dryRun) {
        result.removed++
        result.removedBytes += now.size
        continue
      }
      // The fence before the irreversible step: the lock is still ours in the store, with time
      // to spare (a pass that stalled past its lock may be racing a checkout that uses this blob).
      if (
        !(await lock.check().then(
          () => true,
          () => false,
        ))
      ) {
        o.log.warn('garbage collection stopped: its lock was lost')
        break
      }
      // With the two levels of folders above the blob, when now empty.
      if (!(await objects.delete(blob, { pruneEmptyParents: 2 }))) continue
      result.removed++
      result.removedBytes += now.size
      await o.cas.announceRemoved(b.key)
    }
    return result
  } finally {
    await lock.release().catch(() => {})
    if (result.removed > 0 || result.old > 0) o.log.info(result, 'shaman garbage collection')
  }
}
