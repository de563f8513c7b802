import type { StatusTable } from '../../core/errors.js'
import { challengeOf } from '../auth/bearer.js'
import type { RequestContext } from '../context.js'
import { classifyFailure } from '../errors.js'
import { sendJson } from '../respond.js'

/**
 * Core code → HTTP status for the Shaman API. The body is always the spec's
 * `Error {code, message}` with `code` = the HTTP status (flamenco-openapi.yaml `Error`).
 * Where Flamenco's Go server differs from its spec (500 for every checkout error, a random suffix
 * instead of 409), we follow the spec (Flamenco pkg/shaman/fileserver).
 */
export const SHAMAN_STATUS: StatusTable = {
  // Bad path parameters, headers and JSON: the Manager's request validator answers 400.
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_PATH: 400,
  ERR_PATH_TOO_LONG: 400,
  ERR_INVALID_RANGE: 400,
  ERR_RANGE_NOT_SATISFIABLE: 416,
  // Spec: "417: There was a mismatch between the request parameters and the actual file size
  // or checksum of the uploaded file."
  ERR_SIZE_MISMATCH: 417,
  ERR_CHECKSUM_MISMATCH: 417,
  // Flamenco has no size limit (it buffers the body in RAM); ours is 413.
  ERR_BODY_TOO_LARGE: 413,
  ERR_SESSION_NOT_FOUND: 404,
  ERR_SESSION_ID_CONFLICT: 409,
  ERR_SESSION_INCOMPLETE: 400,
  ERR_SESSION_BUSY: 409,
  ERR_SESSION_CLOSED: 409,
  ERR_NOT_FOUND: 404,
  // Spec, checkout: "409: Checkout already exists." (Flamenco's code adds a suffix instead.)
  ERR_ALREADY_EXISTS: 409,
  ERR_PRECONDITION_FAILED: 412,
  // Spec, checkout: "424: There were files missing." (Flamenco's code answers 500.)
  ERR_DEPENDENCY_MISSING: 424,
  // A checkout whose lock was lost while it was being built: someone else may be creating it.
  ERR_LOCKED: 409,
  ERR_UNAUTHORIZED: 401,
  ERR_FORBIDDEN: 403,
  ERR_NOT_IMPLEMENTED: 501,
  ERR_RESERVED_NAME: 400,
  // The client is gone; nobody reads this answer.
  ERR_CLIENT_ABORTED: 400,
  // Spec, Error.code: "Code 503 is used when the database is busy. The HTTP response will
  // contain a 'Retry-After' HTTP header". We use it while a GC pass blocks a checkout.
  ERR_UNAVAILABLE: 503,
  ERR_IO: 500,
  // Flamenco answers a full disk with 500; 507 says "retry once space is freed", in the spec's
  // Error body.
  ERR_INSUFFICIENT_STORAGE: 507,
  ERR_BODY_TIMEOUT: 408,
}

export function sendShamanErrorBody(
  ctx: RequestContext,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(ctx.res, status, { code: status, message }, headers)
}

export function sendShamanError(ctx: RequestContext, err: unknown): void {
  const { status, error } = classifyFailure(
    ctx,
    err,
    (code) => SHAMAN_STATUS[code],
    'shaman request',
  )
  if (!error) {
    sendShamanErrorBody(ctx, 500, 'internal error')
    return
  }
  const headers: Record<string, string> = {}
  if (status === 503) headers['Retry-After'] = '5'
  // Bearer auth (FERRY_CONFIG shaman.auth): RFC 6750's challenge with the spec's Error body.
  if (error.code === 'ERR_UNAUTHORIZED') headers['WWW-Authenticate'] = challengeOf(error)
  // A body declared over our limit is not drained: close the connection after the answer.
  if (error.code === 'ERR_BODY_TOO_LARGE' && !ctx.req.complete) headers['Connection'] = 'close'
  sendShamanErrorBody(ctx, status, error.message, headers)
}
