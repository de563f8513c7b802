/**
 * The sweep of `<dataDir>/tmp/`: expired sessions with their temp files, then temp files that
 * nothing needs any more, judged by the orphan rules of storage's TempFiles (temp-files.ts).
 */
import type { Logger } from 'pino'
import type { SessionRecord, SessionStore } from '../state/types.js'
import { removeQuietly } from '../storage/files.js'
import { isOrphan, type SweepFacts, type TempFiles } from '../storage/temp-files.js'
import type { OwedFlusher } from './flush.js'
import type { StreamFiles } from './publish.js'
import type { RunningHashes } from './running-hash.js'
import type { UploadHooks } from './types.js'

export interface SweepDeps {
  readonly sessions: SessionStore
  /** The tmp/ folder swept; stream files of `temps.instanceId` are this instance's. */
  readonly temps: TempFiles
  readonly sessionTtlMs: number
  readonly hashes: RunningHashes
  readonly flusher: OwedFlusher
  readonly files: StreamFiles
  /** Whether another instance still runs; absent: assume it does. */
  readonly isAlive?: (id: string) => Promise<boolean>
  readonly hooks?: UploadHooks
  /** After an expired session's record and temp file are gone (its bucket objects: grid.ts). */
  readonly onRemoved?: (session: SessionRecord) => Promise<void>
  readonly log: Logger
}

/**
 * Removes expired sessions with their temp files, then every entry of tmp/ that `isOrphan` says
 * nothing needs any more (a folder with its contents).
 */
export async function sweepUploads(
  d: SweepDeps,
  nowMs: number,
): Promise<{ sessions: number; orphans: number }> {
  const ttl = d.sessionTtlMs
  let sessions = 0
  for (;;) {
    const keys = await d.sessions.listExpired(nowMs, ttl, 100)
    let removedAny = false
    // A batch at once: the embedded journal syncs each removal, and concurrent ones share a sync.
    await Promise.all(
      keys.map(async (key) => {
        const gone = await d.sessions.removeIfExpired(key, nowMs, ttl)
        if (gone === null) return
        removedAny = true
        sessions++
        d.hashes.drop(key, gone.incarnation)
        await d.hooks?.afterRecordRemoved?.(key)
        const path = d.temps.path(gone.tempName)
        d.flusher.forget(path)
        await removeQuietly(path)
        await d.onRemoved?.(gone)
      }),
    )
    if (keys.length < 100 || !removedAny) break
  }
  const facts: SweepFacts = {
    nowMs,
    ttlMs: ttl,
    instanceId: d.temps.instanceId,
    isStreaming: (path) => d.files.inUse(path),
    isAlive: (id) => d.isAlive?.(id) ?? Promise.resolve(true),
    session: (key) => d.sessions.get(key),
  }
  let orphans = 0
  for await (const e of d.temps.entries()) {
    if (!(await isOrphan(e.name, e.path, e.stat, facts))) continue
    await d.temps.remove(e)
    orphans++
  }
  if (sessions + orphans > 0) d.log.info({ sessions, orphans }, 'swept expired uploads')
  return { sessions, orphans }
}
