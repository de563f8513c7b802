/**
 * One catalogue of the conditions the core can report. Codes carry no HTTP status: each API
 * family maps them at its edge (`src/http/<family>/errors.ts`), because one condition answers
 * differently per family (a size mismatch is 417 for Shaman, 400 for ImageStore).
 */
import type { ByteRange } from './state/range-set.js'

export const ERROR_CODES = [
  'ERR_INVALID_ARGUMENT',
  'ERR_INVALID_PATH',
  'ERR_PATH_TOO_LONG',
  'ERR_INVALID_RANGE',
  'ERR_RANGE_NOT_SATISFIABLE',
  'ERR_SIZE_MISMATCH',
  'ERR_CHECKSUM_MISMATCH',
  'ERR_BODY_TOO_LARGE',
  'ERR_SESSION_NOT_FOUND',
  'ERR_SESSION_ID_CONFLICT',
  'ERR_SESSION_INCOMPLETE',
  'ERR_SESSION_BUSY',
  'ERR_SESSION_CLOSED',
  'ERR_NOT_FOUND',
  'ERR_ALREADY_EXISTS',
  'ERR_PRECONDITION_FAILED',
  'ERR_DEPENDENCY_MISSING',
  'ERR_LOCKED',
  'ERR_UNAUTHORIZED',
  'ERR_FORBIDDEN',
  'ERR_NOT_IMPLEMENTED',
  'ERR_RESERVED_NAME',
  'ERR_CLIENT_ABORTED',
  'ERR_UNAVAILABLE',
  'ERR_IO',
  /** The disk (or quota) is full: ENOSPC / EDQUOT. Retryable once space is freed. */
  'ERR_INSUFFICIENT_STORAGE',
  /** The request body arrived slower than the configured minimum rate. */
  'ERR_BODY_TIMEOUT',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

/**
 * Facts a condition carries beyond its message, the same for every family: each family's error
 * writer picks what its protocol shows (bulk ingest turns `not-found` into dsp-ingest's
 * `{id, type}`), and the rest only reaches the log. Discriminated by `kind`; the codes each kind
 * goes with are named at it. Protocol words that only one family has (a Fabric code, an S3 code,
 * dsp-ingest's argument text, a Bearer challenge) are not here: the family attaches them itself
 * (`defineRefusals` in src/http/errors.ts).
 */
export type ErrorDetail =
  /** ERR_BODY_TOO_LARGE: the limit that was passed, bytes. */
  | { readonly kind: 'limit'; readonly maxBytes: number }
  /**
   * ERR_SIZE_MISMATCH: the bytes expected and received. `overflow`: the body went past
   * `expectedBytes` and was cut there (`receivedBytes` is what was read until then).
   */
  | {
      readonly kind: 'size'
      readonly expectedBytes: number
      readonly receivedBytes: number | null
      readonly overflow: boolean
    }
  /** ERR_SESSION_INCOMPLETE: the byte ranges the session still lacks (inclusive ends). */
  | { readonly kind: 'missing-ranges'; readonly ranges: readonly ByteRange[] }
  /** ERR_RANGE_NOT_SATISFIABLE on a read: the object's size, which a 416 Content-Range names. */
  | { readonly kind: 'unsatisfiable'; readonly size: number }
  /** ERR_DEPENDENCY_MISSING: how many of the objects asked for are not stored. */
  | { readonly kind: 'missing-objects'; readonly count: number }
  /** ERR_NOT_FOUND: what was looked for, and its id (a bulk-ingest project shortcode). */
  | {
      readonly kind: 'not-found'
      readonly resource: 'project' | 'import-folder'
      readonly id: string
    }

export interface UploadErrorOptions {
  cause?: unknown
  detail?: ErrorDetail
}

/** The only error type the core throws on purpose. Anything else reaching an edge is a 500. */
export class UploadError extends Error {
  readonly code: ErrorCode
  /** Null when the code's message says it all. */
  readonly detail: ErrorDetail | null

  constructor(code: ErrorCode, message: string, options: UploadErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'UploadError'
    this.code = code
    this.detail = options.detail ?? null
  }
}

export function isUploadError(err: unknown): err is UploadError {
  return err instanceof UploadError
}

/** A family's error table: every code maps to a status. Checked complete by a unit test. */
export type StatusTable = Readonly<Record<ErrorCode, number>>
