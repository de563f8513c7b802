/**
 * Chunked sessions from open to commit or cancel. The order of work for a chunk is: reserve the
 * range in the shared store → stream the body to its offset in the session's temp file → mark it
 * received. A dropped connection loses at most the chunk in flight; the client learns what to
 * resend from the missing ranges.
 */
import { randomUUID } from 'node:crypto'
import { UploadError } from '../errors.js'
import type { HashAlgo, HashResult } from '../hashing/hash-pool.js'
import { LeaseRenewal } from '../state/lock-handle.js'
import { contiguousPrefix, missingRanges, type ByteRange } from '../state/range-set.js'
import { metadataProblem } from '../state/session-logic.js'
import type { SessionRecord } from '../state/types.js'
import { DiskSync } from '../storage/disk-sync.js'
import { isNotFound } from '../storage/errno.js'
import {
  createEmptyExclusive,
  fileSize,
  fsyncFile,
  linkFile,
  removeQuietly,
  streamEqualsFile,
  writeStreamAt,
} from '../storage/files.js'
import { sessionTempName } from '../storage/temp-files.js'
import type { OwedFlusher } from './flush.js'
import { PEER_HASH_MIN_BYTES, type PeerDigest } from './peer-digest.js'
import type { RunningHashes } from './running-hash.js'
import type {
  ChunkInput,
  ChunkResult,
  CommitContext,
  CommitHashCounts,
  NewUpload,
  UploadServiceOptions,
} from './types.js'

export interface SessionDeps {
  readonly o: UploadServiceOptions
  readonly hashes: RunningHashes
  readonly flusher: OwedFlusher
  /** Null: one instance, nobody to ask for a running hash. */
  readonly peers: PeerDigest | null
}

/** The end (exclusive) of the last received range. */
const contiguousEnd = (s: SessionRecord) =>
  s.received.length === 0 ? 0 : s.received[s.received.length - 1]!.end + 1

export class ChunkSessions {
  readonly #o: UploadServiceOptions
  readonly #hashes: RunningHashes
  readonly #flusher: OwedFlusher
  readonly #peers: PeerDigest | null
  readonly hashCounts: CommitHashCounts = { local: 0, peer: 0, fullPass: 0 }

  constructor(deps: SessionDeps) {
    this.#o = deps.o
    this.#hashes = deps.hashes
    this.#flusher = deps.flusher
    this.#peers = deps.peers
  }

  tempPathOf(session: SessionRecord): string {
    return this.#o.temps.path(session.tempName)
  }

