/**
 * Request headers of tus 1.0.0 (https://tus.io/protocols/resumable-upload) and of the IETF draft
 * "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload), parsed and validated.
 *
 * Every parser returns a `Parsed<T>`: the typed value, or a `TusHeaderError` whose code names the
 * condition. Nothing here throws for bad input, so a family can decide per protocol what an
 * error means (the draft says an invalid field "MUST cause the entire header field to be
 * ignored", tus answers 400). `TUS_HEADER_STATUS` is the default status per code.
 *
 * Values arrive as Node gives them: a string (duplicates of an unknown header already joined
 * with ", ", which then fails the syntax check), a string[] for a few known names, or undefined.
 */
import {
  CHECKSUM_ALGORITHMS,
  TUS_CHECKSUM_ALGORITHM_HEADER,
  isChecksumAlgorithm,
  type ExpectedChecksum,
} from './checksum.js'

export type HeaderValue = string | readonly string[] | undefined

export const TUS_HEADER_ERROR_CODES = [
  /** `Tus-Resumable` absent on a request that needs it. */
  'ERR_TUS_VERSION_MISSING',
  /** `Tus-Resumable` other than 1.0.0. */
  'ERR_TUS_VERSION_UNSUPPORTED',
  /** A header that must be present is not. */
  'ERR_HEADER_MISSING',
  /** A header sent more than once where only one value makes sense. */
  'ERR_HEADER_REPEATED',
  /** An integer header that is not a plain non-negative integer up to 2^53-1. */
  'ERR_INVALID_INTEGER',
  /** `Upload-Defer-Length` other than `1`. */
  'ERR_INVALID_DEFER_LENGTH',
  /** Both `Upload-Length` and `Upload-Defer-Length`. */
  'ERR_LENGTH_AND_DEFER',
  /** Malformed `Upload-Metadata` (key syntax, duplicate key, base64). */
  'ERR_INVALID_METADATA',
  /** `Upload-Metadata` over the configured size or pair count. */
  'ERR_METADATA_TOO_LARGE',
  /** Malformed `Upload-Checksum` (shape, base64, digest length). */
  'ERR_INVALID_CHECKSUM',
  /** `Upload-Checksum` names an algorithm Ferry does not support. */
  'ERR_CHECKSUM_ALGORITHM_UNSUPPORTED',
  /** Malformed `Upload-Concat`. */
  'ERR_INVALID_CONCAT',
  /** `Upload-Concat: final;…` names an upload outside this server's tus endpoint. */
  'ERR_CONCAT_FOREIGN_UPLOAD',
  /** `X-HTTP-Method-Override` with a method tus has no use for. */
  'ERR_INVALID_METHOD_OVERRIDE',
  /** `Upload-Draft-Interop-Version` missing, malformed or not 6/8. */
  'ERR_INTEROP_VERSION_UNSUPPORTED',
  /** A structured-field Boolean that is not `?0` / `?1`. */
  'ERR_INVALID_BOOLEAN',
] as const

export type TusHeaderErrorCode = (typeof TUS_HEADER_ERROR_CODES)[number]

export interface TusHeaderError {
  readonly code: TusHeaderErrorCode
  /** The header's canonical name, for the message and the log. */
  readonly header: string
  /** A short sentence fit for a plain-text answer; never echoes more than 64 input characters. */
  readonly message: string
}

export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: TusHeaderError }

/**
 * Default status per code, from the tus 1.0.0 text: 412 for an unsupported `Tus-Resumable`
 * ("the Server MUST respond with the 412 Precondition Failed status"), 400 for an unsupported
 * checksum algorithm ("the Server MUST respond with the 400 Bad Request status"), 400 for the
 * rest. Metadata over the bound answers 400, not 413: 413 means "the upload is too large" to
 * tus-js-client, which then gives up on the file; an oversized header is the request's fault.
 */
