/**
 * Properties of the tus / IETF header parsers over generated input (fast-check, fixed seed so a
 * failure reproduces): they never throw on client input, what they format they parse back, and
 * what they accept is exactly what the grammar allows.
 */
import { describe, expect, test } from '@jest/globals'
import fc from 'fast-check'
import {
  decodeStrictBase64,
  effectiveMethod,
  formatUploadMetadata,
  parseCreationLength,
  parseInteropVersion,
  parseNonNegativeInteger,
  parseSfBoolean,
  parseSfNonNegativeInteger,
  parseTusResumable,
  parseUploadChecksum,
  parseUploadConcat,
  parseUploadMetadata,
  type MetadataEntry,
} from '../../src/http/tus/headers.js'

const SEED = 20261125
const RUNS = { seed: SEED, numRuns: 500 }

/** Header values as Node hands them over: latin1 strings without CR/LF/NUL. */
const headerValue = fc
  .string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)) })
  .map((s) => s.trim())

const concatOpts = {
  prefixes: ['http://127.0.0.1:8080/files/'],
  requestUrl: 'http://127.0.0.1:8080/files/',
}

describe('header parsers: properties', () => {
  test('no parser throws on any header value', () => {
    fc.assert(
      fc.property(headerValue, (v) => {
        parseTusResumable(v)
        parseNonNegativeInteger('Upload-Offset', v)
        parseCreationLength(v, v)
        parseUploadMetadata(v)
        parseUploadChecksum(v)
        parseUploadConcat(v, concatOpts)
        parseUploadConcat(`final;${v}`, concatOpts)
        effectiveMethod('POST', v)
        parseInteropVersion(v)
        parseSfBoolean('Upload-Complete', v)
        parseSfNonNegativeInteger('Upload-Offset', v)
        decodeStrictBase64(v)
      }),
      RUNS,
    )
  })

  test('every safe non-negative integer round-trips; signed or suffixed forms do not', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const r = parseNonNegativeInteger('Upload-Length', String(n))
        expect(r).toEqual({ ok: true, value: n })
        expect(parseNonNegativeInteger('Upload-Length', `-${n}`).ok).toBe(false)
        expect(parseNonNegativeInteger('Upload-Length', `${n}x`).ok).toBe(false)
        expect(parseNonNegativeInteger('Upload-Length', `+${n}`).ok).toBe(false)
      }),
      RUNS,
    )
  })

  test('a value accepted as an integer is all digits and at most 2^53-1', () => {
    fc.assert(
      fc.property(headerValue, (v) => {
        const r = parseNonNegativeInteger('Upload-Offset', v)
        if (r.ok && r.value !== undefined) {
          expect(v).toMatch(/^[0-9]+$/)
          expect(Number.isSafeInteger(r.value)).toBe(true)
        }
      }),
      RUNS,
    )
  })

  test('metadata: format then parse gives back the entries, keys and bytes intact', () => {
    // Printable ASCII without space (excluded by the range) and comma.
    const keyChar = fc
      .integer({ min: 0x21, max: 0x7e })
      .filter((c) => c !== 0x2c)
      .map((c) => String.fromCharCode(c))
    const key = fc.string({ unit: keyChar, minLength: 1, maxLength: 20 })
    const entries = fc.uniqueArray(
      fc.record({ key, value: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) }),
      { selector: (e) => e.key, maxLength: 20 },
    )
    fc.assert(
      fc.property(entries, (list: MetadataEntry[]) => {
        const header = formatUploadMetadata(list)
        const r = parseUploadMetadata(header)
        if (!r.ok) throw new Error(`${r.error.message} for ${header}`)
        expect(r.value.entries).toEqual(list)
        expect(r.value.header).toBe(header)
      }),
      RUNS,
    )
  })

  test('strict base64 accepts exactly what Buffer encodes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64')
        expect(decodeStrictBase64(text)?.equals(Buffer.from(bytes))).toBe(true)
      }),
      RUNS,
    )
    fc.assert(
      fc.property(headerValue, (v) => {
        const d = decodeStrictBase64(v)
        if (d !== null) expect(d.toString('base64')).toBe(v)
      }),
      RUNS,
    )
  })

  test('Upload-Concat final: every generated id list under the prefix parses back in order', () => {
    const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/)
    fc.assert(
      fc.property(fc.array(id, { minLength: 1, maxLength: 30 }), fc.boolean(), (ids, absolute) => {
        const base = absolute ? 'http://127.0.0.1:8080/files/' : '/files/'
        const r = parseUploadConcat(`final;${ids.map((i) => base + i).join(' ')}`, concatOpts)
        expect(r).toEqual({ ok: true, value: { kind: 'final', ids } })
      }),
      RUNS,
    )
  })
})
