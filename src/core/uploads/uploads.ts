/**
 * Protocol-neutral upload operations, one facade over the modules beside it:
 *
 * - sessions.ts: chunked sessions from open to commit or cancel;
 * - running-hash.ts: the running hashes that follow sessions' temp files;
 * - peer-digest.ts: a commit asks the instance with the running hash for its digest (bus);
 * - receive.ts: whole-file receive, hashed on the way;
 * - publish.ts: whole-file temp files until publish or discard;
 * - flush.ts: background flushing and the ranges it settles;
 * - sweep.ts: the sweep of `tmp/`, by the names and orphan rules of storage's TempFiles.
 */
import type { Readable } from 'node:stream'
import type { HashAlgo } from '../hashing/hash-pool.js'
import type { ByteRange } from '../state/range-set.js'
import type { SessionRecord } from '../state/types.js'
import type { PublishOptions } from '../storage/files.js'
import { DiskSync } from '../storage/disk-sync.js'
import { OwedFlusher } from './flush.js'
import { PeerDigest } from './peer-digest.js'
import { StreamFiles } from './publish.js'
import { receiveWhole, type ReceiveWholeOptions } from './receive.js'
import { RunningHashes } from './running-hash.js'
import { ChunkSessions } from './sessions.js'
import { sweepUploads } from './sweep.js'
import type { UploadObserver } from './observer.js'
import type {
  ChunkInput,
  ChunkResult,
  CommitContext,
  CommitHashCounts,
  FinishedFile,
  NewUpload,
  UploadServiceOptions,
  WholeFile,
} from './types.js'

export type { UploadObserver } from './observer.js'
export { PEER_HASH_MIN_BYTES } from './peer-digest.js'
export { INLINE_HASH_MAX_BYTES } from './receive.js'
export type {
  ChunkInput,
  ChunkResult,
  CommitContext,
  CommitHashCounts,
  FinishedFile,
  NewUpload,
  UploadHooks,
  UploadServiceOptions,
  WholeFile,
} from './types.js'

/** The parts every view of one UploadService shares (see `observedBy`). */
interface Shared {
  readonly hashes: RunningHashes
  readonly flusher: OwedFlusher
  readonly files: StreamFiles
  readonly peers: PeerDigest | null
  readonly sessions: ChunkSessions
}

export class UploadService {
  readonly #o: UploadServiceOptions
  readonly #hashes: RunningHashes
  readonly #flusher: OwedFlusher
  readonly #files: StreamFiles
  readonly #peers: PeerDigest | null
  readonly #sessions: ChunkSessions
  readonly #obs: UploadObserver | null

