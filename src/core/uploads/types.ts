/** The shapes the upload modules share; `uploads.ts` re-exports them for callers. */
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { HashPool, HashResult } from '../hashing/hash-pool.js'
import type { ByteRange } from '../state/range-set.js'
import type { Bus, SessionRecord, SessionStore } from '../state/types.js'
import type { DiskSync } from '../storage/disk-sync.js'
import type { TempFiles } from '../storage/temp-files.js'

export interface UploadServiceOptions {
  readonly sessions: SessionStore
  readonly pool: HashPool
  /**
   * Names and places every temp file of the uploads (sessions, hand-offs, streams) in the data
   * directory's tmp/; its `instanceId` is this instance (stream names carry it).
   */
  readonly temps: TempFiles
  readonly log: Logger
  /** fdatasync every chunk before it counts as received. */
  readonly durableChunks: boolean
  /**
   * Flushes temp files (background flush, commit) and publications: DiskSync.on (default);
   * DiskSync.off for FERRY_FSYNC=none (with `durableChunks` false), then no fdatasync or fsync
   * at all, and chunk ranges stay owed to this instance until the commit.
   */
  readonly sync?: DiskSync
  readonly sessionTtlMs: number
  readonly reserveLeaseMs: number
  /** How long one commit may hold a session before another instance may take it over, ms. */
  readonly commitLeaseMs: number
  /** Smallest chunk accepted, except the one that ends the file (0: any). */
  readonly minChunkBytes?: number
  /** Test hooks: pauses injected at the named points of the data path, to reproduce races. */
  readonly hooks?: UploadHooks
  /**
   * Whether another instance still runs (its stream temp files are in use); absent: assume it
   * does.
   */
  readonly isAlive?: (instance: string) => Promise<boolean>
  /**
   * The bus every instance shares (Redis only): a commit on an instance without the session's
   * running hash asks the instance that has it (see `listenForPeers`). Null: one instance.
   */
  readonly peers?: Bus | null
  /**
   * Told about every finished file of every family (`announceFinished`): the composition root
   * hands these to the post-finish hook. Must not throw or block.
   */
  readonly onFinished?: (file: FinishedFile) => void
}

/** A file a family finished (published, stored, linked): what the post-finish hook hears. */
export interface FinishedFile {
  /** `imagestore`, `shaman`, `lakefs`, `ingest`, `tus`. */
  readonly family: string
  /** The family's own name for the file (a path, a CAS key, an upload id). */
  readonly id: string
  readonly size: number | null
  /** Hex sha256 when known. */
  readonly sha256: string | null
  readonly metadata?: Readonly<Record<string, string>>
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
  /**
   * The file's size, checked against the session's. Null: the caller does not know it (a
   * session opened with its length unknown, or one whose length the caller does not repeat);
   * the range is then checked against the session's length when it has one.
   */
  readonly totalBytes: number | null
  /** Inclusive range; `{0,-1}` declares a 0-byte upload. */
  readonly range: ByteRange
  readonly body: Readable
  readonly signal?: AbortSignal
  /**
   * A body cut short (the client went away, a short body, a failed write) keeps the bytes that
   * reached the file: they are marked received as `[range.start, range.start + n - 1]` (after an
   * fdatasync when chunks are durable), and the error is thrown as before. Default: only whole
   * chunks count.
   */
  readonly keepPartial?: boolean
  /**
   * The body may end anywhere inside `range`: the bytes that arrived are the chunk (a tus PATCH
   * whose length is not known in advance). An empty body marks nothing (`duplicate`).
   */
  readonly openEnded?: boolean
  /**
   * Runs once the whole body is on disk, before the range counts as received; a throw (a
   * checksum mismatch) leaves the range unreceived and is rethrown.
   */
  readonly verify?: () => void | Promise<void>
}

/** A session opened before its first chunk (a creation request). */
export interface NewUpload {
  readonly key: string
  readonly target: string
  /** Null: not known yet; declared later with `declareLength`. */
  readonly totalBytes: number | null
  /** Opaque client metadata kept with the session (bounded: `metadataProblem`). */
  readonly metadata?: Readonly<Record<string, string>>
}

export interface ChunkResult {
  /**
   * `written`: new bytes landed; `duplicate`: an exact re-send of received bytes, nothing changed.
   */
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

/** Where a commit's digest came from; counted per instance (logs and tests). */
export interface CommitHashCounts {
  /** This instance's running hash. */
  local: number
  /** Another instance's running hash, handed over on request. */
  peer: number
  /** A full pass over the temp file. */
  fullPass: number
}
