/**
 * Signed physical addresses and presigned upload URLs for the lakeFS staging front door
 * (treeverse/lakeFS pkg/api/controller.go, v1.84, GetPhysicalAddress). Stateless: everything a
 * later request needs to trust an address is inside the address itself, so any instance can check
 * what any other instance handed out.
 *
 * An address, relative to the repository's storage namespace, is
 *
 *     data/<partition>/<object id>,<signature>
 *
 * - `object id`: 20 base32hex characters of 12 bytes, the first 4 the creation time in unix
 *   seconds (big-endian, as in an xid), the other 8 random. The link reads the time back from it.
 * - `partition`: the same shape, its time `0xFFFFFFFF − start of the hour`, so partitions sort
 * newest
 *   first and roll over hourly, like lakeFS's; its random part is fixed per process.
 * - `signature`: base64url (no padding) of HMAC-SHA256(signingSecret, JSON of
 *   {"Repository","Branch","Path","PhysicalAddress"}) where PhysicalAddress is the address without
 *   the signature. The JSON is written the way Go's encoding/json writes that struct (field order,
 *   `<`, `>`, `&`, U+2028 and U+2029 escaped), the form lakeFS signs.
 *
 * The signature is part of the object key: the presigned PUT writes to the name that includes it.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { UploadError } from '../errors.js'

/** How long an address may be linked after it was made (lakeFS: 24 hours). */
export const LINK_ADDRESS_TTL_SEC = 24 * 3600

const B32 = '0123456789abcdefghijklmnopqrstuv'
const ID_RE = /^[0-9a-v]{20}$/
const SIG_RE = /^[A-Za-z0-9_-]{43}$/
/** The shape of a relative address Ferry makes, signature included. */
export const SIGNED_ADDRESS_RE = /^data\/[0-9a-v]{20}\/[0-9a-v]{20},[A-Za-z0-9_-]{43}$/

function base32hex(buf: Buffer): string {
  let out = ''
  let acc = 0
  let bits = 0
  for (const byte of buf) {
    acc = (acc << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31]
      bits -= 5
    }
    acc &= (1 << bits) - 1
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31]
  return out
}

/** The creation time (unix seconds) held in an id made by `newId`, or null for a malformed id. */
export function idTimeSec(id: string): number | null {
  if (!ID_RE.test(id)) return null
  let acc = 0
  let bits = 0
  const bytes: number[] = []
  for (const ch of id) {
    acc = (acc << 5) | B32.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      bytes.push((acc >>> (bits - 8)) & 0xff)
      bits -= 8
      acc &= (1 << bits) - 1
    }
    if (bytes.length === 4) break
  }
  return Buffer.from(bytes).readUInt32BE(0)
}

function newId(timeSec: number, tail: Buffer): string {
  const b = Buffer.alloc(12)
  b.writeUInt32BE(timeSec >>> 0, 0)
  tail.copy(b, 4, 0, 8)
  return base32hex(b)
}

const PROCESS_TAIL = randomBytes(8)

/** Go's encoding/json output for the signed struct (HTML-safe escaping included). */
function goJson(fields: readonly (readonly [string, string])[]): string {
  const body = fields.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')
  return `{${body}}`
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')
}

export interface AddressClaims {
  readonly repository: string
  readonly branch: string
  /** The object path the address may be linked to. */
  readonly path: string
}

function addressMac(secret: string, claims: AddressClaims, unsigned: string): Buffer {
  const doc = goJson([
    ['Repository', claims.repository],
    ['Branch', claims.branch],
    ['Path', claims.path],
    ['PhysicalAddress', unsigned],
  ])
  return createHmac('sha256', secret).update(doc).digest()
}

/** A new signed relative address (`data/<partition>/<id>,<sig>`) for `claims`, made at `nowMs`. */
export function makeSignedAddress(secret: string, claims: AddressClaims, nowMs: number): string {
  const nowSec = Math.floor(nowMs / 1000)
  const hour = nowSec - (nowSec % 3600)
  const partition = newId(0xffffffff - hour, PROCESS_TAIL)
  const unsigned = `data/${partition}/${newId(nowSec, randomBytes(8))}`
  return `${unsigned},${addressMac(secret, claims, unsigned).toString('base64url')}`
}