export const TUS_HEADER_STATUS: Readonly<Record<TusHeaderErrorCode, number>> = Object.freeze({
  ERR_TUS_VERSION_MISSING: 412,
  ERR_TUS_VERSION_UNSUPPORTED: 412,
  ERR_HEADER_MISSING: 400,
  ERR_HEADER_REPEATED: 400,
  ERR_INVALID_INTEGER: 400,
  ERR_INVALID_DEFER_LENGTH: 400,
  ERR_LENGTH_AND_DEFER: 400,
  ERR_INVALID_METADATA: 400,
  ERR_METADATA_TOO_LARGE: 400,
  ERR_INVALID_CHECKSUM: 400,
  ERR_CHECKSUM_ALGORITHM_UNSUPPORTED: 400,
  ERR_INVALID_CONCAT: 400,
  // tus 1.0.0 leaves this open; a final upload naming someone else's upload is a bad request
  // (tusd answers 400 ERR_INVALID_CONCAT too), not a missing one.
  ERR_CONCAT_FOREIGN_UPLOAD: 400,
  ERR_INVALID_METHOD_OVERRIDE: 400,
  ERR_INTEROP_VERSION_UNSUPPORTED: 400,
  ERR_INVALID_BOOLEAN: 400,
})

function ok<T>(value: T): Parsed<T> {
  return { ok: true, value }
}

function fail<T>(code: TusHeaderErrorCode, header: string, message: string): Parsed<T> {
  return { ok: false, error: { code, header, message } }
}

/** Shortens client input before it goes into a message. */
function quote(value: string): string {
  const shown = value.length > 64 ? `${value.slice(0, 64)}…` : value
  return JSON.stringify(shown)
}

/** One string, or a typed error for a header sent several times. */
function single(header: string, value: HeaderValue): Parsed<string | undefined> {
  if (value === undefined || typeof value === 'string') return ok(value)
  if (value.length === 1) return ok(value[0])
  return fail('ERR_HEADER_REPEATED', header, `${header} was sent more than once`)
}

// ---------------------------------------------------------------------------------------------
// tus 1.0.0

export const TUS_VERSION = '1.0.0'

/**
 * `Tus-Resumable`: "The Client and Server MUST include it in every request and response except
 * OPTIONS … If the Server does not support the Client's version, it MUST respond with the 412
 * Precondition Failed status and MUST include the Tus-Version header". Ferry speaks 1.0.0 only.
 * A missing header is 412 as well (tusd does the same): the request is not tus 1.0.0.
 */
export function parseTusResumable(value: HeaderValue): Parsed<'1.0.0'> {
  const one = single('Tus-Resumable', value)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined) {
    return fail('ERR_TUS_VERSION_MISSING', 'Tus-Resumable', 'Tus-Resumable is required')
  }
  if (one.value.trim() !== TUS_VERSION) {
    return fail(
      'ERR_TUS_VERSION_UNSUPPORTED',
      'Tus-Resumable',
      `Tus-Resumable ${quote(one.value)} is not supported; this server speaks ${TUS_VERSION}`,
    )
  }
  return ok(TUS_VERSION)
}

/** Digits only: no sign, no inner space, no exponent, no hex (unlike Number() or Go's ParseInt). */
const DIGITS = /^[0-9]{1,16}$/

/**
 * A non-negative integer header (`Upload-Length`, `Upload-Offset`). Node has already removed
 * the surrounding whitespace. At most 2^53-1 so the value is exact in a JS number; that is 8 PiB.
 */
export function parseNonNegativeInteger(
  header: string,
  value: HeaderValue,
): Parsed<number | undefined> {
  const one = single(header, value)
  if (!one.ok) return one
  if (one.value === undefined) return ok(undefined)
  const text = one.value.trim()
  if (!DIGITS.test(text)) {
    return fail(
      'ERR_INVALID_INTEGER',
      header,
      `${header} must be a non-negative integer, not ${quote(one.value)}`,
    )
  }
  const n = Number(text)
  if (!Number.isSafeInteger(n)) {
    return fail('ERR_INVALID_INTEGER', header, `${header} ${quote(text)} is larger than 2^53-1`)
  }
  return ok(n)
}

/** Same as `parseNonNegativeInteger`, but the header must be present. */
export function requireNonNegativeInteger(header: string, value: HeaderValue): Parsed<number> {
  const r = parseNonNegativeInteger(header, value)
  if (!r.ok) return r as Parsed<never>
  if (r.value === undefined) return fail('ERR_HEADER_MISSING', header, `${header} is required`)
  return ok(r.value)
}

export type CreationLength =
  | { readonly kind: 'known'; readonly length: number }
  | { readonly kind: 'deferred' }
  /** Neither header: legal only for `Upload-Concat: final;…`; the family decides. */
  | { readonly kind: 'none' }

