/**
 * Error answers of the bulk-ingest family, in dsp-ingest's shapes (BaseEndpoints'
 * defaultErrorOutputs; dasch-swiss/dsp-ingest v0.21.1): the status picks the body.
 */
import type { ErrorCode, ErrorDetail } from '../../core/errors.js'
import type { RequestContext } from '../context.js'
import { classifyFailure, defineRefusals } from '../errors.js'
import { sendJson } from '../respond.js'

/**
 * Core code → status. dsp-ingest answers only 400, 401, 404, 409, 500 and 503 on these routes
 * (403 is declared but never used); every code lands on one of them except 413, our own limit.
 */
export const INGEST_STATUS: Readonly<Record<ErrorCode, number>> = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_PATH: 400,
  ERR_PATH_TOO_LONG: 400,
  ERR_INVALID_RANGE: 400,
  ERR_RANGE_NOT_SATISFIABLE: 400,
  ERR_SIZE_MISMATCH: 400,
  ERR_CHECKSUM_MISMATCH: 400,
  // dsp-ingest streams any size; Ferry's FERRY_MAX_UPLOAD_BYTES is refused with 413 and a reason.
  ERR_BODY_TOO_LARGE: 413,
  ERR_SESSION_NOT_FOUND: 404,
  ERR_SESSION_ID_CONFLICT: 409,
  ERR_SESSION_INCOMPLETE: 400,
  ERR_SESSION_BUSY: 409,
  ERR_SESSION_CLOSED: 409,
  ERR_NOT_FOUND: 404,
  // A folder stands where the file should go (or a file where a folder is needed): the client's
  // path is at fault, and 409 would tell dsp-tools "an ingest is running".
  ERR_ALREADY_EXISTS: 400,
  ERR_PRECONDITION_FAILED: 400,
  ERR_DEPENDENCY_MISSING: 404,
  ERR_LOCKED: 409,
  ERR_UNAUTHORIZED: 401,
  // "dsp-ingest never uses 403 for a scope failure": a token without the project's scope is 401.
  ERR_FORBIDDEN: 401,
  ERR_NOT_IMPLEMENTED: 400,
  ERR_RESERVED_NAME: 400,
  ERR_CLIENT_ABORTED: 400,
  ERR_UNAVAILABLE: 503,
  ERR_IO: 500,
  // dsp-ingest has no such answer (a full disk is its 500); 507 tells clients to retry later,
  // with the {reason} body of its other non-400 refusals.
  ERR_INSUFFICIENT_STORAGE: 507,
  ERR_BODY_TIMEOUT: 408,
}

/** What the bulk-ingest family adds to an error it raises, in dsp-ingest's terms. */
export type IngestFields =
  /** The BadRequest entry: which input (dsp-ingest's text, stray quote included) and why. */
  | { readonly kind: 'argument'; readonly argument: string; readonly reason: string }
  /** A missing or malformed Authorization header: answered with `WWW-Authenticate: Bearer`. */
  | { readonly kind: 'challenge' }

export const ingestRefusals = defineRefusals<IngestFields>()

/** dsp-ingest's NotFound `type` per thing looked for. */
const NOT_FOUND_TYPE = {
  project: 'project',
  'import-folder': 'Import folder not found.',
} as const

/**
 * The body of each status. `fields` are the family's own (null for an error the core raised),
 * `detail` the core's facts about the condition.
 */
export function ingestErrorBody(
  status: number,
  message: string,
  fields: IngestFields | null,
  detail: ErrorDetail | null,
): unknown {
  switch (status) {
    case 400: {
      const arg = fields?.kind === 'argument' ? fields : { argument: 'Request', reason: message }
      return { errors: [{ argument: arg.argument, reason: arg.reason }] }
    }
    case 404:
      return detail?.kind === 'not-found'
        ? { id: detail.id, type: NOT_FOUND_TYPE[detail.resource] }
        : { id: '', type: 'project' }
    case 500:
      return { errorMessage: 'internal error' }
    case 503:
      return { status: 'DOWN' }
    default: // 401, 403, 408, 409, 413, 507
      return { reason: message }
  }
}

export function sendIngestError(ctx: RequestContext, err: unknown): void {
  const { status, error } = classifyFailure(
    ctx,
    err,
    (code) => INGEST_STATUS[code],
    'bulk-ingest request',
  )
  // ingestErrorBody(500, …) hides the message: nothing of a non-UploadError reaches the client.
  if (!error) {
    sendJson(ctx.res, 500, ingestErrorBody(500, '', null, null))
    return
  }
  const fields = ingestRefusals.fieldsOf(error)
  // RFC 6750: a missing or malformed credential is answered with a Bearer challenge.
  const headers: Record<string, string> =
    fields?.kind === 'challenge' ? { 'WWW-Authenticate': 'Bearer' } : {}
  sendJson(ctx.res, status, ingestErrorBody(status, error.message, fields, error.detail), headers)
}
