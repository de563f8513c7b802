/**
 * CORS for the browser-facing families (tus and the IETF draft, lakeFS presigned PUTs), as pure
 * functions over header values. The policy comes from `FERRY_CORS_ORIGINS`:
 *
 * - unset or `*`: any origin, without credentials. That is the default of tusd
 *   (`DefaultCorsConfig`: AllowOrigin `.*`, AllowCredentials false) and of @tus/server (no
 *   `allowedOrigins` → `Access-Control-Allow-Origin: *`), so Uppy works out of the box. Ferry
 *   answers `*` rather than echoing the origin: without credentials the two mean the same, and
 *   `*` keeps responses cacheable by shared caches without `Vary: Origin`.
 * - `none`: no CORS headers at all (browsers then cannot call Ferry cross-origin).
 * - a comma list of origins (`https://app.example.com, http://localhost:5173`): only those are
 *   echoed, with `Vary: Origin` on every answer since the answer depends on the request's Origin.
 *
 * An origin that is not allowed gets no CORS headers (the browser then refuses to hand the answer
 * to the page); the request itself is still served, since CORS is not access control: a
 * non-browser client sends no Origin at all. tusd answers 403 instead; both stop the page.
 */

/** Every method the tus and IETF endpoints and the lakeFS presigned routes answer. */
export const CORS_ALLOW_METHODS = [
  'POST',
  'GET',
  'HEAD',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'PUT',
] as const

/**
 * Request headers a page may send: tusd's default `AllowHeaders` (which already carries the
 * IETF draft's `Upload-Complete`, `Upload-Incomplete`, `Upload-Draft-Interop-Version`), plus
 * `Upload-Checksum` (tusd and @tus/server have no checksum extension, Ferry has), the draft's
 * digest fields (RFC 9530) and `Content-Disposition` (the draft's file name), and what a lakeFS
 * presigned PUT from a browser sends (`Content-MD5`, `If-Match`, `If-None-Match`).
 */
export const CORS_ALLOW_HEADERS = [
  'Authorization',
  'Origin',
  'X-Requested-With',
  'X-Request-ID',
  'X-HTTP-Method-Override',
  'Content-Type',
  'Content-Disposition',
  'Content-MD5',
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Upload-Checksum',
  'Upload-Complete',
  'Upload-Incomplete',
  'Upload-Draft-Interop-Version',
  'Content-Digest',
  'Repr-Digest',
  'Want-Repr-Digest',
  'If-Match',
  'If-None-Match',
] as const

/**
 * Response headers a page may read: tusd's default `ExposeHeaders` plus what it lacks —
 * `Upload-Expires` (expiration extension), `Tus-Checksum-Algorithm` (checksum extension),
 * `Upload-Limit` (draft), `ETag` (lakectl needs each presigned part's ETag to complete a
 * multipart upload), `Content-Range` (ranged GET) and `X-Request-Id` (support requests).
 */
export const CORS_EXPOSE_HEADERS = [
  'Location',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Tus-Version',
  'Tus-Resumable',
  'Tus-Max-Size',
  'Tus-Extension',
  'Tus-Checksum-Algorithm',
  'Upload-Draft-Interop-Version',
  'Upload-Complete',
  'Upload-Incomplete',
  'Upload-Limit',
  'ETag',
  'Content-Range',
  'X-Request-Id',
] as const

/** How long a browser may cache a preflight answer: tusd's and @tus/server's 86400 s. */
export const CORS_MAX_AGE_SEC = 86_400

export type CorsOrigins =
  | { readonly mode: 'any' }
  | { readonly mode: 'none' }
  | { readonly mode: 'list'; readonly origins: readonly string[] }

export class CorsConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CorsConfigError'
  }
}

/**
 * Serialises a URL's origin like browsers do in the `Origin` header: lower-case scheme and
 * host, default port dropped. Null for anything that is not a bare http(s) origin.
 */
