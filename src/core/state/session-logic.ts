/**
 * The session state machine as pure functions of (record, arguments, context). Both stores apply
 * the same functions: the embedded store in memory, the Redis store inside a compare-and-set on a
 * version that never repeats. So the rules live in one place and one contract suite checks both.
 */
import {
  addRange,
  containsRange,
  missingRanges,
  overlapsAny,
  subtractRanges,
  type ByteRange,
} from './range-set.js'
import { UploadError } from '../errors.js'
import type {
  CancelOutcome,
  CommitOutcome,
  DeclareLengthOutcome,
  GridState,
  GridUpdate,
  NewSession,
  OwedRanges,
  ReserveOutcome,
  SessionRecord,
  StateLimits,
} from './types.js'

/**
 * A transition's answer: the new record (null removes it; `same` keeps it untouched) and an output.
 */
export interface Step<T> {
  readonly next: SessionRecord | null | 'same'
  readonly out: T
  /** A chunk to add to the session's chunk set (`start-end`), with the record. */
  readonly chunk?: string
  /** Set by `completeStep`: the change as a delta (`next` is `applyComplete(cur, complete)`). */
  readonly complete?: CompleteDelta
}

/** What a step may know besides the record: the store's clock and which lease holders are dead. */
export interface StepContext {
  readonly now: number
  /** Instances whose liveness key has run out: their leases count as expired. */
  readonly dead: { has(id: string): boolean }
  /** This instance (the holder of what the step creates). */
  readonly self: string
  /** This host's boot id. */
  readonly boot: string
  readonly limits: StateLimits
}

/**
 * Settles what dead instances owed: ranges they had not flushed stay received if their host
 * has not rebooted since (same boot id: the page cache outlived the process), else are dropped
 * from `received` so the client sends them again. Applied before every step that changes a
 * record; answers the record itself when nothing changed.
 */
export function settleOwed(cur: SessionRecord, c: StepContext): SessionRecord {
  if (cur.owed.length === 0 || cur.state === 'committed') return cur
  let received = cur.received
  const owed: OwedRanges[] = []
  let changed = false
  for (const o of cur.owed) {
    if (o.holder === c.self || !c.dead.has(o.holder)) {
      owed.push(o)
      continue
    }
    changed = true
    if (o.boot !== c.boot) received = subtractRanges(received, o.ranges)
  }
  return changed ? { ...cur, received, owed } : cur
}

/**
 * Runs `step` on the settled record; writes the settled record even when the step changes nothing.
 */
export function settled<T>(
  cur: SessionRecord | null,
  c: StepContext,
  step: (cur: SessionRecord | null) => Step<T>,
): Step<T> {
  if (cur === null) return step(null)
  const s = settleOwed(cur, c)
  const r = step(s)
  return r.next === 'same' && s !== cur ? { ...r, next: s } : r
}

/** The member of the chunk set for a range. */
export const chunkId = (r: ByteRange) => `${r.start}-${r.end}`

const liveRes = (r: SessionRecord, c: StepContext) =>
  r.reservations.filter((x) => x.expiresAtMs > c.now && !c.dead.has(x.holder))

/** The commit holds a lease that is neither expired nor held by a dead instance. */
const liveCommit = (r: SessionRecord, c: StepContext) =>
  r.state === 'committing' &&
  r.commitLeaseUntilMs > c.now &&
  !(r.commitHolder !== null && c.dead.has(r.commitHolder))

/** Holders whose liveness matters to a step on `r`: those of live-looking leases, not ourselves. */
export function holdersToCheck(r: SessionRecord | null, now: number, self: string): string[] {
  if (r === null) return []
  const out = new Set<string>()
  for (const x of r.reservations) if (x.expiresAtMs > now && x.holder !== self) out.add(x.holder)
  for (const o of r.owed) if (o.holder !== self) out.add(o.holder)
  if (
    r.state === 'committing' &&
    r.commitLeaseUntilMs > now &&
    r.commitHolder !== null &&
    r.commitHolder !== self
  )
    out.add(r.commitHolder)
  return [...out]
}

/**
 * Bounds on a session's metadata: it lives in the record, which every change of the session
 * writes whole (Redis) or at open and compaction (the embedded journal).
 */
