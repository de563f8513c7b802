/** Task and result shapes shared by src/core/hashing and the workers (imported type-only). */
import type { MessagePort } from 'node:worker_threads'

export type HashAlgo = 'sha256' | 'sha1' | 'md5'

/** Hash bytes `[start, end)` of a file, read by path inside the worker. */
export interface HashFileTask {
  readonly path: string
  readonly start: number
  /** Exclusive; null = to the end of the file. */
  readonly end: number | null
  readonly algos: readonly HashAlgo[]
}

export interface HashResult {
  /** Lower-case hex digest per algorithm. */
  readonly digests: Partial<Record<HashAlgo, string>>
  readonly bytes: number
}

/**
 * A running hash over a file that grows while it is being hashed. The main thread posts
 * `StreamMessage`s on `port`; the task ends with a result on `finish`, or with `lost: true` when it
 * hears nothing for `idleMs` (the caller then falls back to a full pass).
 */
export interface HashStreamTask {
  readonly path: string
  readonly algos: readonly HashAlgo[]
  readonly port: MessagePort
  readonly idleMs: number
}

export type StreamMessage =
  | { readonly type: 'advance'; readonly upTo: number }
  | { readonly type: 'finish'; readonly size: number }
  | { readonly type: 'cancel' }

export type HashStreamResult = (HashResult & { readonly lost: false }) | { readonly lost: true }

/**
 * Copy a whole file into a new file (bulk ingest): the worker creates `target` (it must not
 * exist), writes every byte of `source`, fsyncs it, and answers the SHA-256 of what it wrote.
 */
export interface CopyFileTask {
  readonly source: string
  readonly target: string
  /** false (FERRY_FSYNC=none): the worker does not fsync `target`. Default true. */
  readonly sync?: boolean
}

/** Several whole files, in order, into one new file (tus concatenation). */
export interface ConcatFilesTask {
  readonly sources: readonly string[]
  readonly target: string
  /** false (FERRY_FSYNC=none): the worker does not fsync `target`. Default true. */
  readonly sync?: boolean
}

export interface CopyFileResult {
  readonly bytes: number
  /** Lower-case hex SHA-256 of the bytes written. */
  readonly sha256: string
}

/**
 * Join whole files, in order, into one new file (a lakeFS presigned multipart upload's parts into
 * its object): the worker creates `target` (it must not exist), copies every source, fsyncs, and
 * answers the MD5 and SHA-256 of all it wrote. Each source's own MD5 is checked against
 * `expectedMd5` (its part's ETag) as soon as that source is copied, so a wrong ETag stops the
 * join there instead of after the whole object.
 */
export interface JoinPartsTask {
  readonly sources: readonly { readonly path: string; readonly expectedMd5: string }[]
  readonly target: string
  /** false (FERRY_FSYNC=none): the worker does not fsync `target`. Default true. */
  readonly sync?: boolean
}

/**
 * `joined`: the target holds every source. `missing`: source `index` did not exist (removed by an
 * abort or a completed twin). `mismatch`: source `index` has another MD5 than expected. The
 * caller removes the target unless it was joined.
 */
export type JoinPartsResult =
  | {
      readonly status: 'joined'
      readonly bytes: number
      /** Lower-case hex, of all bytes written. */
      readonly md5: string
      readonly sha256: string
      /** Bytes of each source, in order. */
      readonly sourceBytes: readonly number[]
    }
  | { readonly status: 'missing'; readonly index: number }
  | { readonly status: 'mismatch'; readonly index: number }