function normaliseOrigin(raw: string): string | null {
  if (!/^https?:\/\/[^/?#@]+\/?$/i.test(raw)) return null
  try {
    const u = new URL(raw)
    return u.origin
  } catch {
    return null
  }
}

/**
 * Reads `FERRY_CORS_ORIGINS`. Throws `CorsConfigError` naming the bad entry, so startup fails
 * with a message instead of silently serving a policy the operator did not write.
 */
export function parseCorsOrigins(raw: string | undefined): CorsOrigins {
  if (raw === undefined || raw.trim() === '' || raw.trim() === '*') return { mode: 'any' }
  if (raw.trim().toLowerCase() === 'none') return { mode: 'none' }
  const origins: string[] = []
  for (const part of raw.split(',')) {
    const entry = part.trim()
    if (entry === '') continue
    if (entry === '*') {
      throw new CorsConfigError('FERRY_CORS_ORIGINS: "*" cannot be mixed with origins')
    }
    const origin = normaliseOrigin(entry)
    if (origin === null) {
      throw new CorsConfigError(
        `FERRY_CORS_ORIGINS: "${entry.slice(0, 80)}" is not an origin ` +
          'like https://app.example.com[:port]',
      )
    }
    if (!origins.includes(origin)) origins.push(origin)
  }
  if (origins.length === 0) throw new CorsConfigError('FERRY_CORS_ORIGINS lists no origin')
  return { mode: 'list', origins }
}

export type HeaderMap = Record<string, string>

export interface CorsPolicy {
  readonly origins: CorsOrigins
  /**
   * True when an OPTIONS request is a CORS preflight (it carries `Origin` and
   * `Access-Control-Request-Method`); a plain tus OPTIONS (discovery) is not.
   */
  isPreflight(
    method: string,
    origin: string | undefined,
    requestMethod: string | undefined,
  ): boolean
  /**
   * Headers for the answer to a preflight: allow-origin, methods, headers, max-age, Vary. Empty
   * when the origin is not allowed. The family adds its own OPTIONS headers (`Tus-Version`,
   * `Upload-Limit`…) and answers 204, as tusd does for both kinds of OPTIONS.
   */
  preflightHeaders(origin: string | undefined): HeaderMap
  /** Headers to add to an actual (non-preflight) answer: allow-origin, expose-headers, Vary. */
  responseHeaders(origin: string | undefined): HeaderMap
}

/** Builds the policy once at startup; the methods only read it. */
export function createCorsPolicy(origins: CorsOrigins): CorsPolicy {
  const allowMethods = CORS_ALLOW_METHODS.join(', ')
  const allowHeaders = CORS_ALLOW_HEADERS.join(', ')
  const exposeHeaders = CORS_EXPOSE_HEADERS.join(', ')
  const listed = origins.mode === 'list' ? new Set(origins.origins) : new Set<string>()

  /** The value of Access-Control-Allow-Origin for this request, or null for none. */
  const allowOrigin = (origin: string | undefined): string | null => {
    if (origins.mode === 'none') return null
    if (origins.mode === 'any') return '*'
    if (origin === undefined) return null
    // Browsers send the serialised origin; compare it as sent, but tolerate letter case.
    const normal = normaliseOrigin(origin)
    return normal !== null && listed.has(normal) ? origin : null
  }

  const vary = (headers: HeaderMap): HeaderMap => {
    // With a list, the answer differs per Origin: caches must key on it even when we say no.
    if (origins.mode === 'list') headers['Vary'] = 'Origin'
    return headers
  }

  return {
    origins,
    isPreflight(method, origin, requestMethod) {
      return method === 'OPTIONS' && origin !== undefined && requestMethod !== undefined
    },
    preflightHeaders(origin) {
      const allowed = allowOrigin(origin)
      if (allowed === null) return vary({})
      return vary({
        'Access-Control-Allow-Origin': allowed,
        'Access-Control-Allow-Methods': allowMethods,
        'Access-Control-Allow-Headers': allowHeaders,
        'Access-Control-Max-Age': String(CORS_MAX_AGE_SEC),
      })
    },
    responseHeaders(origin) {
      const allowed = allowOrigin(origin)
      if (allowed === null) return vary({})
      return vary({
        'Access-Control-Allow-Origin': allowed,
        'Access-Control-Expose-Headers': exposeHeaders,
      })
    },
  }
}