/**
 * `Upload-Length` / `Upload-Defer-Length` of a creation request. tus 1.0.0: "The Client MUST
 * include either the Upload-Length or the Upload-Defer-Length header"; "Upload-Defer-Length
 * … its value MUST be 1"; "If the length of the upload is not known, the Client MUST NOT
 * include Upload-Length". Both at once is therefore refused.
 */
export function parseCreationLength(
  length: HeaderValue,
  deferLength: HeaderValue,
): Parsed<CreationLength> {
  const len = parseNonNegativeInteger('Upload-Length', length)
  if (!len.ok) return len as Parsed<never>
  const defer = single('Upload-Defer-Length', deferLength)
  if (!defer.ok) return defer as Parsed<never>
  if (defer.value !== undefined) {
    if (defer.value.trim() !== '1') {
      return fail(
        'ERR_INVALID_DEFER_LENGTH',
        'Upload-Defer-Length',
        `Upload-Defer-Length must be 1, not ${quote(defer.value)}`,
      )
    }
    if (len.value !== undefined) {
      return fail(
        'ERR_LENGTH_AND_DEFER',
        'Upload-Length',
        'Upload-Length and Upload-Defer-Length must not be sent together',
      )
    }
    return ok({ kind: 'deferred' })
  }
  if (len.value !== undefined) return ok({ kind: 'known', length: len.value })
  return ok({ kind: 'none' })
}

// --- Upload-Metadata --------------------------------------------------------------------------

export interface MetadataEntry {
  readonly key: string
  /** The decoded bytes. tus values are arbitrary bytes; most clients send UTF-8 text. */
  readonly value: Buffer
}

export interface UploadMetadata {
  /** In the order the client sent them; keys are unique. */
  readonly entries: readonly MetadataEntry[]
  /**
   * The header re-encoded canonically (`key base64,key`), for `HEAD`: "The Server MUST
   * include the Upload-Metadata header in the response if it was provided by the Client".
   */
  readonly header: string
}

export interface MetadataLimits {
  /** Longest accepted header value in bytes (it is ASCII). */
  readonly maxHeaderBytes: number
  /** Most key-value pairs. */
  readonly maxPairs: number
}

/**
 * Node refuses request heads over 16 KiB (`--max-http-header-size`), so 4 KiB of metadata
 * leaves room for the other headers; 64 pairs is far above what Uppy sends (name, type,
 * filetype, filename, relativePath and a few user fields).
 */
export const DEFAULT_METADATA_LIMITS: MetadataLimits = Object.freeze({
  maxHeaderBytes: 4096,
  maxPairs: 64,
})

// tus 1.0.0: "The key MUST NOT contain spaces and commas and MUST NOT be empty. The key SHOULD
// be ASCII encoded". We make the SHOULD a MUST: printable ASCII without space and comma.
const METADATA_KEY = /^[\x21-\x2b\x2d-\x7e]+$/
// Standard alphabet with its padding (RFC 4648 section 4), as tus-js-client's js-base64 writes.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * Strict base64: the standard alphabet, correct padding, and zero bits after the last
 * character (what `Buffer.from` would silently drop). Null when `text` is not base64.
 */
export function decodeStrictBase64(text: string): Buffer | null {
  if (!BASE64.test(text)) return null
  const bytes = Buffer.from(text, 'base64')
  return bytes.toString('base64') === text ? bytes : null
}

/**
 * `Upload-Metadata`: "one or more comma-separated key-value pairs. The key and value MUST be
 * separated by a space … All keys MUST be unique. The value MAY be empty. In these cases, the
 * space, which would normally separate the key and the value, MAY be left out." An absent or
 * empty header gives no entries. Whitespace around a pair is allowed (some clients write ", ").
 */