/**
 * Checks a relative address against the repository, branch and path it is linked to, in lakeFS's
 * order and with its messages: unsigned, malformed signature, wrong signature (another path,
 * branch or repository, or tampered), expired (older than 24 h). All are ERR_INVALID_ARGUMENT.
 * The MAC comparison takes constant time.
 */
export function verifySignedAddress(
  secret: string,
  claims: AddressClaims,
  relative: string,
  nowMs: number,
): void {
  const comma = relative.lastIndexOf(',')
  if (comma < 0)
    throw new UploadError('ERR_INVALID_ARGUMENT', 'address is not signed: link address invalid')
  const unsigned = relative.slice(0, comma)
  const sig = relative.slice(comma + 1)
  if (!SIG_RE.test(sig))
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'malformed address signature: link address invalid',
    )
  const given = Buffer.from(sig, 'base64url')
  // Only the canonical encoding: the spare low bits of the last character must be zero.
  if (given.toString('base64url') !== sig)
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'malformed address signature: link address invalid',
    )
  const want = addressMac(secret, claims, unsigned)
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'invalid address signature: link address invalid')
  }
  // A valid MAC means Ferry made this address, so it has Ferry's shape; check anyway.
  const created = SIGNED_ADDRESS_RE.test(relative)
    ? idTimeSec(unsigned.slice(unsigned.lastIndexOf('/') + 1))
    : null
  if (created === null)
    throw new UploadError('ERR_INVALID_ARGUMENT', 'invalid address signature: link address invalid')
  if (Math.floor(nowMs / 1000) - created > LINK_ADDRESS_TTL_SEC) {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'link address expired')
  }
}

/*
 * Presigned PUT URLs point at Ferry itself:
 * <origin>/api/v1/_ferry/presigned/<repository>/<relative address>?X-Ferry-Expires=<unix
 * s>&X-Ferry-Signature=<mac> The MAC (HMAC-SHA256, base64url) covers a purpose label, the method,
 * the repository, the relative address (whose own signature binds branch and path) and the expiry,
 * so none of them can be changed without the key.
 */
export const PRESIGN_EXPIRES_PARAM = 'X-Ferry-Expires'
export const PRESIGN_SIGNATURE_PARAM = 'X-Ferry-Signature'

function presignMac(
  secret: string,
  repository: string,
  relative: string,
  expiresSec: number,
): Buffer {
  return createHmac('sha256', secret)
    .update(`ferry-presign-v1\nPUT\n${repository}\n${relative}\n${expiresSec}`)
    .digest()
}

/** The query string (without `?`) that authorizes a PUT of `relative` until `expiresSec`. */
export function presignQuery(
  secret: string,
  repository: string,
  relative: string,
  expiresSec: number,
): string {
  const sig = presignMac(secret, repository, relative, expiresSec).toString('base64url')
  return `${PRESIGN_EXPIRES_PARAM}=${expiresSec}&${PRESIGN_SIGNATURE_PARAM}=${sig}`
}

/** Why a presigned request is refused; the HTTP edge turns these into S3-style 403 answers. */
export type PresignRefusal = 'missing' | 'mismatch' | 'expired'

/**
 * Checks a presigned PUT: the MAC first (constant time), then the expiry (which the MAC covers).
 * Answers null when the request is authorized.
 */
export function checkPresigned(
  secret: string,
  repository: string,
  relative: string,
  expiresRaw: string | null,
  sigRaw: string | null,
  nowMs: number,
): PresignRefusal | null {
  if (expiresRaw === null || sigRaw === null) return 'missing'
  if (!/^\d{1,12}$/.test(expiresRaw) || !SIG_RE.test(sigRaw)) return 'mismatch'
  const expires = Number(expiresRaw)
  const given = Buffer.from(sigRaw, 'base64url')
  if (given.toString('base64url') !== sigRaw) return 'mismatch'
  const want = presignMac(secret, repository, relative, expires)
  if (given.length !== want.length || !timingSafeEqual(given, want)) return 'mismatch'
  if (Math.floor(nowMs / 1000) > expires) return 'expired'
  return null
}

