/**
 * fast-check generators of whole HTTP/1.1 requests, as bytes, against every route of the four
 * families. Each case starts from a request the route would accept (valid credentials, a sane
 * path) and bends one or more of its parts: method, target, version, headers, framing
 * (Content-Length / chunked), the body (JSON shapes, multipart shapes, raw bytes), and where the
 * bytes stop. Structured values are generated and serialised last, so fast-check shrinks a
 * failure towards the smallest such request.
 */
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import type { Credentials } from './target.js'
import { FUZZ_MAX_JSON_BYTES, FUZZ_MAX_UPLOAD_BYTES } from './target.js'

export type FamilyName = 'imagestore' | 'shaman' | 'lakefs' | 'ingest' | 'edge'

/** One request, ready to send. */
export interface FuzzCase {
  readonly route: string
  readonly family: FamilyName
  readonly bytes: Buffer
  /**
   * How the client ends: 'wait' when it sent a whole request and waits for the answer;
   * 'half-close' when the request stops early (it sends FIN; the server must answer or close);
   * 'reset' when the client vanishes right after sending.
   */
  readonly ending: 'wait' | 'half-close' | 'reset'
  /** What was bent, for the report. */
  readonly notes: readonly string[]
}

// ---- building blocks ---------------------------------------------------------------------------

type Header = readonly [string, string]

/** Marks inside a body where a truncation is most interesting. */
interface BodyMarks {
  readonly partHeader?: number
  readonly partData?: number
  readonly closing?: number
}

interface Body {
  readonly bytes: Buffer
  readonly contentType: string | null
  readonly marks: BodyMarks
  readonly notes: readonly string[]
}

const NO_BODY: Body = { bytes: Buffer.alloc(0), contentType: null, marks: {}, notes: [] }

/**
 * fc.oneof whose first choice is the benign one: with cross-shrinking a failure shrinks towards
 * it, so the shrunk request keeps only the bends that matter.
 */
const pick: typeof fc.oneof = ((...arbs: Parameters<typeof fc.oneof>) => fc.oneof({ withCrossShrink: true }, ...(arbs as fc.Arbitrary<unknown>[]))) as typeof fc.oneof

const enc = (s: string) => Buffer.from(s, 'utf8')
const latin1 = (s: string) => Buffer.from(s, 'latin1')

/** Path segments: sane names, traversal in every spelling, encodings that are not valid, long ones. */
const EVIL_SEGMENTS = [
  '..', '.', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%2e', '..%2f..%2f..%2fetc', '%2f', '%2F', 'a%2fb', '..%2F', '%00', 'a%00b',
  '%5c..%5c', '..\\..', 'a\\b', '%c0%ae%c0%ae', '%c0%af', '%e0%80%ae%e0%80%ae', '%c1%9c', '%ff', '%', '%z', '%2', '%%32%65',
  '%252e%252e', '...', '....', '~', '$', '%24', '%20', '%0a', '%0d%0a', 'C:', 'con', '.git', 'a;b', '?', '#frag', '%3f', '%23',
  '\u00e9', '\u202e', '%e2%80%ae', '%ef%bb%bf', '%f0%9f%98%80', '%ed%a0%80', '%f4%90%80%80',
]
const SANE_SEGMENTS = ['a.bin', 'dir', 'x', 'file.txt', 'sub', 'data.tif', 'b']

