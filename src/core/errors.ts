/**
 * One catalogue of the conditions the core can report. Codes carry no HTTP status: each API
 * family maps them at its edge (`src/http/<family>/errors.ts`), because one condition answers
 * differently per family (a size mismatch is 417 for Shaman, 400 for ImageStore).
 */
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

export interface UploadErrorOptions {
  cause?: unknown
  details?: Record<string, unknown>
}

/** The only error type the core throws on purpose. Anything else reaching an edge is a 500. */
export class UploadError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: UploadErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'UploadError'
    this.code = code
    this.details = options.details ?? {}
  }
}

export function isUploadError(err: unknown): err is UploadError {
  return err instanceof UploadError
}

/** A family's error table: every code maps to a status. Checked complete by a unit test. */
export type StatusTable = Readonly<Record<ErrorCode, number>>