export const METADATA_LIMITS = Object.freeze({
  maxEntries: 32,
  maxKeyChars: 128,
  maxTotalBytes: 8192,
})

/**
 * Why `meta` is not acceptable as session metadata, or null: a plain object of at most
 * `maxEntries` string values, keys of 1 to `maxKeyChars` printable characters (no controls, no
 * spaces or commas, as tus's Upload-Metadata keys), at most `maxTotalBytes` of keys and values
 * in UTF-8.
 */
export function metadataProblem(meta: unknown): string | null {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    return 'metadata must be an object of strings'
  }
  const entries = Object.entries(meta)
  const { maxEntries, maxKeyChars, maxTotalBytes } = METADATA_LIMITS
  if (entries.length > maxEntries) return `metadata holds at most ${maxEntries} entries`
  let total = 0
  for (const [k, v] of entries) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: metadata keys must not hold them
    if (k.length === 0 || k.length > maxKeyChars || !/^[^\x00-\x20,\x7f]+$/.test(k)) {
      return `a metadata key has 1 to ${maxKeyChars} characters, none a control, a space or a comma`
    }
    if (typeof v !== 'string') return `metadata value of ${JSON.stringify(k)} is not a string`
    total += Buffer.byteLength(k) + Buffer.byteLength(v)
  }
  if (total > maxTotalBytes) return `metadata holds at most ${maxTotalBytes} bytes`
  return null
}

const isLength = (n: unknown): n is number =>
  typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
const NOT_A_LENGTH = 'the total length must be a non-negative integer'

export function openStep(
  cur: SessionRecord | null,
  init: NewSession,
  c: StepContext,
): Step<{ created: boolean; session: SessionRecord }> {
  if (cur !== null) return { next: 'same', out: { created: false, session: cur } }
  if (init.totalBytes !== null && !isLength(init.totalBytes)) {
    throw new UploadError('ERR_INVALID_ARGUMENT', NOT_A_LENGTH)
  }
  const problem = init.metadata === undefined ? null : metadataProblem(init.metadata)
  if (problem !== null) throw new UploadError('ERR_INVALID_ARGUMENT', problem)
  const rec: SessionRecord = {
    key: init.key,
    incarnation: init.incarnation,
    target: init.target,
    totalBytes: init.totalBytes,
    tempName: init.tempName,
    ...(init.hasher !== undefined ? { hasher: init.hasher } : {}),
    // A copy: the record must not change when the caller's object does.
    metadata: init.metadata === undefined ? {} : { ...init.metadata },
    createdAtMs: c.now,
    updatedAtMs: c.now,
    received: [],
    chunks: 0,
    reservations: [],
    state: 'open',
    commitOwner: null,
    commitHolder: null,
    commitLeaseUntilMs: 0,
    commitFence: 0,
    result: null,
    owed: [],
  }
  return { next: rec, out: { created: true, session: rec } }
}

/**
 * `isChunk`: the range is exactly one chunk received earlier (from the store's chunk set). Only
 * such a re-send may be compared with what is on disk; any other range touching received bytes
 * is refused without looking at them, so answers never tell whether guessed bytes matched.
 */
export function reserveStep(
  cur: SessionRecord | null,
  range: ByteRange,
  token: string,
  leaseMs: number,
  incarnation: string | undefined,
  isChunk: boolean,
  c: StepContext,
): Step<ReserveOutcome> {
  if (cur === null || (incarnation !== undefined && cur.incarnation !== incarnation))
    return { next: 'same', out: { status: 'missing' } }
  if (cur.state !== 'open') return { next: 'same', out: { status: 'closed', session: cur } }
  const empty = range.end < range.start
  if (!empty && containsRange(cur.received, range) && isChunk) {
    return { next: 'same', out: { status: 'received', session: cur } }
  }
  if (!empty && overlapsAny(cur.received, range))
    return { next: 'same', out: { status: 'straddles', session: cur } }
  const holders = liveRes(cur, c)
  if (overlapsAny(holders, range)) return { next: 'same', out: { status: 'busy', session: cur } }
  const { maxChunksPerSession, maxRangesPerSession } = c.limits
  if (maxChunksPerSession > 0 && cur.chunks + holders.length >= maxChunksPerSession) {
    return {
      next: 'same',
      out: {
        status: 'limit',
        session: cur,
        reason: `a session takes at most ${maxChunksPerSession} chunks`,
      },
    }
  }
  if (!empty && maxRangesPerSession > 0) {
    let ranges = cur.received
    for (const h of [...holders, range]) ranges = addRange(ranges, h)
    if (ranges.length > maxRangesPerSession) {
      return {
        next: 'same',
        out: {
          status: 'limit',
          session: cur,
          reason: `a session may hold at most ${maxRangesPerSession} separate ranges; send the gaps first`,
        },
      }
    }
  }
  const next: SessionRecord = {
    ...cur,
    reservations: [
      ...holders,
      { start: range.start, end: range.end, token, expiresAtMs: c.now + leaseMs, holder: c.self },
    ],
  }
  return { next, out: { status: 'reserved', session: next } }
}

