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
}

/** Several whole files, in order, into one new file (tus concatenation). */
export interface ConcatFilesTask {
  readonly sources: readonly string[]
  readonly target: string
}

export interface CopyFileResult {
  readonly bytes: number
  /** Lower-case hex SHA-256 of the bytes written. */
  readonly sha256: string
}
