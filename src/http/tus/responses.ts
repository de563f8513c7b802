/**
 * Response headers of the tus and IETF answers, as pure functions of an upload's state, so the
 * spec's rules about which header appears when live in one tested place and the family only
 * supplies state. Bodies are left to the family except the draft's problem+json.
 */
import { TUS_CHECKSUM_ALGORITHM_HEADER } from './checksum.js'
import {
  formatSfBoolean,
  formatUploadLimit,
  PROBLEM_CONTENT_TYPE,
  mismatchingOffsetProblem,
  TUS_VERSION,
  type InteropVersion,
  type UploadLimits,
} from './headers.js'

export type HeaderMap = Record<string, string>

/** Every extension Ferry can announce, in the order of the tus 1.0.0 text. */
export const TUS_EXTENSIONS = [
  'creation',
  'creation-with-upload',
  'creation-defer-length',
  'termination',
  'checksum',
  'concatenation',
  'expiration',
] as const

export type TusExtension = (typeof TUS_EXTENSIONS)[number]

/** An RFC 9110 IMF-fixdate (`Wed, 25 Nov 2026 16:00:00 GMT`), the format `Upload-Expires` needs. */
export function formatHttpDate(date: Date): string {
  return date.toUTCString()
}

export interface TusOptionsInput {
  /** What this deployment offers; derived by the family from the capabilities it was given. */
  readonly extensions: readonly TusExtension[]
  /** `Tus-Max-Size`, when uploads are limited. */
  readonly maxSizeBytes?: number
}

/**
 * tus OPTIONS: "The Server MUST include Tus-Version … Tus-Extension … MAY include Tus-Max-Size";
 * the checksum extension adds "Tus-Checksum-Algorithm" (MUST). `Tus-Resumable` is added too:
 * clients ignore it on OPTIONS and tusd sends it on every answer.
 */
export function tusOptionsHeaders(input: TusOptionsInput): HeaderMap {
  const h: HeaderMap = { 'Tus-Resumable': TUS_VERSION, 'Tus-Version': TUS_VERSION }
  const known = TUS_EXTENSIONS.filter((e) => input.extensions.includes(e))
  if (known.length > 0) h['Tus-Extension'] = known.join(',')
  if (input.maxSizeBytes !== undefined) h['Tus-Max-Size'] = String(input.maxSizeBytes)
  if (known.includes('checksum')) h['Tus-Checksum-Algorithm'] = TUS_CHECKSUM_ALGORITHM_HEADER
  return h
}

/** What a tus HEAD reports about one upload. */
export interface TusUploadView {
  /** Bytes stored; null for a final upload whose assembly has not finished. */
  readonly offset: number | null
  /** Total length; null while deferred. */
  readonly length: number | null
  /** Canonical `Upload-Metadata` (`formatUploadMetadata`), '' when the client sent none. */
  readonly metadata: string
  /** `Upload-Concat` as the creation request had it, null for a plain upload. */
  readonly concat: string | null
  /** When an unfinished upload expires; null when it does not (or is finished). */
  readonly expiresAt: Date | null
}

/**
 * tus HEAD (200 or 204, no body): "MUST always include the Upload-Offset header" — except for a
 * final upload before concatenation finished ("SHOULD NOT contain the Upload-Offset header");
 * "Upload-Length header … if known"; "MUST return Upload-Defer-Length: 1" while deferred;
 * "MUST include the Upload-Metadata header … if it was provided"; "MUST include the
 * Upload-Concat header" for partial and final uploads; "MUST prevent the client and/or proxies
 * from caching the response by adding the Cache-Control: no-store header".
 */
export function tusHeadHeaders(u: TusUploadView): HeaderMap {
  const h: HeaderMap = { 'Tus-Resumable': TUS_VERSION, 'Cache-Control': 'no-store' }
  if (u.offset !== null) h['Upload-Offset'] = String(u.offset)
  if (u.length !== null) h['Upload-Length'] = String(u.length)
  else if (!u.concat?.startsWith('final;')) h['Upload-Defer-Length'] = '1'
  if (u.metadata !== '') h['Upload-Metadata'] = u.metadata
  if (u.concat !== null) h['Upload-Concat'] = u.concat
  if (u.expiresAt !== null) h['Upload-Expires'] = formatHttpDate(u.expiresAt)
  return h
}

/**
 * tus PATCH success (204): the new `Upload-Offset`, and `Upload-Expires` "in the response to
 * every PATCH request if the upload is going to expire".
 */
export function tusPatchHeaders(offset: number, expiresAt: Date | null): HeaderMap {
  const h: HeaderMap = { 'Tus-Resumable': TUS_VERSION, 'Upload-Offset': String(offset) }
  if (expiresAt !== null) h['Upload-Expires'] = formatHttpDate(expiresAt)
  return h
}

/** 412 for an unsupported `Tus-Resumable`: "MUST include the Tus-Version header". */
export function tusVersionMismatchHeaders(): HeaderMap {
  return { 'Tus-Version': TUS_VERSION }
}

/** What an IETF HEAD reports about one upload. */
export interface IetfUploadView {
  readonly offset: number
  readonly complete: boolean
  /** Null until the client declared it (`Upload-Length`, or `Upload-Complete: ?1` + length). */
  readonly length: number | null
  readonly limits: UploadLimits
}

/**
 * IETF offset retrieval (draft -11): "MUST include the offset in the Upload-Offset header",
 * "MUST include the completeness state in the Upload-Complete header", "MUST include the length
 * in the Upload-Length header, unless the client has not supplied one", "MUST indicate the
 * limits in the Upload-Limit header", "SHOULD include the Cache-Control header field with the
 * value no-store". Draft -05 has the same fields (`Upload-Limit` there is a MAY).
 */
export function ietfHeadHeaders(u: IetfUploadView, version: InteropVersion): HeaderMap {
  const h: HeaderMap = {
    'Upload-Offset': String(u.offset),
    'Upload-Complete': formatSfBoolean(u.complete),
    'Upload-Limit': formatUploadLimit(u.limits, version),
    'Cache-Control': 'no-store',
  }
  if (u.length !== null) h['Upload-Length'] = String(u.length)
  return h
}

/**
 * IETF OPTIONS: `Upload-Limit` (draft -05: MUST, `min-size=0` when there is none), and draft
 * -11's "MUST include the Accept-Patch … application/partial-upload".
 */
export function ietfOptionsHeaders(limits: UploadLimits, version: InteropVersion): HeaderMap {
  return {
    'Upload-Limit': formatUploadLimit(limits, version),
    'Accept-Patch': 'application/partial-upload',
  }
}

export interface ProblemAnswer {
  readonly status: number
  readonly headers: HeaderMap
  readonly body: string
}

/**
 * IETF PATCH with a wrong offset: "MUST reject the request with a 409 (Conflict) … MUST include
 * the correct offset in the Upload-Offset header", with the mismatching-upload-offset problem.
 * `Upload-Complete: ?0` says the answer is about the upload itself, not a processing result.
 */
export function ietfOffsetMismatch(expected: number, provided: number): ProblemAnswer {
  const body = JSON.stringify(mismatchingOffsetProblem(expected, provided))
  return {
    status: 409,
    headers: {
      'Content-Type': PROBLEM_CONTENT_TYPE,
      'Upload-Offset': String(expected),
      'Upload-Complete': '?0',
      'Content-Length': String(Buffer.byteLength(body)),
    },
    body,
  }
}
