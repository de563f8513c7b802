/**
 * Garbage collection of the content-addressed store (after Flamenco's pkg/shaman/cleanup.go,
 * notes/shaman-imagestore.md 1.8): a blob goes when no checkout links to it and nobody touched it
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
import type { Dirent } from 'node:fs'
import { readdir, readlink, rmdir, unlink } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import type { Logger } from 'pino'
import type { Locker } from '../state/types.js'
import { statOrNull } from '../storage/files.js'
import { GC_LOCK_KEY, SHA256_HEX, type CasKey, type CasStore } from './cas-store.js'

export interface GcOptions {
  readonly cas: CasStore
  /** `layout.checkouts`: every symlink below it that points into the store keeps its blob. */
  readonly checkoutsRoot: string
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

async function readdirOrNull(dir: string): Promise<Dirent[] | null> {
  try {
    return await readdir(dir, { withFileTypes: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return null
    throw err
  }
}

/** Every blob of the store with its mtime. */
async function scanStore(root: string): Promise<Map<string, { key: CasKey; mtimeMs: number }>> {
  const out = new Map<string, { key: CasKey; mtimeMs: number }>()
  for (const a of (await readdirOrNull(root)) ?? []) {
    if (!a.isDirectory() || !/^[0-9a-f]{2}$/.test(a.name)) continue
    for (const b of (await readdirOrNull(join(root, a.name))) ?? []) {
      const sha256 = a.name + b.name
      if (!b.isDirectory() || !SHA256_HEX.test(sha256)) continue
      for (const f of (await readdirOrNull(join(root, a.name, b.name))) ?? []) {
        const m = /^(\d{1,16})\.blob$/.exec(f.name)
        if (!f.isFile() || !m) continue
        const path = join(root, a.name, b.name, f.name)
        const st = await statOrNull(path)
        if (st !== null) out.set(path, { key: { sha256, size: Number(m[1]) }, mtimeMs: st.mtimeMs })
      }
    }
  }
  return out
}

class Vanished extends Error {}

/** Absolute targets of every symlink under `root` that points inside `storeRoot`. */
async function walkCheckouts(root: string, storeRoot: string): Promise<{ used: Set<string>; symlinks: number }> {
  const used = new Set<string>()
  let symlinks = 0
  const prefix = storeRoot.endsWith(sep) ? storeRoot : storeRoot + sep
  const stack = [root]
  while (stack.length > 0) {
    const dir = stack.pop()!
    const entries = await readdirOrNull(dir)
    if (entries === null) {
      if (dir === root) break
      throw new Vanished(dir)
    }
    for (const e of entries) {
      const full = join(dir, e.name)
      if (e.isDirectory()) stack.push(full)
      else if (e.isSymbolicLink()) {
        symlinks++
        let target: string
        try {
          target = await readlink(full)
        } catch {
          continue // removed meanwhile: its checkout is being erased
        }
        const abs = resolve(dirname(full), target)
        if (abs.startsWith(prefix)) used.add(abs)
      }
    }
  }
  return { used, symlinks }
}

/** One GC pass. Answers `ran: false` when another instance's pass holds the lock. */
export async function collectGarbage(o: GcOptions): Promise<GcResult> {
  const lock = await o.locker.tryAcquire(GC_LOCK_KEY, o.lockTtlMs)
  const result = { ran: false, blobs: 0, old: 0, symlinks: 0, usedOld: 0, touchedMeanwhile: 0, removed: 0, removedBytes: 0 }
  if (lock === null) return result
  result.ran = true
  try {
    const cutoff = (o.nowMs ?? Date.now()) - o.maxAgeMs
    const blobs = await scanStore(o.cas.root)
    result.blobs = blobs.size
    const old = [...blobs].filter(([, b]) => b.mtimeMs < cutoff)
    result.old = old.length
    if (old.length === 0) return result
    let walked: { used: Set<string>; symlinks: number } | null = null
    for (let attempt = 0; walked === null; attempt++) {
      if (lock.signal.aborted) return result
      try {
        walked = await walkCheckouts(o.checkoutsRoot, o.cas.root)
      } catch (err) {
        if (!(err instanceof Vanished) || attempt >= 20) throw err
      }
    }
    result.symlinks = walked.symlinks
    for (const [path, b] of old) {
      if (walked.used.has(path)) {
        result.usedOld++
        continue
      }
      if (lock.signal.aborted) {
        o.log.warn('garbage collection stopped: its lock was lost')
        break
      }
      const now = await statOrNull(path)
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
      if (!(await lock.check().then(() => true, () => false))) {
        o.log.warn('garbage collection stopped: its lock was lost')
        break
      }
      try {
        await unlink(path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw err
      }
      result.removed++
      result.removedBytes += now.size
      await o.cas.announceRemoved(b.key)
      // The two levels of directories, when now empty (ENOTEMPTY/ENOENT are fine).
      await rmdir(dirname(path)).catch(() => {})
      await rmdir(dirname(dirname(path))).catch(() => {})
    }
    return result
  } finally {
    await lock.release().catch(() => {})
    if (result.removed > 0 || result.old > 0) o.log.info(result, 'shaman garbage collection')
  }
}
