import { describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import {
  completeHeaderName,
  completedUploadProblem,
  decodeStrictBase64,
  effectiveMethod,
  formatSfBoolean,
  formatUploadLimit,
  formatUploadMetadata,
  inconsistentLengthProblem,
  metadataToRecord,
  mismatchingOffsetProblem,
  parseCreationLength,
  parseInteropVersion,
  parseNonNegativeInteger,
  parseSfBoolean,
  parseSfNonNegativeInteger,
  parseTusResumable,
  parseUploadChecksum,
  parseUploadConcat,
  parseUploadMetadata,
  requireNonNegativeInteger,
  TUS_HEADER_ERROR_CODES,
  TUS_HEADER_STATUS,
  type Parsed,
  type TusHeaderErrorCode,
} from '../../src/http/tus/headers.js'

function value<T>(r: Parsed<T>): T {
  if (!r.ok) throw new Error(`expected a value, got ${r.error.code}: ${r.error.message}`)
  return r.value
}

function code<T>(r: Parsed<T>): TusHeaderErrorCode {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.value)}`)
  return r.error.code
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64')

describe('error table', () => {
  test('every code has a status, 412 only for Tus-Resumable', () => {
    for (const c of TUS_HEADER_ERROR_CODES) {
      expect(TUS_HEADER_STATUS[c]).toBeGreaterThanOrEqual(400)
      expect(TUS_HEADER_STATUS[c]).toBe(c.startsWith('ERR_TUS_VERSION') ? 412 : 400)
    }
    expect(Object.keys(TUS_HEADER_STATUS).sort()).toEqual([...TUS_HEADER_ERROR_CODES].sort())
  })
})

describe('Tus-Resumable', () => {
  test('1.0.0 is accepted', () => {
    expect(value(parseTusResumable('1.0.0'))).toBe('1.0.0')
    expect(value(parseTusResumable(['1.0.0']))).toBe('1.0.0')
  })
  test.each(['0.2.2', '1.0', '1.0.0,0.2.2', '2.0.0', ''])('%j → 412 unsupported', (v) => {
    const r = parseTusResumable(v)
    expect(code(r)).toBe('ERR_TUS_VERSION_UNSUPPORTED')
    expect(TUS_HEADER_STATUS[code(r)]).toBe(412)
  })
  test('missing → 412 missing', () => {
    expect(code(parseTusResumable(undefined))).toBe('ERR_TUS_VERSION_MISSING')
  })
  test('sent twice → repeated', () => {
    expect(code(parseTusResumable(['1.0.0', '1.0.0']))).toBe('ERR_HEADER_REPEATED')
  })
  test('a long bad value is shortened in the message', () => {
    const r = parseTusResumable('x'.repeat(5000))
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.error.message.length).toBeLessThan(200)
  })
})

describe('Upload-Length / Upload-Offset (strict non-negative integers)', () => {
  test.each([
    ['0', 0],
    ['1', 1],
    ['007', 7],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
    [' 42 ', 42],
  ])('%j → %d', (raw, want) => {
    expect(value(parseNonNegativeInteger('Upload-Length', raw))).toBe(want)
  })
  test.each([
    '-1',
    '+1',
    '1.0',
    '1e3',
    '0x10',
    ' ',
    '',
    '1 2',
    '12abc',
    'abc12',
    '٣',
    '1,2',
    '9007199254740992',
    '99999999999999999',
    'Infinity',
    'NaN',
  ])('%j is refused', (raw) => {
    expect(code(parseNonNegativeInteger('Upload-Offset', raw))).toBe('ERR_INVALID_INTEGER')
  })
  test('absent is undefined, but required → ERR_HEADER_MISSING', () => {
    expect(value(parseNonNegativeInteger('Upload-Offset', undefined))).toBeUndefined()
    expect(code(requireNonNegativeInteger('Upload-Offset', undefined))).toBe('ERR_HEADER_MISSING')
    expect(value(requireNonNegativeInteger('Upload-Offset', '5'))).toBe(5)
  })
  test('the error names the header', () => {
    const r = parseNonNegativeInteger('Upload-Offset', 'x')
    expect(r.ok ? null : r.error.header).toBe('Upload-Offset')
  })
})

describe('Upload-Length with Upload-Defer-Length', () => {
  test('known length', () => {
    expect(value(parseCreationLength('10', undefined))).toEqual({ kind: 'known', length: 10 })
  })
  test('deferred', () => {
    expect(value(parseCreationLength(undefined, '1'))).toEqual({ kind: 'deferred' })
  })
  test('neither', () => {
    expect(value(parseCreationLength(undefined, undefined))).toEqual({ kind: 'none' })
  })
  test.each(['0', '2', 'true', '', '01x'])('Upload-Defer-Length %j → 400', (v) => {
    expect(code(parseCreationLength(undefined, v))).toBe('ERR_INVALID_DEFER_LENGTH')
  })
  test('both → 400', () => {
    expect(code(parseCreationLength('5', '1'))).toBe('ERR_LENGTH_AND_DEFER')
  })
  test('a bad Upload-Length wins over a good defer', () => {
    expect(code(parseCreationLength('-5', '1'))).toBe('ERR_INVALID_INTEGER')
  })
})

describe('Upload-Metadata', () => {
  test('tus-js-client style: key base64,key base64', () => {
    const raw = `filename ${b64('world_domination_plan.pdf')},filetype ${b64('application/pdf')}`
    const md = value(parseUploadMetadata(raw))
    expect(md.entries.map((e) => [e.key, e.value.toString()])).toEqual([
      ['filename', 'world_domination_plan.pdf'],
      ['filetype', 'application/pdf'],
    ])
    expect(md.header).toBe(raw)
  })
  test('a key alone or with a trailing space has an empty value', () => {
    const md = value(parseUploadMetadata(`is_confidential,empty ,name ${b64('x')}`))
    expect(md.entries.map((e) => [e.key, e.value.length])).toEqual([
      ['is_confidential', 0],
      ['empty', 0],
      ['name', 1],
    ])
    expect(md.header).toBe(`is_confidential,empty,name ${b64('x')}`)
  })
  test('a pair is trimmed first, so a leading space makes the value a key', () => {
    expect(value(parseUploadMetadata(` ${b64('1')}`)).entries.map((e) => e.key)).toEqual([b64('1')])
  })
  test('whitespace around pairs is tolerated', () => {
    const md = value(parseUploadMetadata(` a ${b64('1')} ,\tb ${b64('2')}`))
    expect(md.entries.map((e) => e.key)).toEqual(['a', 'b'])
  })
  test('absent or empty gives no entries', () => {
    expect(value(parseUploadMetadata(undefined)).entries).toEqual([])
    expect(value(parseUploadMetadata('')).entries).toEqual([])
  })
  test('binary values survive, UTF-8 decodes, others are kept as base64: in the record', () => {
    const bin = Buffer.from([0xff, 0x00, 0xfe])
    const raw = `text ${b64('Grüße ✓')},bin ${b64(bin)},__proto__ ${b64('p')}`
    const md = value(parseUploadMetadata(raw))
    const rec = metadataToRecord(md.entries)
    expect(rec['text']).toBe('Grüße ✓')
    expect(rec['bin']).toBe(`base64:${b64(bin)}`)
    expect(Object.getPrototypeOf(rec)).toBeNull()
    // The key a client sent, kept as data on a null-prototype record.
    // biome-ignore lint/suspicious/noProto: reading that data key is the point of the test
    expect(rec['__proto__']).toBe('p')
    expect(Object.keys(rec)).toEqual(['text', 'bin', '__proto__'])
  })
  test.each([
    ['duplicate key', `a ${b64('1')},a ${b64('2')}`],
    ['blank pair', `a ${b64('1')}, \t,b`],
    ['empty pair', `a ${b64('1')},,b`],
    ['trailing comma', `a ${b64('1')},`],
    ['non-ASCII key', `clé ${b64('1')}`],
    ['control char in key', `a\u0001 ${b64('1')}`],
    ['bad base64 character', 'a ab!d'],
    ['base64url alphabet', 'a ab-_'],
    ['missing padding', 'a YQ'],
    ['nonzero trailing bits', 'a YR=='],
    ['two spaces', `a  ${b64('1')}`],
    ['three tokens', `a ${b64('1')} ${b64('2')}`],
  ])('%s → ERR_INVALID_METADATA (400)', (_why, raw) => {
    const r = parseUploadMetadata(raw)
    expect(code(r)).toBe('ERR_INVALID_METADATA')
    expect(TUS_HEADER_STATUS[code(r)]).toBe(400)
  })
  test('size and pair-count bounds', () => {
    const big = `k ${b64('x'.repeat(4000))}`
    expect(code(parseUploadMetadata(big))).toBe('ERR_METADATA_TOO_LARGE')
    const many = Array.from({ length: 65 }, (_, i) => `k${i}`).join(',')
    expect(code(parseUploadMetadata(many))).toBe('ERR_METADATA_TOO_LARGE')
    const limits = { maxHeaderBytes: 10, maxPairs: 2 }
    expect(code(parseUploadMetadata('abcdefghijk', limits))).toBe('ERR_METADATA_TOO_LARGE')
    expect(value(parseUploadMetadata('a,b', limits)).entries).toHaveLength(2)
    expect(code(parseUploadMetadata('a,b,c', limits))).toBe('ERR_METADATA_TOO_LARGE')
  })
  test('format ∘ parse is the identity on canonical headers', () => {
    const entries = [
      { key: 'a', value: Buffer.from('hello') },
      { key: 'b', value: Buffer.alloc(0) },
      { key: 'c~!', value: Buffer.from([1, 2, 3, 4]) },
    ]
    const header = formatUploadMetadata(entries)
    expect(value(parseUploadMetadata(header)).entries).toEqual(entries)
  })
})

describe('strict base64', () => {
  test.each(['', 'YQ==', 'YWI=', 'YWJj', 'AAECAwQ='])('%j decodes', (t) => {
    expect(decodeStrictBase64(t)?.toString('base64')).toBe(t)
  })
  const bad = ['Y', 'YQ', 'YQ=', 'YQ===', '=YQ=', 'YR==', 'YWJ=', 'Y Q==', 'YQ==\n']
  test.each(bad)('%j is refused', (t) => {
    expect(decodeStrictBase64(t)).toBeNull()
  })
})

describe('Upload-Checksum', () => {
  const digest = (algo: string) => createHash(algo).update('abc').digest('base64')
  test.each(['sha1', 'md5', 'sha256', 'sha512'])('%s is accepted with its length', (algo) => {
    const r = value(parseUploadChecksum(`${algo} ${digest(algo)}`))
    expect(r?.algorithm).toBe(algo)
    expect(r?.digest.equals(createHash(algo).update('abc').digest())).toBe(true)
  })
  test('the algorithm name is case-insensitive', () => {
    expect(value(parseUploadChecksum(`SHA1 ${digest('sha1')}`))?.algorithm).toBe('sha1')
  })
  test('absent is undefined', () => {
    expect(value(parseUploadChecksum(undefined))).toBeUndefined()
  })
  const unknown = ['crc32', 'sha3-256', 'blake2b', 'sha-1', 'md4']
  test.each(unknown)('unknown algorithm %s → its own code (400)', (algo) => {
    const r = parseUploadChecksum(`${algo} ${digest('sha1')}`)
    expect(code(r)).toBe('ERR_CHECKSUM_ALGORITHM_UNSUPPORTED')
    expect(TUS_HEADER_STATUS[code(r)]).toBe(400)
  })
  test.each([
    ['no digest', 'sha1'],
    ['two spaces', `sha1  ${digest('sha1')}`],
    ['bad base64', 'sha1 !!!!'],
    ['hex instead of base64', `sha1 ${createHash('sha1').update('abc').digest('hex')}`],
    ['sha1 with an md5 digest', `sha1 ${digest('md5')}`],
    ['sha256 with a sha1 digest', `sha256 ${digest('sha1')}`],
    ['empty digest', 'md5 '],
    ['extra field', `sha1 ${digest('sha1')} x`],
  ])('%s → ERR_INVALID_CHECKSUM', (_why, raw) => {
    expect(code(parseUploadChecksum(raw))).toBe('ERR_INVALID_CHECKSUM')
  })
})

describe('Upload-Concat', () => {
  const opts = {
    prefixes: ['http://127.0.0.1:8080/files/', 'https://up.example.com/ferry/files/'],
    requestUrl: 'http://127.0.0.1:8080/files/',
  }
  test('partial', () => {
    expect(value(parseUploadConcat('partial', opts))).toEqual({ kind: 'partial' })
  })
  test('absent', () => {
    expect(value(parseUploadConcat(undefined, opts))).toBeUndefined()
  })
  test('final with paths (the tus spec example), in order', () => {
    expect(value(parseUploadConcat('final;/files/a /files/b', opts))).toEqual({
      kind: 'final',
      ids: ['a', 'b'],
    })
  })
  test('final with absolute URLs as tus-js-client sends, mixed prefixes', () => {
    const v = 'final;http://127.0.0.1:8080/files/p1 https://up.example.com/ferry/files/p2'
    expect(value(parseUploadConcat(v, opts))).toEqual({ kind: 'final', ids: ['p1', 'p2'] })
  })
  test('a partial may be named twice (tus 1.0.x allows reuse)', () => {
    expect(value(parseUploadConcat('final;/files/a /files/b /files/a', opts))).toEqual({
      kind: 'final',
      ids: ['a', 'b', 'a'],
    })
  })
  test('default ports and host case are normalised', () => {
    const base = 'https://up.example.com/files/'
    const o = { prefixes: [base], requestUrl: base }
    expect(value(parseUploadConcat('final;HTTPS://UP.example.com:443/files/x', o))).toEqual({
      kind: 'final',
      ids: ['x'],
    })
  })
  test.each([
    ['another host', 'final;http://evil.example/files/a'],
    ['another port', 'final;http://127.0.0.1:9090/files/a'],
    ['another scheme', 'final;https://127.0.0.1:8080/files/a'],
    ['another path', 'final;/other/a'],
    ['a path outside via ..', 'final;/files/../admin/a'],
    ['credentials', 'final;http://u:p@127.0.0.1:8080/files/a'],
  ])('%s → ERR_CONCAT_FOREIGN_UPLOAD', (_why, raw) => {
    expect(code(parseUploadConcat(raw, opts))).toBe('ERR_CONCAT_FOREIGN_UPLOAD')
  })
  test.each([
    ['no final;', '/files/a /files/b'],
    ['final without ;', 'final /files/a'],
    ['no partials', 'final;'],
    ['only spaces', 'final;   '],
    ['relative reference', 'final;a b'],
    ['scheme-relative', 'final;//127.0.0.1:8080/files/a'],
    ['query', 'final;/files/a?x=1'],
    ['fragment', 'final;/files/a#f'],
    ['nested path', 'final;/files/a/b'],
    ['empty id', 'final;/files/'],
    ['percent-encoded id', 'final;/files/a%2Fb'],
    ['ftp', 'final;ftp://127.0.0.1/files/a'],
    ['garbage', 'fin'],
  ])('%s → ERR_INVALID_CONCAT', (_why, raw) => {
    expect(code(parseUploadConcat(raw, opts))).toBe('ERR_INVALID_CONCAT')
  })
  test('custom id check and partial bound', () => {
    const o = { ...opts, isValidId: (id: string) => /^u[0-9]+$/.test(id), maxPartials: 2 }
    expect(value(parseUploadConcat('final;/files/u1 /files/u2', o))).toEqual({
      kind: 'final',
      ids: ['u1', 'u2'],
    })
    expect(code(parseUploadConcat('final;/files/x1', o))).toBe('ERR_INVALID_CONCAT')
    const three = 'final;/files/u1 /files/u2 /files/u3'
    expect(code(parseUploadConcat(three, o))).toBe('ERR_INVALID_CONCAT')
  })
})

describe('X-HTTP-Method-Override', () => {
  test.each([
    ['POST', 'PATCH', 'PATCH'],
    ['POST', 'delete', 'DELETE'],
    ['POST', undefined, 'POST'],
    ['POST', '', 'POST'],
    ['PATCH', 'DELETE', 'PATCH'], // only a POST is overridden, as in tusd
    ['GET', 'garbage', 'GET'],
  ])('%s with %j → %s', (method, override, want) => {
    expect(value(effectiveMethod(method, override))).toBe(want)
  })
  test.each(['CONNECT', 'TRACE', 'PUT', 'PATCH DELETE', 'x'])('POST with %j → 400', (o) => {
    expect(code(effectiveMethod('POST', o))).toBe('ERR_INVALID_METHOD_OVERRIDE')
  })
})

describe('IETF draft: Upload-Draft-Interop-Version', () => {
  test.each([
    ['6', 6],
    ['8', 8],
    [' 8 ', 8],
    ['8;x=1', 8],
  ])('%j → %d', (raw, want) => {
    expect(value(parseInteropVersion(raw))).toBe(want)
  })
  const bad = [undefined, '5', '7', '3', '9', '', '8.0', 'eight', '-8', '6, 8']
  test.each(bad)('%j → unsupported', (raw) => {
    expect(code(parseInteropVersion(raw))).toBe('ERR_INTEROP_VERSION_UNSUPPORTED')
  })
  test('both versions complete with Upload-Complete', () => {
    expect(completeHeaderName(6)).toBe('Upload-Complete')
    expect(completeHeaderName(8)).toBe('Upload-Complete')
  })
})

describe('IETF draft: structured-field booleans and integers', () => {
  const bools: Array<[string, boolean]> = [
    ['?1', true],
    ['?0', false],
    ['?1;a', true],
    ['?0;a=1;b="x"', false],
  ]
  test.each(bools)('%j → %s', (raw, want) => {
    expect(value(parseSfBoolean('Upload-Complete', raw))).toBe(want)
  })
  const notBools = ['1', '0', 'true', '?', '?2', '? 1', '?1 ?0', '?1,?0', '?10']
  test.each(notBools)('%j is not a boolean', (raw) => {
    expect(code(parseSfBoolean('Upload-Complete', raw))).toBe('ERR_INVALID_BOOLEAN')
  })
  test('absent boolean is undefined', () => {
    expect(value(parseSfBoolean('Upload-Complete', undefined))).toBeUndefined()
  })
  test('format', () => {
    expect(formatSfBoolean(true)).toBe('?1')
    expect(formatSfBoolean(false)).toBe('?0')
  })
  const ints: Array<[string, number]> = [
    ['0', 0],
    ['25000000', 25_000_000],
    ['999999999999999', 999_999_999_999_999],
    ['5;p', 5],
  ]
  test.each(ints)('integer %j → %d', (raw, want) => {
    expect(value(parseSfNonNegativeInteger('Upload-Offset', raw))).toBe(want)
  })
  test.each(['-1', '1000000000000000', '+1', '1.5', 'a', ''])('integer %j is refused', (raw) => {
    expect(code(parseSfNonNegativeInteger('Upload-Offset', raw))).toBe('ERR_INVALID_INTEGER')
  })
})

describe('IETF draft: Upload-Limit', () => {
  test('interop 8 uses max-age, in a fixed order', () => {
    const limits = {
      maxSize: 1_000_000_000,
      minSize: 0,
      maxAppendSize: 8 << 20,
      minAppendSize: 1,
      maxAgeSec: 3600,
    }
    expect(formatUploadLimit(limits, 8)).toBe(
      'max-size=1000000000, min-size=0, max-append-size=8388608, min-append-size=1, max-age=3600',
    )
  })
  test('interop 6 calls the lifetime expires (draft -05)', () => {
    expect(formatUploadLimit({ maxAgeSec: 60, maxSize: 5 }, 6)).toBe('max-size=5, expires=60')
  })
  test('no limits → min-size=0, never an empty value', () => {
    expect(formatUploadLimit({}, 8)).toBe('min-size=0')
    expect(formatUploadLimit({}, 6)).toBe('min-size=0')
  })
  test.each([-1, 1.5, NaN, 1e15])('a bad value %d throws', (v) => {
    expect(() => formatUploadLimit({ maxSize: v }, 8)).toThrow(RangeError)
  })
})

describe('IETF draft: problem+json bodies', () => {
  test('mismatching-upload-offset carries expected-offset and provided-offset (draft -11)', () => {
    const body = JSON.parse(JSON.stringify(mismatchingOffsetProblem(12_500_000, 25_000_000)))
    expect(body).toEqual({
      type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset',
      title: 'offset from request does not match offset of resource',
      'expected-offset': 12_500_000,
      'provided-offset': 25_000_000,
    })
  })
  test('completed-upload and inconsistent-upload-length types', () => {
    expect(completedUploadProblem().type).toBe(
      'https://iana.org/assignments/http-problem-types#completed-upload',
    )
    expect(inconsistentLengthProblem().type).toBe(
      'https://iana.org/assignments/http-problem-types#inconsistent-upload-length',
    )
  })
})
