/**
 * What every family's `sendError` does before writing its own body: find the status and log.
 * An UploadError gets the status of the family's table; a 5xx is our fault and is logged at error
 * level with its stack, anything lower is the client's and is logged briefly at info. Anything
 * else is a bug: logged with its stack, answered 500, and its message never reaches the client.
 */
import { isUploadError, type ErrorCode, type UploadError } from '../core/errors.js'
import type { RequestContext } from './context.js'

export interface Failure {
  readonly status: number
  /** The UploadError answered, or null for anything else (then `status` is 500). */
  readonly error: UploadError | null
}

/** `what` names the request in the log lines: "<what> failed" / "<what> refused". */
export function classifyFailure(ctx: Pick<RequestContext, 'log'>, err: unknown, statusOf: (code: ErrorCode) => number, what: string): Failure {
  if (!isUploadError(err)) {
    ctx.log.error({ err }, `${what} failed`)
    return { status: 500, error: null }
  }
  const status = statusOf(err.code)
  if (status >= 500) ctx.log.error({ err }, `${what} failed`)
  else ctx.log.info({ code: err.code, msg: err.message }, `${what} refused`)
  return { status, error: err }
}