/*
 * Presigned part URLs of a multipart upload (lakeFS createPresignMultipartUpload / uploadPart)
 * address the object as a presigned PUT does, with S3's UploadPart query on top:
 *   …/<repository>/<relative>?partNumber=<n>&uploadId=<id>&X-Amz-Date=<YYYYMMDDTHHMMSSZ>
 *     &X-Amz-Expires=<s>&X-Ferry-Signature=<mac>
 * lakectl reads X-Amz-Date and X-Amz-Expires before each part and asks for a fresh URL when they
 * say the URL is (about to be) expired, or when they are missing (lakeFS pkg/api/helpers/upload.go
 * presignedURLExpired): so they carry the real lifetime, in S3's formats. The MAC binds them
 * together with the upload id, the part number, the repository and the address.
 */
export const PART_NUMBER_PARAM = 'partNumber'
export const UPLOAD_ID_PARAM = 'uploadId'
export const AMZ_DATE_PARAM = 'X-Amz-Date'
export const AMZ_EXPIRES_PARAM = 'X-Amz-Expires'

/** S3's X-Amz-Date: `20261125T154200Z` (UTC, basic ISO 8601). */
export function amzDate(nowMs: number): string {
  const iso = new Date(Math.floor(nowMs / 1000) * 1000).toISOString()
  return iso.replace(/[-:]/g, '').replace('.000', '')
}

/** Unix seconds of an X-Amz-Date, or null when it is not one. */
function parseAmzDate(raw: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(raw)
  if (!m) return null
  const n = m.slice(1).map(Number)
  const ms = Date.UTC(n[0]!, n[1]! - 1, n[2]!, n[3]!, n[4]!, n[5]!)
  return Number.isFinite(ms) && amzDate(ms) === raw ? ms / 1000 : null
}

export interface PartClaims {
  readonly repository: string
  readonly relative: string
  readonly uploadId: string
  readonly partNumber: number
}

function partMac(secret: string, c: PartClaims, date: string, expiresSec: number): Buffer {
  const fields = [c.repository, c.relative, c.uploadId, c.partNumber, date, expiresSec]
  const doc = `ferry-presign-part-v1\nPUT\n${fields.join('\n')}`
  return createHmac('sha256', secret).update(doc).digest()
}

/** The query string (without `?`) that authorizes a PUT of one part for `ttlSec` from `nowMs`. */
export function presignPartQuery(
  secret: string,
  c: PartClaims,
  nowMs: number,
  ttlSec: number,
): string {
  const date = amzDate(nowMs)
  const sig = partMac(secret, c, date, ttlSec).toString('base64url')
  const id = encodeURIComponent(c.uploadId)
  return (
    `${PART_NUMBER_PARAM}=${c.partNumber}&${UPLOAD_ID_PARAM}=${id}` +
    `&${AMZ_DATE_PARAM}=${date}&${AMZ_EXPIRES_PARAM}=${ttlSec}&${PRESIGN_SIGNATURE_PARAM}=${sig}`
  )
}

/** Checks a presigned part PUT like `checkPresigned`: the MAC first, then the expiry it covers. */
export function checkPresignedPart(
  secret: string,
  c: PartClaims,
  dateRaw: string | null,
  expiresRaw: string | null,
  sigRaw: string | null,
  nowMs: number,
): PresignRefusal | null {
  if (dateRaw === null || expiresRaw === null || sigRaw === null) return 'missing'
  const signedAt = parseAmzDate(dateRaw)
  if (signedAt === null || !/^\d{1,9}$/.test(expiresRaw) || !SIG_RE.test(sigRaw)) return 'mismatch'
  const expires = Number(expiresRaw)
  const given = Buffer.from(sigRaw, 'base64url')
  if (given.toString('base64url') !== sigRaw) return 'mismatch'
  const want = partMac(secret, c, dateRaw, expires)
  if (given.length !== want.length || !timingSafeEqual(given, want)) return 'mismatch'
  if (Math.floor(nowMs / 1000) > signedAt + expires) return 'expired'
  return null
}