export function parseUploadMetadata(
  value: HeaderValue,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Parsed<UploadMetadata> {
  const H = 'Upload-Metadata'
  const one = single(H, value)
  if (!one.ok) return one as Parsed<never>
  const raw = one.value ?? ''
  if (Buffer.byteLength(raw, 'latin1') > limits.maxHeaderBytes) {
    return fail('ERR_METADATA_TOO_LARGE', H, `${H} is longer than ${limits.maxHeaderBytes} bytes`)
  }
  if (raw.trim() === '') return ok({ entries: [], header: '' })
  const parts = raw.split(',')
  if (parts.length > limits.maxPairs) {
    return fail('ERR_METADATA_TOO_LARGE', H, `${H} has more than ${limits.maxPairs} pairs`)
  }
  const entries: MetadataEntry[] = []
  const seen = new Set<string>()
  for (const part of parts) {
    const pair = part.replace(/^[ \t]+|[ \t]+$/g, '')
    const space = pair.indexOf(' ')
    const key = space === -1 ? pair : pair.slice(0, space)
    const encoded = space === -1 ? '' : pair.slice(space + 1)
    if (!METADATA_KEY.test(key)) {
      return fail(
        'ERR_INVALID_METADATA',
        H,
        `${H} key ${quote(key)} must be non-empty ASCII without spaces or commas`,
      )
    }
    if (seen.has(key))
      return fail('ERR_INVALID_METADATA', H, `${H} key ${quote(key)} appears twice`)
    seen.add(key)
    const bytes = decodeStrictBase64(encoded)
    if (bytes === null) {
      return fail('ERR_INVALID_METADATA', H, `${H} value of ${quote(key)} is not valid base64`)
    }
    entries.push({ key, value: bytes })
  }
  return ok({ entries, header: formatUploadMetadata(entries) })
}

/** The canonical header for a list of entries: `key base64`, or `key` alone for an empty value. */
export function formatUploadMetadata(entries: readonly MetadataEntry[]): string {
  return entries
    .map((e) => (e.value.length === 0 ? e.key : `${e.key} ${e.value.toString('base64')}`))
    .join(',')
}

/**
 * Metadata as text for hooks and logs: a null-prototype record (a key may be `__proto__`),
 * values decoded as UTF-8 where they are UTF-8, else given as `base64:<text>` so nothing is lost.
 */
export function metadataToRecord(entries: readonly MetadataEntry[]): Record<string, string> {
  const out = Object.create(null) as Record<string, string>
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  for (const { key, value } of entries) {
    try {
      out[key] = utf8.decode(value)
    } catch {
      out[key] = `base64:${value.toString('base64')}`
    }
  }
  return out
}

// --- Upload-Checksum --------------------------------------------------------------------------

/**
 * `Upload-Checksum`: "the name of the used checksum algorithm and the Base64 encoded checksum
 * separated by a space". An unknown algorithm is its own code, because tus 1.0.0 asks for 400
 * there and the family may want to say which algorithms exist (`Tus-Checksum-Algorithm`).
 * Algorithm names are matched case-insensitively; the spec's names are lower-case.
 */
export function parseUploadChecksum(value: HeaderValue): Parsed<ExpectedChecksum | undefined> {
  const H = 'Upload-Checksum'
  const one = single(H, value)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined) return ok(undefined)
  const m = /^([A-Za-z0-9-]+) ([^ ]*)$/.exec(one.value.trim())
  if (m === null)
    return fail('ERR_INVALID_CHECKSUM', H, `${H} must be "<algorithm> <base64 digest>"`)
  const name = m[1]!.toLowerCase()
  if (!isChecksumAlgorithm(name)) {
    return fail(
      'ERR_CHECKSUM_ALGORITHM_UNSUPPORTED',
      H,
      `${H} algorithm ${quote(name)} is not supported; use one of ${TUS_CHECKSUM_ALGORITHM_HEADER}`,
    )
  }
  const digest = decodeStrictBase64(m[2]!)
  if (digest === null) return fail('ERR_INVALID_CHECKSUM', H, `${H} digest is not valid base64`)
  if (digest.length !== CHECKSUM_ALGORITHMS[name]) {
    return fail(
      'ERR_INVALID_CHECKSUM',
      H,
      `${H} ${name} digest must be ${CHECKSUM_ALGORITHMS[name]} bytes, got ${digest.length}`,
    )
  }
  return ok({ algorithm: name, digest })
}

// --- Upload-Concat ----------------------------------------------------------------------------

export type UploadConcat =
  | { readonly kind: 'partial' }
  /** Upload ids in the order given: "The Server MUST concatenate … in the order specified". */
  | { readonly kind: 'final'; readonly ids: readonly string[] }