  constructor(options: UploadServiceOptions, view?: { shared: Shared; observer: UploadObserver }) {
    this.#o = options
    this.#obs = view?.observer ?? null
    if (view) {
      ;({
        hashes: this.#hashes,
        flusher: this.#flusher,
        files: this.#files,
        peers: this.#peers,
        sessions: this.#sessions,
      } = view.shared)
      return
    }
    this.#hashes = new RunningHashes()
    const sync = options.sync ?? DiskSync.on
    this.#flusher = new OwedFlusher(options.sessions, sync)
    this.#files = new StreamFiles(options.temps, sync)
    this.#peers = options.peers ? new PeerDigest(options.peers, this.#hashes, options.log) : null
    this.#sessions = new ChunkSessions({
      o: options,
      hashes: this.#hashes,
      flusher: this.#flusher,
      peers: this.#peers,
    })
  }

  /**
   * The same service, its uploads reported to `observer` (one API family's metrics): the root
   * hands each family its own view, so the family itself counts nothing. Views share every
   * session, running hash and temp file; `listenForPeers`, `sweep` and `close` belong to the
   * service the root made.
   */
  observedBy(observer: UploadObserver): UploadService {
    const shared: Shared = {
      hashes: this.#hashes,
      flusher: this.#flusher,
      files: this.#files,
      peers: this.#peers,
      sessions: this.#sessions,
    }
    return new UploadService(this.#o, { shared, observer })
  }

  get hashCounts(): CommitHashCounts {
    return this.#sessions.hashCounts
  }

  /**
   * A new temp file name for a whole-file stream or a small file to publish. The caller
   * publishes it (`publish`) or lets it go (`discard`).
   */
  streamTempPath(): string {
    return this.#files.newPath()
  }

  tempPathOf(session: SessionRecord): string {
    return this.#sessions.tempPathOf(session)
  }

  /** Opens the session if new, checks it matches, then writes or verifies one chunk. */
  writeChunk(input: ChunkInput): Promise<ChunkResult> {
    const obs = this.#obs
    if (obs === null) return this.#sessions.writeChunk(input)
    const t0 = performance.now()
    return this.#sessions
      .writeChunk(input, () => obs.created())
      .then((r) => {
        obs.chunk((performance.now() - t0) / 1000)
        return r
      })
  }

  /**
   * Opens a session before its first chunk (a creation request): its length may be unknown
   * (null, declared later with `declareLength`) and it may carry opaque metadata. An existing
   * session of the key is answered when it matches.
   */
  openSession(init: NewUpload): Promise<SessionRecord> {
    const obs = this.#obs
    return this.#sessions.open(init, obs === null ? undefined : () => obs.created())
  }

  /** Declares the length of a session opened without one: once, never below what it holds. */
  declareLength(key: string, totalBytes: number): Promise<SessionRecord> {
    return this.#sessions.declareLength(key, totalBytes)
  }

  getSession(key: string): Promise<SessionRecord | null> {
    return this.#o.sessions.get(key)
  }

  missing(session: SessionRecord): ByteRange[] {
    return this.#sessions.missing(session)
  }

  listByTarget(keyPrefix: string, target: string): Promise<SessionRecord[]> {
    return this.#o.sessions.listByTarget(keyPrefix, target)
  }

  /**
   * Commits a complete session: hash (the running hash if this instance has it, else a full pass
   * on the pool), then `publish`, which must move the temp file into place atomically and
   * answer the family's result. A repeated commit answers the first result.
   */
  commit(
    key: string,
    publish: (ctx: CommitContext) => Promise<string>,
    algos: readonly HashAlgo[] = ['sha256'],
  ): Promise<string> {
    const obs = this.#obs
    if (obs === null) return this.#sessions.commit(key, publish, algos)
    // Only a commit that published counts: a repeated commit answers the first one's result.
    let published = false
    const t0 = performance.now()
    const counted = async (ctx: CommitContext) => {
      const result = await publish(ctx)
      published = true
      return result
    }
    return this.#sessions.commit(key, counted, algos).then((result) => {
      if (published) {
        obs.commit((performance.now() - t0) / 1000)
        obs.finished()
      }
      return result
    })
  }

  /**
   * Cancels a session and removes its temp file; false when there was none. Refused while a commit
   * runs.
   */
  abort(key: string): Promise<boolean> {
    const obs = this.#obs
    if (obs === null) return this.#sessions.abort(key)
    return this.#sessions.abort(key).then((removed) => {
      if (removed) obs.terminated()
      return removed
    })
  }

  /**
   * Answers other instances' commits that lack a session's running hash: the instance that
   * opened the session (and so runs its hash) finishes it and hands over the digest.
   */
  async listenForPeers(): Promise<void> {
    await this.#peers?.listen()
  }

  /**
   * Streams a whole body into a new temp file while a pool thread hashes what has landed. The
   * caller publishes `tempPath` (publishFile) or discards it (discard).
   */
  receiveWhole(body: Readable, opts: ReceiveWholeOptions): Promise<WholeFile> {
    const deps = { pool: this.#o.pool, files: this.#files, flusher: this.#flusher }
    const obs = this.#obs
    if (obs === null) return receiveWhole(deps, body, opts)
    obs.created()
    const t0 = performance.now()
    return receiveWhole(deps, body, opts).then((got) => {
      obs.chunk((performance.now() - t0) / 1000)
      obs.finished()
      return got
    })
  }

  /** An upload was answered "already stored" (Shaman's content-addressed store). */
  dedupHit(): void {
    this.#obs?.dedupHit()
  }

  publish(tempPath: string, target: string, opts: PublishOptions): Promise<void> {
    return this.#files.publish(tempPath, target, opts)
  }

  discard(tempPath: string): Promise<void> {
    return this.#files.discard(tempPath)
  }

  /**
   * A family finished a file (its success point: published, stored, linked): one place that
   * tells the post-finish hook for every family. Never throws: the file is safe already.
   */
  announceFinished(file: FinishedFile): void {
    try {
      this.#o.onFinished?.(file)
    } catch (err) {
      this.#o.log.warn({ err, family: file.family }, 'post-finish notification failed')
    }
  }

  /** Removes expired sessions and temp files nothing needs any more (sweep.ts). */
  sweep(nowMs = Date.now()): Promise<{ sessions: number; orphans: number }> {
    const { isAlive } = this.#o
    return sweepUploads(
      {
        sessions: this.#o.sessions,
        temps: this.#o.temps,
        sessionTtlMs: this.#o.sessionTtlMs,
        hashes: this.#hashes,
        flusher: this.#flusher,
        files: this.#files,
        ...(isAlive ? { isAlive } : {}),
        ...(this.#o.hooks ? { hooks: this.#o.hooks } : {}),
        log: this.#o.log,
      },
      nowMs,
    )
  }

  async close(): Promise<void> {
    await this.#peers?.close()
    this.#hashes.dropAll()
  }
}