export function renewStep(
  cur: SessionRecord | null,
  token: string,
  leaseMs: number,
  c: StepContext,
): Step<boolean> {
  if (cur === null || cur.state !== 'open') return { next: 'same', out: false }
  const mine = cur.reservations.find((x) => x.token === token)
  if (mine === undefined) return { next: 'same', out: false }
  // An expired reservation that nobody overlapped yet may still be renewed: its bytes are ours.
  const others = liveRes(cur, c).filter((x) => x.token !== token)
  if (overlapsAny(others, mine)) return { next: 'same', out: false }
  const next: SessionRecord = {
    ...cur,
    reservations: [...others, { ...mine, expiresAtMs: c.now + leaseMs }],
  }
  return { next, out: true }
}

export function markDurableStep(
  cur: SessionRecord | null,
  incarnation: string,
  ranges: readonly ByteRange[],
  c: StepContext,
): Step<void> {
  if (cur === null || cur.incarnation !== incarnation || cur.state === 'committed')
    return { next: 'same', out: undefined }
  const mine = cur.owed.find((o) => o.holder === c.self)
  if (mine === undefined) return { next: 'same', out: undefined }
  const left = subtractRanges(mine.ranges, ranges)
  const owed = cur.owed.filter((o) => o !== mine)
  return {
    next: { ...cur, owed: left.length > 0 ? [...owed, { ...mine, ranges: left }] : owed },
    out: undefined,
  }
}

/**
 * What completing a chunk changes, as data: the embedded journal writes this instead of the whole
 * record (a few dozen bytes per chunk whatever the session's size) and replays it with
 * `applyComplete`, the one implementation of the change.
 */
export interface CompleteDelta {
  readonly token: string
  readonly start: number
  readonly end: number
  readonly at: number
  /** The writer that owes the bytes until they are flushed (null: durable already). */
  readonly owedBy: { readonly holder: string; readonly boot: string } | null
}

export function applyComplete(cur: SessionRecord, d: CompleteDelta): SessionRecord {
  const range = { start: d.start, end: d.end }
  const empty = d.end < d.start
  let owed = cur.owed
  if (!empty && d.owedBy !== null) {
    const { holder, boot } = d.owedBy
    const mine = owed.find((o) => o.holder === holder && o.boot === boot)
    owed = [
      ...owed.filter((o) => o !== mine),
      { holder, boot, ranges: addRange(mine?.ranges ?? [], range) },
    ]
  }
  return {
    ...cur,
    // A zero-length session has nothing to mark; its "chunk" is only the declaration.
    received: empty ? cur.received : addRange(cur.received, range),
    chunks: empty ? cur.chunks : cur.chunks + 1,
    reservations: cur.reservations.filter((x) => x.token !== d.token),
    updatedAtMs: d.at,
    owed,
  }
}

/**
 * `end`: only the prefix `[start, end]` of the reservation arrived (a body cut short); it is
 * marked received (and added to the chunk set: it is exactly what was received) and the whole
 * reservation is dropped. Absent: the whole reserved range.
 */