export interface ConcatOptions {
  /**
   * Absolute URL prefixes under which this server's uploads live, each ending in `/`, e.g.
   * `http://10.0.0.5:8080/files/` (the request's own Host) and `https://up.example.com/files/`
   * (FERRY_PUBLIC_URL). A reference must resolve under one of them.
   */
  readonly prefixes: readonly string[]
  /**
   * What path-only references (`/files/a`) are resolved against: the URL as the client sees it,
   * i.e. under FERRY_PUBLIC_URL when that is set (a proxy may have stripped a path prefix), else
   * the request's own scheme, Host and path.
   */
  readonly requestUrl: string
  /** Which ids may exist; the default is Ferry's generated-id alphabet, 1 to 128 characters. */
  readonly isValidId?: (id: string) => boolean
  /** Most partial uploads in one final upload. */
  readonly maxPartials?: number
}

const DEFAULT_ID = /^[A-Za-z0-9_-]{1,128}$/

/**
 * `Upload-Concat`: `partial`, or `final;` followed by space-separated upload URLs ("Upload-Concat:
 * final;/files/a /files/b" in tus 1.0.0; tus-js-client sends absolute URLs). Each URL must name
 * an upload of this server: same scheme, host and port as one of `prefixes`, the path directly
 * under its path, no query or fragment. The same partial may appear more than once (tus 1.0.x:
 * "The same partial upload MAY be present multiple times in the Upload-Concat header"); the
 * family locks each distinct id once.
 */
export function parseUploadConcat(
  value: HeaderValue,
  options: ConcatOptions,
): Parsed<UploadConcat | undefined> {
  const H = 'Upload-Concat'
  const one = single(H, value)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined) return ok(undefined)
  const text = one.value.trim()
  if (text === 'partial') return ok({ kind: 'partial' })
  if (!text.startsWith('final;')) {
    return fail(
      'ERR_INVALID_CONCAT',
      H,
      `${H} must be "partial" or "final;<url> <url>…", not ${quote(text)}`,
    )
  }
  const refs = text
    .slice('final;'.length)
    .trim()
    .split(/[ \t]+/)
    .filter((r) => r !== '')
  if (refs.length === 0) return fail('ERR_INVALID_CONCAT', H, `${H} final names no partial uploads`)
  const maxPartials = options.maxPartials ?? 1000
  if (refs.length > maxPartials) {
    return fail(
      'ERR_INVALID_CONCAT',
      H,
      `${H} final names more than ${maxPartials} partial uploads`,
    )
  }
  // A prefix built from a Host header that is no valid authority (Node passes any bytes, e.g.
  // `a b/\xff`) names no upload of this server: it is left out instead of throwing.
  const prefixes = options.prefixes.flatMap((p) => (URL.canParse(p) ? [new URL(p)] : []))
  const isValidId = options.isValidId ?? ((id: string) => DEFAULT_ID.test(id))
  const ids: string[] = []
  for (const ref of refs) {
    const id = concatRefToId(ref, options.requestUrl, prefixes, isValidId)
    if (!id.ok) return id as Parsed<never>
    ids.push(id.value)
  }
  return ok({ kind: 'final', ids })
}

function concatRefToId(
  ref: string,
  requestUrl: string,
  prefixes: readonly URL[],
  isValidId: (id: string) => boolean,
): Parsed<string> {
  const H = 'Upload-Concat'
  // Only absolute http(s) URLs and absolute paths: a bare `a` or `../a` would depend on where
  // the request was sent, and a scheme-relative `//host/…` on nothing the client said plainly.
  if (!/^https?:\/\//i.test(ref) && !(ref.startsWith('/') && !ref.startsWith('//'))) {
    return fail(
      'ERR_INVALID_CONCAT',
      H,
      `${H} reference ${quote(ref)} is not a URL or an absolute path`,
    )
  }
  let url: URL
  try {
    url = new URL(ref, requestUrl)
  } catch {
    return fail('ERR_INVALID_CONCAT', H, `${H} reference ${quote(ref)} is not a valid URL`)
  }
  if (url.search !== '' || url.hash !== '' || ref.includes('?') || ref.includes('#')) {
    return fail(
      'ERR_INVALID_CONCAT',
      H,
      `${H} reference ${quote(ref)} must not carry a query or fragment`,
    )
  }
  if (url.username !== '' || url.password !== '') {
    return fail('ERR_CONCAT_FOREIGN_UPLOAD', H, `${H} reference ${quote(ref)} carries credentials`)
  }
  for (const prefix of prefixes) {
    if (url.origin !== prefix.origin || !url.pathname.startsWith(prefix.pathname)) continue
    const id = url.pathname.slice(prefix.pathname.length)
    if (!isValidId(id)) {
      return fail(
        'ERR_INVALID_CONCAT',
        H,
        `${H} reference ${quote(ref)} does not name an upload id`,
      )
    }
    return ok(id)
  }
  return fail(
    'ERR_CONCAT_FOREIGN_UPLOAD',
    H,
    `${H} reference ${quote(ref)} is not an upload of this server`,
  )
}

