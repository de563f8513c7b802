/**
 * Protocol-neutral upload operations. The order of work for a chunk is: reserve the range in the
 * shared store → stream the body to its offset in the session's temp file → mark it received.
 * A dropped connection loses at most the chunk in flight; the client learns what to resend from
 * the missing ranges.
 */
import { createHash, randomUUID } from 'node:crypto'
import { link, open, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import type { HashAlgo, HashPool, HashResult, StreamHasher } from '../hashing/hash-pool.js'
import { addRange, contiguousPrefix, missingRanges, type ByteRange } from '../state/range-set.js'
import type { Bus, SessionRecord, SessionStore } from '../state/types.js'
import { BackgroundFlusher, fsyncFile, publishFile, removeQuietly, streamEqualsFile, writeStreamAt, type PublishOptions } from '../storage/files.js'
import type { DataLayout } from '../storage/layout.js'
import { LeaseRenewal } from '../state/lock-handle.js'

export interface UploadServiceOptions {
  readonly sessions: SessionStore
  readonly pool: HashPool
  readonly layout: DataLayout
  readonly log: Logger
  /** fdatasync every chunk before it counts as received. */
  readonly durableChunks: boolean
  readonly sessionTtlMs: number
  readonly reserveLeaseMs: number
  /** How long one commit may hold a session before another instance may take it over, ms. */
  readonly commitLeaseMs: number
  /** Smallest chunk accepted, except the one that ends the file (0: any). */
  readonly minChunkBytes?: number
  /** Test hooks: pauses injected at the named points of the data path, to reproduce races. */
  readonly hooks?: UploadHooks
  /** This instance, and how to tell whether another one still runs (its stream temp files are in use). */
  readonly instance?: { readonly id: string; isAlive(id: string): Promise<boolean> }
  /**
   * The bus every instance shares (Redis only): a commit on an instance without the session's
   * running hash asks the instance that has it (see `listenForPeers`). Null: one instance.
   */
  readonly peers?: Bus | null
}

/** Points where a test can hold the data path (a stall: GC, event-loop lag, a slow Redis reply). */
export interface UploadHooks {
  /** After the chunk's reservation, before its bytes are written. */
  readonly afterReserve?: (key: string) => Promise<void>
  /** After the commit has hashed the file, before the fence check and publish. */
  readonly beforePublish?: (key: string) => Promise<void>
  /** After a cancel or the sweeper removed a session's record, before its temp file is deleted. */
  readonly afterRecordRemoved?: (key: string) => Promise<void>
}

export interface ChunkInput {
  /** Store key: `<family>:<client id>`. */
  readonly key: string
  /** Where the session publishes (family-relative); must match an existing session's. */
  readonly target: string
  readonly totalBytes: number
  /** Inclusive range; `{0,-1}` declares a 0-byte upload. */
  readonly range: ByteRange
  readonly body: Readable
  readonly signal?: AbortSignal
}

export interface ChunkResult {
  /** `written`: new bytes landed; `duplicate`: an exact re-send of received bytes, nothing changed. */
  readonly status: 'written' | 'duplicate'
  readonly session: SessionRecord
}

export interface CommitContext {
  readonly session: SessionRecord
  /** A hard link to the session's file, already fsynced: publish it with `alreadySynced`. */
  readonly tempPath: string
  readonly digests: HashResult['digests']
}

export interface WholeFile {
  readonly tempPath: string
  readonly bytes: number
  readonly digests: HashResult['digests']
}

/**
 * Bodies up to this size are hashed on the main thread as they arrive; larger ones by a pool
 * thread that follows the temp file. Measured with Shaman uploads of distinct files over loopback
 * on the 2-core project machine (medians of interleaved rounds, fsync included; inline vs pool):
 * 64 KiB 198 vs 120 files/s, 1 MiB 70 vs 47 files/s, 4 MiB 163 vs 187 MB/s, 16 MiB 212 vs 251,
 * 256 MiB 195 vs 348. Small files lose to the pool's per-file round trip; from a few MiB on,
 * hashing on another core while the main thread moves bytes wins. The crossover lies between
 * 1 and 4 MiB.
 */
export const INLINE_HASH_MAX_BYTES = 2 * 1024 * 1024

/**
 * A commit without the running hash asks the other instances for it only from this size on.
 * Asking costs two Redis round trips when an instance has the hash (the common case: a load
 * balancer sent the commit elsewhere) and `PEER_ACK_MS` when none has (after a restart or an
 * idle timeout); a full pass on the pool costs ~0.7 ms per MiB (45 ms at 64 MiB, 0.8 s at 1 GiB).
 */
export const PEER_HASH_MIN_BYTES = 64 * 1024 * 1024
/** How long a commit waits for an instance to say it has the running hash, ms. */
const PEER_ACK_MS = 250
/** How long it then waits for that instance's digest (it reads what it has not hashed yet), ms. */
const PEER_DIGEST_MS = 60_000
const HASH_REQUEST_CHANNEL = 'uploads:hash-request'

/** Commit → every instance: "whoever has the running hash of this session, finish it". */
interface PeerHashRequest {
  readonly key: string
  /** Ties the request to one incarnation of the session key: a hasher left from an aborted session of the same id never answers. */
  readonly incarnation: string
  readonly size: number
  readonly reply: string
}
/** Owner → the asking commit: first `ack`, then the digest (null when the running hash was lost). */
type PeerHashReply = { readonly type: 'ack' } | { readonly type: 'digest'; readonly sha256: string | null }

/** A running hash and the session incarnation it belongs to. */
interface RunningHash {
  readonly hasher: StreamHasher
  readonly incarnation: string
}

/** Where a commit's digest came from; counted per instance (logs and tests). */
export interface CommitHashCounts {
  /** This instance's running hash. */
  local: number
  /** Another instance's running hash, handed over on request. */
  peer: number
  /** A full pass over the temp file. */
  fullPass: number
}

/**
 * Temp files are named after the session key AND its incarnation (`s-<key>.<incarnation>.part`),
 * and created exclusively: a session created again under the same id (after a cancel, an expiry,
 * or a Redis that lost its data) never sees, and never deletes, bytes of an earlier one.
 * Commit hand-off links are `p-<key>.<commit owner>.part`.
 */
const tempNameFor = (key: string, incarnation: string) => `s-${Buffer.from(key).toString('base64url')}.${incarnation}.part`
const handoffNameFor = (key: string, owner: string) => `p-${Buffer.from(key).toString('base64url')}.${owner}.part`
function parseTempName(name: string): { kind: 's' | 'p'; key: string; id: string } | { kind: 'w'; instance: string } | null {
  const w = /^w-([0-9a-f-]{36})\.[0-9a-f-]{36}\.part$/.exec(name)
  if (w) return { kind: 'w', instance: w[1]! }
  const m = /^([sp])-([A-Za-z0-9_-]*)\.([0-9a-f-]{36})\.part$/.exec(name)
  return m ? { kind: m[1] as 's' | 'p', key: Buffer.from(m[2]!, 'base64url').toString(), id: m[3]! } : null
}
/** Files a sweep leaves alone this long after their last change: a temp file exists before its record. */
const TEMP_GRACE_MS = 60_000

export class UploadService {
  readonly #o: UploadServiceOptions
  /** Running hashes of sessions opened on this instance, by session key. */
  readonly #hashers = new Map<string, RunningHash>()
  /**
   * Flushes temp files as bodies arrive; after each flush of a session's file, the ranges this
   * instance completed before the flush began are marked durable in the store (they are no longer
   * owed: a power cut cannot lose them).
   */
  readonly #flusher = new BackgroundFlusher(64 * 1024 * 1024, (path) => this.#flushAndSettle(path))
  /** Ranges this instance completed in a session's temp file and has not flushed yet, by path. */
  readonly #unflushed = new Map<string, { key: string; incarnation: string; ranges: ByteRange[] }>()
  readonly hashCounts: CommitHashCounts = { local: 0, peer: 0, fullPass: 0 }
  readonly #instanceId: string
  /** Stream temp files of this instance not yet published or discarded. */
  readonly #streaming = new Set<string>()
  #stopListening: (() => Promise<void>) | null = null

  constructor(options: UploadServiceOptions) {
    this.#o = options
    this.#instanceId = options.instance?.id ?? randomUUID()
  }

  /**
   * A new temp file name for a whole-file stream or a small file to publish:
   * `w-<instance>.<random>.part`, so a sweep can tell a file of a running stream (this instance
   * is streaming it, or its instance is alive) from one left by a killed process. The caller
   * publishes it (`publish`) or lets it go (`discard`).
   */
  streamTempPath(): string {
    const path = join(this.#o.layout.tmp, `w-${this.#instanceId}.${randomUUID()}.part`)
    this.#streaming.add(path)
    return path
  }

  async #flushAndSettle(path: string): Promise<void> {
    const owed = this.#unflushed.get(path)
    this.#unflushed.delete(path)
    await fsyncFile(path)
    if (owed !== undefined) await this.#o.sessions.markDurable(owed.key, owed.incarnation, owed.ranges, Date.now())
  }

  get layout(): DataLayout {
    return this.#o.layout
  }

  tempPathOf(session: SessionRecord): string {
    return join(this.#o.layout.tmp, session.tempName)
  }

  /** Opens the session if new, checks it matches, then writes or verifies one chunk. */
  async writeChunk(input: ChunkInput): Promise<ChunkResult> {
    const { key, range, totalBytes } = input
    const empty = range.end < range.start
    if (range.start < 0 || (empty ? totalBytes !== 0 : range.end >= totalBytes)) {
      throw new UploadError('ERR_INVALID_RANGE', `range ${range.start}-${range.end} is outside a file of ${totalBytes} bytes`)
    }
    const min = this.#o.minChunkBytes ?? 0
    if (!empty && range.end - range.start + 1 < min && range.end !== totalBytes - 1) {
      throw new UploadError('ERR_INVALID_RANGE', `a chunk must hold at least ${min} bytes, except the one that ends the file`)
    }
    // A session removed between our read and our reservation (cancel, expiry, lost Redis data)
    // is answered `missing`; the next pass opens a fresh incarnation.
    for (let attempt = 0; ; attempt++) {
      const session = await this.#openOrGet(input)
      const token = randomUUID()
      const got = await this.#o.sessions.reserve(key, range, token, Date.now(), this.#o.reserveLeaseMs, session.incarnation)
      switch (got.status) {
        case 'missing':
          if (attempt < 2) continue
          throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
        case 'closed':
          throw new UploadError('ERR_SESSION_CLOSED', 'the upload session is being committed or is committed')
        case 'straddles':
          throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', 'the range overlaps bytes already received; only an exact re-send of one received chunk is accepted')
        case 'busy':
          throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', 'the range is being written by another request')
        case 'limit':
          throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', got.reason)
        case 'received': {
          // Exactly one chunk received before: a retry whose answer was lost. Comparing whole
          // chunks only, so no answer tells whether a few guessed bytes matched.
          const len = range.end - range.start + 1
          const same = await streamEqualsFile(this.tempPathOf(got.session), range.start, len, input.body)
          if (!same) throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', 'a re-sent chunk differs from the one already received')
          return { status: 'duplicate', session: got.session }
        }
        case 'reserved':
          return await this.#writeReserved(input, got.session, token)
      }
    }
  }

  /** The session's record, creating it (and its own, new temp file) if there is none. */
  async #openOrGet(input: ChunkInput): Promise<SessionRecord> {
    const { key, totalBytes } = input
    let session = await this.#o.sessions.get(key)
    if (session === null) {
      const incarnation = randomUUID()
      const tempName = tempNameFor(key, incarnation)
      const tempPath = join(this.#o.layout.tmp, tempName)
      // Create the (empty, sparse) temp file before the record so a record never names a missing
      // file; exclusively, so it is never a file of another incarnation.
      await (await open(tempPath, 'wx', 0o644)).close()
      const opened = await this.#o.sessions.open({ key, incarnation, target: input.target, totalBytes, tempName }, Date.now()).catch(async (err: unknown) => {
        await removeQuietly(tempPath)
        throw err
      })
      session = opened.session
      if (opened.created) {
        this.#o.log.debug({ key, totalBytes, incarnation }, 'session opened')
        const h = this.#o.pool.openStream(tempPath)
        if (h !== null) this.#hashers.set(key, { hasher: h, incarnation })
      } else {
        await removeQuietly(tempPath) // another request created it first
      }
    }
    if (session.target !== input.target) {
      throw new UploadError('ERR_SESSION_ID_CONFLICT', 'this session id belongs to another path')
    }
    if (session.totalBytes !== totalBytes) {
      throw new UploadError('ERR_SIZE_MISMATCH', `the session's file size is ${session.totalBytes}, not ${totalBytes}`)
    }
    return session
  }

  /** Streams a reserved chunk into the session's temp file and marks it received. */
  async #writeReserved(input: ChunkInput, session: SessionRecord, token: string): Promise<ChunkResult> {
    const { key, range } = input
    const empty = range.end < range.start
    const lease = this.#o.reserveLeaseMs
    const tempPath = this.tempPathOf(session)
    // The reservation is ours while confirmed within its lease. A process that stalled past it
    // (GC, a paused VM) may have lost it to another writer: it must not write another byte.
    let lost: UploadError | null = null
    const renewal = new LeaseRenewal(lease, () => this.#o.sessions.renew(key, token, Date.now(), lease), (why) => {
      lost ??= new UploadError('ERR_SESSION_BUSY', `the range reservation was lost (${why}); send the chunk again`)
      input.body.destroy(lost)
    })
    try {
      await this.#o.hooks?.afterReserve?.(key)
      await writeStreamAt(tempPath, range.start, input.body, {
        expectedBytes: empty ? 0 : range.end - range.start + 1,
        durable: this.#o.durableChunks,
        mustExist: true, // a cancelled incarnation's file is not brought back
        ...(input.signal ? { signal: input.signal } : {}),
        // Checked before each batch reaches the disk: never write on a lease that may be gone.
        guard: () => lost ?? (renewal.fresh ? null : new UploadError('ERR_SESSION_BUSY', 'the range reservation ran out while the chunk was written; send it again')),
      })
    } catch (err) {
      renewal.stop()
      // Released at once, so the client may send the range again right away (a full disk, a cut).
      await this.#o.sessions.release(key, token).catch(() => {})
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was cancelled while the chunk arrived', { cause: err })
      }
      throw lost ?? err
    }
    renewal.stop()
    const done = await this.#o.sessions.complete(key, token, Date.now(), this.#o.durableChunks)
    if (done === null) throw new UploadError('ERR_SESSION_BUSY', 'the session changed while the chunk was written; send it again')
    if (!this.#o.durableChunks && !empty) {
      // Owed until a flush: noted before the flusher may run, so the flush that follows covers it.
      let u = this.#unflushed.get(tempPath)
      if (u === undefined || u.incarnation !== session.incarnation) {
        u = { key, incarnation: session.incarnation, ranges: [] }
        this.#unflushed.set(tempPath, u)
      }
      u.ranges = addRange(u.ranges, range)
      this.#flusher.wrote(tempPath, range.end - range.start + 1)
    }
    const running = this.#runningHash(done)
    running?.advance(contiguousPrefix(done.received))
    return { status: 'written', session: done }
  }

  async getSession(key: string): Promise<SessionRecord | null> {
    return this.#o.sessions.get(key)
  }

  missing(session: SessionRecord): ByteRange[] {
    return missingRanges(session.received, session.totalBytes)
  }

  async listByTarget(keyPrefix: string, target: string): Promise<SessionRecord[]> {
    return this.#o.sessions.listByTarget(keyPrefix, target)
  }

  /**
   * Commits a complete session: hash (the running hash if this instance has it, else a full pass
   * on the pool), then `publish`, which must move the temp file into place atomically and
   * answer the family's result. A repeated commit answers the first result.
   */
  async commit(key: string, publish: (ctx: CommitContext) => Promise<string>, algos: readonly HashAlgo[] = ['sha256']): Promise<string> {
    const owner = randomUUID()
    const lease = this.#o.commitLeaseMs
    const got = await this.#o.sessions.beginCommit(key, owner, Date.now(), lease)
    switch (got.status) {
      case 'missing':
        throw new UploadError('ERR_SESSION_NOT_FOUND', 'no such upload session')
      case 'incomplete':
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
    const tempPath = this.tempPathOf(session)
    // A commit we took over (its holder died or stalled past its lease) may wake up later: its
    // hand-off link goes first, so its publish (a rename of that link) can only fail.
    if (got.takenOverFrom !== null) await removeQuietly(join(this.#o.layout.tmp, handoffNameFor(key, got.takenOverFrom)))
    // The commit keeps its lease while it hashes and publishes. If a renewal says the commit is no
    // longer ours, or none succeeds within the lease, the commit stops before its next step.
    const ctl = new AbortController()
    const renewal = new LeaseRenewal(lease, () => this.#o.sessions.renewCommit(key, owner, Date.now(), lease), (why) => {
      ctl.abort(new UploadError('ERR_SESSION_BUSY', `the commit lost its lease (${why}); commit again`))
    })
    const stillOurs = () => {
      if (ctl.signal.aborted) throw ctl.signal.reason
    }
    // `publish` consumes a hard link, never the session's own temp file: a crash after the rename
    // but before the result is recorded leaves the temp file, so a repeated commit can redo it.
    const handoff = join(this.#o.layout.tmp, handoffNameFor(key, owner))
    const t0 = performance.now()
    let hashedAt = t0
    let source: keyof CommitHashCounts = 'fullPass'
    try {
      // Exactly totalBytes bytes are published: checked, not assumed.
      const size = (await stat(tempPath)).size
      if (size !== session.totalBytes) {
        throw new UploadError('ERR_IO', `the temp file has ${size} bytes, the session ${session.totalBytes}`)
      }
      const h = this.#runningHash(session)
      this.#hashers.delete(key)
      let digests: HashResult['digests'] | null = null
      const sha256Only = algos.length === 1 && algos[0] === 'sha256'
      if (h !== null && sha256Only) {
        digests = (await h.finish(session.totalBytes))?.digests ?? null
        if (digests !== null) source = 'local'
      } else {
        h?.cancel()
        if (h === null && sha256Only && this.#o.peers && session.totalBytes >= PEER_HASH_MIN_BYTES) {
          const sha256 = await this.#askPeers(this.#o.peers, session)
          if (sha256 !== null) {
            digests = { sha256 }
            source = 'peer'
          }
        }
      }
      if (digests === null) {
        const full = await this.#o.pool.hashFile(tempPath, { end: session.totalBytes, algos })
        if (full.bytes !== session.totalBytes) {
          throw new UploadError('ERR_IO', `the temp file has ${full.bytes} bytes, the session ${session.totalBytes}`)
        }
        digests = full.digests
      }
      hashedAt = performance.now()
      await this.#flusher.settle(tempPath)
      await fsyncFile(tempPath)
      await this.#o.hooks?.beforePublish?.(key)
      stillOurs()
      // The fence, on the store's clock, right before the irreversible step.
      if (!(await this.#o.sessions.checkCommit(key, owner, Date.now(), Math.min(5000, lease / 3)))) {
        throw new UploadError('ERR_SESSION_BUSY', 'the commit lost its lease before it could publish; commit again')
      }
      await link(tempPath, handoff)
      const result = await publish({ session, tempPath: handoff, digests })
      if (!(await this.#o.sessions.finishCommit(key, owner, result, Date.now()))) {
        throw new UploadError('ERR_SESSION_BUSY', 'the session changed while it was committed')
      }
      this.#unflushed.delete(tempPath)
      await removeQuietly(tempPath)
      this.hashCounts[source]++
      this.#o.log.info({
        key, bytes: session.totalBytes, sha256: digests['sha256'], hashedBy: source, fence: session.commitFence,
        hashMs: Math.round(hashedAt - t0), publishMs: Math.round(performance.now() - hashedAt),
      }, 'session committed')
      return result
    } catch (err) {
      await removeQuietly(handoff).catch(() => {})
      await this.#o.sessions.abortCommit(key, owner).catch(() => {})
      throw err
    } finally {
      renewal.stop()
    }
  }

  /** Cancels a session and removes its temp file; false when there was none. Refused while a commit runs. */
  async abort(key: string): Promise<boolean> {
    const got = await this.#o.sessions.cancel(key, Date.now())
    if (got.status === 'missing') return false
    if (got.status === 'busy') throw new UploadError('ERR_SESSION_BUSY', 'a commit of this session is running; cancel it after the commit ends')
    this.#dropHasher(key, got.session.incarnation)
    await this.#o.hooks?.afterRecordRemoved?.(key)
    this.#forgetFile(this.tempPathOf(got.session))
    await removeQuietly(this.tempPathOf(got.session))
    return true
  }

  #forgetFile(path: string) {
    this.#flusher.forget(path)
    this.#unflushed.delete(path)
  }

  /** Drops the running hash of `key` (only of that incarnation, when given). */
  #dropHasher(key: string, incarnation?: string) {
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
  #runningHash(session: SessionRecord): StreamHasher | null {
    const r = this.#hashers.get(session.key)
    if (r === undefined) return null
    if (r.hasher.closed || r.incarnation !== session.incarnation) {
      this.#dropHasher(session.key)
      return null
    }
    return r.hasher
  }

  /**
   * Answers other instances' commits that lack a session's running hash: the instance that
   * opened the session (and so runs its hash) finishes it and hands over the digest, so a
   * commit that a load balancer sends elsewhere does not read the whole file again.
   */
  async listenForPeers(): Promise<void> {
    const bus = this.#o.peers
    if (!bus || this.#stopListening !== null) return
    this.#stopListening = await bus.subscribe(HASH_REQUEST_CHANNEL, (message) => {
      this.#answerPeer(bus, message).catch((err: unknown) => this.#o.log.warn({ err }, 'could not answer a peer hash request'))
    })
  }

  async #answerPeer(bus: Bus, message: string): Promise<void> {
    let req: PeerHashRequest
    try {
      req = JSON.parse(message) as PeerHashRequest
    } catch {
      return
    }
    if (typeof req.key !== 'string' || typeof req.reply !== 'string' || !Number.isSafeInteger(req.size) || typeof req.incarnation !== 'string') return
    const r = this.#hashers.get(req.key)
    if (r === undefined || r.hasher.closed || r.incarnation !== req.incarnation) return
    this.#hashers.delete(req.key)
    await bus.publish(req.reply, JSON.stringify({ type: 'ack' } satisfies PeerHashReply))
    const result = await r.hasher.finish(req.size)
    const sha256 = result !== null && result.bytes === req.size ? (result.digests['sha256'] ?? null) : null
    await bus.publish(req.reply, JSON.stringify({ type: 'digest', sha256 } satisfies PeerHashReply))
  }

  /**
   * The session's sha256 from the instance that runs its hash, or null: none answered in time,
   * its hash was lost, or the bus failed (the commit then hashes the file itself).
   */
  async #askPeers(bus: Bus, session: SessionRecord): Promise<string | null> {
    try {
      return await this.#requestPeerDigest(bus, session)
    } catch (err) {
      this.#o.log.warn({ err, key: session.key }, 'could not ask the other instances for a running hash')
      return null
    }
  }

  async #requestPeerDigest(bus: Bus, session: SessionRecord): Promise<string | null> {
    const reply = `uploads:hash-reply:${randomUUID()}`
    let acked = false
    let settle: (sha256: string | null) => void = () => {}
    const answer = new Promise<string | null>((resolve) => (settle = resolve))
    let timer: NodeJS.Timeout | undefined
    const unsubscribe = await bus.subscribe(reply, (message) => {
      let m: PeerHashReply
      try {
        m = JSON.parse(message) as PeerHashReply
      } catch {
        return
      }
      if (m.type === 'ack' && !acked) {
        acked = true
        clearTimeout(timer)
        timer = setTimeout(() => settle(null), PEER_DIGEST_MS)
      } else if (m.type === 'digest') {
        settle(typeof m.sha256 === 'string' && /^[0-9a-f]{64}$/.test(m.sha256) ? m.sha256 : null)
      }
    })
    try {
      const req: PeerHashRequest = { key: session.key, incarnation: session.incarnation, size: session.totalBytes, reply }
      timer = setTimeout(() => settle(null), PEER_ACK_MS)
      await bus.publish(HASH_REQUEST_CHANNEL, JSON.stringify(req))
      return await answer
    } finally {
      clearTimeout(timer)
      await unsubscribe().catch(() => {})
    }
  }

  /**
   * Streams a whole body into a new temp file while a pool thread hashes what has landed. The
   * caller publishes `tempPath` (publishFile) or discards it (discard).
   */
  async receiveWhole(
    body: Readable,
    opts: {
      maxBytes: number
      expectedBytes?: number
      algos?: readonly HashAlgo[]
      signal?: AbortSignal
      /** Hash on this thread as bytes arrive; default: when the length is known and small. */
      hashInline?: boolean
    },
  ): Promise<WholeFile> {
    const tempPath = this.streamTempPath()
    const algos = opts.algos ?? ['sha256']
    // A small body of known length is hashed inline as it arrives: cheaper than a pool round trip.
    // Anything larger (or of unknown length) is hashed by a pool thread following the writes.
    const inline = opts.hashInline ?? (opts.expectedBytes !== undefined && opts.expectedBytes <= INLINE_HASH_MAX_BYTES)
    const hashes = inline ? algos.map((a) => createHash(a)) : []
    const h = inline ? null : this.#o.pool.openStream(tempPath, algos)
    let last = 0
    const onProgress = (pos: number) => {
      h?.advance(pos)
      this.#flusher.wrote(tempPath, pos - last)
      last = pos
    }
    try {
      const bytes = await writeStreamAt(tempPath, 0, body, {
        ...(opts.expectedBytes !== undefined ? { expectedBytes: opts.expectedBytes } : { maxBytes: opts.maxBytes }),
        ...(opts.signal ? { signal: opts.signal } : {}),
        onProgress,
        hashes,
      })
      await this.#flusher.settle(tempPath)
      if (inline) {
        return { tempPath, bytes, digests: Object.fromEntries(algos.map((a, i) => [a, hashes[i]!.digest('hex')])) }
      }
      const streamed = h ? await h.finish(bytes) : null
      const digests = streamed?.digests ?? (await this.#o.pool.hashFile(tempPath, { algos })).digests
      return { tempPath, bytes, digests }
    } catch (err) {
      h?.cancel()
      await this.#flusher.settle(tempPath)
      await this.discard(tempPath)
      throw err
    }
  }

  async publish(tempPath: string, target: string, opts: PublishOptions): Promise<void> {
    try {
      await publishFile(tempPath, target, { ...opts, alreadySynced: opts.alreadySynced ?? false })
    } catch (err) {
      await removeQuietly(tempPath)
      throw err
    } finally {
      this.#streaming.delete(tempPath)
    }
  }

  async discard(tempPath: string): Promise<void> {
    try {
      await removeQuietly(tempPath)
    } finally {
      this.#streaming.delete(tempPath)
    }
  }

  /**
   * Removes expired sessions with their temp files, then temp files that nothing needs any more:
   * a session file whose record is gone, is of another incarnation, or is committed (a crash
   * between the commit's record and its clean-up); a commit hand-off link whose commit is not
   * running; stream files and folders older than the TTL.
   */
  async sweep(nowMs = Date.now()): Promise<{ sessions: number; orphans: number }> {
    const ttl = this.#o.sessionTtlMs
    let sessions = 0
    for (;;) {
      const keys = await this.#o.sessions.listExpired(nowMs, ttl, 100)
      let removedAny = false
      // A batch at once: the embedded journal syncs each removal, and concurrent ones share a sync.
      await Promise.all(keys.map(async (key) => {
        const gone = await this.#o.sessions.removeIfExpired(key, nowMs, ttl)
        if (gone === null) return
        removedAny = true
        sessions++
        this.#dropHasher(key, gone.incarnation)
        await this.#o.hooks?.afterRecordRemoved?.(key)
        this.#forgetFile(this.tempPathOf(gone))
        await removeQuietly(this.tempPathOf(gone))
      }))
      if (keys.length < 100 || !removedAny) break
    }
    let orphans = 0
    for (const name of await readdir(this.#o.layout.tmp)) {
      const full = join(this.#o.layout.tmp, name)
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
        orphan = parsed.instance === this.#instanceId
          ? !this.#streaming.has(full)
          : !(await (this.#o.instance?.isAlive(parsed.instance) ?? Promise.resolve(true)))
      } else {
        const rec = await this.#o.sessions.get(parsed.key)
        orphan = parsed.kind === 's'
          ? rec === null || rec.incarnation !== parsed.id || rec.state === 'committed'
          : rec === null || rec.state !== 'committing' || rec.commitOwner !== parsed.id
      }
      if (orphan) {
        await removeQuietly(full)
        orphans++
      }
    }
    if (sessions + orphans > 0) this.#o.log.info({ sessions, orphans }, 'swept expired uploads')
    return { sessions, orphans }
  }

  async close(): Promise<void> {
    const stop = this.#stopListening
    this.#stopListening = null
    await stop?.().catch(() => {})
    for (const key of [...this.#hashers.keys()]) this.#dropHasher(key)
  }
}