export function completeStep(
  cur: SessionRecord | null,
  token: string,
  durable: boolean,
  c: StepContext,
  end?: number,
): Step<SessionRecord | null> {
  if (cur === null || cur.state !== 'open') return { next: 'same', out: null }
  const mine = cur.reservations.find((x) => x.token === token)
  if (mine === undefined) return { next: 'same', out: null }
  if (end !== undefined && !(Number.isSafeInteger(end) && end >= mine.start && end <= mine.end)) {
    const msg = `a kept prefix must end inside its reservation ${mine.start}-${mine.end}`
    throw new UploadError('ERR_INVALID_RANGE', msg)
  }
  // Someone else's live reservation overlaps ours: ours was broken (expired or judged dead) and
  // taken; our bytes may have been overwritten, so they do not count.
  if (
    overlapsAny(
      liveRes(cur, c).filter((x) => x.token !== token),
      mine,
    )
  )
    return { next: 'same', out: null }
  const kept = { start: mine.start, end: end ?? mine.end }
  const owedBy = durable ? null : { holder: c.self, boot: c.boot }
  const delta: CompleteDelta = { token, start: kept.start, end: kept.end, at: c.now, owedBy }
  const next = applyComplete(cur, delta)
  if (kept.end < kept.start) return { next, out: next, complete: delta }
  return { next, out: next, chunk: chunkId(kept), complete: delta }
}

/** The end (exclusive) of what a session holds or may soon hold: received and reserved bytes. */
function claimedEnd(cur: SessionRecord, c: StepContext): number {
  let end = 0
  for (const r of cur.received) end = Math.max(end, r.end + 1)
  for (const r of liveRes(cur, c)) end = Math.max(end, r.end + 1)
  return end
}

export function declareLengthStep(
  cur: SessionRecord | null,
  totalBytes: number,
  c: StepContext,
): Step<DeclareLengthOutcome> {
  if (!isLength(totalBytes)) throw new UploadError('ERR_INVALID_ARGUMENT', NOT_A_LENGTH)
  if (cur === null) return { next: 'same', out: { status: 'missing' } }
  if (cur.totalBytes !== null) {
    const status = cur.totalBytes === totalBytes ? 'declared' : 'conflict'
    return { next: 'same', out: { status, session: cur } }
  }
  if (cur.state !== 'open') return { next: 'same', out: { status: 'closed', session: cur } }
  if (totalBytes < claimedEnd(cur, c)) {
    return { next: 'same', out: { status: 'too-small', session: cur } }
  }
  const next: SessionRecord = { ...cur, totalBytes, updatedAtMs: c.now }
  return { next, out: { status: 'declared', session: next } }
}

export function releaseStep(cur: SessionRecord | null, token: string): Step<void> {
  if (cur === null || !cur.reservations.some((x) => x.token === token))
    return { next: 'same', out: undefined }
  return {
    next: { ...cur, reservations: cur.reservations.filter((x) => x.token !== token) },
    out: undefined,
  }
}

/** Every byte of a declared length is received (never true while the length is unknown). */
export function isComplete(rec: SessionRecord): boolean {
  return rec.totalBytes !== null && missingRanges(rec.received, rec.totalBytes).length === 0
}

/** `fence`: the store's next version, which only grows. */
export function beginCommitStep(
  cur: SessionRecord | null,
  owner: string,
  leaseMs: number,
  fence: number,
  c: StepContext,
): Step<CommitOutcome> {
  if (cur === null) return { next: 'same', out: { status: 'missing' } }
  if (cur.state === 'committed') return { next: 'same', out: { status: 'committed', session: cur } }
  if (liveCommit(cur, c) && cur.commitOwner !== owner)
    return { next: 'same', out: { status: 'busy', session: cur } }
  if (!isComplete(cur)) return { next: 'same', out: { status: 'incomplete', session: cur } }
  const takenOverFrom =
    cur.state === 'committing' && cur.commitOwner !== owner ? cur.commitOwner : null
  const next: SessionRecord = {
    ...cur,
    state: 'committing',
    commitOwner: owner,
    commitHolder: c.self,
    commitLeaseUntilMs: c.now + leaseMs,
    commitFence: fence,
  }
  return { next, out: { status: 'begun', session: next, takenOverFrom } }
}

const ownsCommit = (cur: SessionRecord | null, owner: string): cur is SessionRecord =>
  cur !== null && cur.state === 'committing' && cur.commitOwner === owner

export function renewCommitStep(
  cur: SessionRecord | null,
  owner: string,
  leaseMs: number,
  c: StepContext,
): Step<boolean> {
  if (!ownsCommit(cur, owner)) return { next: 'same', out: false }
  return { next: { ...cur, commitLeaseUntilMs: c.now + leaseMs }, out: true }
}

