/**
 * The session state machine as pure functions of (record, arguments, now). Both stores apply the
 * same functions: the embedded store in memory, the Redis store inside a compare-and-set on the
 * record's version. So the rules live in one place and one contract suite checks both.
 */
import { addRange, containsRange, missingRanges, overlapsAny, type ByteRange } from './range-set.js'
import type { CommitOutcome, NewSession, ReserveOutcome, SessionRecord } from './types.js'

/** A transition's answer: the new record (null removes it; `same` keeps it untouched) and an output. */
export interface Step<T> {
  readonly next: SessionRecord | null | 'same'
  readonly out: T
}

const live = (r: SessionRecord, nowMs: number) => r.reservations.filter((x) => x.expiresAtMs > nowMs)

export function openStep(cur: SessionRecord | null, init: NewSession, nowMs: number): Step<{ created: boolean; session: SessionRecord }> {
  if (cur !== null) return { next: 'same', out: { created: false, session: cur } }
  const rec: SessionRecord = {
    key: init.key,
    target: init.target,
    totalBytes: init.totalBytes,
    tempName: init.tempName,
    createdAtMs: nowMs,
    updatedAtMs: nowMs,
    received: [],
    reservations: [],
    state: 'open',
    commitOwner: null,
    commitLeaseUntilMs: 0,
    result: null,
  }
  return { next: rec, out: { created: true, session: rec } }
}

export function reserveStep(
  cur: SessionRecord | null,
  range: ByteRange,
  token: string,
  nowMs: number,
  leaseMs: number,
): Step<ReserveOutcome> {
  if (cur === null) return { next: 'same', out: { status: 'missing' } }
  if (cur.state !== 'open') return { next: 'same', out: { status: 'closed', session: cur } }
  if (range.end >= range.start && containsRange(cur.received, range)) {
    return { next: 'same', out: { status: 'received', session: cur } }
  }
  if (overlapsAny(cur.received, range)) return { next: 'same', out: { status: 'straddles', session: cur } }
  const holders = live(cur, nowMs)
  if (overlapsAny(holders, range)) return { next: 'same', out: { status: 'busy', session: cur } }
  const next: SessionRecord = {
    ...cur,
    reservations: [...holders, { start: range.start, end: range.end, token, expiresAtMs: nowMs + leaseMs }],
  }
  return { next, out: { status: 'reserved', session: next } }
}

export function renewStep(cur: SessionRecord | null, token: string, nowMs: number, leaseMs: number): Step<boolean> {
  if (cur === null || cur.state !== 'open') return { next: 'same', out: false }
  const mine = cur.reservations.find((x) => x.token === token)
  if (mine === undefined) return { next: 'same', out: false }
  // An expired reservation that nobody overlapped yet may still be renewed: its bytes are ours.
  const others = live(cur, nowMs).filter((x) => x.token !== token)
  if (overlapsAny(others, mine)) return { next: 'same', out: false }
  const next: SessionRecord = {
    ...cur,
    reservations: [...others, { ...mine, expiresAtMs: nowMs + leaseMs }],
  }
  return { next, out: true }
}

export function completeStep(cur: SessionRecord | null, token: string, nowMs: number): Step<SessionRecord | null> {
  if (cur === null || cur.state !== 'open') return { next: 'same', out: null }
  const mine = cur.reservations.find((x) => x.token === token)
  if (mine === undefined) return { next: 'same', out: null }
  const others = cur.reservations.filter((x) => x.token !== token)
  // A zero-length session has nothing to mark; its "chunk" is only the declaration.
  const received = mine.end >= mine.start ? addRange(cur.received, { start: mine.start, end: mine.end }) : cur.received
  const next: SessionRecord = {
    ...cur,
    received,
    reservations: others,
    updatedAtMs: nowMs,
  }
  return { next, out: next }
}

export function releaseStep(cur: SessionRecord | null, token: string): Step<void> {
  if (cur === null || !cur.reservations.some((x) => x.token === token)) return { next: 'same', out: undefined }
  return { next: { ...cur, reservations: cur.reservations.filter((x) => x.token !== token) }, out: undefined }
}

export function isComplete(rec: SessionRecord): boolean {
  return missingRanges(rec.received, rec.totalBytes).length === 0
}

export function beginCommitStep(cur: SessionRecord | null, owner: string, nowMs: number, leaseMs: number): Step<CommitOutcome> {
  if (cur === null) return { next: 'same', out: { status: 'missing' } }
  if (cur.state === 'committed') return { next: 'same', out: { status: 'committed', session: cur } }
  if (cur.state === 'committing' && cur.commitLeaseUntilMs > nowMs && cur.commitOwner !== owner) {
    return { next: 'same', out: { status: 'busy', session: cur } }
  }
  if (!isComplete(cur)) return { next: 'same', out: { status: 'incomplete', session: cur } }
  const next: SessionRecord = { ...cur, state: 'committing', commitOwner: owner, commitLeaseUntilMs: nowMs + leaseMs }
  return { next, out: { status: 'begun', session: next } }
}

export function renewCommitStep(cur: SessionRecord | null, owner: string, nowMs: number, leaseMs: number): Step<boolean> {
  if (cur === null || cur.state !== 'committing' || cur.commitOwner !== owner) return { next: 'same', out: false }
  return { next: { ...cur, commitLeaseUntilMs: nowMs + leaseMs }, out: true }
}

export function finishCommitStep(cur: SessionRecord | null, owner: string, result: string, nowMs: number): Step<boolean> {
  if (cur === null || cur.state !== 'committing' || cur.commitOwner !== owner) return { next: 'same', out: false }
  const next: SessionRecord = {
    ...cur,
    state: 'committed',
    commitOwner: null,
    commitLeaseUntilMs: 0,
    reservations: [],
    result,
    updatedAtMs: nowMs,
  }
  return { next, out: true }
}

export function abortCommitStep(cur: SessionRecord | null, owner: string): Step<void> {
  if (cur === null || cur.state !== 'committing' || cur.commitOwner !== owner) return { next: 'same', out: undefined }
  return { next: { ...cur, state: 'open', commitOwner: null, commitLeaseUntilMs: 0 }, out: undefined }
}

export function removeStep(cur: SessionRecord | null): Step<SessionRecord | null> {
  return { next: cur === null ? 'same' : null, out: cur }
}

export function isExpired(rec: SessionRecord, nowMs: number, ttlMs: number): boolean {
  return rec.updatedAtMs + ttlMs <= nowMs
}

export function removeIfExpiredStep(cur: SessionRecord | null, nowMs: number, ttlMs: number): Step<SessionRecord | null> {
  if (cur === null || !isExpired(cur, nowMs, ttlMs)) return { next: 'same', out: null }
  if (live(cur, nowMs).length > 0) return { next: 'same', out: null }
  if (cur.state === 'committing' && cur.commitLeaseUntilMs > nowMs) return { next: 'same', out: null }
  return { next: null, out: cur }
}

/** Normalises a record parsed from JSON (defensive: older or foreign writers). */
export function parseRecord(text: string): SessionRecord {
  const r = JSON.parse(text) as SessionRecord
  return {
    ...r,
    received: Array.isArray(r.received) ? r.received : [],
    reservations: Array.isArray(r.reservations) ? r.reservations : [],
  }
}
