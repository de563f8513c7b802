import { describe, expect, test } from '@jest/globals'
import { parseSfBoolean, parseSfNonNegativeInteger } from '../../src/http/tus/headers.js'
import {
  formatHttpDate,
  ietfHeadHeaders,
  ietfOffsetMismatch,
  ietfOptionsHeaders,
  TUS_EXTENSIONS,
  tusHeadHeaders,
  tusOptionsHeaders,
  tusPatchHeaders,
  tusVersionMismatchHeaders,
} from '../../src/http/tus/responses.js'

const when = new Date(Date.UTC(2026, 10, 25, 16, 0, 0))

describe('tus OPTIONS', () => {
  test('every extension, in spec order, with max size and checksum algorithms', () => {
    const extensions = [...TUS_EXTENSIONS].reverse()
    const h = tusOptionsHeaders({ extensions, maxSizeBytes: 1 << 30 })
    expect(h).toEqual({
      'Tus-Resumable': '1.0.0',
      'Tus-Version': '1.0.0',
      'Tus-Extension':
        'creation,creation-with-upload,creation-defer-length,termination,checksum,' +
        'concatenation,expiration',
      'Tus-Max-Size': '1073741824',
      'Tus-Checksum-Algorithm': 'sha1,md5,sha256,sha512',
    })
  })
  test('without the checksum extension there is no Tus-Checksum-Algorithm', () => {
    const h = tusOptionsHeaders({ extensions: ['creation', 'termination'] })
    expect(h['Tus-Extension']).toBe('creation,termination')
    expect(h['Tus-Checksum-Algorithm']).toBeUndefined()
    expect(h['Tus-Max-Size']).toBeUndefined()
  })
  test('no extensions: no Tus-Extension header', () => {
    expect(tusOptionsHeaders({ extensions: [] })['Tus-Extension']).toBeUndefined()
  })
})

describe('tus HEAD', () => {
  const base = { offset: 70, length: 100, metadata: '', concat: null, expiresAt: null }
  test('offset, length, no-store; nothing optional', () => {
    expect(tusHeadHeaders(base)).toEqual({
      'Tus-Resumable': '1.0.0',
      'Cache-Control': 'no-store',
      'Upload-Offset': '70',
      'Upload-Length': '100',
    })
  })
  test('offset 0 is still sent', () => {
    expect(tusHeadHeaders({ ...base, offset: 0 })['Upload-Offset']).toBe('0')
  })
  test('deferred length → Upload-Defer-Length: 1 and no Upload-Length', () => {
    const h = tusHeadHeaders({ ...base, length: null })
    expect(h['Upload-Defer-Length']).toBe('1')
    expect(h['Upload-Length']).toBeUndefined()
  })
  test('metadata, concat and expiry are echoed', () => {
    const h = tusHeadHeaders({ ...base, metadata: 'name YQ==', concat: 'partial', expiresAt: when })
    expect(h['Upload-Metadata']).toBe('name YQ==')
    expect(h['Upload-Concat']).toBe('partial')
    expect(h['Upload-Expires']).toBe('Wed, 25 Nov 2026 16:00:00 GMT')
  })
  test('a final upload before assembly: no Upload-Offset, its summed length, no defer', () => {
    const concat = 'final;/files/a /files/b'
    const h = tusHeadHeaders({ ...base, offset: null, length: 300, concat })
    expect(h['Upload-Offset']).toBeUndefined()
    expect(h['Upload-Length']).toBe('300')
    expect(h['Upload-Concat']).toBe('final;/files/a /files/b')
    expect(h['Upload-Defer-Length']).toBeUndefined()
  })
})

describe('tus PATCH and 412', () => {
  test('PATCH carries the new offset and, when expiring, Upload-Expires', () => {
    expect(tusPatchHeaders(100, null)).toEqual({ 'Tus-Resumable': '1.0.0', 'Upload-Offset': '100' })
    expect(tusPatchHeaders(5, when)['Upload-Expires']).toBe(formatHttpDate(when))
  })
  test('412 names the supported version', () => {
    expect(tusVersionMismatchHeaders()).toEqual({ 'Tus-Version': '1.0.0' })
  })
  test('Upload-Expires is an IMF-fixdate', () => {
    const d = new Date(Date.UTC(2014, 5, 25, 16, 0, 0))
    expect(formatHttpDate(d)).toBe('Wed, 25 Jun 2014 16:00:00 GMT')
  })
})

describe('IETF HEAD and OPTIONS', () => {
  test('interop 8: offset, complete, length, limit (max-age), no-store; values parse back', () => {
    const h = ietfHeadHeaders(
      { offset: 25_000_000, complete: false, length: 100_000_000, limits: { maxAgeSec: 3600 } },
      8,
    )
    expect(h).toEqual({
      'Upload-Offset': '25000000',
      'Upload-Complete': '?0',
      'Upload-Length': '100000000',
      'Upload-Limit': 'max-age=3600',
      'Cache-Control': 'no-store',
    })
    const complete = parseSfBoolean('Upload-Complete', h['Upload-Complete'])
    expect(complete).toEqual({ ok: true, value: false })
    expect(parseSfNonNegativeInteger('Upload-Offset', h['Upload-Offset'])).toEqual({
      ok: true,
      value: 25_000_000,
    })
  })
  test('interop 6: the lifetime is called expires; unknown length is left out', () => {
    const view = { offset: 0, complete: true, length: null, limits: { maxAgeSec: 60 } }
    const h = ietfHeadHeaders(view, 6)
    expect(h['Upload-Limit']).toBe('expires=60')
    expect(h['Upload-Complete']).toBe('?1')
    expect(h['Upload-Length']).toBeUndefined()
  })
  test('OPTIONS: Upload-Limit (min-size=0 without limits) and Accept-Patch', () => {
    expect(ietfOptionsHeaders({}, 8)).toEqual({
      'Upload-Limit': 'min-size=0',
      'Accept-Patch': 'application/partial-upload',
    })
    expect(ietfOptionsHeaders({ maxSize: 10 }, 6)['Upload-Limit']).toBe('max-size=10')
  })
})

describe('IETF offset mismatch', () => {
  test('409, the right Upload-Offset, Upload-Complete ?0 and the problem body', () => {
    const a = ietfOffsetMismatch(12_500_000, 25_000_000)
    expect(a.status).toBe(409)
    expect(a.headers['Upload-Offset']).toBe('12500000')
    expect(a.headers['Upload-Complete']).toBe('?0')
    expect(a.headers['Content-Type']).toBe('application/problem+json')
    expect(Number(a.headers['Content-Length'])).toBe(Buffer.byteLength(a.body))
    expect(JSON.parse(a.body)).toMatchObject({
      type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset',
      'expected-offset': 12_500_000,
      'provided-offset': 25_000_000,
    })
  })
})