export function checkCommitStep(
  cur: SessionRecord | null,
  owner: string,
  marginMs: number,
  c: StepContext,
): Step<boolean> {
  return { next: 'same', out: ownsCommit(cur, owner) && cur.commitLeaseUntilMs > c.now + marginMs }
}

export function finishCommitStep(
  cur: SessionRecord | null,
  owner: string,
  result: string,
  c: StepContext,
): Step<boolean> {
  if (!ownsCommit(cur, owner)) return { next: 'same', out: false }
  const next: SessionRecord = {
    ...cur,
    state: 'committed',
    commitOwner: null,
    commitHolder: null,
    commitLeaseUntilMs: 0,
    reservations: [],
    result,
    updatedAtMs: c.now,
    owed: [], // the commit fsynced the file before it published
  }
  return { next, out: true }
}

export function abortCommitStep(cur: SessionRecord | null, owner: string): Step<void> {
  if (!ownsCommit(cur, owner)) return { next: 'same', out: undefined }
  return {
    next: { ...cur, state: 'open', commitOwner: null, commitHolder: null, commitLeaseUntilMs: 0 },
    out: undefined,
  }
}

export function cancelStep(cur: SessionRecord | null, c: StepContext): Step<CancelOutcome> {
  if (cur === null) return { next: 'same', out: { status: 'missing' } }
  if (liveCommit(cur, c)) return { next: 'same', out: { status: 'busy', session: cur } }
  return { next: null, out: { status: 'removed', session: cur } }
}

/** See `SessionStore.updateGrid`. */
export function updateGridStep<T>(
  cur: SessionRecord | null,
  incarnation: string,
  fn: (grid: GridState | null, session: SessionRecord) => GridUpdate<T>,
): Step<{ out: T; session: SessionRecord } | null> {
  if (cur === null || cur.incarnation !== incarnation) return { next: 'same', out: null }
  const { grid, out } = fn(cur.grid ?? null, cur)
  if (grid === 'same') return { next: 'same', out: { out, session: cur } }
  const next: SessionRecord = { ...cur, grid }
  return { next, out: { out, session: next } }
}

export function removeStep(cur: SessionRecord | null): Step<SessionRecord | null> {
  return { next: cur === null ? 'same' : null, out: cur }
}

export function isExpired(rec: SessionRecord, nowMs: number, ttlMs: number): boolean {
  return rec.updatedAtMs + ttlMs <= nowMs
}

export function removeIfExpiredStep(
  cur: SessionRecord | null,
  ttlMs: number,
  c: StepContext,
): Step<SessionRecord | null> {
  if (cur === null || !isExpired(cur, c.now, ttlMs)) return { next: 'same', out: null }
  if (liveRes(cur, c).length > 0) return { next: 'same', out: null }
  if (liveCommit(cur, c)) return { next: 'same', out: null }
  return { next: null, out: cur }
}

const isStringMap = (m: unknown): m is Record<string, string> =>
  typeof m === 'object' && m !== null && !Array.isArray(m)

/** Normalises a record parsed from JSON (defensive: older or foreign writers). */
export function parseRecord(text: string): SessionRecord {
  const r = JSON.parse(text) as Partial<SessionRecord> & SessionRecord
  return {
    ...r,
    incarnation: typeof r.incarnation === 'string' ? r.incarnation : `legacy-${r.createdAtMs}`,
    // Written before lengths could be unknown: always a number. Anything else is unknown.
    totalBytes: isLength(r.totalBytes) ? r.totalBytes : null,
    // Written before sessions carried metadata.
    metadata: isStringMap(r.metadata) ? r.metadata : {},
    received: Array.isArray(r.received) ? r.received : [],
    chunks: typeof r.chunks === 'number' ? r.chunks : 0,
    reservations: Array.isArray(r.reservations)
      ? r.reservations.map((x) => ({ ...x, holder: typeof x.holder === 'string' ? x.holder : '' }))
      : [],
    commitHolder: typeof r.commitHolder === 'string' ? r.commitHolder : null,
    commitFence: typeof r.commitFence === 'number' ? r.commitFence : 0,
    owed: Array.isArray(r.owed) ? r.owed : [],
  }
}