// --- X-HTTP-Method-Override -------------------------------------------------------------------

export type TusMethod = 'PATCH' | 'DELETE' | 'HEAD' | 'GET' | 'POST' | 'OPTIONS'
const TUS_METHODS: readonly TusMethod[] = ['PATCH', 'DELETE', 'HEAD', 'GET', 'POST', 'OPTIONS']

/**
 * The method a request stands for. tus 1.0.0: "If a request contains the X-HTTP-Method-Override
 * header, the value of this header MUST be used as the request's method". Like tusd, only a
 * POST may be overridden (a browser that cannot send PATCH sends POST); on other methods the
 * header is ignored. A value that is not one of tus's methods is refused with 400.
 */
export function effectiveMethod(method: string, override: HeaderValue): Parsed<string> {
  if (method !== 'POST') return ok(method)
  const H = 'X-HTTP-Method-Override'
  const one = single(H, override)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined || one.value.trim() === '') return ok(method)
  const wanted = one.value.trim().toUpperCase()
  if (!(TUS_METHODS as readonly string[]).includes(wanted)) {
    return fail('ERR_INVALID_METHOD_OVERRIDE', H, `${H} ${quote(one.value)} is not a tus method`)
  }
  return ok(wanted)
}

// ---------------------------------------------------------------------------------------------
// IETF draft: Structured Fields (RFC 8941 / RFC 9651) subsets the draft uses

/**
 * The interop versions Ferry speaks: 8 is draft -09 … -11 (the current one), 6 is draft
 * -04/-05, what tus-js-client 4.x sends with `protocol: 'ietf-draft-05'`. Both use
 * `Upload-Complete`; `Upload-Incomplete` (its inverse) existed up to interop 3 only, and
 * tus-js-client's `ietf-draft-03` (interop 5) is not offered.
 */
export const INTEROP_VERSIONS = [6, 8] as const
export type InteropVersion = (typeof INTEROP_VERSIONS)[number]

/** Every interop version Ferry speaks completes uploads with this header. */
export function completeHeaderName(_version: InteropVersion): 'Upload-Complete' {
  return 'Upload-Complete'
}

// sf-integer with optional parameters (ignored). Parameter values are kept loose: tokens,
// integers, decimals, booleans and strings without escapes cover every use seen.
const SF_PARAM_VALUE = String.raw`(?:[-0-9.]+|\?[01]|"[^"\\]*"|[A-Za-z*][\w:/!#$%&'*+.^|~-]*)`
const SF_PARAMS = `((?:[ ]*;[ ]*[a-z*][a-z0-9_.*-]*(?:=${SF_PARAM_VALUE})?)*)`
const SF_INTEGER = new RegExp(`^(-?[0-9]{1,15})${SF_PARAMS}$`)
const SF_BOOLEAN = new RegExp(String.raw`^\?([01])${SF_PARAMS}$`)

/** `Upload-Draft-Interop-Version`: an sf-integer that must be 6 or 8. */
export function parseInteropVersion(value: HeaderValue): Parsed<InteropVersion> {
  const H = 'Upload-Draft-Interop-Version'
  const one = single(H, value)
  if (!one.ok) return one as Parsed<never>
  const m = one.value === undefined ? null : SF_INTEGER.exec(one.value.trim())
  const n = m === null ? NaN : Number(m[1])
  if (n === 6 || n === 8) return ok(n)
  return fail(
    'ERR_INTEROP_VERSION_UNSUPPORTED',
    H,
    `${H} ${one.value === undefined ? 'is missing' : quote(one.value)}; supported: 6, 8`,
  )
}

/**
 * An sf-boolean (`?1` / `?0`), as `Upload-Complete` is. Undefined when absent. The draft says
 * an invalid value "MUST cause the entire header field to be ignored"; the family decides
 * whether that makes the request invalid (a PATCH without a usable Upload-Complete is).
 */
