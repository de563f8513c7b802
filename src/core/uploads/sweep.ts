/**
 * The sweep of `<dataDir>/tmp/`: expired sessions with their temp files, then temp files that
 * nothing needs any more, told apart by their names (temp-names.ts).
 */
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { SessionStore } from '../state/types.js'
import { removeQuietly } from '../storage/files.js'
import type { OwedFlusher } from './flush.js'
import type { StreamFiles } from './publish.js'
import type { RunningHashes } from './running-hash.js'
import { parseTempName, TEMP_GRACE_MS } from './temp-names.js'
import type { UploadHooks } from './types.js'

export interface SweepDeps {
  readonly sessions: SessionStore
  readonly tmpDir: string
  readonly sessionTtlMs: number
  readonly hashes: RunningHashes
  readonly flusher: OwedFlusher
  readonly files: StreamFiles
  readonly instanceId: string
  /** Whether another instance still runs; absent: assume it does. */
  readonly isAlive?: (id: string) => Promise<boolean>
  readonly hooks?: UploadHooks
  readonly log: Logger
}

/**
 * Removes expired sessions with their temp files, then temp files that nothing needs any more:
 * a session file whose record is gone, is of another incarnation, or is committed (a crash
 * between the commit's record and its clean-up); a commit hand-off link whose commit is not
 * running; stream files and folders older than the TTL.
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
    await Promise.all(keys.map(async (key) => {
      const gone = await d.sessions.removeIfExpired(key, nowMs, ttl)
      if (gone === null) return
      removedAny = true
      sessions++
      d.hashes.drop(key, gone.incarnation)
      await d.hooks?.afterRecordRemoved?.(key)
      const path = join(d.tmpDir, gone.tempName)
      d.flusher.forget(path)
      await removeQuietly(path)
    }))
    if (keys.length < 100 || !removedAny) break
  }
  let orphans = 0
  for (const name of await readdir(d.tmpDir)) {
    const full = join(d.tmpDir, name)
    const st = await stat(full).catch(() => null)
    if (st === null) continue
    const age = nowMs - st.mtimeMs
    if (st.isDirectory()) {
      // A folder deletion cut short by a crash (renamed into tmp/ first, then removed).
      if (age > ttl) {
        await rm(full, { recursive: true, force: true })
        orphans++
      }
      continue
    }
    const parsed = parseTempName(name)
    let orphan: boolean
    if (parsed === null) orphan = age > ttl
    else if (age <= TEMP_GRACE_MS) orphan = false
    else if (parsed.kind === 'w') {
      // A stream's temp file: in use while its stream runs here, or while its instance lives.
      orphan = parsed.instance === d.instanceId
        ? !d.files.inUse(full)
        : !(await (d.isAlive?.(parsed.instance) ?? Promise.resolve(true)))
    } else {
      const rec = await d.sessions.get(parsed.key)
      orphan = parsed.kind === 's'
        ? rec === null || rec.incarnation !== parsed.id || rec.state === 'committed'
        : rec === null || rec.state !== 'committing' || rec.commitOwner !== parsed.id
    }
    if (orphan) {
      await removeQuietly(full)
      orphans++
    }
  }
  if (sessions + orphans > 0) d.log.info({ sessions, orphans }, 'swept expired uploads')
  return { sessions, orphans }
}
