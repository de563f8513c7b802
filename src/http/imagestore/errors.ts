import type { ErrorCode } from '../../core/errors.js'
import { challengeOf } from '../auth/bearer.js'
import type { RequestContext } from '../context.js'
import { classifyFailure, defineRefusals } from '../errors.js'
import { sendJson } from '../respond.js'

/**
 * Fabric error codes in the seed's FabricErrorCodes enum (servicefabric-imagestore-subset.json).
 */
export type FabricCode =
  | 'E_INVALIDARG'
  | 'E_ACCESSDENIED'
  | 'E_FAIL'
  | 'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE'
  | 'FABRIC_E_UPLOAD_SESSION_ID_CONFLICT'
  | 'FABRIC_E_INVALID_UPLOAD_SESSION_ID'
  | 'FABRIC_E_FILE_NOT_FOUND'
  | 'FABRIC_E_DIRECTORY_NOT_FOUND'
  | 'FABRIC_E_PATH_TOO_LONG'
  | 'FABRIC_E_IMAGESTORE_IOERROR'
  | 'FABRIC_E_IMAGEBUILDER_RESERVED_DIRECTORY_ERROR'
  | 'FABRIC_E_TIMEOUT'

/**
 * Core code → (HTTP status, Fabric code). Statuses follow the runtime's ErrorCodeToHttpStatus
 * (microsoft/service-fabric imagestorehandler.cpp); where the runtime has no matching condition we
 * say why.
 */
export const IMAGESTORE_ERRORS: Readonly<Record<ErrorCode, readonly [number, FabricCode]>> = {
  ERR_INVALID_ARGUMENT: [400, 'E_INVALIDARG'],
  ERR_INVALID_PATH: [400, 'E_INVALIDARG'],
  ERR_PATH_TOO_LONG: [400, 'FABRIC_E_PATH_TOO_LONG'],
  ERR_INVALID_RANGE: [400, 'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE'],
  ERR_RANGE_NOT_SATISFIABLE: [400, 'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE'],
  // The runtime reports a total that differs from the session's, and a bad merge size, as
  // E_INVALIDARG.
  ERR_SIZE_MISMATCH: [400, 'E_INVALIDARG'],
  ERR_CHECKSUM_MISMATCH: [400, 'E_INVALIDARG'],
  // The runtime has no size limit of its own; 413 is ours, with the generic code.
  ERR_BODY_TOO_LARGE: [413, 'E_INVALIDARG'],
  // Unknown session on DeleteUploadSession: the runtime's internal NotFound maps to 404.
  ERR_SESSION_NOT_FOUND: [404, 'FABRIC_E_FILE_NOT_FOUND'],
  ERR_SESSION_ID_CONFLICT: [409, 'FABRIC_E_UPLOAD_SESSION_ID_CONFLICT'],
  ERR_SESSION_INCOMPLETE: [400, 'E_INVALIDARG'],
  // The runtime's "operations pending" (FileUpdateInProgress) has no public code; ours is 409 +
  // E_FAIL.
  ERR_SESSION_BUSY: [409, 'E_FAIL'],
  ERR_SESSION_CLOSED: [400, 'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE'],
  ERR_NOT_FOUND: [404, 'FABRIC_E_FILE_NOT_FOUND'],
  // A file stands where a folder is needed (or the reverse).
  ERR_ALREADY_EXISTS: [400, 'E_INVALIDARG'],
  ERR_PRECONDITION_FAILED: [412, 'E_INVALIDARG'],
  ERR_DEPENDENCY_MISSING: [404, 'FABRIC_E_FILE_NOT_FOUND'],
  ERR_LOCKED: [409, 'E_FAIL'],
  ERR_UNAUTHORIZED: [401, 'E_ACCESSDENIED'],
  ERR_FORBIDDEN: [403, 'E_ACCESSDENIED'],
  ERR_NOT_IMPLEMENTED: [400, 'E_INVALIDARG'],
  ERR_RESERVED_NAME: [400, 'FABRIC_E_IMAGEBUILDER_RESERVED_DIRECTORY_ERROR'],
  ERR_CLIENT_ABORTED: [400, 'E_INVALIDARG'],
  ERR_UNAVAILABLE: [503, 'E_FAIL'],
  ERR_IO: [500, 'FABRIC_E_IMAGESTORE_IOERROR'],
  // The runtime reports a full disk as an I/O error (500); 507 tells a client to retry later
  // instead of treating the failure as a bug, with the Fabric code of the condition.
  ERR_INSUFFICIENT_STORAGE: [507, 'FABRIC_E_IMAGESTORE_IOERROR'],
  ERR_BODY_TIMEOUT: [408, 'FABRIC_E_TIMEOUT'],
}

export function sendFabricError(
  ctx: RequestContext,
  status: number,
  code: FabricCode,
  message: string,
): void {
  sendJson(ctx.res, status, { Error: { Code: code, Message: message } })
}

/** ImageStore's own field: where the runtime names another Fabric code than the table's. */
export interface FabricFields {
  readonly fabricCode: FabricCode
}

/**
 * Refusals with their own Fabric code. The runtime answers a missing session-id with
 * FABRIC_E_INVALID_UPLOAD_SESSION_ID on UploadChunk and GetUploadSession, yet E_INVALIDARG on
 * commit and delete: one core code, two Fabric codes, chosen where the family throws.
 */
export const fabricRefusals = defineRefusals<FabricFields>()

/** The status and the FabricError body of `err` (a 500 says nothing of a non-UploadError). */
export function sendImageStoreError(ctx: RequestContext, err: unknown): void {
  const statusOf = (code: ErrorCode) => IMAGESTORE_ERRORS[code][0]
  const { status, error } = classifyFailure(ctx, err, statusOf, 'imagestore request')
  if (!error) {
    sendFabricError(ctx, 500, 'E_FAIL', 'internal error')
    return
  }
  // The gateway's token (claims) handler answers a missing or rejected token with 401 and a
  // challenge (httpgateway HttpClaimsAuthHandler → InvalidCredentials → StatusAuthenticate),
  // with the one Fabric code for access, E_ACCESSDENIED (the table's).
  const headers: Record<string, string> = {}
  if (error.code === 'ERR_UNAUTHORIZED') headers['WWW-Authenticate'] = challengeOf(error)
  const code = fabricRefusals.fieldsOf(error)?.fabricCode ?? IMAGESTORE_ERRORS[error.code][1]
  sendJson(ctx.res, status, { Error: { Code: code, Message: error.message } }, headers)
}
