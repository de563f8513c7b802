/**
 * The two request headers of `POST /api/v3/shaman/files/{checksum}/{filesize}`
 * (Flamenco pkg/api/flamenco-openapi.yaml, v3.9-dev; the add-on's addon/flamenco/bat/shaman.py).
 */
import { UploadError } from '../../core/errors.js'

/**
 * `X-Shaman-Can-Defer-Upload`: the Manager parses it with Go's strconv.ParseBool, which accepts
 * exactly 1 t T TRUE true True / 0 f F FALSE false False. The Blender add-on sends `True`/`False`
 * (Python `str(bool)`), the JS client `true`/`false`. We accept those spellings in any letter case
 * (`tRuE` too), and refuse anything else with 400, as the Manager's parameter binding does.
 * An absent header means false.
 */
export function parseDeferHeader(value: string | string[] | undefined): boolean {
  if (value === undefined) return false
  if (Array.isArray(value))
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'X-Shaman-Can-Defer-Upload was sent more than once',
    )
  const v = value.trim().toLowerCase()
  if (v === '1' || v === 't' || v === 'true') return true
  if (v === '0' || v === 'f' || v === 'false') return false
  throw new UploadError(
    'ERR_INVALID_ARGUMENT',
    `X-Shaman-Can-Defer-Upload must be a boolean, not "${value.slice(0, 40)}"`,
  )
}

// =?charset?encoding?encoded-text?= (RFC 2047 section 2); a charset may carry an RFC 2231 `*lang`.
const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

function decodeQ(text: string): Buffer {
  const out: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x5f)
      out.push(0x20) // "_" stands for a space (RFC 2047 4.2 (2))
    else if (c === 0x3d) {
      const hex = text.slice(i + 1, i + 3)
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new Error('bad =XX escape')
      out.push(parseInt(hex, 16))
      i += 2
    } else if (c > 0x20 && c < 0x7f) out.push(c)
    else throw new Error('character not allowed in a Q-encoded word')
  }
  return Buffer.from(out)
}

/**
 * `X-Shaman-Original-Filename`: "MUST either be ASCII or encoded using RFC 2047 (aka MIME
 * encoding). In the latter case the encoding MUST be UTF-8." The add-on always encodes it
 * (`=?utf-8?q?scene=2Eblend?=`, `=?utf-8?b?…?=`). Like Go's mime.WordDecoder.DecodeHeader,
 * encoded words are decoded in place, whitespace between two adjacent encoded words is dropped,
 * and text that only looks like part of a word stays literal. Refused with 400: a charset other
 * than UTF-8 (or its subset US-ASCII), invalid Q or base64 text, bytes that are not UTF-8, and raw
 * non-ASCII or control characters. The value is only logged.
 */
export function decodeOriginalFilename(value: string | string[] | undefined): string | null {
  if (value === undefined) return null
  if (Array.isArray(value))
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'X-Shaman-Original-Filename was sent more than once',
    )
  // Node hands header bytes over as latin1, so anything outside printable ASCII was not ASCII.
  if (/[^\x20-\x7e\t]/.test(value)) {
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'X-Shaman-Original-Filename must be ASCII or RFC 2047 encoded',
    )
  }
  let out = ''
  let last = 0
  let prevWordEnd = -1
  for (const m of value.matchAll(ENCODED_WORD)) {
    const start = m.index
    const between = value.slice(last, start)
    // RFC 2047 6.2: linear white space between adjacent encoded words is ignored.
    if (!(prevWordEnd === last && /^[ \t]+$/.test(between))) out += between
    const charset = (m[1] ?? '').split('*')[0]!.toLowerCase()
    const enc = (m[2] ?? '').toLowerCase()
    const text = m[3] ?? ''
    if (charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        `X-Shaman-Original-Filename: charset "${charset.slice(0, 40)}" is not UTF-8`,
      )
    }
    let bytes: Buffer
    try {
      if (enc === 'b') {
        if (!BASE64.test(text)) throw new Error('bad base64')
        bytes = Buffer.from(text, 'base64')
      } else bytes = decodeQ(text)
      out += utf8.decode(bytes)
    } catch (err) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'X-Shaman-Original-Filename is not a valid RFC 2047 encoded word',
        { cause: err },
      )
    }
    last = start + m[0].length
    prevWordEnd = last
  }
  out += value.slice(last)
  return out
}