export function parseSfBoolean(header: string, value: HeaderValue): Parsed<boolean | undefined> {
  const one = single(header, value)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined) return ok(undefined)
  const m = SF_BOOLEAN.exec(one.value.trim())
  if (m === null)
    return fail(
      'ERR_INVALID_BOOLEAN',
      header,
      `${header} must be ?1 or ?0, not ${quote(one.value)}`,
    )
  return ok(m[1] === '1')
}

/**
 * A non-negative sf-integer (`Upload-Offset`, `Upload-Length` in the draft): up to 15 digits,
 * parameters allowed and ignored. Negative values are invalid for both fields.
 */
export function parseSfNonNegativeInteger(
  header: string,
  value: HeaderValue,
): Parsed<number | undefined> {
  const one = single(header, value)
  if (!one.ok) return one as Parsed<never>
  if (one.value === undefined) return ok(undefined)
  const m = SF_INTEGER.exec(one.value.trim())
  if (m === null || m[1]!.startsWith('-')) {
    return fail(
      'ERR_INVALID_INTEGER',
      header,
      `${header} must be a non-negative integer, not ${quote(one.value)}`,
    )
  }
  return ok(Number(m[1]))
}

/** Serialises an sf-boolean. */
export function formatSfBoolean(value: boolean): '?1' | '?0' {
  return value ? '?1' : '?0'
}

/** Limits announced in `Upload-Limit`; all in bytes except `maxAgeSec`. */
export interface UploadLimits {
  readonly maxSize?: number
  readonly minSize?: number
  readonly maxAppendSize?: number
  readonly minAppendSize?: number
  /** Remaining lifetime of the upload resource in seconds. */
  readonly maxAgeSec?: number
}

/**
 * `Upload-Limit`, an sf-dictionary. Draft -11 (interop 8) keys: `max-size`, `min-size`,
 * `max-append-size`, `min-append-size`, `max-age`. Draft -05 (interop 6) called the lifetime
 * `expires` (renamed to `max-age` in -06). Draft -05: "If the server does not apply any limits,
 * it MUST use `min-size=0` instead of an empty header value", which -11 still shows on OPTIONS.
 */
export function formatUploadLimit(limits: UploadLimits, version: InteropVersion): string {
  const members: string[] = []
  const add = (key: string, v: number | undefined): void => {
    if (v === undefined) return
    if (!Number.isSafeInteger(v) || v < 0 || v > 999_999_999_999_999) {
      throw new RangeError(`Upload-Limit ${key} must be an integer from 0 to 10^15-1, got ${v}`)
    }
    members.push(`${key}=${v}`)
  }
  add('max-size', limits.maxSize)
  add('min-size', limits.minSize)
  add('max-append-size', limits.maxAppendSize)
  add('min-append-size', limits.minAppendSize)
  add(version === 6 ? 'expires' : 'max-age', limits.maxAgeSec)
  return members.length === 0 ? 'min-size=0' : members.join(', ')
}

// --- problem+json (RFC 9457) bodies of the draft ----------------------------------------------

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'
const PROBLEM_BASE = 'https://iana.org/assignments/http-problem-types#'

export interface MismatchingOffsetProblem {
  readonly type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset'
  readonly title: string
  readonly 'expected-offset': number
  readonly 'provided-offset': number
}

/**
 * The 409 body for a wrong `Upload-Offset` (draft -11 "Mismatching Offset"; same members in
 * -05): "expected-offset taken from the upload resource and … provided-offset taken from the
 * upload append request". The answer MUST also carry the right `Upload-Offset` header.
 */
export function mismatchingOffsetProblem(
  expected: number,
  provided: number,
): MismatchingOffsetProblem {
  return {
    type: `${PROBLEM_BASE}mismatching-upload-offset`,
    title: 'offset from request does not match offset of resource',
    'expected-offset': expected,
    'provided-offset': provided,
  }
}

/** 400 (draft -11 and -05): an append to an upload that is already complete. */
export function completedUploadProblem(): { readonly type: string; readonly title: string } {
  return { type: `${PROBLEM_BASE}completed-upload`, title: 'upload is already completed' }
}

/**
 * 400 (draft -11): `Upload-Length`, `Content-Length` with `Upload-Complete: ?1`, or values of
 * earlier requests disagree.
 */
export function inconsistentLengthProblem(): { readonly type: string; readonly title: string } {
  return {
    type: `${PROBLEM_BASE}inconsistent-upload-length`,
    title: 'inconsistent length values for upload',
  }
}