const segment: fc.Arbitrary<string> = pick(
  { weight: 5, arbitrary: fc.constantFrom(...SANE_SEGMENTS) },
  { weight: 4, arbitrary: fc.constantFrom(...EVIL_SEGMENTS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((s) => encodeURIComponent(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(250, 256, 300, 1100, 5000, 20_000).map((n) => 'L'.repeat(n)) },
)

/** A relative path of 0-4 segments (joined raw, so a segment may bring its own `/` or `%2f`). */
const relPath: fc.Arbitrary<string> = pick(
  { weight: 14, arbitrary: fc.constantFrom('a.bin', 'dir/a.bin', 'x/y/z.txt', 'b', 'dir/sub/c.txt') },
  { weight: 4, arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/')) },
  { weight: 1, arbitrary: fc.constantFrom('', '/', '//', '/etc/passwd', 'a//b', 'a/./b', 'a/../../b', '/..', `${'../' .repeat(8)}tmp/x`) },
)

/** A query parameter value: the good one, or a bent one. */
function param(good: string, bad: readonly string[]): fc.Arbitrary<string | null> {
  return pick(
    { weight: 16, arbitrary: fc.constant(good) },
    { weight: 2, arbitrary: fc.constantFrom<string | null>(null, '', ...bad) },
    { weight: 1, arbitrary: fc.string({ maxLength: 10 }).map(encodeURIComponent) },
  )
}

function query(params: readonly (readonly [string, string | null])[], extra: string): string {
  const q = params.filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`)
  if (extra !== '') q.push(extra)
  return q.length === 0 ? '' : `?${q.join('&')}`
}

/** Extra query bits: duplicates, junk, none. */
const queryJunk: fc.Arbitrary<string> = pick(
  { weight: 20, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('a', '=', '&&', '%', 'api-version=1.0', 'session-id=x', 'path=..', 'presign=true', '__proto__=1', 'x=%00', 'q='.concat('v'.repeat(9000))) },
)

// Session ids from a small pool, so chunks, commits and deletes meet sessions earlier cases opened.
const GUIDS = ['11111111-2222-3333-4444-555555555555', '6f9619ff-8b86-d011-b42d-00c04fc964ff', 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee']
const sessionId = param(GUIDS[0]!, [...GUIDS.slice(1), GUIDS[1]!.toUpperCase(), 'not-a-guid', '{11111111-2222-3333-4444-555555555555}', '11111111222233334444555555555555', '%00'])
const apiVersion = param('6.0', ['6.0-preview', '1.0', '0', 'abc', '6.0.1', '-1', '1e3', '%36.0'])

// ---- bodies ------------------------------------------------------------------------------------

const smallBytes = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a))
/** Upload content: mostly small, sometimes at or over the upload limit. */
const uploadBytes: fc.Arbitrary<Buffer> = pick(
  { weight: 12, arbitrary: smallBytes },
  { weight: 2, arbitrary: fc.constantFrom(Buffer.alloc(0), enc('hello'), enc('x'.repeat(100))) },
  { weight: 1, arbitrary: fc.constantFrom(65_536, FUZZ_MAX_UPLOAD_BYTES, FUZZ_MAX_UPLOAD_BYTES + 1).map((n) => Buffer.alloc(n, 0x61)) },
)

/** A JSON-ish value of the wrong kind for a field. */
// biome-ignore lint/correctness/noPrecisionLoss: 2^53+1 on purpose, a number JSON cannot keep exact
const wrongType: fc.Arbitrary<unknown> = fc.constantFrom<unknown>(null, true, 0, -1, 1.5, 1e308, '', 'x', [], {}, [null], { a: 1 }, '0', -0, 9007199254740993)

/** Deep nesting that a recursive parser would choke on. */
const deepJson = fc.tuple(fc.constantFrom(64, 1000, 10_000, 100_000), fc.constantFrom('[', '{"a":'), fc.boolean()).map(([depth, open, closeIt]) => {
  const close = open === '[' ? ']' : '}'
  return enc(`${open.repeat(depth)}1${closeIt ? close.repeat(depth) : ''}`)
})

/**
 * JSON bodies: the route's valid shape (with fields swapped for wrong types, dropped, or joined
 * by `__proto__` and `constructor`), random JSON, deep, huge, broken, and not UTF-8.
 */
function jsonBody(valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Body> {
  const retyped = fc.tuple(valid, fc.nat(), wrongType, fc.boolean()).map(([o, i, v, drop]) => {
    const keys = Object.keys(o)
    const k = keys[i % Math.max(1, keys.length)]
    const copy: Record<string, unknown> = { ...o }
    if (k !== undefined) {
      if (drop) delete copy[k]
      else copy[k] = v
    }
    return enc(JSON.stringify(copy))
  })
  const polluted = fc.tuple(valid, fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty')).map(([o, key]) => {
    const inner = key === 'constructor' ? '{"prototype":{"polluted":true,"files":[]}}' : '{"polluted":true,"files":[],"admin":true}'
    const json = JSON.stringify(o)
    return enc(`{"${key}":${inner},${json.slice(1)}`)
  })
  const huge = fc.constantFrom(FUZZ_MAX_JSON_BYTES - 64, FUZZ_MAX_JSON_BYTES + 1, 2 * FUZZ_MAX_JSON_BYTES).map((n) => enc(`{"files":[],"pad":"${'p'.repeat(Math.max(0, n - 24))}"}`))
  const broken = fc.constantFrom(
    enc(''), enc('{'), enc('{"files":['), enc('null'), enc('[]'), enc('"x"'), enc('1e99999'), enc('{"files":[],}'), enc('\ufeff{"files":[]}'),
    Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), // {"\xff\xfe":1}
    Buffer.from([0x7b, 0x22, 0x66, 0x22, 0x3a, 0x22, 0xc0, 0xae, 0x22, 0x7d]), // overlong "." in a string
    Buffer.from([0x7b, 0x22, 0x66, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), // a lone surrogate, UTF-8 encoded
    enc('{"a":"\\ud800"}'), enc('{"a":1,"a":2}'), enc('\u0000'),
  )
  const valued = valid.map((o) => enc(JSON.stringify(o)))
  return fc
    .tuple(
      pick(
        { weight: 6, arbitrary: valued },
        { weight: 4, arbitrary: retyped },
        { weight: 2, arbitrary: polluted },
        { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => enc(JSON.stringify(v) ?? 'null')) },
        { weight: 1, arbitrary: deepJson },
        { weight: 1, arbitrary: huge },
        { weight: 2, arbitrary: broken },
      ),
      fc.constantFrom<string | null>('application/json', 'application/json', 'text/plain', null, 'application/json; charset=latin1', 'multipart/form-data; boundary=x'),
    )
    .map(([bytes, ct]): Body => ({ bytes, contentType: ct, marks: {}, notes: [`json ${bytes.length} bytes`] }))
}

interface PartSpec {
  readonly disposition: 'file' | 'field' | 'none' | 'garbage' | 'file-no-name'
  readonly filename: string
  readonly extraHeader: string | null
  readonly data: Buffer
}

const part: fc.Arbitrary<PartSpec> = fc.record({
  disposition: fc.constantFrom<PartSpec['disposition']>('file', 'file', 'file', 'field', 'none', 'garbage', 'file-no-name'),
  filename: pick(fc.constantFrom('a.bin', 'x.txt', '../../etc/passwd', '..\\..\\x', '', 'a"b', '%00', '\u00e9.bin'), segment),
  extraHeader: pick(
    { weight: 6, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constantFrom('Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', 'X-A: b') },
    { weight: 1, arbitrary: fc.constantFrom(100, 9000, 70_000).map((n) => `X-Huge: ${'h'.repeat(n)}`) },
  ),
  data: uploadBytes,
})

const BOUNDARY_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const boundary = pick(
  { weight: 4, arbitrary: fc.constant('XB') },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...BOUNDARY_CHARS), minLength: 1, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom('-', 'a b', '"', 'x'.repeat(71), 'x'.repeat(200), '\u00e9', 'X;B', '--XB') },
)

/** multipart/form-data bodies: one file, none, two, bad or missing boundary, missing CRLFs, no close. */
const multipartBody: fc.Arbitrary<Body> = fc
  .record({
    boundary,
    header: fc.constantFrom('same', 'same', 'same', 'quoted', 'other', 'missing', 'empty', 'twice', 'uppercase-type'),
    parts: pick({ weight: 6, arbitrary: fc.array(part, { minLength: 1, maxLength: 1 }) }, { weight: 2, arbitrary: fc.array(part, { maxLength: 4 }) }),
    crlf: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'lf', 'no-blank-line', 'no-crlf-before-boundary'),
    closing: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'none', 'no-dashes', 'no-final-crlf', 'epilogue'),
    preamble: fc.constantFrom('', '', '', 'preamble text\r\n'),
  })
  .map(({ boundary: b, header, parts, crlf, closing, preamble }): Body => {
    const nl = crlf === 'lf' ? '\n' : '\r\n'
    const chunks: Buffer[] = [latin1(preamble)]
    let off = chunks[0]!.length
    let partHeader: number | undefined
    let partData: number | undefined
    parts.forEach((p, i) => {
      const disp =
        p.disposition === 'file'
          ? `Content-Disposition: form-data; name="file"; filename="${p.filename}"`
          : p.disposition === 'file-no-name'
            ? 'Content-Disposition: form-data; filename="x"'
            : p.disposition === 'field'
              ? 'Content-Disposition: form-data; name="field"'
              : p.disposition === 'garbage'
                ? 'Content-Disposition: ;;=="'
                : 'Content-Type: text/plain'
      const lead = i === 0 || crlf !== 'no-crlf-before-boundary' ? (i === 0 ? '' : nl) : ''
      const head = latin1(`${lead}--${b}${nl}`)
      chunks.push(head)
      off += head.length
      if (partHeader === undefined) partHeader = off
      const lines = [disp, ...(p.extraHeader !== null ? [p.extraHeader] : [])].join(nl)
      const ph = enc(lines + (crlf === 'no-blank-line' ? nl : nl + nl))
      chunks.push(ph)
      off += ph.length
      if (partData === undefined) partData = off
      chunks.push(p.data)
      off += p.data.length
    })
    const closingAt = off
    if (closing !== 'none') {
      const end = closing === 'no-dashes' ? `${nl}--${b}${nl}` : closing === 'no-final-crlf' ? `${nl}--${b}--` : closing === 'epilogue' ? `${nl}--${b}--${nl}epilogue` : `${nl}--${b}--${nl}`
      chunks.push(latin1(end))
    }
    const ctB = header === 'other' ? `${b}X` : b
    const ct =
      header === 'missing'
        ? 'multipart/form-data'
        : header === 'empty'
          ? 'multipart/form-data; boundary='
          : header === 'quoted'
            ? `multipart/form-data; boundary="${ctB}"`
            : header === 'twice'
              ? `multipart/form-data; boundary=${ctB}; boundary=Z`
              : header === 'uppercase-type'
                ? `MULTIPART/FORM-DATA; BOUNDARY=${ctB}`
                : `multipart/form-data; boundary=${ctB}`
    return {
      bytes: Buffer.concat(chunks),
      contentType: ct,
      marks: { ...(partHeader !== undefined ? { partHeader } : {}), ...(partData !== undefined ? { partData } : {}), closing: closingAt },
      notes: [`multipart parts=${parts.length} header=${header} crlf=${crlf} closing=${closing}`],
    }
  })

const rawUpload: fc.Arbitrary<Body> = fc
  .tuple(uploadBytes, fc.constantFrom<string | null>('application/octet-stream', 'application/octet-stream', null, 'application/json', 'text/plain; charset=utf-8', 'multipart/mixed'))
  .map(([bytes, ct]) => ({ bytes, contentType: ct, marks: {}, notes: [`raw ${bytes.length} bytes`] }))

/** The body of an upload route: raw bytes, or one multipart/form-data file part (and its bent shapes). */
const uploadBody: fc.Arbitrary<Body> = pick({ weight: 3, arbitrary: rawUpload }, { weight: 2, arbitrary: multipartBody })

/** A body where none belongs: usually none, sometimes something. */
const strayBody: fc.Arbitrary<Body> = pick({ weight: 6, arbitrary: fc.constant(NO_BODY) }, { weight: 1, arbitrary: rawUpload }, { weight: 1, arbitrary: multipartBody })

// ---- authentication ----------------------------------------------------------------------------

function authHeaders(valid: readonly string[], invalid: readonly string[]): fc.Arbitrary<Header[]> {
  const v = fc.constantFrom(...valid)
  return pick(
    { weight: 30, arbitrary: v.map((a): Header[] => [['Authorization', a]]) },
    { weight: 1, arbitrary: fc.constant<Header[]>([]) },
    { weight: 2, arbitrary: fc.constantFrom(...invalid).map((a): Header[] => [['Authorization', a]]) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(v, fc.constantFrom('garbage', 'x', 'trailing', 'space', 'lower', 'dup', 'dup-bad', 'truncate', 'tab'))
        .map(([a, how]): Header[] => {
          const [scheme, cred] = [a.slice(0, a.indexOf(' ')), a.slice(a.indexOf(' ') + 1)]
          switch (how) {
            case 'garbage':
              return [['Authorization', `${a} garbage`]]
            case 'x':
              return [['Authorization', `${a}x`]]
            case 'trailing':
              return [['Authorization', `${a}.`]]
            case 'space':
              return [['Authorization', `${scheme}    ${cred}   `]]
            case 'lower':
              return [['Authorization', `${scheme.toLowerCase()} ${cred}`]]
            case 'dup':
              return [['Authorization', a], ['Authorization', a]]
            case 'dup-bad':
              return [['Authorization', 'Bearer x'], ['Authorization', a]]
            case 'truncate':
              return [['Authorization', a.slice(0, Math.max(7, a.length - 5))]]
            default:
              return [['Authorization', `${scheme}\t${cred}`]]
          }
        }),
    },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom('', 'Bearer', 'Bearer ', 'Basic', 'Basic !!!', 'Basic Og==', `Basic ${'A'.repeat(10_000)}`, 'Bearer ' + 'a.b.c', `Bearer ${'e'.repeat(9000)}.x.y`,
          'Digest username="x"', 'AWS4-HMAC-SHA256 Credential=x', 'Negotiate abc', 'Bearer a.b', 'Bearer ..', 'Bearer \u00e9', `Basic ${Buffer.from('\u00ff:\u00ff', 'latin1').toString('base64')}`)
        .map((a): Header[] => [['Authorization', a]]),
    },
  )
}

// ---- routes ------------------------------------------------------------------------------------

/** What a route contributes before the generic bending: method, target, its own headers, body. */
interface Draft {
  readonly route: string
  readonly family: FamilyName
  readonly method: string
  readonly target: string
  readonly headers: readonly Header[]
  readonly body: Body
}

const route = (family: FamilyName, name: string, method: string) => ({ family, route: `${family} ${method} ${name}`, method })

// Shaman objects: a few whose content the fuzzer can send, so uploads can also succeed.
const SHAMAN_CONTENT = [Buffer.alloc(0), enc('hello'), enc('x'.repeat(100)), Buffer.alloc(65_536, 7)]
const SHAMAN_OBJECTS = SHAMAN_CONTENT.map((b) => ({ sha: createHash('sha256').update(b).digest('hex'), size: String(b.length), data: b }))

const shamanKey = fc.record({
  obj: fc.constantFrom(...SHAMAN_OBJECTS),
  sha: pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) },
    { weight: 1, arbitrary: fc.constantFrom('A'.repeat(64), 'g'.repeat(64), '0'.repeat(63), '0'.repeat(65), '', '..', '%2e%2e', `${'a'.repeat(64)}%00`) },
    { weight: 1, arbitrary: fc.stringMatching(/^[0-9a-f]{64}$/) },
  ),
  size: pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) },
    { weight: 2, arbitrary: fc.constantFrom('0', '-1', '1e3', '99999999999999999', '18446744073709551616', ' 5', '5%20', 'abc', '', '0x10', '007', String(FUZZ_MAX_UPLOAD_BYTES + 1)) },
    { weight: 1, arbitrary: fc.nat({ max: 70_000 }).map(String) },
  ),
})

const shamanFile = fc.record({ path: relPath, which: fc.nat() }).map(({ path, which }) => {
  const o = SHAMAN_OBJECTS[which % SHAMAN_OBJECTS.length]!
  return { sha: o.sha, size: Number(o.size), path: decodeURIComponentSafe(path) }
})

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

const shamanRequirements = fc.array(shamanFile, { maxLength: 6 }).map((files) => ({ files }))
const shamanCheckout = fc.record({ files: fc.array(shamanFile, { maxLength: 6 }), checkoutPath: relPath.map(decodeURIComponentSafe) })

const REPOS = ['repo1', 'repo1', 'repo2', 'nope', '..', '%2e%2e', 'repo1%00', 'REPO1', '']
const BRANCHES = ['main', 'main', 'dev', 'nope', '..', '%2f', 'main%00', '']
const SHORTCODES = ['0ABC', '0ABC', '0abc', '00FF', '0001', 'zzzz', '0ABCD', '..', '%2e%2e', '%30ABC', '0A%00', '']

/** Every route of every family, each drawing a draft the route would take, more or less. */
function routes(creds: Credentials): fc.Arbitrary<Draft>[] {
  const lakeAuth = authHeaders(creds.lakefsValid, creds.lakefsInvalid)
  const ingestAuth = authHeaders(creds.ingestValid, creds.ingestInvalid)
  const is = (p: string | null, extra: readonly (readonly [string, string | null])[] = []) =>
    fc.tuple(apiVersion, queryJunk).map(([v, j]) => `/ImageStore${p === null ? '' : `/${p}`}${query([['api-version', v], ...extra], j)}`)
  const isWithPath = (op: string, extra: fc.Arbitrary<readonly (readonly [string, string | null])[]> = fc.constant([])) =>
    fc.tuple(relPath, apiVersion, queryJunk, extra, fc.constantFrom('$', '%24')).map(([p, v, j, e, dollar]) => `/ImageStore/${p}${op === '' ? '' : `/${dollar}/${op}`}${query([['api-version', v], ...e], j)}`)
  const sid = sessionId.map((s): readonly (readonly [string, string | null])[] => [['session-id', s]])

  const contentRange = pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) }, // derived from the body
    {
      weight: 4,
      arbitrary: fc.constantFrom<string | null>(
        'bytes 0-0/1', 'bytes */0', 'bytes 0-9/5', 'bytes 5-4/10', 'bytes -1-5/10', 'bytes 0-5/-1', 'bytes 0-99999999999999999/99999999999999999',
        'bytes 0-9007199254740992/9007199254740993', 'bytes=0-1/2', 'bytes 0-1', 'bytes a-b/c', '', 'bytes 0-1/2, bytes 2-3/4', 'items 0-1/2', 'bytes  0-1/2',
        'bytes 0-1/*', 'bytes */5', 'bytes 0x0-0x1/0x2', `bytes 0-${FUZZ_MAX_UPLOAD_BYTES}/${FUZZ_MAX_UPLOAD_BYTES + 1}`,
      ),
    },
    { weight: 2, arbitrary: fc.tuple(fc.nat(3000), fc.integer({ min: -2, max: 2 }), fc.integer({ min: -1, max: 3000 })).map(([a, d, t]) => `bytes ${a}-${a + d}/${a + d + t}`) },
  )

  const presignedTarget = fc.tuple(fc.constantFrom(...creds.presigned), fc.constantFrom('ok', 'ok', 'ok', 'sig', 'nosig', 'noexp', 'expired', 'repo', 'path', 'traverse', 'dupsig', 'encoded')).map(([t, how]) => {
    const [path, q = ''] = t.split('?')
    switch (how) {
      case 'sig':
        return `${path}?${q.replace(/([A-Za-z0-9_-])(&|$)/, 'A$2')}`
      case 'nosig':
        return `${path}?${q.split('&').filter((x) => !/sig/i.test(x)).join('&')}`
      case 'noexp':
        return `${path}?${q.split('&').filter((x) => /sig/i.test(x)).join('&')}`
      case 'expired':
        return `${path}?${q.replace(/(\d{9,})/, '1000000000')}`
      case 'repo':
        return `${path!.replace('/repo1/', '/repo2/')}?${q}`
      case 'path':
        return `${path}x?${q}`
      case 'traverse':
        return `${path!.replace('/data/', '/data/../../../')}?${q}`
      case 'dupsig':
        return `${path}?${q}&${q}`
      case 'encoded':
        return `${path!.replace(/\//g, '%2f').replace('%2fapi%2fv1%2f_ferry%2fpresigned%2f', '/api/v1/_ferry/presigned/')}?${q}`
      default:
        return t
    }
  })

  const linkMeta = fc.record({ i: fc.nat(), checksum: fc.constantFrom('5d41402abc4b2a76b9719d911017c592', 'd41d8cd98f00b204e9800998ecf8427e', '', 'x'), size: fc.constantFrom(0, 5, 100, -1, 2 ** 53) }).map(({ i, checksum, size }) => ({
    staging: { physical_address: creds.physical[i % creds.physical.length]!, presigned_url: null },
    checksum,
    size_bytes: size,
    user_metadata: { k: 'v' },
    content_type: 'application/octet-stream',
  }))

  const backing = (method: string) =>
    fc.tuple(fc.constantFrom(...REPOS), fc.constantFrom(...BRANCHES), param('fuzz%2Fobj', ['..', '%2e%2e%2fx', 'a/../b', '%00', '/abs', 'a\\b', 'L'.repeat(5000)]), param('true', ['false', 'TRUE', 'yes', '2']), queryJunk).map(
      ([r, b, p, ps, j]) => `/api/v1/repositories/${r}/branches/${b}/staging/backing${query(method === 'GET' ? [['path', p], ['presign', ps]] : [['path', p]], j)}`,
    )

  const ingestPath = (rest: fc.Arbitrary<string>) => fc.tuple(fc.constantFrom(...SHORTCODES), rest).map(([sc, r]) => `/projects/${sc}/bulk-ingest${r}`)
  const withCt = (b: Body): Header[] => (b.contentType === null ? [] : [['Content-Type', b.contentType]])

  const drafts: fc.Arbitrary<Draft>[] = [
    // ---- ImageStore (no authentication) ----
    fc.tuple(is(null), strayBody).map(([t, b]) => ({ ...route('imagestore', 'list root', 'GET'), target: t, headers: [], body: b })),
    fc.tuple(isWithPath(''), uploadBody).map(([t, b]) => ({ ...route('imagestore', '{path} upload', 'PUT'), target: t, headers: withCt(b), body: b })),
    fc.tuple(isWithPath(''), strayBody).map(([t, b]) => ({ ...route('imagestore', '{path} get', 'GET'), target: t, headers: [], body: b })),
    fc.tuple(isWithPath(''), strayBody).map(([t, b]) => ({ ...route('imagestore', '{path} delete', 'DELETE'), target: t, headers: [], body: b })),
    fc
      .tuple(is('$/Copy'), jsonBody(fc.record({ RemoteSource: relPath.map(decodeURIComponentSafe), RemoteDestination: relPath.map(decodeURIComponentSafe), SkipFiles: fc.array(fc.string(), { maxLength: 3 }), CheckMarkFile: fc.boolean() })))
      .map(([t, b]) => ({ ...route('imagestore', '$/Copy', 'POST'), target: t, headers: withCt(b), body: b })),
    fc.tuple(sessionId, apiVersion, queryJunk, strayBody).map(([s, v, j, b]) => ({ ...route('imagestore', '$/CommitUploadSession', 'POST'), target: `/ImageStore/$/CommitUploadSession${query([['session-id', s], ['api-version', v]], j)}`, headers: [], body: b })),
    fc.tuple(sessionId, apiVersion, queryJunk, strayBody).map(([s, v, j, b]) => ({ ...route('imagestore', '$/DeleteUploadSession', 'DELETE'), target: `/ImageStore/$/DeleteUploadSession${query([['session-id', s], ['api-version', v]], j)}`, headers: [], body: b })),
    fc.tuple(sessionId, apiVersion, queryJunk).map(([s, v, j]) => ({ ...route('imagestore', '$/GetUploadSession', 'GET'), target: `/ImageStore/$/GetUploadSession${query([['session-id', s], ['api-version', v]], j)}`, headers: [], body: NO_BODY })),
    fc.tuple(isWithPath('UploadChunk', sid), uploadBody, contentRange, fc.nat(4000), fc.integer({ min: 0, max: 5000 })).map(([t, b, cr, start, extra]) => {
      const range = cr ?? (b.bytes.length === 0 ? 'bytes */0' : `bytes ${start}-${start + b.bytes.length - 1}/${start + b.bytes.length + extra}`)
      return { ...route('imagestore', '{path}/$/UploadChunk', 'PUT'), target: t, headers: [['Content-Range', range] as Header, ...withCt(b)], body: b }
    }),
    isWithPath('GetUploadSession').map((t) => ({ ...route('imagestore', '{path}/$/GetUploadSession', 'GET'), target: t, headers: [], body: NO_BODY })),
    // ---- Shaman (no authentication) ----
    fc.tuple(jsonBody(shamanRequirements), queryJunk).map(([b, j]) => ({ ...route('shaman', 'checkout/requirements', 'POST'), target: `/api/v3/shaman/checkout/requirements${j ? `?${j}` : ''}`, headers: withCt(b), body: b })),
    fc.tuple(jsonBody(shamanCheckout), queryJunk).map(([b, j]) => ({ ...route('shaman', 'checkout/create', 'POST'), target: `/api/v3/shaman/checkout/create${j ? `?${j}` : ''}`, headers: withCt(b), body: b })),
    shamanKey.map((k) => ({ ...route('shaman', 'files/{checksum}/{size}', 'GET'), target: `/api/v3/shaman/files/${k.sha ?? k.obj.sha}/${k.size ?? k.obj.size}`, headers: [], body: NO_BODY })),
    fc
      .tuple(
        shamanKey,
        pick({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: rawUpload }, { weight: 1, arbitrary: multipartBody }),
        fc.constantFrom<string | null>(null, null, 'true', 'false', 'True', '1', 'maybe', ''),
        fc.constantFrom<string | null>(null, null, 'scene.blend', '=?utf-8?q?scene=2Eblend?=', '=?utf-8?b?w6k=?=', '=?latin1?q?x?=', '=?utf-8?b?!!?=', '=?utf-8?q?=ff?=', '\u00e9', 'a\u0001b'),
      )
      .map(([k, b, defer, name]) => {
        const body: Body = b ?? { bytes: k.obj.data, contentType: 'application/octet-stream', marks: {}, notes: ['shaman content'] }
        const h: Header[] = [...withCt(body)]
        if (defer !== null) h.push(['X-Shaman-Can-Defer-Upload', defer])
        if (name !== null) h.push(['X-Shaman-Original-Filename', name])
        return { ...route('shaman', 'files/{checksum}/{size}', 'POST'), target: `/api/v3/shaman/files/${k.sha ?? k.obj.sha}/${k.size ?? k.obj.size}`, headers: h, body }
      }),
    fc.constantFrom('/api/v3/shaman', '/api/v3/shaman/', '/api/v3/shaman/files', '/api/v3/shaman/files/a/b/c', '/api/v3/shaman/checkout').map((t) => ({ ...route('shaman', 'unknown', 'GET'), target: t, headers: [], body: NO_BODY })),
    // ---- lakeFS staging ----
    fc.constant(0).map(() => ({ ...route('lakefs', '/healthcheck', 'GET'), target: '/api/v1/healthcheck', headers: [], body: NO_BODY })),
    lakeAuth.map((a) => ({ ...route('lakefs', '/config', 'GET'), target: '/api/v1/config', headers: a, body: NO_BODY })),
    fc.tuple(backing('GET'), lakeAuth).map(([t, a]) => ({ ...route('lakefs', 'staging/backing', 'GET'), target: t, headers: a, body: NO_BODY })),
    fc
      .tuple(backing('PUT'), lakeAuth, jsonBody(linkMeta), fc.constantFrom<Header[]>([], [], [], [['If-None-Match', '*']], [['If-None-Match', '"x"']], [['If-Match', '*']], [['If-None-Match', '*'], ['If-None-Match', '*']]))
      .map(([t, a, b, cond]) => ({ ...route('lakefs', 'staging/backing', 'PUT'), target: t, headers: [...a, ...cond, ...withCt(b)], body: b })),
    fc
      .tuple(presignedTarget, uploadBody, fc.constantFrom<Header[]>([], [], [['Content-MD5', '']], [['Content-MD5', 'XUFAKrxLKna5cZ2REBfFkg==']], [['Content-MD5', '!!']]))
      .map(([t, b, md5]) => ({ ...route('lakefs', '_ferry/presigned/{repo}/{address}', 'PUT'), target: t, headers: [...md5, ...withCt(b)], body: b })),
    fc.constantFrom('/api/v1', '/api/v1/', '/api/v1/repositories', '/api/v1/_ferry/presigned/', '/api/v1/_ferry/presigned/repo1').map((t) => ({ ...route('lakefs', 'unknown', 'GET'), target: t, headers: [], body: NO_BODY })),
    // ---- DaSCH bulk ingest ----
    fc.tuple(ingestPath(relPath.map((p) => `/ingest/${p}`)), ingestAuth, uploadBody).map(([t, a, b]) => ({ ...route('ingest', '{sc}/bulk-ingest/ingest/{file}', 'POST'), target: t, headers: [...a, ...withCt(b)], body: b })),
    fc.tuple(ingestPath(fc.constant('')), ingestAuth, strayBody).map(([t, a, b]) => ({ ...route('ingest', '{sc}/bulk-ingest', 'POST'), target: t, headers: a, body: b })),
    fc.tuple(ingestPath(fc.constant('/mapping.csv')), ingestAuth).map(([t, a]) => ({ ...route('ingest', '{sc}/bulk-ingest/mapping.csv', 'GET'), target: t, headers: a, body: NO_BODY })),
    fc.tuple(ingestPath(fc.constant('/finalize')), ingestAuth, strayBody).map(([t, a, b]) => ({ ...route('ingest', '{sc}/bulk-ingest/finalize', 'POST'), target: t, headers: a, body: b })),
    // ---- the edge: health, unknown prefixes, odd targets ----
    fc
      .constantFrom('/healthz', '/healthz?x', '/', '/nope', '*', 'http://127.0.0.1/healthz', '//healthz', '/healthz/..', '/%', '/%00', '/ImageStore/../api/v1/config', '/projects/../healthz', '/\u00ff', `/${'p'.repeat(20_000)}`)
      .map((t) => ({ ...route('edge', 'odd targets', 'GET'), target: t, headers: [], body: NO_BODY })),
  ]
  return drafts
}

// ---- the generic bending: method, version, headers, framing, truncation ------------------------

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'PROPFIND', 'FOO', 'get', 'P UT', 'G'.repeat(100), '']

/** null keeps the route's own method. */
const method = pick({ weight: 24, arbitrary: fc.constant<string | null>(null) }, { weight: 1, arbitrary: fc.constantFrom<string | null>(...METHODS) })
const version = pick({ weight: 40, arbitrary: fc.constant('HTTP/1.1') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/0.9', 'HTTP/2.0', 'HTTP/1.1x', 'http/1.1', 'HTTP/1.10', '') })

type HeaderBend =
  | { kind: 'none' }
  | { kind: 'dup-first' }
  | { kind: 'huge'; bytes: number }
  | { kind: 'many'; count: number }
  | { kind: 'bad-name'; name: string }
  | { kind: 'bad-value'; value: string }
  | { kind: 'fold' }
  | { kind: 'lf-only' }
  | { kind: 'expect' }
  | { kind: 'host'; how: 'missing' | 'twice' | 'garbage' }
  | { kind: 'connection'; value: string }

const headerBend: fc.Arbitrary<HeaderBend> = pick(
  { weight: 70, arbitrary: fc.constant<HeaderBend>({ kind: 'none' }) },
  { weight: 2, arbitrary: fc.constant<HeaderBend>({ kind: 'dup-first' }) },
  { weight: 1, arbitrary: fc.constantFrom(4000, 8000, 16_000, 17_000, 70_000).map((bytes): HeaderBend => ({ kind: 'huge', bytes })) },
  { weight: 1, arbitrary: fc.constantFrom(60, 101, 2000, 5000).map((count): HeaderBend => ({ kind: 'many', count })) },
  { weight: 1, arbitrary: fc.constantFrom('Bad Header', 'X-\u0000', ':', '', 'X(Y)', '\u00e9').map((name): HeaderBend => ({ kind: 'bad-name', name })) },
  { weight: 1, arbitrary: fc.constantFrom('a\u0000b', 'a\rb', '\u00ff\u00fe', ' ', 'a\u0007').map((value): HeaderBend => ({ kind: 'bad-value', value })) },
  { weight: 1, arbitrary: fc.constant<HeaderBend>({ kind: 'fold' }) },
  { weight: 1, arbitrary: fc.constant<HeaderBend>({ kind: 'lf-only' }) },
  { weight: 2, arbitrary: fc.constant<HeaderBend>({ kind: 'expect' }) },
  { weight: 1, arbitrary: fc.constantFrom('missing', 'twice', 'garbage').map((how): HeaderBend => ({ kind: 'host', how: how as 'missing' | 'twice' | 'garbage' })) },
  { weight: 1, arbitrary: fc.constantFrom('close', 'keep-alive', 'upgrade', 'Upgrade, close', 'garbage').map((value): HeaderBend => ({ kind: 'connection', value })) },
)

type Framing =
  | { kind: 'length' }
  | { kind: 'length-off'; delta: number }
  | { kind: 'length-value'; value: string }
  | { kind: 'length-twice'; delta: number }
  | { kind: 'chunked'; pieces: number; upper: boolean; ext: boolean; bad: 'none' | 'garbage' | 'negative' | 'short' | 'long' | 'huge' | 'no-crlf'; terminate: boolean; trailer: boolean }
  | { kind: 'chunked-and-length' }
  | { kind: 'te-value'; value: string }
  | { kind: 'unframed' }

const framing: fc.Arbitrary<Framing> = pick(
  { weight: 40, arbitrary: fc.constant<Framing>({ kind: 'length' }) },
  { weight: 2, arbitrary: fc.constantFrom(-2, -1, 1, 2).map((delta): Framing => ({ kind: 'length-off', delta })) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom('-1', 'abc', '1e3', '0x10', ' 5', '+5', '5 5', '', '99999999999999999999', '18446744073709551616', '9007199254740993', '4294967296', '1,1', '\u00b9', '0')
      .map((value): Framing => ({ kind: 'length-value', value })),
  },
  { weight: 1, arbitrary: fc.constantFrom(0, 0, 1, -1).map((delta): Framing => ({ kind: 'length-twice', delta })) },
  {
    weight: 4,
    arbitrary: fc
      .record({
        pieces: fc.integer({ min: 1, max: 5 }),
        upper: fc.boolean(),
        ext: fc.boolean(),
        bad: fc.constantFrom('none', 'none', 'none', 'none', 'garbage', 'negative', 'short', 'long', 'huge', 'no-crlf'),
        terminate: pick({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        trailer: fc.boolean(),
      })
      .map((c): Framing => ({ kind: 'chunked', ...c }) as Framing),
  },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: 'chunked-and-length' }) },
  { weight: 1, arbitrary: fc.constantFrom('gzip', 'chunked, gzip', 'gzip, chunked', 'identity', 'Chunked', 'chunked ', 'xchunked', 'chunked, chunked').map((value): Framing => ({ kind: 'te-value', value })) },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: 'unframed' }) },
)

type Stage = 'request-line' | 'headers' | 'body' | 'part-header' | 'mid-part' | 'before-closing'
/** Where the bytes stop: on the wire (then FIN or reset), or inside the body (then re-framed, so the request is whole). */
interface Cut {
  readonly where: 'wire' | 'body'
  readonly stage: Stage
  readonly at: number
  readonly ending: 'half-close' | 'reset'
}
const cut: fc.Arbitrary<Cut | null> = pick(
  { weight: 10, arbitrary: fc.constant(null) },
  {
    weight: 3,
    arbitrary: fc.record({
      where: fc.constantFrom<Cut['where']>('wire', 'body'),
      stage: fc.constantFrom<Stage>('request-line', 'headers', 'body', 'part-header', 'mid-part', 'before-closing', 'before-closing'),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      ending: fc.constantFrom<Cut['ending']>('half-close', 'half-close', 'reset'),
    }),
  },
)

const spread = (from: number, to: number, at: number) => from + Math.floor(Math.max(0, to - from) * at)

/** Where in the body a cut at `stage` lands (byte offset). */
function bodyCutAt(b: Body, stage: Stage, at: number): number {
  const n = b.bytes.length
  const { partHeader, partData, closing } = b.marks
  switch (stage) {
    case 'part-header':
      return partHeader !== undefined && partData !== undefined ? spread(partHeader, partData, at) : spread(0, n, at)
    case 'mid-part':
      return partData !== undefined && closing !== undefined ? spread(partData, closing, at) : spread(0, n, at)
    case 'before-closing':
      return closing !== undefined ? closing : n
    default:
      return spread(0, n, at)
  }
}

function chunkedBytes(body: Buffer, f: Extract<Framing, { kind: 'chunked' }>): { bytes: Buffer; whole: boolean } {
  const out: Buffer[] = []
  const step = Math.max(1, Math.ceil(body.length / f.pieces))
  let whole = f.terminate
  for (let off = 0, i = 0; off < body.length; off += step, i++) {
    const piece = body.subarray(off, off + step)
    let size = piece.length.toString(16)
    if (f.upper) size = size.toUpperCase()
    if (i === 0 && f.bad !== 'none') {
      // A size too long, too short or run into its data can still parse: the leftover bytes read
      // as the next size line (hex digits, or an extension up to the next CRLF) and the server
      // rightly waits for more. Such a client is done sending, so it half-closes.
      if (f.bad === 'long' || f.bad === 'short' || f.bad === 'no-crlf') whole = false
      size = { garbage: 'zz', negative: '-1', short: (Math.max(0, piece.length - 1)).toString(16), long: (piece.length + 16).toString(16), huge: 'ffffffffffffffffff', 'no-crlf': size }[f.bad]
    }
    out.push(latin1(`${size}${f.ext ? ';name=value' : ''}${f.bad === 'no-crlf' && i === 0 ? '' : '\r\n'}`), piece, latin1('\r\n'))
  }
  if (f.terminate) out.push(latin1(f.trailer ? '0\r\nX-Trailer: t\r\n\r\n' : '0\r\n\r\n'))
  return { bytes: Buffer.concat(out), whole }
}

/** Serialises a draft with its bends into the bytes of one request. */
function serialise(d: Draft, m: string, v: string, hb: HeaderBend, fr: Framing, c: Cut | null): FuzzCase {
  const notes = [...d.body.notes]
  let body = d.body
  if (c !== null && c.where === 'body' && body.bytes.length > 0) {
    const at = bodyCutAt(body, c.stage, c.at)
    body = { ...body, bytes: body.bytes.subarray(0, at) }
    notes.push(`body cut at ${at} (${c.stage})`)
  }
  const hasBody = body.bytes.length > 0 || ['PUT', 'POST', 'PATCH'].includes(m)
  const headers: Header[] = []
  let hostHeaders: Header[] = [['Host', '127.0.0.1']]
  let whole = true
  let payload = body.bytes
  switch (fr.kind) {
    case 'length':
      if (hasBody) headers.push(['Content-Length', String(payload.length)])
      break
    case 'length-off':
      headers.push(['Content-Length', String(Math.max(0, payload.length + fr.delta))])
      if (fr.delta > 0) whole = false
      notes.push(`Content-Length off by ${fr.delta}`)
      break
    case 'length-value':
      headers.push(['Content-Length', fr.value])
      if (/^\s*\d+\s*$/.test(fr.value) && Number(fr.value) > payload.length) whole = false
      notes.push(`Content-Length "${fr.value}"`)
      break
    case 'length-twice':
      headers.push(['Content-Length', String(payload.length)], ['Content-Length', String(Math.max(0, payload.length + fr.delta))])
      if (fr.delta > 0) whole = false
      notes.push(`Content-Length twice (${fr.delta})`)
      break
    case 'chunked': {
      const ch = chunkedBytes(payload, fr)
      payload = ch.bytes
      whole = ch.whole
      headers.push(['Transfer-Encoding', 'chunked'])
      notes.push(`chunked pieces=${fr.pieces} bad=${fr.bad} terminate=${fr.terminate}`)
      break
    }
    case 'chunked-and-length':
      headers.push(['Content-Length', String(payload.length)], ['Transfer-Encoding', 'chunked'])
      whole = false
      notes.push('chunked with Content-Length')
      break
    case 'te-value':
      headers.push(['Transfer-Encoding', fr.value], ['Content-Length', String(payload.length)])
      whole = false
      notes.push(`Transfer-Encoding "${fr.value}"`)
      break
    case 'unframed':
      notes.push('no framing headers')
      break
  }
  let all: Header[] = [...d.headers, ...headers]
  let eol = '\r\n'
  switch (hb.kind) {
    case 'none':
      break
    case 'dup-first':
      if (all[0] !== undefined) all = [all[0], ...all]
      break
    case 'huge':
      all.push(['X-Fuzz-Huge', 'h'.repeat(hb.bytes)])
      break
    case 'many':
      for (let i = 0; i < hb.count; i++) all.push([`X-Fuzz-${i}`, String(i)])
      break
    case 'bad-name':
      all.push([hb.name, 'v'])
      break
    case 'bad-value':
      all.push(['X-Fuzz', hb.value])
      break
    case 'fold':
      all.push(['X-Fuzz', 'a\r\n b'])
      break
    case 'lf-only':
      eol = '\n'
      break
    case 'expect':
      all.push(['Expect', '100-continue'])
      break
    case 'host':
      hostHeaders = hb.how === 'missing' ? [] : hb.how === 'twice' ? [['Host', '127.0.0.1'], ['Host', 'evil.example']] : [['Host', 'a b/\u00ff']]
      break
    case 'connection':
      all.push(['Connection', hb.value])
      if (hb.value.toLowerCase().includes('upgrade')) all.push(['Upgrade', 'websocket'])
      break
  }
  if (hb.kind === 'connection' && hb.value.toLowerCase().includes('upgrade') && fr.kind === 'chunked' && fr.bad !== 'none') {
    // Node 20's parser neither answers nor reports a bad chunk size on a request that asks for an
    // Upgrade nobody listens for: the request waits for a body end that never comes, until the
    // idle timeout (60 s). A Node quirk, reported (test/fuzz/README.md); the client gives up here
    // instead of waiting, so the case still checks that nothing crashes.
    whole = false
    notes.push('Upgrade with a bad chunk size: client half-closes (Node quirk)')
  }
  if (hb.kind !== 'none') notes.push(`headers: ${hb.kind}`)
  if (m !== d.method) notes.push(`method ${JSON.stringify(m)}`)
  if (v !== 'HTTP/1.1') notes.push(`version ${JSON.stringify(v)}`)
  const lines = [`${m} ${d.target} ${v}`, ...[...hostHeaders, ...all].map(([k, val]) => `${k}: ${val}`)]
  const requestLine = Buffer.from(lines[0]!, 'utf8')
  // Header values travel as latin1 (a JS char per byte); the target as UTF-8, as a browser would send it.
  const head = Buffer.concat([requestLine, latin1(eol + lines.slice(1).join(eol) + eol + eol)])
  let bytes = Buffer.concat([head, payload])
  let ending: FuzzCase['ending'] = whole ? 'wait' : 'half-close'
  if (c !== null && c.where === 'wire') {
    const at =
      c.stage === 'request-line'
        ? spread(0, requestLine.length, c.at)
        : c.stage === 'headers'
          ? spread(requestLine.length, head.length, c.at)
          : fr.kind === 'length' && payload === body.bytes
            ? head.length + bodyCutAt(body, c.stage, c.at)
            : spread(head.length, bytes.length, c.at)
    bytes = bytes.subarray(0, at)
    ending = c.ending
    notes.push(`wire cut at ${at} of ${head.length + payload.length} (${c.stage}), then ${c.ending}`)
  }
  return { route: d.route, family: d.family, bytes, ending, notes }
}

/** Requests against every route of every family, bent every which way. */
export function fuzzCase(creds: Credentials): fc.Arbitrary<FuzzCase> {
  return fc.tuple(fc.oneof(...routes(creds)), method, version, headerBend, framing, cut).map(([d, m, v, hb, fr, c]) => serialise(d, m ?? d.method, v, hb, fr, c))
}

/** All route names the generator can pick (for coverage reporting). */
export function routeNames(creds: Credentials): string[] {
  const names = new Set<string>()
  const sample = fc.sample(fuzzCase(creds), { numRuns: 4000, seed: 1 })
  for (const c of sample) names.add(c.route)
  return [...names].sort()
}
