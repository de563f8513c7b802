/**
 * Core code → HTTP status for the tus endpoint, and the error answer (plain text, as tusd and
 * @tus/server write their messages). Statuses follow the tus 1.0.0 text where it names one and
 * tusd's error table (`pkg/handler/unrouted_handler.go`) where it does not.
 */
import type { ErrorCode, StatusTable } from '../../core/errors.js'
import { UploadError } from '../../core/errors.js'
import type { RequestContext } from '../context.js'
import { classifyFailure, defineRefusals } from '../errors.js'
import { sendText } from '../respond.js'
import { TUS_VERSION } from './headers.js'

export const TUS_STATUS: StatusTable = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_PATH: 400,
  ERR_PATH_TOO_LONG: 400,
  ERR_INVALID_RANGE: 400,
  // The range a PATCH would write is taken (another request on it): a conflict of offsets.
  ERR_RANGE_NOT_SATISFIABLE: 409,
  // A deferred length declared twice with another value, or below what arrived.
  ERR_SIZE_MISMATCH: 400,
  // tus 1.0.0 checksum extension: "460 Checksum Mismatch".
  ERR_CHECKSUM_MISMATCH: 460,
  ERR_BODY_TOO_LARGE: 413,
  ERR_SESSION_NOT_FOUND: 404,
  ERR_SESSION_ID_CONFLICT: 409,
  ERR_SESSION_INCOMPLETE: 409,
  // tusd ERR_FILE_LOCKED: another request holds the upload.
  ERR_SESSION_BUSY: 423,
  // Being committed or committed: the upload takes no more bytes.
  ERR_SESSION_CLOSED: 409,
  ERR_NOT_FOUND: 404,
  ERR_ALREADY_EXISTS: 409,
  ERR_PRECONDITION_FAILED: 412,
  ERR_DEPENDENCY_MISSING: 400,
  ERR_LOCKED: 423,
  ERR_UNAUTHORIZED: 401,
  // PATCH to a final upload (concatenation: "the Server MUST respond with 403 Forbidden").
  ERR_FORBIDDEN: 403,
  ERR_NOT_IMPLEMENTED: 501,
  ERR_RESERVED_NAME: 400,
  // Nobody reads it; logged only.
  ERR_CLIENT_ABORTED: 499,
  ERR_UNAVAILABLE: 503,
  ERR_IO: 500,
  ERR_INSUFFICIENT_STORAGE: 507,
  ERR_BODY_TIMEOUT: 408,
}

export function statusOf(code: ErrorCode): number {
  return TUS_STATUS[code]
}

/**
 * Answers whose status no core code carries: 410 Gone (terminated), 412 with `Tus-Version`, a
 * header parser's 400, a hook's own 4xx. Thrown as `tusRefusals.error(…, {status, headers})`.
 */
export interface TusRefusalFields {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
}

export const tusRefusals = defineRefusals<TusRefusalFields>()

export function refuse(
  status: number,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): UploadError {
  const code: ErrorCode =
    status === 404 || status === 410
      ? 'ERR_NOT_FOUND'
      : status === 423
        ? 'ERR_LOCKED'
        : status === 503
          ? 'ERR_UNAVAILABLE'
          : 'ERR_INVALID_ARGUMENT'
  return tusRefusals.error(code, message, { status, headers })
}

/** The tus error answer: the status, `Tus-Resumable`, the message as text. */
export function sendTusError(ctx: RequestContext, err: unknown): void {
  const { res } = ctx
  const fields = err instanceof UploadError ? tusRefusals.fieldsOf(err) : null
  const { status, error } = classifyFailure(
    ctx,
    err,
    (code) => fields?.status ?? statusOf(code),
    'tus request',
  )
  if (status === 499 || res.headersSent) {
    if (!res.writableEnded) res.destroy()
    return
  }
  const headers: Record<string, string> = { 'Tus-Resumable': TUS_VERSION, ...fields?.headers }
  const text = error ? `${error.message}\n` : 'internal server error\n'
  sendText(res, status, text, 'text/plain; charset=utf-8', headers)
}
