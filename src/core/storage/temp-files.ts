/**
 * Every temp file and temp folder Ferry makes, declared in one place with the rule that tells the
 * sweeper when a leftover is an orphan. Most live in `<dataDir>/tmp/` (the same filesystem as
 * everything they are published to, so a rename or link is atomic); checkouts are built next to
 * where they land. The names are part of the on-disk format: data directories written by earlier
 * versions and the crash tests rely on them, so a name here never changes.
 *
 *   name (in tmp/ unless noted)          made by                       an orphan when (after
 *                                                                       TEMP_GRACE_MS, see below)
 *   s-<b64url key>.<incarnation>.part    an upload session             its record is gone, is of
 *                                                                       another incarnation, or is
 *                                                                       committed
 *   p-<b64url key>.<owner>.part          a commit's hand-off link      its session is not being
 *                                                                       committed by that owner
 *   w-<instance>.<uuid>.part             a whole-file stream / small   its instance is this one and
 *                                        file to publish               no stream uses it, or its
 *                                                                       instance is dead
 *   c-<uuid>.part                        an object copy                older than the session TTL
 *   i-<uuid>.part                        a bulk-ingest copy or write   older than the session TTL
 *   d-<uuid>/                            a folder being deleted        older than the session TTL
 *   <checkouts>/…/.ferry-co-XXXXXX/      a checkout being built        never swept: GC counts its
 *                                                                       links; an operator removes
 *                                                                       one left by a crash
 * Anything else in tmp/ (a name from an older version) goes once older than the session TTL.
 */
import { randomUUID } from 'node:crypto'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Files a sweep leaves alone this long after their last change: a temp file exists before its
 * record.
 */
export const TEMP_GRACE_MS = 60_000

/** Prefix of the temp folder a checkout is built in (and reserved in checkout and file paths). */
export const CHECKOUT_TEMP_PREFIX = '.ferry-co-'

export type TempName =
  | { readonly kind: 'session'; readonly key: string; readonly incarnation: string }
  | { readonly kind: 'handoff'; readonly key: string; readonly owner: string }
  | { readonly kind: 'stream'; readonly instance: string }
  | { readonly kind: 'copy' }
  | { readonly kind: 'ingest' }
  | { readonly kind: 'trash' }

/** The names, as patterns (anchored). The sweeper parses with these and nothing else. */
export const TEMP_NAME_PATTERNS = Object.freeze({
  session: /^s-([A-Za-z0-9_-]*)\.([0-9a-f-]{36})\.part$/,
  handoff: /^p-([A-Za-z0-9_-]*)\.([0-9a-f-]{36})\.part$/,
  stream: /^w-([0-9a-f-]{36})\.[0-9a-f-]{36}\.part$/,
  copy: /^c-[0-9a-f-]{36}\.part$/,
  ingest: /^i-[0-9a-f-]{36}\.part$/,
  trash: /^d-[0-9a-f-]{36}$/,
})

const b64 = (key: string) => Buffer.from(key).toString('base64url')

/** Session temp file of one incarnation of `key`. */
export function sessionTempName(key: string, incarnation: string): string {
  return `s-${b64(key)}.${incarnation}.part`
}

/** Hard link a commit publishes from (never the session's own file). */
export function handoffTempName(key: string, owner: string): string {
  return `p-${b64(key)}.${owner}.part`
}

/** What a name in tmp/ is, or null for a name Ferry does not make (any more). */
export function parseTempName(name: string): TempName | null {
  const P = TEMP_NAME_PATTERNS
  let m = P.stream.exec(name)
  if (m) return { kind: 'stream', instance: m[1]! }
  m = P.session.exec(name)
  if (m) {
    return { kind: 'session', key: Buffer.from(m[1]!, 'base64url').toString(), incarnation: m[2]! }
  }
  m = P.handoff.exec(name)
  if (m) return { kind: 'handoff', key: Buffer.from(m[1]!, 'base64url').toString(), owner: m[2]! }
  if (P.copy.test(name)) return { kind: 'copy' }
  if (P.ingest.test(name)) return { kind: 'ingest' }
  if (P.trash.test(name)) return { kind: 'trash' }
  return null
}

