import type { ServerResponse } from 'node:http'
import type { ErrorCode, StatusTable } from '../../core/errors.js'
import type { RequestContext } from '../context.js'
import { classifyFailure, defineRefusals } from '../errors.js'

/**
 * Core code → HTTP status for the lakeFS API (`{"message": …}` bodies). Statuses follow lakeFS's
 * handleApiErrorCallback where it has the condition (treeverse/lakeFS pkg/api/controller.go,
 * v1.84); where it does not, the comment says why we chose ours.
 */
export const LAKEFS_STATUS: StatusTable = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_PATH: 400,
  ERR_PATH_TOO_LONG: 400,
  ERR_INVALID_RANGE: 400,
  ERR_RANGE_NOT_SATISFIABLE: 416,
  // Link with a size_bytes, or a PUT with a body, that does not match the bytes: a bad request.
  ERR_SIZE_MISMATCH: 400,
  ERR_CHECKSUM_MISMATCH: 400,
  ERR_BODY_TOO_LARGE: 413,
  ERR_SESSION_NOT_FOUND: 404,
  ERR_SESSION_ID_CONFLICT: 409,
  ERR_SESSION_INCOMPLETE: 400,
  // lakeFS answers a contended write with 429 "Too many attempts, try again later".
  ERR_SESSION_BUSY: 429,
  ERR_SESSION_CLOSED: 400,
  ERR_NOT_FOUND: 404,
  // Create-if-absent lost: lakeFS's 412 "Precondition failed".
  ERR_ALREADY_EXISTS: 412,
  ERR_PRECONDITION_FAILED: 412,
  // Link of an address nothing was uploaded to. 409 is the one status on which lakectl and the
  // Go client start the upload over (new address, new PUT), which is the way out of this state.
  ERR_DEPENDENCY_MISSING: 409,
  ERR_LOCKED: 429,
  // lakeFS never uses 403 for a denial; auth failures are 401.
  ERR_UNAUTHORIZED: 401,
  ERR_FORBIDDEN: 403,
  ERR_NOT_IMPLEMENTED: 501,
  ERR_RESERVED_NAME: 400,
  // lakeFS answers a request cancelled by its client with 499 and no body.
  ERR_CLIENT_ABORTED: 499,
  ERR_UNAVAILABLE: 503,
  ERR_IO: 500,
  // lakeFS passes the object store's full-disk failure on as 500; ours is 507 so clients retry.
  ERR_INSUFFICIENT_STORAGE: 507,
  ERR_BODY_TIMEOUT: 408,
}

/** lakeFS writes JSON with Go's json.Encoder (trailing newline) and `nosniff`. */
export function sendLakeFsJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(res.req?.method === 'HEAD' ? undefined : text)
}

export function statusOf(code: ErrorCode): number {
  return LAKEFS_STATUS[code]
}

/**
 * The error answer of the lakeFS API routes. Anything not an UploadError is a 500 with no
 * internals.
 */
export function sendLakeFsError(ctx: RequestContext, err: unknown): void {
  const { status, error } = classifyFailure(ctx, err, statusOf, 'lakefs request')
  if (status === 499) {
    sendClientClosed(ctx)
    return
  }
  sendLakeFsJson(ctx.res, status, { message: error ? error.message : 'internal server error' })
}

/** lakeFS answers a request cancelled by its client with 499 and no body (nobody reads it). */
function sendClientClosed(ctx: RequestContext): void {
  ctx.res.writeHead(499, { 'Content-Length': 0 })
  ctx.res.end()
}

const S3_CODE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'InvalidRequest',
  403: 'AccessDenied',
  404: 'NoSuchBucket',
  412: 'PreconditionFailed',
  413: 'EntityTooLarge',
  501: 'NotImplemented',
  503: 'ServiceUnavailable',
  // S3 has no full-disk error; MinIO, the S3-compatible store that can run out of space, answers
  // 507 XMinioStorageFull.
  507: 'XMinioStorageFull',
  408: 'RequestTimeout',
}

const S3_CODE_BY_ERROR: Partial<Record<ErrorCode, string>> = {
  ERR_CHECKSUM_MISMATCH: 'BadDigest',
  ERR_SIZE_MISMATCH: 'IncompleteBody',
  ERR_INVALID_ARGUMENT: 'InvalidArgument',
  // The one session a presigned URL reaches is a multipart upload (S3 UploadPart).
  ERR_SESSION_NOT_FOUND: 'NoSuchUpload',
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** S3 error codes the presigned PUT names itself, where the status alone does not say. */
export type S3RefusalCode = 'AccessDenied' | 'SignatureDoesNotMatch'

/** The presigned PUT's own field: the S3 code of a refusal. */
export interface S3Fields {
  readonly s3Code: S3RefusalCode
}

/** Refusals of the presigned PUT that name their S3 code. */
export const s3Refusals = defineRefusals<S3Fields>()

/**
 * The presigned PUT stands in for the object store (S3, GCS, Azure all answer XML), so its errors
 * are S3-style `<Error><Code>…</Code><Message>…</Message></Error>` with the same statuses as the
 * table above. A bad signature is 403 SignatureDoesNotMatch, an expired or missing one 403
 * AccessDenied (raised through `s3Refusals`, since the status alone does not tell them apart).
 */
export function sendS3Error(ctx: RequestContext, err: unknown): void {
  const { status, error } = classifyFailure(ctx, err, statusOf, 'presigned upload')
  if (status === 499) {
    sendClientClosed(ctx)
    return
  }
  let code = 'InternalError'
  let message = 'We encountered an internal error. Please try again.'
  if (error) {
    code =
      s3Refusals.fieldsOf(error)?.s3Code ??
      S3_CODE_BY_ERROR[error.code] ??
      S3_CODE_BY_STATUS[status] ??
      (status >= 500 ? 'InternalError' : 'InvalidRequest')
    message = error.message
  }
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message><RequestId>${xmlEscape(ctx.reqId)}</RequestId></Error>`
  ctx.res.writeHead(status, {
    'Content-Type': 'application/xml',
    'Content-Length': Buffer.byteLength(xml),
  })
  ctx.res.end(xml)
}
