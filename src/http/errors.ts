/**
 * What every family's `sendError` does before writing its own body: find the status and log.
 *
 * - An UploadError gets the status of the family's table.
 * - A raw ENOSPC / EDQUOT from the filesystem, wherever it was thrown, is the full-disk condition
 *   ERR_INSUFFICIENT_STORAGE (507), not a bug (issue 9 item 3).
 * - A client that went away (reset, premature close, abort) is no failure of ours.
 * - Anything else is a bug: logged with its stack, answered 500, its message never sent.
 *
 * Log levels (issue 9 item 9): `error` with the stack only for our own faults (500 and anything
 * not an UploadError); 503 and 507 are `warn` without a stack (a dependency or the disk, not a
 * bug); 501 is the spec's answer and is `info`; every 4xx and every client abort is `info`
 * without a stack. Each line has one `msg`; the error's own message goes under `reason`.
 *
 * Every 503 and 507 answer carries `Retry-After` (set here on the response, so every family's
 * body writer sends it).
 */
import {
  isUploadError,
  UploadError,
  type ErrorCode,
  type UploadErrorOptions,
} from '../core/errors.js'
import { isNoSpace } from '../core/storage/errno.js'
import type { RequestContext } from './context.js'

/**
 * A family's own, typed fields for an error it raises at its edge: words only its protocol has
 * (a Fabric code, an S3 code, dsp-ingest's argument text, a Bearer challenge). The family throws
 * `refusals.error(code, message, fields)`, which is an UploadError like any other (same table,
 * same log line), and its error writer reads the fields back with `refusals.fieldsOf(err)`.
 * Each `defineRefusals` makes its own class, so one family never reads another's fields.
 */
export interface Refusals<F> {
  error(code: ErrorCode, message: string, fields: F, options?: UploadErrorOptions): UploadError
  /** The fields `err` was raised with by this set's `error`, or null. */
  fieldsOf(err: UploadError): F | null
}

export function defineRefusals<F>(): Refusals<F> {
  class Refusal extends UploadError {
    readonly fields: F
    constructor(code: ErrorCode, message: string, fields: F, options: UploadErrorOptions) {
      super(code, message, options)
      this.fields = fields
    }
  }
  return {
    error: (code, message, fields, options = {}) => new Refusal(code, message, fields, options),
    fieldsOf: (err) => (err instanceof Refusal ? err.fields : null),
  }
}

export interface Failure {
  readonly status: number
  /** The UploadError answered, or null for anything else (then `status` is 500). */
  readonly error: UploadError | null
}

/** Seconds a client is told to wait (`Retry-After`) after a 503 and after a 507. */
export const RETRY_AFTER_SEC: Readonly<Record<number, number>> = { 503: 1, 507: 5 }

const CLIENT_GONE = new Set([
  'ECONNRESET',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ABORT_ERR',
  'EPIPE',
  'ECONNABORTED',
])

/** Whether `err` or an error in its `cause` chain (8 deep at most) passes `test`. */
function inCauseChain(err: unknown, test: (e: object) => boolean): boolean {
  let e: unknown = err
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    if (test(e)) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

const hasCodeIn = (codes: ReadonlySet<string>) => (e: object) => {
  const code = (e as { code?: unknown }).code
  return typeof code === 'string' && codes.has(code)
}

/** True when `err` is (or was caused by) a full disk or quota (storage's errno rule). */
export function isFullDisk(err: unknown): boolean {
  return inCauseChain(err, isNoSpace)
}

/** True when `err` says the client went away rather than that something failed. */
export function isClientGone(err: unknown): boolean {
  if (isUploadError(err)) return err.code === 'ERR_CLIENT_ABORTED'
  return inCauseChain(err, hasCodeIn(CLIENT_GONE)) || (err as Error | null)?.name === 'AbortError'
}

/**
 * Turns what reached an edge into the UploadError to answer, or null for a bug. A full disk
 * becomes ERR_INSUFFICIENT_STORAGE whatever wrapped it (an ERR_IO, a raw fs error), a raw
 * client abort ERR_CLIENT_ABORTED.
 */
export function normalizeFailure(err: unknown): UploadError | null {
  if (isUploadError(err) && err.code === 'ERR_INSUFFICIENT_STORAGE') return err
  if ((!isUploadError(err) || err.code === 'ERR_IO') && isFullDisk(err)) {
    return new UploadError(
      'ERR_INSUFFICIENT_STORAGE',
      'not enough free space on the storage device; retry later',
      { cause: err },
    )
  }
  if (isUploadError(err)) return err
  if (isClientGone(err))
    return new UploadError('ERR_CLIENT_ABORTED', 'the client went away', { cause: err })
  return null
}

/** `what` names the request in the log lines: "<what> failed" / "<what> refused". */
export function classifyFailure(
  ctx: Pick<RequestContext, 'log'>,
  err: unknown,
  statusOf: (code: ErrorCode) => number,
  what: string,
): Failure {
  const error = normalizeFailure(err)
  if (error === null) {
    ctx.log.error({ err }, `${what} failed`)
    return { status: 500, error: null }
  }
  const status = statusOf(error.code)
  const retryAfter = RETRY_AFTER_SEC[status]
  // classifyFailure's signature takes only the logger; the response is there for every caller
  // that answers a request.
  const res = (ctx as Partial<Pick<RequestContext, 'res'>>).res
  if (
    retryAfter !== undefined &&
    res !== undefined &&
    !res.headersSent &&
    !res.hasHeader('Retry-After')
  ) {
    res.setHeader('Retry-After', String(retryAfter))
  }
  if (error.code === 'ERR_CLIENT_ABORTED')
    ctx.log.info({ code: error.code, status }, `${what}: the client went away`)
  else if (status === 501)
    ctx.log.info({ code: error.code, status, reason: error.message }, `${what} refused`)
  else if (status === 503 || status === 507)
    ctx.log.warn({ code: error.code, status, reason: error.message }, `${what} refused`)
  else if (status >= 500) ctx.log.error({ err: error, status }, `${what} failed`)
  else ctx.log.info({ code: error.code, status, reason: error.message }, `${what} refused`)
  return { status, error }
}