/** What the sweeper knows when it judges one entry of tmp/. */
export interface SweepFacts {
  readonly nowMs: number
  /** The session TTL, ms: the age past which anything without a finer rule goes. */
  readonly ttlMs: number
  /** This instance (stream files carry their instance). */
  readonly instanceId: string
  /** Whether a stream of this instance still uses the file at `path`. */
  isStreaming(path: string): boolean
  /** Whether another instance still runs (unknown: assume it does). */
  isAlive(instance: string): Promise<boolean>
  /** The session record of `key`, or null. */
  session(key: string): Promise<{
    readonly incarnation: string
    readonly state: string
    readonly commitOwner: string | null
  } | null>
}

/**
 * The orphan rules of the table above, for the entry `name` of tmp/ (`path` is its full path,
 * `st` its stat). True: nothing needs it any more, the sweeper may remove it (a folder with its
 * contents).
 */
export async function isOrphan(
  name: string,
  path: string,
  st: { isDirectory(): boolean; readonly mtimeMs: number },
  facts: SweepFacts,
): Promise<boolean> {
  const age = facts.nowMs - st.mtimeMs
  // A folder deletion cut short by a crash (renamed into tmp/ first, then removed).
  if (st.isDirectory()) return age > facts.ttlMs
  const t = parseTempName(name)
  if (t === null || t.kind === 'copy' || t.kind === 'ingest' || t.kind === 'trash') {
    return age > facts.ttlMs
  }
  if (age <= TEMP_GRACE_MS) return false
  switch (t.kind) {
    case 'stream':
      // In use while its stream runs here, or while its instance lives.
      if (t.instance === facts.instanceId) return !facts.isStreaming(path)
      return !(await facts.isAlive(t.instance))
    case 'session': {
      const rec = await facts.session(t.key)
      return rec === null || rec.incarnation !== t.incarnation || rec.state === 'committed'
    }
    case 'handoff': {
      const rec = await facts.session(t.key)
      return rec === null || rec.state !== 'committing' || rec.commitOwner !== t.owner
    }
  }
}

/** One entry of tmp/, as the sweeper judges it. */
export interface TempEntry {
  readonly name: string
  readonly path: string
  readonly stat: { isDirectory(): boolean; readonly mtimeMs: number }
}

/**
 * New temp names in one tmp/ folder. Stream names carry `instanceId` so a sweep on any instance
 * can tell a file of a running stream from one left by a killed process.
 */
export class TempFiles {
  readonly dir: string
  readonly instanceId: string

  constructor(dir: string, instanceId: string = randomUUID()) {
    this.dir = dir
    this.instanceId = instanceId
  }

  /** Full path of a name in tmp/. */
  path(name: string): string {
    return join(this.dir, name)
  }

  sessionPath(key: string, incarnation: string): string {
    return this.path(sessionTempName(key, incarnation))
  }

  handoffPath(key: string, owner: string): string {
    return this.path(handoffTempName(key, owner))
  }

  /** `w-<instance>.<uuid>.part`: a whole-file stream or a small file on its way to publication. */
  streamPath(): string {
    return this.path(`w-${this.instanceId}.${randomUUID()}.part`)
  }

  /** `c-<uuid>.part`: the copy of an object before it is published at the destination. */
  copyPath(): string {
    return this.path(`c-${randomUUID()}.part`)
  }

  /** `i-<uuid>.part`: a bulk-ingest file (a worker's copy, a journal entry) before publication. */
  ingestPath(): string {
    return this.path(`i-${randomUUID()}.part`)
  }

  /** `d-<uuid>`: where a folder is renamed to in one step before it is deleted. */
  trashPath(): string {
    return this.path(`d-${randomUUID()}`)
  }

  /** The entries of tmp/ with their stat, for the sweeper; one gone meanwhile is left out. */
  async *entries(): AsyncGenerator<TempEntry> {
    for (const name of await readdir(this.dir)) {
      const path = this.path(name)
      const st = await stat(path).catch(() => null)
      if (st !== null) yield { name, path, stat: st }
    }
  }

  /** Removes an entry of tmp/ (a folder with its contents); one already gone is no error. */
  async remove(entry: TempEntry): Promise<void> {
    await rm(entry.path, { recursive: entry.stat.isDirectory(), force: true })
  }
}