  /**
   * Releases a reservation in the background while the store is unavailable (a Redis failover):
   * tried again every 200 ms until it answers, for at most one lease (after which it is free).
   */
  #releaseSoon(key: string, token: string): void {
    const until = Date.now() + this.#o.reserveLeaseMs
    const attempt = () => {
      this.#o.sessions.release(key, token).catch(() => {
        if (Date.now() < until) setTimeout(attempt, 200).unref()
      })
    }
    setTimeout(attempt, 200).unref()
  }

  /** Opens the session if new, checks it matches, then writes or verifies one chunk. */
  async writeChunk(input: ChunkInput, onCreated?: () => void): Promise<ChunkResult> {
    const { key, range } = input
    // Checked before a session is opened when the caller knows the length; else against the
    // session's length once it is known.
    if (input.totalBytes !== null) this.#checkRange(range, input.totalBytes)
    else if (range.start < 0) this.#checkRange(range, null)
    // A session removed between our read and our reservation (cancel, expiry, lost Redis data)
    // is answered `missing`; the next pass opens a fresh incarnation.
    for (let attempt = 0; ; attempt++) {
      const session = await this.#openOrGet(input, onCreated)
      if (input.totalBytes === null) this.#checkRange(range, session.totalBytes)
      const token = randomUUID()
      const lease = this.#o.reserveLeaseMs
      const { incarnation } = session
      const got = await this.#o.sessions
        .reserve(key, range, token, Date.now(), lease, incarnation)
        .catch((err: unknown) => {
          // The reservation may have landed with its answer lost (a Redis failover, a timeout):
          // free it once the store answers again, or the client's retry waits out the lease.
          this.#releaseSoon(key, token)
          throw err
        })
      switch (got.status) {
        case 'missing':
          if (attempt < 2) continue
          throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
        case 'closed':
          throw new UploadError(
            'ERR_SESSION_CLOSED',
            'the upload session is being committed or is committed',
          )
        case 'straddles':
          throw new UploadError(
            'ERR_RANGE_NOT_SATISFIABLE',
            'the range overlaps bytes already received; only an exact re-send of one received' +
              ' chunk is accepted',
          )
        case 'busy':
          throw new UploadError(
            'ERR_RANGE_NOT_SATISFIABLE',
            'the range is being written by another request',
          )
        case 'limit':
          throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', got.reason)
        case 'received': {
          // Exactly one chunk received before: a retry whose answer was lost. Comparing whole
          // chunks only, so no answer tells whether a few guessed bytes matched.
          const len = range.end - range.start + 1
          const path = this.tempPathOf(got.session)
          const same = await streamEqualsFile(path, range.start, len, input.body)
          if (!same) {
            throw new UploadError(
              'ERR_RANGE_NOT_SATISFIABLE',
              'a re-sent chunk differs from the one already received',
            )
          }
          return { status: 'duplicate', session: got.session }
        }
        case 'reserved':
          return await this.#writeReserved(input, got.session, token)
      }
    }
  }

  /**
   * A range must lie inside the file; `{0,-1}` only declares a 0-byte file. Chunks below the
   * minimum size are refused unless they end the file; with the length unknown, no chunk can be
   * known to end it, so none is refused for its size.
   */
  #checkRange(range: ByteRange, total: number | null): void {
    const empty = range.end < range.start
    if (range.start < 0 || (empty ? total !== 0 : total !== null && range.end >= total)) {
      const size = total === null ? 'a file of unknown length' : `a file of ${total} bytes`
      throw new UploadError(
        'ERR_INVALID_RANGE',
        `range ${range.start}-${range.end} is outside ${size}`,
      )
    }
    const min = this.#o.minChunkBytes ?? 0
    if (!empty && total !== null && range.end - range.start + 1 < min && range.end !== total - 1) {
      throw new UploadError(
        'ERR_INVALID_RANGE',
        `a chunk must hold at least ${min} bytes, except the one that ends the file`,
      )
    }
  }

  /**
   * Opens a session before its first chunk, with its length unknown if need be, and metadata;
   * an existing session of this key must match (target; length when both are known).
   */
  async open(init: NewUpload, onCreated?: () => void): Promise<SessionRecord> {
    const problem = init.metadata === undefined ? null : metadataProblem(init.metadata)
    if (problem !== null) throw new UploadError('ERR_INVALID_ARGUMENT', problem)
    const total = init.totalBytes
    if (total !== null && !(Number.isSafeInteger(total) && total >= 0)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'the total length must be a non-negative integer',
      )
    }
    return this.#openOrGet(init, onCreated)
  }

  /** Declares the length of a session opened without one (once; see SessionStore.declareLength). */
  async declareLength(key: string, totalBytes: number): Promise<SessionRecord> {
    if (!(Number.isSafeInteger(totalBytes) && totalBytes >= 0)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'the total length must be a non-negative integer',
      )
    }
    const got = await this.#o.sessions.declareLength(key, totalBytes, Date.now())
    switch (got.status) {
      case 'declared':
        return got.session
      case 'missing':
        throw new UploadError('ERR_SESSION_NOT_FOUND', 'no such upload session')
      case 'closed':
        throw new UploadError(
          'ERR_SESSION_CLOSED',
          'the upload session is being committed or is committed',
        )
      case 'conflict':
        throw new UploadError(
          'ERR_SIZE_MISMATCH',
          `the session's length is ${got.session.totalBytes}, not ${totalBytes}`,
        )
      case 'too-small':
        throw new UploadError('ERR_SIZE_MISMATCH', `the session holds bytes beyond ${totalBytes}`)
    }
  }

  /**
   * The session's record, creating it (and its own, new temp file) if there is none;
   * `onCreated` is called when this call created it.
   */
  async #openOrGet(input: NewUpload, onCreated?: () => void): Promise<SessionRecord> {
    const { key, totalBytes } = input
    let session = await this.#o.sessions.get(key)
    if (session === null) {
      const incarnation = randomUUID()
      const tempName = sessionTempName(key, incarnation)
      const tempPath = this.#o.temps.path(tempName)
      // Create the (empty, sparse) temp file before the record so a record never names a missing
      // file; exclusively, so it is never a file of another incarnation.
      await createEmptyExclusive(tempPath)
      const init = {
        key,
        incarnation,
        target: input.target,
        totalBytes,
        tempName,
        ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
      }
      const opened = await this.#o.sessions.open(init, Date.now()).catch(async (err: unknown) => {
        await removeQuietly(tempPath)
        throw err
      })
      session = opened.session
      if (opened.created) {
        this.#o.log.debug({ key, totalBytes, incarnation }, 'session opened')
        const h = this.#o.pool.openStream(tempPath)
        if (h !== null) this.#hashes.set(key, incarnation, h)
        onCreated?.()
      } else {
        await removeQuietly(tempPath) // another request created it first
      }
    }
    if (session.target !== input.target) {
      throw new UploadError('ERR_SESSION_ID_CONFLICT', 'this session id belongs to another path')
    }
    if (totalBytes !== null && session.totalBytes !== totalBytes) {
      throw new UploadError(
        'ERR_SIZE_MISMATCH',
        `the session's file size is ${session.totalBytes ?? 'not declared'}, not ${totalBytes}`,
      )
    }
    return session
  }

  /** Streams a reserved chunk into the session's temp file and marks it received. */
  async #writeReserved(
    input: ChunkInput,
    session: SessionRecord,
    token: string,
  ): Promise<ChunkResult> {
    const { key, range } = input
    const empty = range.end < range.start
    const lease = this.#o.reserveLeaseMs
    const tempPath = this.tempPathOf(session)
    // The reservation is ours while confirmed within its lease. A process that stalled past it
    // (GC, a paused VM) may have lost it to another writer: it must not write another byte.
    let lost: UploadError | null = null
    const renew = () => this.#o.sessions.renew(key, token, Date.now(), lease)
    const renewal = new LeaseRenewal(lease, renew, (why) => {
      const msg = `the range reservation was lost (${why}); send the chunk again`
      lost ??= new UploadError('ERR_SESSION_BUSY', msg)
      input.body.destroy(lost)
    })
    // Where the written bytes reach in the file: what a cut body leaves (`keepPartial`).
    let landed = range.start
    // With `openEnded`, the chunk is what arrived: it ends where the body ended.
    let end = range.end
    // Set once the body is whole: a failure after it is a refusal, and nothing is kept.
    let refusable = false
    try {
      await this.#o.hooks?.afterReserve?.(key)
      const span = empty ? 0 : range.end - range.start + 1
      const written = await writeStreamAt(tempPath, range.start, input.body, {
        ...(input.openEnded ? { maxBytes: span } : { expectedBytes: span }),
        durable: this.#o.durableChunks,
        mustExist: true, // a cancelled incarnation's file is not brought back
        ...(input.signal ? { signal: input.signal } : {}),
        ...(input.keepPartial
          ? {
              onProgress: (pos: number) => {
                landed = pos
              },
              keepCutBatch: true,
            }
          : {}),
        // Checked before each batch reaches the disk: never write on a lease that may be gone.
        guard: () =>
          lost ??
          (renewal.fresh
            ? null
            : new UploadError(
                'ERR_SESSION_BUSY',
                'the range reservation ran out while the chunk was written; send it again',
              )),
      })
      if (input.openEnded) end = range.start + written - 1
      refusable = true
      // Checked with the whole body on disk and before it counts: a refusal leaves the range
      // unreceived, so the next write overwrites these bytes.
      await input.verify?.()
    } catch (err) {
      renewal.stop()
      const gone = isNotFound(err)
      // Bytes written under a reservation that was never taken from us are good: kept when
      // asked. (A lapsed lease nobody took is still ours: `complete` checks that.)
      if (input.keepPartial && !refusable && lost === null && !gone && landed > range.start) {
        const kept = { start: range.start, end: landed - 1 }
        await this.#keepPrefix(key, token, session, kept).catch((e: unknown) => {
          this.#o.log.warn({ err: e, key }, 'could not keep the bytes of a cut chunk')
        })
      }
      // Released at once, so the client may send the range again right away (a full disk, a cut).
      await this.#o.sessions.release(key, token).catch(() => this.#releaseSoon(key, token))
      if (gone) {
        throw new UploadError(
          'ERR_SESSION_NOT_FOUND',
          'the upload session was cancelled while the chunk arrived',
          { cause: err },
        )
      }
      throw lost ?? err
    }
    renewal.stop()
    if (end < range.start && !empty) {
      // An open-ended chunk whose body was empty: nothing to mark.
      await this.#o.sessions.release(key, token).catch(() => {})
      return { status: 'duplicate', session }
    }
    const now = Date.now()
    const durable = this.#o.durableChunks
    const done = await (end === range.end
      ? this.#o.sessions.complete(key, token, now, durable)
      : this.#o.sessions.complete(key, token, now, durable, end)
    ).catch((err: unknown) => {
      // Unrecorded (or recorded with the answer lost): the client sends the chunk again, and
      // that retry must not wait for this reservation's lease to run out.
      this.#releaseSoon(key, token)
      throw err
    })
    if (done === null) {
      throw new UploadError(
        'ERR_SESSION_BUSY',
        'the session changed while the chunk was written; send it again',
      )
    }
    this.#received(tempPath, session, done, empty ? null : { start: range.start, end })
    return { status: 'written', session: done }
  }

  /**
   * Marks what a cut body left in the file, `kept`, as received: on disk first per the fsync
   * mode, exactly like a whole chunk (fdatasynced now when chunks are durable, else owed until
   * the background flush). Null when the reservation was taken meanwhile.
   */
  async #keepPrefix(
    key: string,
    token: string,
    session: SessionRecord,
    kept: ByteRange,
  ): Promise<SessionRecord | null> {
    const tempPath = this.tempPathOf(session)
    if (this.#o.durableChunks) await fsyncFile(tempPath)
    const durable = this.#o.durableChunks
    const done = await this.#o.sessions.complete(key, token, Date.now(), durable, kept.end)
    if (done !== null) this.#received(tempPath, session, done, kept)
    const marked = done !== null
    this.#o.log.debug({ key, ...kept, marked }, 'kept the bytes of a cut chunk')
    return done
  }

  /** After `complete`: what this instance now owes, and the running hash's progress. */
  #received(path: string, session: SessionRecord, done: SessionRecord, range: ByteRange | null) {
    if (!this.#o.durableChunks && range !== null) {
      this.#flusher.owe(path, session.key, session.incarnation, range)
    }
    const running = this.#hashes.of(done)
    running?.advance(contiguousPrefix(done.received))
  }

  /** Gaps to send; with the length unknown, only those below the last byte received. */
  missing(session: SessionRecord): ByteRange[] {
    return missingRanges(session.received, session.totalBytes ?? contiguousEnd(session))
  }

  /**
   * Commits a complete session: hash (the running hash if this instance has it, else a full pass
   * on the pool), then `publish`, which must move the temp file into place atomically and
   * answer the family's result. A repeated commit answers the first result.
   */
  async commit(
    key: string,
    publish: (ctx: CommitContext) => Promise<string>,
    algos: readonly HashAlgo[] = ['sha256'],
  ): Promise<string> {
    const owner = randomUUID()
    const lease = this.#o.commitLeaseMs
    const got = await this.#o.sessions.beginCommit(key, owner, Date.now(), lease)
    switch (got.status) {
      case 'missing':
        throw new UploadError('ERR_SESSION_NOT_FOUND', 'no such upload session')
      case 'incomplete':
        if (got.session.totalBytes === null) {
          throw new UploadError('ERR_SESSION_INCOMPLETE', 'the upload length is not declared yet', {
            detail: { kind: 'missing-ranges', ranges: this.missing(got.session) },
          })
        }
        throw new UploadError('ERR_SESSION_INCOMPLETE', 'the upload session is missing bytes', {
          detail: { kind: 'missing-ranges', ranges: this.missing(got.session) },
        })
      case 'busy':
        throw new UploadError('ERR_SESSION_BUSY', 'another commit of this session is running')
      case 'committed':
        return got.session.result ?? ''
      case 'begun':
        break
    }
    const session = got.session
    // A commit begins only once every byte of a declared length is received.
    const total = session.totalBytes ?? 0
    const tempPath = this.tempPathOf(session)
    // A commit we took over (its holder died or stalled past its lease) may wake up later: its
    // hand-off link goes first, so its publish (a rename of that link) can only fail.
    if (got.takenOverFrom !== null) {
      await removeQuietly(this.#o.temps.handoffPath(key, got.takenOverFrom))
    }
    // The commit keeps its lease while it hashes and publishes. If a renewal says the commit is no
    // longer ours, or none succeeds within the lease, the commit stops before its next step.
    const ctl = new AbortController()
    const renew = () => this.#o.sessions.renewCommit(key, owner, Date.now(), lease)
    const renewal = new LeaseRenewal(lease, renew, (why) => {
      const msg = `the commit lost its lease (${why}); commit again`
      ctl.abort(new UploadError('ERR_SESSION_BUSY', msg))
    })
    const stillOurs = () => {
      if (ctl.signal.aborted) throw ctl.signal.reason
    }
    // `publish` consumes a hard link, never the session's own temp file: a crash after the rename
    // but before the result is recorded leaves the temp file, so a repeated commit can redo it.
    const handoff = this.#o.temps.handoffPath(key, owner)
    const t0 = performance.now()
    let hashedAt = t0
    let source: keyof CommitHashCounts = 'fullPass'
    try {
      // Exactly totalBytes bytes are published: checked, not assumed.
      const size = await fileSize(tempPath)
      if (size !== total) {
        throw new UploadError('ERR_IO', `the temp file has ${size} bytes, the session ${total}`)
      }
      const h = this.#hashes.of(session)
      this.#hashes.forget(key)
      let digests: HashResult['digests'] | null = null
      const sha256Only = algos.length === 1 && algos[0] === 'sha256'
      if (h !== null && sha256Only) {
        digests = (await h.finish(total))?.digests ?? null
        if (digests !== null) source = 'local'
      } else {
        h?.cancel()
        if (h === null && sha256Only && this.#peers !== null && total >= PEER_HASH_MIN_BYTES) {
          const sha256 = await this.#peers.ask(session, total)
          if (sha256 !== null) {
            digests = { sha256 }
            source = 'peer'
          }
        }
      }
      if (digests === null) {
        const full = await this.#o.pool.hashFile(tempPath, { end: total, algos })
        if (full.bytes !== total) {
          throw new UploadError(
            'ERR_IO',
            `the temp file has ${full.bytes} bytes, the session ${total}`,
          )
        }
        digests = full.digests
      }
      hashedAt = performance.now()
      await this.#flusher.settle(tempPath)
      await (this.#o.sync ?? DiskSync.on).file(tempPath)
      await this.#o.hooks?.beforePublish?.(key)
      stillOurs()
      // The fence, on the store's clock, right before the irreversible step.
      const margin = Math.min(5000, lease / 3)
      if (!(await this.#o.sessions.checkCommit(key, owner, Date.now(), margin))) {
        throw new UploadError(
          'ERR_SESSION_BUSY',
          'the commit lost its lease before it could publish; commit again',
        )
      }
      await linkFile(tempPath, handoff)
      const result = await publish({ session, tempPath: handoff, digests })
      if (!(await this.#o.sessions.finishCommit(key, owner, result, Date.now()))) {
        throw new UploadError('ERR_SESSION_BUSY', 'the session changed while it was committed')
      }
      this.#flusher.committed(tempPath)
      await removeQuietly(tempPath)
      this.hashCounts[source]++
      this.#o.log.info(
        {
          key,
          bytes: total,
          sha256: digests['sha256'],
          hashedBy: source,
          fence: session.commitFence,
          hashMs: Math.round(hashedAt - t0),
          publishMs: Math.round(performance.now() - hashedAt),
        },
        'session committed',
      )
      return result
    } catch (err) {
      await removeQuietly(handoff).catch(() => {})
      await this.#o.sessions.abortCommit(key, owner).catch(() => {})
      throw err
    } finally {
      renewal.stop()
    }
  }

  /**
   * Cancels a session and removes its temp file; false when there was none. Refused while a commit
   * runs.
   */
  async abort(key: string): Promise<boolean> {
    const got = await this.#o.sessions.cancel(key, Date.now())
    if (got.status === 'missing') return false
    if (got.status === 'busy') {
      throw new UploadError(
        'ERR_SESSION_BUSY',
        'a commit of this session is running; cancel it after the commit ends',
      )
    }
    this.#hashes.drop(key, got.session.incarnation)
    await this.#o.hooks?.afterRecordRemoved?.(key)
    this.#flusher.forget(this.tempPathOf(got.session))
    await removeQuietly(this.tempPathOf(got.session))
    return true
  }
}
