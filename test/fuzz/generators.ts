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

export type FamilyName = 'imagestore' | 'shaman' | 'lakefs' | 'ingest' | 'tus' | 'edge'

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
  /**
   * Requests sent first (stateful routes: create a tus upload, start a multipart upload); what
   * they answer fills the `{{name}}` placeholders of `render`.
   */
  readonly setup?: readonly SetupStep[]
  /** The request with the setup's answers in place of its placeholders (`bytes` keeps them). */
  readonly render?: (vars: Readonly<Record<string, string>>) => Buffer
  /**
   * Statuses the protocol allows for this request, when the generic bends left it alone (same
   * method, HTTP/1.1, no header or framing bend, not cut): anything else is a wrong status.
   */
  readonly expect?: readonly number[]
  /** A slow client: the body goes in `pieces` writes, `pauseMs` apart (see sendRaw). */
  readonly slow?: { readonly pieces: number; readonly pauseMs: number; readonly headBytes: number }
}

/**
 * One request of a case's setup, sent whole over its own connection before the case. `capture`
 * says what to keep from the answer under `name`: a tus or IETF upload's path (`{{name}}`), a
 * multipart upload (`{{name.id}}`, `{{name.addr}}`, `{{name.p1}}`… the part URLs' path and
 * query), or a part's ETag (`{{name}}`). Its target, headers and body may use earlier names.
 */
export interface SetupStep {
  readonly name: string
  readonly capture: 'location' | 'pmpu' | 'etag' | 'none'
  readonly method: string
  readonly target: string
  readonly headers: readonly (readonly [string, string])[]
  readonly body: Buffer
}

/** Replaces `{{name}}` placeholders (unknown names stay, so the request shows what was missing). */
export function fillPlaceholders(s: string, vars: Readonly<Record<string, string>>): string {
  return s.replace(/\{\{([A-Za-z0-9_.]+)\}\}/g, (all, k: string) => vars[k] ?? all)
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
const pick: typeof fc.oneof = ((...arbs: Parameters<typeof fc.oneof>) =>
  fc.oneof({ withCrossShrink: true }, ...(arbs as fc.Arbitrary<unknown>[]))) as typeof fc.oneof

const enc = (s: string) => Buffer.from(s, 'utf8')
const latin1 = (s: string) => Buffer.from(s, 'latin1')

/**
 * Path segments: sane names, traversal in every spelling, encodings that are not valid, long ones.
 */
const EVIL_SEGMENTS = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%2e.',
  '%2e',
  '..%2f..%2f..%2fetc',
  '%2f',
  '%2F',
  'a%2fb',
  '..%2F',
  '%00',
  'a%00b',
  '%5c..%5c',
  '..\\..',
  'a\\b',
  '%c0%ae%c0%ae',
  '%c0%af',
  '%e0%80%ae%e0%80%ae',
  '%c1%9c',
  '%ff',
  '%',
  '%z',
  '%2',
  '%%32%65',
  '%252e%252e',
  '...',
  '....',
  '~',
  '$',
  '%24',
  '%20',
  '%0a',
  '%0d%0a',
  'C:',
  'con',
  '.git',
  'a;b',
  '?',
  '#frag',
  '%3f',
  '%23',
  '\u00e9',
  '\u202e',
  '%e2%80%ae',
  '%ef%bb%bf',
  '%f0%9f%98%80',
  '%ed%a0%80',
  '%f4%90%80%80',
]
const SANE_SEGMENTS = ['a.bin', 'dir', 'x', 'file.txt', 'sub', 'data.tif', 'b']

const segment: fc.Arbitrary<string> = pick(
  { weight: 5, arbitrary: fc.constantFrom(...SANE_SEGMENTS) },
  { weight: 4, arbitrary: fc.constantFrom(...EVIL_SEGMENTS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((s) => encodeURIComponent(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(250, 256, 300, 1100, 5000, 20_000).map((n) => 'L'.repeat(n)),
  },
)

/** A relative path of 0-4 segments (joined raw, so a segment may bring its own `/` or `%2f`). */
const relPath: fc.Arbitrary<string> = pick(
  {
    weight: 14,
    arbitrary: fc.constantFrom('a.bin', 'dir/a.bin', 'x/y/z.txt', 'b', 'dir/sub/c.txt'),
  },
  {
    weight: 4,
    arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/')),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '/',
      '//',
      '/etc/passwd',
      'a//b',
      'a/./b',
      'a/../../b',
      '/..',
      `${'../'.repeat(8)}tmp/x`,
    ),
  },
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
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'a',
      '=',
      '&&',
      '%',
      'api-version=1.0',
      'session-id=x',
      'path=..',
      'presign=true',
      '__proto__=1',
      'x=%00',
      'q='.concat('v'.repeat(9000)),
    ),
  },
)

// Session ids from a small pool, so chunks, commits and deletes meet sessions earlier cases opened.
const GUIDS = [
  '11111111-2222-3333-4444-555555555555',
  '6f9619ff-8b86-d011-b42d-00c04fc964ff',
  'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
]
const sessionId = param(GUIDS[0]!, [
  ...GUIDS.slice(1),
  GUIDS[1]!.toUpperCase(),
  'not-a-guid',
  '{11111111-2222-3333-4444-555555555555}',
  '11111111222233334444555555555555',
  '%00',
])
const apiVersion = param('6.0', ['6.0-preview', '1.0', '0', 'abc', '6.0.1', '-1', '1e3', '%36.0'])

// ---- bodies ------------------------------------------------------------------------------------

const smallBytes = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a))
/** Upload content: mostly small, sometimes at or over the upload limit. */
const uploadBytes: fc.Arbitrary<Buffer> = pick(
  { weight: 12, arbitrary: smallBytes },
  { weight: 2, arbitrary: fc.constantFrom(Buffer.alloc(0), enc('hello'), enc('x'.repeat(100))) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(65_536, FUZZ_MAX_UPLOAD_BYTES, FUZZ_MAX_UPLOAD_BYTES + 1)
      .map((n) => Buffer.alloc(n, 0x61)),
  },
)

/** A JSON-ish value of the wrong kind for a field. */
const wrongType: fc.Arbitrary<unknown> = fc.constantFrom<unknown>(
  null,
  true,
  0,
  -1,
  1.5,
  1e308,
  '',
  'x',
  [],
  {},
  [null],
  { a: 1 },
  '0',
  -0,
  // biome-ignore lint/correctness/noPrecisionLoss: 2^53+1 on purpose, beyond what JSON keeps exact
  9007199254740993,
)

/** Deep nesting that a recursive parser would choke on. */
const deepJson = fc
  .tuple(fc.constantFrom(64, 1000, 10_000, 100_000), fc.constantFrom('[', '{"a":'), fc.boolean())
  .map(([depth, open, closeIt]) => {
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
  const polluted = fc
    .tuple(
      valid,
      fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'),
    )
    .map(([o, key]) => {
      const inner =
        key === 'constructor'
          ? '{"prototype":{"polluted":true,"files":[]}}'
          : '{"polluted":true,"files":[],"admin":true}'
      const json = JSON.stringify(o)
      return enc(`{"${key}":${inner},${json.slice(1)}`)
    })
  const huge = fc
    .constantFrom(FUZZ_MAX_JSON_BYTES - 64, FUZZ_MAX_JSON_BYTES + 1, 2 * FUZZ_MAX_JSON_BYTES)
    .map((n) => enc(`{"files":[],"pad":"${'p'.repeat(Math.max(0, n - 24))}"}`))
  const broken = fc.constantFrom(
    enc(''),
    enc('{'),
    enc('{"files":['),
    enc('null'),
    enc('[]'),
    enc('"x"'),
    enc('1e99999'),
    enc('{"files":[],}'),
    enc('\ufeff{"files":[]}'),
    Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), // {"\xff\xfe":1}
    Buffer.from([0x7b, 0x22, 0x66, 0x22, 0x3a, 0x22, 0xc0, 0xae, 0x22, 0x7d]), // overlong "." in a string
    Buffer.from([0x7b, 0x22, 0x66, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), // a lone surrogate, UTF-8 encoded
    enc('{"a":"\\ud800"}'),
    enc('{"a":1,"a":2}'),
    enc('\u0000'),
  )
  const valued = valid.map((o) => enc(JSON.stringify(o)))
  return fc
    .tuple(
      pick(
        { weight: 6, arbitrary: valued },
        { weight: 4, arbitrary: retyped },
        { weight: 2, arbitrary: polluted },
        {
          weight: 2,
          arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => enc(JSON.stringify(v) ?? 'null')),
        },
        { weight: 1, arbitrary: deepJson },
        { weight: 1, arbitrary: huge },
        { weight: 2, arbitrary: broken },
      ),
      fc.constantFrom<string | null>(
        'application/json',
        'application/json',
        'text/plain',
        null,
        'application/json; charset=latin1',
        'multipart/form-data; boundary=x',
      ),
    )
    .map(
      ([bytes, ct]): Body => ({
        bytes,
        contentType: ct,
        marks: {},
        notes: [`json ${bytes.length} bytes`],
      }),
    )
}

interface PartSpec {
  readonly disposition: 'file' | 'field' | 'none' | 'garbage' | 'file-no-name'
  readonly filename: string
  readonly extraHeader: string | null
  readonly data: Buffer
}

const part: fc.Arbitrary<PartSpec> = fc.record({
  disposition: fc.constantFrom<PartSpec['disposition']>(
    'file',
    'file',
    'file',
    'field',
    'none',
    'garbage',
    'file-no-name',
  ),
  filename: pick(
    fc.constantFrom(
      'a.bin',
      'x.txt',
      '../../etc/passwd',
      '..\\..\\x',
      '',
      'a"b',
      '%00',
      '\u00e9.bin',
    ),
    segment,
  ),
  extraHeader: pick(
    { weight: 6, arbitrary: fc.constant(null) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'Content-Type: application/octet-stream',
        'Content-Transfer-Encoding: base64',
        'X-A: b',
      ),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(100, 9000, 70_000).map((n) => `X-Huge: ${'h'.repeat(n)}`),
    },
  ),
  data: uploadBytes,
})

const BOUNDARY_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const boundary = pick(
  { weight: 4, arbitrary: fc.constant('XB') },
  {
    weight: 2,
    arbitrary: fc.string({ unit: fc.constantFrom(...BOUNDARY_CHARS), minLength: 1, maxLength: 40 }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '-',
      'a b',
      '"',
      'x'.repeat(71),
      'x'.repeat(200),
      '\u00e9',
      'X;B',
      '--XB',
    ),
  },
)

/**
 * multipart/form-data bodies: one file, none, two, bad or missing boundary, missing CRLFs, no
 * close.
 */
const multipartBody: fc.Arbitrary<Body> = fc
  .record({
    boundary,
    header: fc.constantFrom(
      'same',
      'same',
      'same',
      'quoted',
      'other',
      'missing',
      'empty',
      'twice',
      'uppercase-type',
    ),
    parts: pick(
      { weight: 6, arbitrary: fc.array(part, { minLength: 1, maxLength: 1 }) },
      { weight: 2, arbitrary: fc.array(part, { maxLength: 4 }) },
    ),
    crlf: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'lf', 'no-blank-line', 'no-crlf-before-boundary'),
    closing: fc.constantFrom(
      'ok',
      'ok',
      'ok',
      'ok',
      'none',
      'no-dashes',
      'no-final-crlf',
      'epilogue',
    ),
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
      const end =
        closing === 'no-dashes'
          ? `${nl}--${b}${nl}`
          : closing === 'no-final-crlf'
            ? `${nl}--${b}--`
            : closing === 'epilogue'
              ? `${nl}--${b}--${nl}epilogue`
              : `${nl}--${b}--${nl}`
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
      marks: {
        ...(partHeader !== undefined ? { partHeader } : {}),
        ...(partData !== undefined ? { partData } : {}),
        closing: closingAt,
      },
      notes: [`multipart parts=${parts.length} header=${header} crlf=${crlf} closing=${closing}`],
    }
  })

const rawUpload: fc.Arbitrary<Body> = fc
  .tuple(
    uploadBytes,
    fc.constantFrom<string | null>(
      'application/octet-stream',
      'application/octet-stream',
      null,
      'application/json',
      'text/plain; charset=utf-8',
      'multipart/mixed',
    ),
  )
  .map(([bytes, ct]) => ({
    bytes,
    contentType: ct,
    marks: {},
    notes: [`raw ${bytes.length} bytes`],
  }))

/**
 * The body of an upload route: raw bytes, or one multipart/form-data file part (and its bent
 * shapes).
 */
const uploadBody: fc.Arbitrary<Body> = pick(
  { weight: 3, arbitrary: rawUpload },
  { weight: 2, arbitrary: multipartBody },
)

/** A body where none belongs: usually none, sometimes something. */
const strayBody: fc.Arbitrary<Body> = pick(
  { weight: 6, arbitrary: fc.constant(NO_BODY) },
  { weight: 1, arbitrary: rawUpload },
  { weight: 1, arbitrary: multipartBody },
)

// ---- authentication ----------------------------------------------------------------------------

function authHeaders(valid: readonly string[], invalid: readonly string[]): fc.Arbitrary<Header[]> {
  const v = fc.constantFrom(...valid)
  return pick(
    { weight: 30, arbitrary: v.map((a): Header[] => [['Authorization', a]]) },
    { weight: 1, arbitrary: fc.constant<Header[]>([]) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(...invalid).map((a): Header[] => [['Authorization', a]]),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          v,
          fc.constantFrom(
            'garbage',
            'x',
            'trailing',
            'space',
            'lower',
            'dup',
            'dup-bad',
            'truncate',
            'tab',
          ),
        )
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
              return [
                ['Authorization', a],
                ['Authorization', a],
              ]
            case 'dup-bad':
              return [
                ['Authorization', 'Bearer x'],
                ['Authorization', a],
              ]
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
        .constantFrom(
          '',
          'Bearer',
          'Bearer ',
          'Basic',
          'Basic !!!',
          'Basic Og==',
          `Basic ${'A'.repeat(10_000)}`,
          'Bearer ' + 'a.b.c',
          `Bearer ${'e'.repeat(9000)}.x.y`,
          'Digest username="x"',
          'AWS4-HMAC-SHA256 Credential=x',
          'Negotiate abc',
          'Bearer a.b',
          'Bearer ..',
          'Bearer \u00e9',
          `Basic ${Buffer.from('\u00ff:\u00ff', 'latin1').toString('base64')}`,
        )
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
  readonly setup?: readonly SetupStep[]
  readonly expect?: readonly number[]
  readonly slow?: { readonly pieces: number; readonly pauseMs: number }
}

const route = (family: FamilyName, name: string, method: string) => ({
  family,
  route: `${family} ${method} ${name}`,
  method,
})

// Shaman objects: a few whose content the fuzzer can send, so uploads can also succeed.
const SHAMAN_CONTENT = [
  Buffer.alloc(0),
  enc('hello'),
  enc('x'.repeat(100)),
  Buffer.alloc(65_536, 7),
]
const SHAMAN_OBJECTS = SHAMAN_CONTENT.map((b) => ({
  sha: createHash('sha256').update(b).digest('hex'),
  size: String(b.length),
  data: b,
}))

const shamanKey = fc.record({
  obj: fc.constantFrom(...SHAMAN_OBJECTS),
  sha: pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'A'.repeat(64),
        'g'.repeat(64),
        '0'.repeat(63),
        '0'.repeat(65),
        '',
        '..',
        '%2e%2e',
        `${'a'.repeat(64)}%00`,
      ),
    },
    { weight: 1, arbitrary: fc.stringMatching(/^[0-9a-f]{64}$/) },
  ),
  size: pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '0',
        '-1',
        '1e3',
        '99999999999999999',
        '18446744073709551616',
        ' 5',
        '5%20',
        'abc',
        '',
        '0x10',
        '007',
        String(FUZZ_MAX_UPLOAD_BYTES + 1),
      ),
    },
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
const shamanCheckout = fc.record({
  files: fc.array(shamanFile, { maxLength: 6 }),
  checkoutPath: relPath.map(decodeURIComponentSafe),
})

const REPOS = ['repo1', 'repo1', 'repo2', 'nope', '..', '%2e%2e', 'repo1%00', 'REPO1', '']
const BRANCHES = ['main', 'main', 'dev', 'nope', '..', '%2f', 'main%00', '']
const SHORTCODES = [
  '0ABC',
  '0ABC',
  '0abc',
  '00FF',
  '0001',
  'zzzz',
  '0ABCD',
  '..',
  '%2e%2e',
  '%30ABC',
  '0A%00',
  '',
]

/** Every route of every family, each drawing a draft the route would take, more or less. */
function routes(creds: Credentials): fc.Arbitrary<Draft>[] {
  const lakeAuth = authHeaders(creds.lakefsValid, creds.lakefsInvalid)
  const ingestAuth = authHeaders(creds.ingestValid, creds.ingestInvalid)
  const is = (p: string | null, extra: readonly (readonly [string, string | null])[] = []) =>
    fc
      .tuple(apiVersion, queryJunk)
      .map(
        ([v, j]) =>
          `/ImageStore${p === null ? '' : `/${p}`}${query([['api-version', v], ...extra], j)}`,
      )
  const isWithPath = (
    op: string,
    extra: fc.Arbitrary<readonly (readonly [string, string | null])[]> = fc.constant([]),
  ) =>
    fc
      .tuple(relPath, apiVersion, queryJunk, extra, fc.constantFrom('$', '%24'))
      .map(
        ([p, v, j, e, dollar]) =>
          `/ImageStore/${p}${op === '' ? '' : `/${dollar}/${op}`}${query([['api-version', v], ...e], j)}`,
      )
  const sid = sessionId.map((s): readonly (readonly [string, string | null])[] => [
    ['session-id', s],
  ])

  const contentRange = pick(
    { weight: 6, arbitrary: fc.constant<string | null>(null) }, // derived from the body
    {
      weight: 4,
      arbitrary: fc.constantFrom<string | null>(
        'bytes 0-0/1',
        'bytes */0',
        'bytes 0-9/5',
        'bytes 5-4/10',
        'bytes -1-5/10',
        'bytes 0-5/-1',
        'bytes 0-99999999999999999/99999999999999999',
        'bytes 0-9007199254740992/9007199254740993',
        'bytes=0-1/2',
        'bytes 0-1',
        'bytes a-b/c',
        '',
        'bytes 0-1/2, bytes 2-3/4',
        'items 0-1/2',
        'bytes  0-1/2',
        'bytes 0-1/*',
        'bytes */5',
        'bytes 0x0-0x1/0x2',
        `bytes 0-${FUZZ_MAX_UPLOAD_BYTES}/${FUZZ_MAX_UPLOAD_BYTES + 1}`,
      ),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.nat(3000), fc.integer({ min: -2, max: 2 }), fc.integer({ min: -1, max: 3000 }))
        .map(([a, d, t]) => `bytes ${a}-${a + d}/${a + d + t}`),
    },
  )

  const presignedTarget = fc
    .tuple(
      fc.constantFrom(...creds.presigned),
      fc.constantFrom(
        'ok',
        'ok',
        'ok',
        'sig',
        'nosig',
        'noexp',
        'expired',
        'repo',
        'path',
        'traverse',
        'dupsig',
        'encoded',
      ),
    )
    .map(([t, how]) => {
      const [path, q = ''] = t.split('?')
      switch (how) {
        case 'sig':
          return `${path}?${q.replace(/([A-Za-z0-9_-])(&|$)/, 'A$2')}`
        case 'nosig':
          return `${path}?${q
            .split('&')
            .filter((x) => !/sig/i.test(x))
            .join('&')}`
        case 'noexp':
          return `${path}?${q
            .split('&')
            .filter((x) => /sig/i.test(x))
            .join('&')}`
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

  const linkMeta = fc
    .record({
      i: fc.nat(),
      checksum: fc.constantFrom(
        '5d41402abc4b2a76b9719d911017c592',
        'd41d8cd98f00b204e9800998ecf8427e',
        '',
        'x',
      ),
      size: fc.constantFrom(0, 5, 100, -1, 2 ** 53),
    })
    .map(({ i, checksum, size }) => ({
      staging: {
        physical_address: creds.physical[i % creds.physical.length]!,
        presigned_url: null,
      },
      checksum,
      size_bytes: size,
      user_metadata: { k: 'v' },
      content_type: 'application/octet-stream',
    }))

  const backing = (method: string) =>
    fc
      .tuple(
        fc.constantFrom(...REPOS),
        fc.constantFrom(...BRANCHES),
        param('fuzz%2Fobj', [
          '..',
          '%2e%2e%2fx',
          'a/../b',
          '%00',
          '/abs',
          'a\\b',
          'L'.repeat(5000),
        ]),
        param('true', ['false', 'TRUE', 'yes', '2']),
        queryJunk,
      )
      .map(
        ([r, b, p, ps, j]) =>
          `/api/v1/repositories/${r}/branches/${b}/staging/backing${query(
            method === 'GET'
              ? [
                  ['path', p],
                  ['presign', ps],
                ]
              : [['path', p]],
            j,
          )}`,
      )

  const ingestPath = (rest: fc.Arbitrary<string>) =>
    fc
      .tuple(fc.constantFrom(...SHORTCODES), rest)
      .map(([sc, r]) => `/projects/${sc}/bulk-ingest${r}`)
  const withCt = (b: Body): Header[] =>
    b.contentType === null ? [] : [['Content-Type', b.contentType]]

  const drafts: fc.Arbitrary<Draft>[] = [
    // ---- ImageStore (no authentication) ----
    fc.tuple(is(null), strayBody).map(([t, b]) => ({
      ...route('imagestore', 'list root', 'GET'),
      target: t,
      headers: [],
      body: b,
    })),
    fc.tuple(isWithPath(''), uploadBody).map(([t, b]) => ({
      ...route('imagestore', '{path} upload', 'PUT'),
      target: t,
      headers: withCt(b),
      body: b,
    })),
    fc.tuple(isWithPath(''), strayBody).map(([t, b]) => ({
      ...route('imagestore', '{path} get', 'GET'),
      target: t,
      headers: [],
      body: b,
    })),
    fc.tuple(isWithPath(''), strayBody).map(([t, b]) => ({
      ...route('imagestore', '{path} delete', 'DELETE'),
      target: t,
      headers: [],
      body: b,
    })),
    fc
      .tuple(
        is('$/Copy'),
        jsonBody(
          fc.record({
            RemoteSource: relPath.map(decodeURIComponentSafe),
            RemoteDestination: relPath.map(decodeURIComponentSafe),
            SkipFiles: fc.array(fc.string(), { maxLength: 3 }),
            CheckMarkFile: fc.boolean(),
          }),
        ),
      )
      .map(([t, b]) => ({
        ...route('imagestore', '$/Copy', 'POST'),
        target: t,
        headers: withCt(b),
        body: b,
      })),
    fc.tuple(sessionId, apiVersion, queryJunk, strayBody).map(([s, v, j, b]) => ({
      ...route('imagestore', '$/CommitUploadSession', 'POST'),
      target: `/ImageStore/$/CommitUploadSession${query(
        [
          ['session-id', s],
          ['api-version', v],
        ],
        j,
      )}`,
      headers: [],
      body: b,
    })),
    fc.tuple(sessionId, apiVersion, queryJunk, strayBody).map(([s, v, j, b]) => ({
      ...route('imagestore', '$/DeleteUploadSession', 'DELETE'),
      target: `/ImageStore/$/DeleteUploadSession${query(
        [
          ['session-id', s],
          ['api-version', v],
        ],
        j,
      )}`,
      headers: [],
      body: b,
    })),
    fc.tuple(sessionId, apiVersion, queryJunk).map(([s, v, j]) => ({
      ...route('imagestore', '$/GetUploadSession', 'GET'),
      target: `/ImageStore/$/GetUploadSession${query(
        [
          ['session-id', s],
          ['api-version', v],
        ],
        j,
      )}`,
      headers: [],
      body: NO_BODY,
    })),
    fc
      .tuple(
        isWithPath('UploadChunk', sid),
        uploadBody,
        contentRange,
        fc.nat(4000),
        fc.integer({ min: 0, max: 5000 }),
      )
      .map(([t, b, cr, start, extra]) => {
        const range =
          cr ??
          (b.bytes.length === 0
            ? 'bytes */0'
            : `bytes ${start}-${start + b.bytes.length - 1}/${start + b.bytes.length + extra}`)
        return {
          ...route('imagestore', '{path}/$/UploadChunk', 'PUT'),
          target: t,
          headers: [['Content-Range', range] as Header, ...withCt(b)],
          body: b,
        }
      }),
    isWithPath('GetUploadSession').map((t) => ({
      ...route('imagestore', '{path}/$/GetUploadSession', 'GET'),
      target: t,
      headers: [],
      body: NO_BODY,
    })),
    // ---- Shaman (no authentication) ----
    fc.tuple(jsonBody(shamanRequirements), queryJunk).map(([b, j]) => ({
      ...route('shaman', 'checkout/requirements', 'POST'),
      target: `/api/v3/shaman/checkout/requirements${j ? `?${j}` : ''}`,
      headers: withCt(b),
      body: b,
    })),
    fc.tuple(jsonBody(shamanCheckout), queryJunk).map(([b, j]) => ({
      ...route('shaman', 'checkout/create', 'POST'),
      target: `/api/v3/shaman/checkout/create${j ? `?${j}` : ''}`,
      headers: withCt(b),
      body: b,
    })),
    shamanKey.map((k) => ({
      ...route('shaman', 'files/{checksum}/{size}', 'GET'),
      target: `/api/v3/shaman/files/${k.sha ?? k.obj.sha}/${k.size ?? k.obj.size}`,
      headers: [],
      body: NO_BODY,
    })),
    fc
      .tuple(
        shamanKey,
        pick(
          { weight: 3, arbitrary: fc.constant(null) },
          { weight: 2, arbitrary: rawUpload },
          { weight: 1, arbitrary: multipartBody },
        ),
        fc.constantFrom<string | null>(null, null, 'true', 'false', 'True', '1', 'maybe', ''),
        fc.constantFrom<string | null>(
          null,
          null,
          'scene.blend',
          '=?utf-8?q?scene=2Eblend?=',
          '=?utf-8?b?w6k=?=',
          '=?latin1?q?x?=',
          '=?utf-8?b?!!?=',
          '=?utf-8?q?=ff?=',
          '\u00e9',
          'a\u0001b',
        ),
      )
      .map(([k, b, defer, name]) => {
        const body: Body = b ?? {
          bytes: k.obj.data,
          contentType: 'application/octet-stream',
          marks: {},
          notes: ['shaman content'],
        }
        const h: Header[] = [...withCt(body)]
        if (defer !== null) h.push(['X-Shaman-Can-Defer-Upload', defer])
        if (name !== null) h.push(['X-Shaman-Original-Filename', name])
        return {
          ...route('shaman', 'files/{checksum}/{size}', 'POST'),
          target: `/api/v3/shaman/files/${k.sha ?? k.obj.sha}/${k.size ?? k.obj.size}`,
          headers: h,
          body,
        }
      }),
    fc
      .constantFrom(
        '/api/v3/shaman',
        '/api/v3/shaman/',
        '/api/v3/shaman/files',
        '/api/v3/shaman/files/a/b/c',
        '/api/v3/shaman/checkout',
      )
      .map((t) => ({
        ...route('shaman', 'unknown', 'GET'),
        target: t,
        headers: [],
        body: NO_BODY,
      })),
    // ---- lakeFS staging ----
    fc.constant(0).map(() => ({
      ...route('lakefs', '/healthcheck', 'GET'),
      target: '/api/v1/healthcheck',
      headers: [],
      body: NO_BODY,
    })),
    lakeAuth.map((a) => ({
      ...route('lakefs', '/config', 'GET'),
      target: '/api/v1/config',
      headers: a,
      body: NO_BODY,
    })),
    fc.tuple(backing('GET'), lakeAuth).map(([t, a]) => ({
      ...route('lakefs', 'staging/backing', 'GET'),
      target: t,
      headers: a,
      body: NO_BODY,
    })),
    fc
      .tuple(
        backing('PUT'),
        lakeAuth,
        jsonBody(linkMeta),
        fc.constantFrom<Header[]>(
          [],
          [],
          [],
          [['If-None-Match', '*']],
          [['If-None-Match', '"x"']],
          [['If-Match', '*']],
          [
            ['If-None-Match', '*'],
            ['If-None-Match', '*'],
          ],
        ),
      )
      .map(([t, a, b, cond]) => ({
        ...route('lakefs', 'staging/backing', 'PUT'),
        target: t,
        headers: [...a, ...cond, ...withCt(b)],
        body: b,
      })),
    fc
      .tuple(
        presignedTarget,
        uploadBody,
        fc.constantFrom<Header[]>(
          [],
          [],
          [['Content-MD5', '']],
          [['Content-MD5', 'XUFAKrxLKna5cZ2REBfFkg==']],
          [['Content-MD5', '!!']],
        ),
      )
      .map(([t, b, md5]) => ({
        ...route('lakefs', '_ferry/presigned/{repo}/{address}', 'PUT'),
        target: t,
        headers: [...md5, ...withCt(b)],
        body: b,
      })),
    fc
      .constantFrom(
        '/api/v1',
        '/api/v1/',
        '/api/v1/repositories',
        '/api/v1/_ferry/presigned/',
        '/api/v1/_ferry/presigned/repo1',
      )
      .map((t) => ({
        ...route('lakefs', 'unknown', 'GET'),
        target: t,
        headers: [],
        body: NO_BODY,
      })),
    // ---- DaSCH bulk ingest ----
    fc
      .tuple(ingestPath(relPath.map((p) => `/ingest/${p}`)), ingestAuth, uploadBody)
      .map(([t, a, b]) => ({
        ...route('ingest', '{sc}/bulk-ingest/ingest/{file}', 'POST'),
        target: t,
        headers: [...a, ...withCt(b)],
        body: b,
      })),
    fc.tuple(ingestPath(fc.constant('')), ingestAuth, strayBody).map(([t, a, b]) => ({
      ...route('ingest', '{sc}/bulk-ingest', 'POST'),
      target: t,
      headers: a,
      body: b,
    })),
    fc.tuple(ingestPath(fc.constant('/mapping.csv')), ingestAuth).map(([t, a]) => ({
      ...route('ingest', '{sc}/bulk-ingest/mapping.csv', 'GET'),
      target: t,
      headers: a,
      body: NO_BODY,
    })),
    fc.tuple(ingestPath(fc.constant('/finalize')), ingestAuth, strayBody).map(([t, a, b]) => ({
      ...route('ingest', '{sc}/bulk-ingest/finalize', 'POST'),
      target: t,
      headers: a,
      body: b,
    })),
    // ---- the edge: health, unknown prefixes, odd targets ----
    fc
      .constantFrom(
        '/healthz',
        '/healthz?x',
        '/',
        '/nope',
        '*',
        'http://127.0.0.1/healthz',
        '//healthz',
        '/healthz/..',
        '/%',
        '/%00',
        '/ImageStore/../api/v1/config',
        '/projects/../healthz',
        '/\u00ff',
        `/${'p'.repeat(20_000)}`,
      )
      .map((t) => ({
        ...route('edge', 'odd targets', 'GET'),
        target: t,
        headers: [],
        body: NO_BODY,
      })),
  ]
  return [...drafts, ...resumableRoutes(creds)]
}

// ---- the generic bending: method, version, headers, framing, truncation ------------------------

const METHODS = [
  'GET',
  'PUT',
  'POST',
  'DELETE',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'TRACE',
  'CONNECT',
  'PROPFIND',
  'FOO',
  'get',
  'P UT',
  'G'.repeat(100),
  '',
]

/** null keeps the route's own method. */
const method = pick(
  { weight: 24, arbitrary: fc.constant<string | null>(null) },
  { weight: 1, arbitrary: fc.constantFrom<string | null>(...METHODS) },
)
const version = pick(
  { weight: 40, arbitrary: fc.constant('HTTP/1.1') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'HTTP/1.0',
      'HTTP/0.9',
      'HTTP/2.0',
      'HTTP/1.1x',
      'http/1.1',
      'HTTP/1.10',
      '',
    ),
  },
)

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
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(4000, 8000, 16_000, 17_000, 70_000)
      .map((bytes): HeaderBend => ({ kind: 'huge', bytes })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(60, 101, 2000, 5000)
      .map((count): HeaderBend => ({ kind: 'many', count })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('Bad Header', 'X-\u0000', ':', '', 'X(Y)', '\u00e9')
      .map((name): HeaderBend => ({ kind: 'bad-name', name })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('a\u0000b', 'a\rb', '\u00ff\u00fe', ' ', 'a\u0007')
      .map((value): HeaderBend => ({ kind: 'bad-value', value })),
  },
  { weight: 1, arbitrary: fc.constant<HeaderBend>({ kind: 'fold' }) },
  { weight: 1, arbitrary: fc.constant<HeaderBend>({ kind: 'lf-only' }) },
  { weight: 2, arbitrary: fc.constant<HeaderBend>({ kind: 'expect' }) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('missing', 'twice', 'garbage')
      .map((how): HeaderBend => ({ kind: 'host', how: how as 'missing' | 'twice' | 'garbage' })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('close', 'keep-alive', 'upgrade', 'Upgrade, close', 'garbage')
      .map((value): HeaderBend => ({ kind: 'connection', value })),
  },
)

type Framing =
  | { kind: 'length' }
  | { kind: 'length-off'; delta: number }
  | { kind: 'length-value'; value: string }
  | { kind: 'length-twice'; delta: number }
  | {
      kind: 'chunked'
      pieces: number
      upper: boolean
      ext: boolean
      bad: 'none' | 'garbage' | 'negative' | 'short' | 'long' | 'huge' | 'no-crlf'
      terminate: boolean
      trailer: boolean
    }
  | { kind: 'chunked-and-length' }
  | { kind: 'te-value'; value: string }
  | { kind: 'unframed' }

const framing: fc.Arbitrary<Framing> = pick(
  { weight: 40, arbitrary: fc.constant<Framing>({ kind: 'length' }) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(-2, -1, 1, 2)
      .map((delta): Framing => ({ kind: 'length-off', delta })),
  },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        '-1',
        'abc',
        '1e3',
        '0x10',
        ' 5',
        '+5',
        '5 5',
        '',
        '99999999999999999999',
        '18446744073709551616',
        '9007199254740993',
        '4294967296',
        '1,1',
        '\u00b9',
        '0',
      )
      .map((value): Framing => ({ kind: 'length-value', value })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(0, 0, 1, -1)
      .map((delta): Framing => ({ kind: 'length-twice', delta })),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({
        pieces: fc.integer({ min: 1, max: 5 }),
        upper: fc.boolean(),
        ext: fc.boolean(),
        bad: fc.constantFrom(
          'none',
          'none',
          'none',
          'none',
          'garbage',
          'negative',
          'short',
          'long',
          'huge',
          'no-crlf',
        ),
        terminate: pick(
          { weight: 5, arbitrary: fc.constant(true) },
          { weight: 1, arbitrary: fc.constant(false) },
        ),
        trailer: fc.boolean(),
      })
      .map((c): Framing => ({ kind: 'chunked', ...c }) as Framing),
  },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: 'chunked-and-length' }) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        'gzip',
        'chunked, gzip',
        'gzip, chunked',
        'identity',
        'Chunked',
        'chunked ',
        'xchunked',
        'chunked, chunked',
      )
      .map((value): Framing => ({ kind: 'te-value', value })),
  },
  { weight: 1, arbitrary: fc.constant<Framing>({ kind: 'unframed' }) },
)

type Stage = 'request-line' | 'headers' | 'body' | 'part-header' | 'mid-part' | 'before-closing'
/**
 * Where the bytes stop: on the wire (then FIN or reset), or inside the body (then re-framed, so the
 * request is whole).
 */
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
      stage: fc.constantFrom<Stage>(
        'request-line',
        'headers',
        'body',
        'part-header',
        'mid-part',
        'before-closing',
        'before-closing',
      ),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      ending: fc.constantFrom<Cut['ending']>('half-close', 'half-close', 'reset'),
    }),
  },
)

const spread = (from: number, to: number, at: number) =>
  from + Math.floor(Math.max(0, to - from) * at)

/** Where in the body a cut at `stage` lands (byte offset). */
function bodyCutAt(b: Body, stage: Stage, at: number): number {
  const n = b.bytes.length
  const { partHeader, partData, closing } = b.marks
  switch (stage) {
    case 'part-header':
      return partHeader !== undefined && partData !== undefined
        ? spread(partHeader, partData, at)
        : spread(0, n, at)
    case 'mid-part':
      return partData !== undefined && closing !== undefined
        ? spread(partData, closing, at)
        : spread(0, n, at)
    case 'before-closing':
      return closing !== undefined ? closing : n
    default:
      return spread(0, n, at)
  }
}

function chunkedBytes(
  body: Buffer,
  f: Extract<Framing, { kind: 'chunked' }>,
): { bytes: Buffer; whole: boolean } {
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
      size = {
        garbage: 'zz',
        negative: '-1',
        short: Math.max(0, piece.length - 1).toString(16),
        long: (piece.length + 16).toString(16),
        huge: 'ffffffffffffffffff',
        'no-crlf': size,
      }[f.bad]
    }
    out.push(
      latin1(`${size}${f.ext ? ';name=value' : ''}${f.bad === 'no-crlf' && i === 0 ? '' : '\r\n'}`),
      piece,
      latin1('\r\n'),
    )
  }
  if (f.terminate) out.push(latin1(f.trailer ? '0\r\nX-Trailer: t\r\n\r\n' : '0\r\n\r\n'))
  return { bytes: Buffer.concat(out), whole }
}

/** Serialises a draft with its bends into the bytes of one request. */
function serialise(
  d: Draft,
  m: string,
  v: string,
  hb: HeaderBend,
  fr: Framing,
  c: Cut | null,
): FuzzCase {
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
      headers.push(
        ['Content-Length', String(payload.length)],
        ['Content-Length', String(Math.max(0, payload.length + fr.delta))],
      )
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
      hostHeaders =
        hb.how === 'missing'
          ? []
          : hb.how === 'twice'
            ? [
                ['Host', '127.0.0.1'],
                ['Host', 'evil.example'],
              ]
            : [['Host', 'a b/\u00ff']]
      break
    case 'connection':
      all.push(['Connection', hb.value])
      if (hb.value.toLowerCase().includes('upgrade')) all.push(['Upgrade', 'websocket'])
      break
  }
  if (
    hb.kind === 'connection' &&
    hb.value.toLowerCase().includes('upgrade') &&
    fr.kind === 'chunked' &&
    fr.bad !== 'none'
  ) {
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
  const lines = [
    `${m} ${d.target} ${v}`,
    ...[...hostHeaders, ...all].map(([k, val]) => `${k}: ${val}`),
  ]
  const requestLine = Buffer.from(lines[0]!, 'utf8')
  // Header values travel as latin1 (a JS char per byte); the target as UTF-8, as a browser would
  // send it.
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
    notes.push(
      `wire cut at ${at} of ${head.length + payload.length} (${c.stage}), then ${c.ending}`,
    )
  }
  return { route: d.route, family: d.family, bytes, ending, notes }
}

/** Requests against every route of every family, bent every which way. */
export function fuzzCase(creds: Credentials): fc.Arbitrary<FuzzCase> {
  return fc
    .tuple(fc.oneof(...routes(creds)), method, version, headerBend, framing, cut)
    .map(([d, m, v, hb, fr, c]) => {
      const mm = m ?? d.method
      const base = serialise(d, mm, v, hb, fr, c)
      if (d.setup === undefined && d.expect === undefined) return base
      const untouched =
        mm === d.method &&
        v === 'HTTP/1.1' &&
        hb.kind === 'none' &&
        fr.kind === 'length' &&
        c === null
      return {
        ...base,
        ...(d.setup !== undefined ? { setup: d.setup } : {}),
        ...(d.expect !== undefined && untouched ? { expect: d.expect } : {}),
        // The pauses fall in the body: the head is what precedes the blank line.
        ...(d.slow !== undefined
          ? { slow: { ...d.slow, headBytes: base.bytes.indexOf('\r\n\r\n') + 4 } }
          : {}),
        render: (vars: Readonly<Record<string, string>>) =>
          serialise(fillDraft(d, vars), mm, v, hb, fr, c).bytes,
      }
    })
}

function fillDraft(d: Draft, vars: Readonly<Record<string, string>>): Draft {
  const f = (s: string) => fillPlaceholders(s, vars)
  return {
    ...d,
    target: f(d.target),
    headers: d.headers.map(([k, v]): Header => [k, f(v)]),
    body: { ...d.body, bytes: latin1(f(d.body.bytes.toString('latin1'))) },
  }
}

/** All route names the generator can pick (for coverage reporting). */
export function routeNames(creds: Credentials): string[] {
  const names = new Set<string>()
  const sample = fc.sample(fuzzCase(creds), { numRuns: 4000, seed: 1 })
  for (const c of sample) names.add(c.route)
  return [...names].sort()
}

// ---- resumable routes: tus 1.0, the IETF draft, lakeFS presigned multipart ----------------------

const TUS_R: Header = ['Tus-Resumable', '1.0.0']
const OFFSET_CT: Header = ['Content-Type', 'application/offset+octet-stream']
const PARTIAL_CT: Header = ['Content-Type', 'application/partial-upload']
/** An id no upload has (22 base64url characters, as Ferry's ids). */
const NO_SUCH_ID = 'AAAAAAAAAAAAAAAAAAAAAA'
const b64 = (s: string) => Buffer.from(s).toString('base64')

const rawBody = (
  bytes: Buffer,
  ct: string | null = null,
  note = `raw ${bytes.length} bytes`,
): Body => ({ bytes, contentType: ct, marks: {}, notes: [note] })

function step(
  name: string,
  capture: SetupStep['capture'],
  method: string,
  target: string,
  headers: readonly Header[],
  body: Buffer = Buffer.alloc(0),
): SetupStep {
  return { name, capture, method, target, headers, body }
}

/** A tus creation (with `first` bytes already sent when given). */
function tusCreate(
  name: string,
  length: number | 'defer',
  first: Buffer | null = null,
  concat: string | null = null,
): SetupStep {
  const h: Header[] = [
    TUS_R,
    length === 'defer' ? ['Upload-Defer-Length', '1'] : ['Upload-Length', String(length)],
  ]
  if (concat !== null) h.push(['Upload-Concat', concat])
  if (first !== null) h.push(OFFSET_CT)
  return step(name, 'location', 'POST', '/files/', h, first ?? Buffer.alloc(0))
}

function ietfCreate(name: string, version: 6 | 8, first: Buffer, complete: boolean): SetupStep {
  return step(
    name,
    'location',
    'POST',
    '/files/',
    [
      ['Upload-Draft-Interop-Version', String(version)],
      ['Upload-Complete', complete ? '?1' : '?0'],
    ],
    first,
  )
}

const digest = (alg: string, b: Buffer) => createHash(alg).update(b).digest('base64')

/** What a tus upload looks like before the fuzzed request: its setup, length and offset. */
interface TusState {
  readonly kind: 'open' | 'defer' | 'final' | 'terminated' | 'ietf' | 'finished' | 'unknown'
  readonly setup: readonly SetupStep[]
  readonly length: number
  readonly offset: number
  readonly target: string
}

const tusState: fc.Arbitrary<TusState> = fc
  .tuple(
    fc.constantFrom<TusState['kind']>(
      'open',
      'open',
      'open',
      'open',
      'defer',
      'final',
      'terminated',
      'ietf',
      'finished',
      'unknown',
    ),
    fc.integer({ min: 1, max: 3000 }),
    fc.double({ min: 0, max: 1, noNaN: true }),
  )
  .map(([kind, length, at]): TusState => {
    const offset = kind === 'finished' ? length : Math.floor(length * at * 0.9)
    const first = offset > 0 ? Buffer.alloc(offset, 0x62) : null
    switch (kind) {
      case 'open':
        return { kind, setup: [tusCreate('U', length, first)], length, offset, target: '{{U}}' }
      case 'finished':
        return {
          kind,
          setup: [tusCreate('U', length, Buffer.alloc(length, 0x63))],
          length,
          offset,
          target: '{{U}}',
        }
      case 'defer':
        return { kind, setup: [tusCreate('U', 'defer', first)], length, offset, target: '{{U}}' }
      case 'final':
        return {
          kind,
          setup: [
            tusCreate('A', length, Buffer.alloc(length, 0x64), 'partial'),
            tusCreate('U', length, null, 'final;{{A}}'),
          ].map((s) =>
            s.name === 'U'
              ? { ...s, headers: s.headers.filter(([k]) => k !== 'Upload-Length') }
              : s,
          ),
          length,
          offset: length,
          target: '{{U}}',
        }
      case 'terminated':
        return {
          kind,
          setup: [tusCreate('U', length, first), step('D', 'none', 'DELETE', '{{U}}', [TUS_R])],
          length,
          offset,
          target: '{{U}}',
        }
      case 'ietf':
        return {
          kind,
          setup: [ietfCreate('U', offset % 2 === 0 ? 8 : 6, first ?? Buffer.alloc(0), false)],
          length,
          offset,
          target: '{{U}}',
        }
      default:
        return { kind, setup: [], length, offset, target: `/files/${NO_SUCH_ID}` }
    }
  })

/** Now and then a slow client: the body in a few pieces with pauses (the lock stays held). */
const slowBody = pick(
  { weight: 6, arbitrary: fc.constant<{ pieces: number; pauseMs: number } | null>(null) },
  {
    weight: 1,
    arbitrary: fc.record({
      pieces: fc.integer({ min: 2, max: 4 }),
      pauseMs: fc.constantFrom(20, 100, 300, 600),
    }),
  },
)

type PatchBend =
  | 'ok'
  | 'offset+1'
  | 'offset-1'
  | 'offset-0'
  | 'offset-garbage'
  | 'offset-dup'
  | 'no-offset'
  | 'ct-missing'
  | 'ct-wrong'
  | 'tus-missing'
  | 'tus-old'
  | 'sum-ok'
  | 'sum-bad'
  | 'sum-unknown'
  | 'sum-garbage'
  | 'past-length'
  | 'override'
  | 'defer-length'
  | 'defer-garbage'

const OFFSET_GARBAGE = [
  '-1',
  'abc',
  '1e2',
  '',
  ' 0x0',
  '99999999999999999999',
  '9007199254740993',
  '+0',
  '0.0',
  '00000000000000000000000001',
]

/** tus PATCH: a valid upload in some state, then one bend; the tus statuses for what it is. */
const tusPatch: fc.Arbitrary<Draft> = fc
  .tuple(
    tusState,
    fc.constantFrom<PatchBend>(
      'ok',
      'ok',
      'ok',
      'offset+1',
      'offset-1',
      'offset-0',
      'offset-garbage',
      'offset-dup',
      'no-offset',
      'ct-missing',
      'ct-wrong',
      'tus-missing',
      'tus-old',
      'sum-ok',
      'sum-ok',
      'sum-bad',
      'sum-unknown',
      'sum-garbage',
      'past-length',
      'override',
      'defer-length',
      'defer-garbage',
    ),
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.constantFrom('sha1', 'md5', 'sha256', 'sha512'),
    fc.constantFrom(...OFFSET_GARBAGE),
    slowBody,
  )
  .map(([st, bend, frac, alg, garbage, slow]): Draft => {
    const room = st.length - st.offset
    const n = bend === 'past-length' ? room + 1 + Math.floor(frac * 10) : Math.floor(room * frac)
    const data = Buffer.alloc(Math.max(0, n), 0x65)
    const offset =
      bend === 'offset+1'
        ? st.offset + 1
        : bend === 'offset-1'
          ? st.offset - 1
          : bend === 'offset-0'
            ? st.offset > 0
              ? 0
              : 1
            : st.offset
    const h: Header[] = []
    if (bend !== 'tus-missing') h.push(bend === 'tus-old' ? ['Tus-Resumable', '0.2.2'] : TUS_R)
    if (bend === 'offset-garbage') h.push(['Upload-Offset', garbage])
    else if (bend === 'offset-dup')
      h.push(['Upload-Offset', String(offset)], ['Upload-Offset', String(offset)])
    else if (bend !== 'no-offset') h.push(['Upload-Offset', String(offset)])
    if (bend === 'ct-wrong') h.push(['Content-Type', 'application/octet-stream'])
    else if (bend !== 'ct-missing') h.push(OFFSET_CT)
    if (bend === 'sum-ok') h.push(['Upload-Checksum', `${alg} ${digest(alg, data)}`])
    if (bend === 'sum-bad')
      h.push(['Upload-Checksum', `${alg} ${digest(alg, Buffer.concat([data, enc('x')]))}`])
    if (bend === 'sum-unknown') h.push(['Upload-Checksum', `crc99 ${b64('x')}`])
    if (bend === 'sum-garbage') h.push(['Upload-Checksum', `${alg} !!!`])
    if (bend === 'defer-length') h.push(['Upload-Length', String(st.length)])
    if (bend === 'defer-garbage') h.push(['Upload-Length', garbage === '' ? '-5' : garbage])
    if (bend === 'override') h.push(['X-HTTP-Method-Override', 'PATCH'])
    // The statuses the tus text (and Ferry's README table) give, in the order Ferry checks.
    let expect: number[]
    if (bend === 'tus-missing' || bend === 'tus-old') expect = [412]
    else if (['unknown', 'terminated', 'ietf', 'final'].includes(st.kind)) {
      const state = { unknown: [404], terminated: [404, 410], ietf: [409, 400, 415], final: [403] }[
        st.kind as 'unknown'
      ]
      // Neither text orders the upload's state against a bad header: either refusal is right.
      expect =
        bend === 'ok' || bend === 'override' || bend === 'sum-ok'
          ? state
          : [...state, 400, 409, 413, 415, 460]
    } else if (bend === 'ct-missing' || bend === 'ct-wrong') expect = [415]
    else if (bend === 'offset-garbage' || bend === 'offset-dup' || bend === 'no-offset')
      expect = [400]
    else if (offset < 0) expect = [400]
    else if (bend === 'offset+1' || bend === 'offset-1' || bend === 'offset-0') expect = [409]
    else if (bend === 'sum-unknown' || bend === 'sum-garbage') expect = [400]
    else if (st.kind === 'finished')
      expect =
        bend === 'defer-garbage' || bend === 'defer-length'
          ? [204, 400, 409]
          : data.length === 0 && bend !== 'sum-bad'
            ? [204]
            : bend === 'sum-bad'
              ? [409, 460]
              : [409, 413]
    else if (bend === 'sum-bad') expect = [460]
    else if (bend === 'defer-garbage') expect = st.kind === 'defer' ? [400] : [204, 400]
    else if (bend === 'defer-length')
      expect =
        st.kind === 'defer'
          ? st.length < st.offset + data.length
            ? [400, 413]
            : [204]
          : [204, 400]
    else if (bend === 'past-length') expect = st.kind === 'defer' ? [204] : [413]
    else expect = [204]
    return {
      family: 'tus',
      route: `tus PATCH {id} (${st.kind})`,
      method: bend === 'override' ? 'POST' : 'PATCH',
      target: st.target,
      headers: h,
      body: rawBody(
        data,
        null,
        `${bend}: ${data.length} bytes at ${offset} of ${st.length} (${st.kind})`,
      ),
      setup: st.setup,
      expect,
      ...(slow !== null ? { slow } : {}),
    }
  })

type CreateBend =
  | 'ok'
  | 'with-body'
  | 'length-garbage'
  | 'length-huge'
  | 'defer'
  | 'defer-garbage'
  | 'both'
  | 'neither'
  | 'meta-ok'
  | 'meta-bad'
  | 'tus-missing'
  | 'tus-dup'
  | 'length-dup'
  | 'partial'
  | 'final-ok'
  | 'final-open'
  | 'final-bogus'
  | 'final-not-partial'
  | 'body-past'
  | 'body-ct'

const META_BAD = [
  'filename !!!',
  'a b c',
  'k aGVsbG8=,k aGVsbG8=',
  'k a',
  ',',
  'k\u00ff dGVzdA==',
  'filename aGVsbG8=,',
  'k dGVz\u0000dA==',
]
const FINAL_BOGUS = [
  'final;',
  'final',
  'final;/files/',
  `final;/files/${NO_SUCH_ID}`,
  'final;http://evil.example/files/x',
  'final;/files/../files/x',
  'final;{{A}} {{A}}x',
  'final;/ImageStore/x',
  'final;;;',
  'partial;x',
  'Partial',
  `final;${'/files/a '.repeat(2000)}`,
]

/** tus POST /files/: creation and its extensions, each with one bend. */
const tusCreation: fc.Arbitrary<Draft> = fc
  .tuple(
    fc.constantFrom<CreateBend>(
      'ok',
      'ok',
      'with-body',
      'with-body',
      'length-garbage',
      'length-huge',
      'defer',
      'defer-garbage',
      'both',
      'neither',
      'meta-ok',
      'meta-bad',
      'meta-bad',
      'tus-missing',
      'tus-dup',
      'length-dup',
      'partial',
      'final-ok',
      'final-open',
      'final-bogus',
      'final-not-partial',
      'body-past',
      'body-ct',
    ),
    fc.integer({ min: 0, max: 3000 }),
    fc.constantFrom(...OFFSET_GARBAGE),
    fc.constantFrom(...META_BAD),
    fc.constantFrom(...FINAL_BOGUS),
  )
  .map(([bend, length, garbage, meta, bogus]): Draft => {
    const h: Header[] = []
    let setup: SetupStep[] = []
    let body = NO_BODY
    let expect: number[] = [201]
    if (bend === 'tus-missing') expect = [412]
    else h.push(bend === 'tus-dup' ? ['Tus-Resumable', '1.0.0, 1.0.0'] : TUS_R)
    if (bend === 'tus-dup') expect = [412]
    const withLength = ![
      'defer',
      'defer-garbage',
      'neither',
      'final-ok',
      'final-open',
      'final-bogus',
      'final-not-partial',
    ].includes(bend)
    if (withLength) {
      if (bend === 'length-garbage') {
        h.push(['Upload-Length', garbage])
        expect = /^\d+$/.test(garbage) && garbage.length < 16 ? [201] : [400, 413]
      } else if (bend === 'length-huge') {
        h.push(['Upload-Length', String(FUZZ_MAX_UPLOAD_BYTES * 2 ** 20)])
        expect = [201, 413]
      } else if (bend === 'length-dup') {
        h.push(['Upload-Length', String(length)], ['Upload-Length', String(length)])
        expect = [400]
      } else h.push(['Upload-Length', String(length)])
    }
    if (bend === 'defer') h.push(['Upload-Defer-Length', '1'])
    if (bend === 'defer-garbage') {
      h.push(['Upload-Defer-Length', garbage === '' ? '0' : garbage])
      expect = [400]
    }
    if (bend === 'both') {
      h.push(['Upload-Defer-Length', '1'])
      expect = [400]
    }
    if (bend === 'neither') expect = [400]
    if (bend === 'meta-ok')
      h.push([
        'Upload-Metadata',
        `filename ${b64('a.bin')},filetype ${b64('application/octet-stream')},empty`,
      ])
    if (bend === 'meta-bad') {
      h.push(['Upload-Metadata', meta])
      expect = [400]
    }
    if (bend === 'partial') h.push(['Upload-Concat', 'partial'])
    if (bend === 'final-ok') {
      setup = [tusCreate('A', 3, enc('abc'), 'partial'), tusCreate('B', 2, enc('de'), 'partial')]
      h.push(['Upload-Concat', 'final;{{A}} {{B}}'])
    }
    if (bend === 'final-open') {
      setup = [tusCreate('A', 3, enc('abc'), 'partial'), tusCreate('B', 5, enc('de'), 'partial')]
      h.push(['Upload-Concat', 'final;{{A}} {{B}}'])
      expect = [400]
    }
    if (bend === 'final-not-partial') {
      setup = [tusCreate('A', 3, enc('abc'))]
      h.push(['Upload-Concat', 'final;{{A}}'])
      expect = [400]
    }
    if (bend === 'final-bogus') {
      setup = [tusCreate('A', 3, enc('abc'), 'partial')]
      h.push(['Upload-Concat', bogus])
      // The longest reference list is over the header limit: 431 before any parsing.
      expect = [400, 404, 431]
    }
    if (bend === 'with-body' || bend === 'body-past' || bend === 'body-ct') {
      const n = bend === 'body-past' ? length + 1 : Math.floor(length / 2)
      body = rawBody(
        Buffer.alloc(n, 0x66),
        bend === 'body-ct' ? 'text/plain' : 'application/offset+octet-stream',
      )
      // Ferry answers a creation whose first chunk failed 201 with the offset it kept, so the
      // client learns the Location (tus-js-client reads it from a 201 only); 413 is tusd's answer.
      if (bend === 'body-past') expect = [201, 413, 400]
      // creation-with-upload needs the offset+octet-stream type: other bodies are refused or
      // ignored.
      if (bend === 'body-ct') expect = [201, 400, 415]
    }
    if (body.contentType !== null) h.push(['Content-Type', body.contentType])
    return {
      family: 'tus',
      route: 'tus POST /files/ create',
      method: 'POST',
      target: '/files/',
      headers: h,
      body: { ...body, notes: [`creation ${bend}`] },
      setup,
      expect,
    }
  })

/** HEAD, DELETE, GET of a tus upload in some state (and the method override for DELETE). */
const tusOther: fc.Arbitrary<Draft> = fc
  .tuple(
    tusState,
    fc.constantFrom('HEAD', 'HEAD', 'DELETE', 'DELETE-override', 'GET', 'GET', 'HEAD-no-tus'),
    fc.constantFrom<string | null>(
      null,
      null,
      'bytes=0-0',
      'bytes=1-',
      'bytes=-1',
      'bytes=5-1',
      'bytes=99999999-',
      'bytes=abc',
      'bytes=0-0,2-3',
      'items=0-1',
    ),
  )
  .map(([st, how, range]): Draft => {
    const m = how === 'DELETE-override' ? 'POST' : how.startsWith('HEAD') ? 'HEAD' : how
    const h: Header[] = how === 'HEAD-no-tus' || how === 'GET' ? [] : [TUS_R]
    if (how === 'DELETE-override') h.push(['X-HTTP-Method-Override', 'DELETE'])
    if (how === 'GET' && range !== null) h.push(['Range', range])
    const gone = st.kind === 'terminated' ? [404, 410] : st.kind === 'unknown' ? [404] : null
    let expect: number[]
    if (how === 'HEAD-no-tus') expect = [412]
    else if (gone !== null) expect = gone
    else if (how === 'HEAD') expect = st.kind === 'ietf' ? [200, 204, 409] : [200]
    else if (how === 'GET') {
      const done = st.kind === 'finished' || st.kind === 'final'
      if (!done) expect = [409]
      else if (range === null) expect = [200]
      else if (/^bytes=(0-0|1-|-1)$/.test(range))
        expect = st.length > 1 || range === 'bytes=0-0' || range === 'bytes=-1' ? [206] : [206, 416]
      else if (range === 'bytes=99999999-') expect = [416]
      // Malformed or multi ranges: RFC 9110 lets a server ignore the header (200) or refuse it.
      else expect = [200, 206, 416]
    } else expect = st.kind === 'ietf' ? [204, 409] : [204]
    return {
      family: 'tus',
      route: `tus ${how} {id}`,
      method: m,
      target: st.target,
      headers: h,
      body: NO_BODY,
      setup: st.setup,
      expect,
    }
  })

/** OPTIONS on the endpoint: discovery (tus, IETF) and CORS preflights. */
const tusOptions: fc.Arbitrary<Draft> = fc
  .constantFrom<[string, Header[], number[]]>(
    ['discovery', [TUS_R], [204]],
    ['discovery without Tus-Resumable', [], [204]],
    ['ietf discovery', [['Upload-Draft-Interop-Version', '8']], [204]],
    [
      'preflight',
      [
        ['Origin', 'https://app.example'],
        ['Access-Control-Request-Method', 'PATCH'],
        [
          'Access-Control-Request-Headers',
          'tus-resumable,upload-offset,content-type,upload-checksum',
        ],
      ],
      [204],
    ],
    [
      'preflight odd method',
      [
        ['Origin', 'https://app.example'],
        ['Access-Control-Request-Method', 'TRACE'],
      ],
      [204, 400, 403, 405],
    ],
    [
      'preflight null origin',
      [
        ['Origin', 'null'],
        ['Access-Control-Request-Method', 'POST'],
      ],
      [204, 403],
    ],
    [
      'preflight on an id',
      [
        ['Origin', 'https://app.example'],
        ['Access-Control-Request-Method', 'DELETE'],
      ],
      [204],
    ],
    ['garbage Tus-Resumable', [['Tus-Resumable', 'x']], [204, 412]],
  )
  .map(
    ([what, h, expect]): Draft => ({
      family: 'tus',
      route: 'tus OPTIONS',
      method: 'OPTIONS',
      target: what === 'preflight on an id' ? `/files/${NO_SUCH_ID}` : '/files/',
      headers: h,
      body: rawBody(Buffer.alloc(0), null, what),
      expect,
    }),
  )

/** IETF creation: interop 6 and 8 (and ones Ferry does not speak), Upload-Complete, a body. */
const ietfCreation: fc.Arbitrary<Draft> = fc
  .tuple(
    fc.constantFrom('8', '8', '6', '6', '5', '7', 'abc', '8, 8', '-1', ''),
    fc.constantFrom('?1', '?0', '?1', '?0', '?2', '1', 'true', '', null),
    fc.integer({ min: 0, max: 3000 }),
    fc.constantFrom<string | null>(null, null, 'exact', 'less', 'more', 'garbage'),
  )
  .map(([v, complete, n, len]): Draft => {
    const h: Header[] = [['Upload-Draft-Interop-Version', v]]
    if (complete !== null) h.push(['Upload-Complete', complete])
    if (len !== null)
      h.push([
        'Upload-Length',
        len === 'exact'
          ? String(n)
          : len === 'less'
            ? String(Math.max(0, n - 1))
            : len === 'more'
              ? String(n + 1)
              : 'x',
      ])
    const body = rawBody(
      Buffer.alloc(n, 0x67),
      null,
      `ietf create v=${v} complete=${complete} length=${len}`,
    )
    let expect: number[]
    if (v !== '8' && v !== '6') expect = [400]
    else if (complete === null || !['?1', '?0'].includes(complete)) expect = [400]
    else if (len === 'garbage') expect = [400]
    else if (len === 'less' && n > 0) expect = [400, 413]
    else if (len === 'less' || (len === 'more' && complete === '?1')) expect = [400]
    else expect = [201]
    return {
      family: 'tus',
      route: 'ietf POST /files/ create',
      method: 'POST',
      target: '/files/',
      headers: h,
      body,
      expect,
    }
  })

/** IETF append: PATCH application/partial-upload to an upload made by either version. */
const ietfPatch: fc.Arbitrary<Draft> = fc
  .tuple(
    fc.constantFrom<6 | 8>(6, 8),
    fc.integer({ min: 0, max: 2000 }),
    fc.constantFrom(
      'ok',
      'ok',
      'ok',
      'offset+1',
      'offset-1',
      'offset-garbage',
      'other-version',
      'bad-version',
      'no-complete',
      'ct-missing',
      'ct-wrong',
      'tus-on-ietf',
      'head',
      'delete',
      'unknown',
    ),
    fc.constantFrom('?0', '?1'),
    fc.integer({ min: 0, max: 2000 }),
    slowBody,
  )
  .map(([ver, first, bend, complete, n, slow]): Draft => {
    const setup = bend === 'unknown' ? [] : [ietfCreate('U', ver, Buffer.alloc(first, 0x68), false)]
    const target = bend === 'unknown' ? `/files/${NO_SUCH_ID}` : '{{U}}'
    const other = ver === 6 ? '8' : '6'
    const h: Header[] = []
    if (bend === 'tus-on-ietf') h.push(TUS_R)
    else
      h.push([
        'Upload-Draft-Interop-Version',
        bend === 'other-version' ? other : bend === 'bad-version' ? '7' : String(ver),
      ])
    if (bend === 'head' || bend === 'delete') {
      return {
        family: 'tus',
        route: `ietf ${bend.toUpperCase()} {id}`,
        method: bend.toUpperCase(),
        target,
        headers: h,
        body: NO_BODY,
        setup,
        expect: [204],
      }
    }
    const offset = bend === 'offset+1' ? first + 1 : bend === 'offset-1' ? first - 1 : first
    h.push(bend === 'offset-garbage' ? ['Upload-Offset', '-1'] : ['Upload-Offset', String(offset)])
    if (bend !== 'no-complete') h.push(['Upload-Complete', complete])
    if (bend === 'ct-wrong') h.push(['Content-Type', 'application/octet-stream'])
    else if (bend !== 'ct-missing') h.push(bend === 'tus-on-ietf' ? OFFSET_CT : PARTIAL_CT)
    let expect: number[]
    if (bend === 'unknown') expect = [404]
    else if (bend === 'bad-version' || bend === 'offset-garbage' || bend === 'no-complete')
      expect = [400]
    else if (bend === 'other-version' || bend === 'tus-on-ietf') expect = [400, 409]
    else if (bend === 'offset+1' || (bend === 'offset-1' && first > 0)) expect = [409]
    else if (bend === 'offset-1') expect = [400, 409]
    // The draft's PATCH carries application/partial-upload (-11); interop 6 did not name one.
    else if (bend === 'ct-missing' || bend === 'ct-wrong')
      expect = ver === 8 ? [415] : [200, 204, 415]
    else expect = complete === '?1' ? [200, 204] : [204]
    return {
      family: 'tus',
      route: 'ietf PATCH {id}',
      method: 'PATCH',
      target,
      headers: h,
      body: rawBody(
        Buffer.alloc(n, 0x69),
        null,
        `ietf ${bend} v${ver} ${n} bytes at ${offset} (has ${first})`,
      ),
      setup,
      expect,
      ...(slow !== null ? { slow } : {}),
    }
  })

/** lakeFS presigned multipart: create, parts, fresh URL, complete, abort (valid credentials). */
function multipartRoutes(creds: Credentials): fc.Arbitrary<Draft>[] {
  const auth: Header = ['Authorization', creds.lakefsValid[0]!]
  const json: Header = ['Content-Type', 'application/json']
  const base = '/api/v1/repositories/repo1/branches/main/staging/pmpu'
  const create = (name: string, path: string, parts: number) =>
    step(name, 'pmpu', 'POST', `${base}?path=${path}&parts=${parts}`, [auth])
  const part = (name: string, m: string, n: number, data: Buffer) =>
    step(name, 'etag', 'PUT', `{{${m}.p${n}}}`, [], data)
  const objPath = fc.integer({ min: 0, max: 1e9 }).map((i) => `fuzz%2Fmp${i}`)
  const jsonOf = (o: unknown, note: string): Body => ({
    bytes: enc(JSON.stringify(o)),
    contentType: 'application/json',
    marks: {},
    notes: [note],
  })

  const createRoute = fc
    .tuple(
      objPath,
      fc.constantFrom(
        '0',
        '1',
        '3',
        '3',
        '10000',
        '10001',
        '-1',
        'abc',
        '1.5',
        '',
        '1e3',
        '99999999999999999999',
        null,
      ),
      fc.constantFrom('ok', 'ok', 'ok', 'no-path', 'bad-path', 'repo'),
    )
    .map(([p, parts, how]): Draft => {
      const q = [
        how === 'no-path' ? null : `path=${how === 'bad-path' ? 'a%2F..%2Fb' : p}`,
        parts === null ? null : `parts=${parts}`,
      ]
        .filter((x) => x !== null)
        .join('&')
      const b = how === 'repo' ? base.replace('repo1', 'nope') : base
      const okParts = parts === null || ['0', '1', '3', '10000'].includes(parts)
      const expect = how === 'repo' ? [404] : how !== 'ok' || !okParts ? [400] : [201]
      return {
        family: 'lakefs',
        route: 'lakefs POST staging/pmpu',
        method: 'POST',
        target: `${b}?${q}`,
        headers: [auth],
        body: rawBody(Buffer.alloc(0), null, `pmpu create parts=${parts} ${how}`),
        expect,
      }
    })

  const partRoute = fc
    .tuple(
      objPath,
      fc.constantFrom(
        'p1',
        'p1',
        'p1',
        'p3',
        'p1sig',
        'p1exp',
        'p1nosig',
        'p1part',
        'p1upid',
        'p1part0',
        'p1part10001',
        'p1partabc',
      ),
      smallBytes,
      fc.constantFrom('none', 'none', 'md5-ok', 'md5-bad', 'md5-garbage'),
      fc.boolean(),
      slowBody,
    )
    .map(([p, which, data, md5, aborted, slow]): Draft => {
      const setup = [
        create('M', p, 3),
        ...(aborted
          ? [
              step(
                'X',
                'none',
                'DELETE',
                `${base}/{{M.id}}?path=${p}`,
                [auth, json],
                enc('{"physical_address":"{{M.addr}}"}'),
              ),
            ]
          : []),
      ]
      const h: Header[] = []
      if (md5 === 'md5-ok') h.push(['Content-MD5', digest('md5', data)])
      if (md5 === 'md5-bad') h.push(['Content-MD5', digest('md5', Buffer.concat([data, enc('x')]))])
      if (md5 === 'md5-garbage') h.push(['Content-MD5', '!!'])
      let expect: number[]
      if (['p1part0', 'p1part10001', 'p1partabc'].includes(which)) expect = [400]
      else if (which !== 'p1' && which !== 'p3') expect = [403]
      else if (aborted) expect = [404]
      else if (md5 === 'md5-bad' || md5 === 'md5-garbage') expect = [400]
      else expect = [200]
      return {
        family: 'lakefs',
        route: 'lakefs PUT pmpu part',
        method: 'PUT',
        target: `{{M.${which}}}`,
        headers: h,
        body: rawBody(
          data,
          'application/octet-stream',
          `part ${which} ${data.length} bytes md5=${md5} aborted=${aborted}`,
        ),
        setup,
        expect,
        ...(slow !== null ? { slow } : {}),
      }
    })

  const completeRoute = fc
    .tuple(
      objPath,
      fc.constantFrom(
        'one',
        'one',
        'in-order-small',
        'out-of-order',
        'duplicate',
        'unknown-part',
        'wrong-etag',
        'empty',
        'absurd',
        'zero',
        'fraction',
        'string-number',
        'missing-part',
        'wrong-id',
        'wrong-addr',
        'wrong-path',
        'aborted',
        'twice',
        'huge-list',
      ),
      smallBytes,
      smallBytes,
    )
    .map(([p, how, d1, d2]): Draft => {
      const setup: SetupStep[] = [create('M', p, 2), part('E1', 'M', 1, d1)]
      if (how !== 'one' && how !== 'missing-part') setup.push(part('E2', 'M', 2, d2))
      if (how === 'aborted')
        setup.push(
          step(
            'X',
            'none',
            'DELETE',
            `${base}/{{M.id}}?path=${p}`,
            [auth, json],
            enc('{"physical_address":"{{M.addr}}"}'),
          ),
        )
      const e = (n: 1 | 2) => `"{{E${n}}}"`
      const parts: unknown[] = {
        one: [{ part_number: 1, etag: e(1) }],
        'missing-part': [
          { part_number: 1, etag: e(1) },
          { part_number: 2, etag: e(1) },
        ],
        'in-order-small': [
          { part_number: 1, etag: e(1) },
          { part_number: 2, etag: e(2) },
        ],
        'out-of-order': [
          { part_number: 2, etag: e(2) },
          { part_number: 1, etag: e(1) },
        ],
        duplicate: [
          { part_number: 1, etag: e(1) },
          { part_number: 1, etag: e(1) },
        ],
        'unknown-part': [{ part_number: 9, etag: e(1) }],
        'wrong-etag': [{ part_number: 1, etag: '"00000000000000000000000000000000"' }],
        empty: [],
        absurd: [{ part_number: 1e9, etag: e(1) }],
        zero: [{ part_number: 0, etag: e(1) }],
        fraction: [{ part_number: 1.5, etag: e(1) }],
        'string-number': [{ part_number: '1', etag: e(1) }],
        'wrong-id': [{ part_number: 1, etag: e(1) }],
        'wrong-addr': [{ part_number: 1, etag: e(1) }],
        'wrong-path': [{ part_number: 1, etag: e(1) }],
        aborted: [{ part_number: 1, etag: e(1) }],
        twice: [{ part_number: 1, etag: e(1) }],
        'huge-list': Array.from({ length: 10_001 }, (_, i) => ({ part_number: i + 1, etag: e(1) })),
      }[how]!
      if (how === 'twice')
        setup.push(
          step(
            'C',
            'none',
            'PUT',
            `${base}/{{M.id}}?path=${p}`,
            [auth, json],
            enc(JSON.stringify({ physical_address: '{{M.addr}}', parts })),
          ),
        )
      const id = how === 'wrong-id' ? NO_SUCH_ID : '{{M.id}}'
      const addr = how === 'wrong-addr' ? 'local://repo1/data/nope/nope' : '{{M.addr}}'
      const path = how === 'wrong-path' ? 'fuzz%2Fother' : p
      // A retried completion with the same parts answers the first one's ObjectStats (as S3 does).
      const expect =
        how === 'one' || how === 'twice'
          ? [200]
          : how === 'huge-list'
            ? [400, 413]
            : ['wrong-id', 'aborted'].includes(how)
              ? [404]
              : how === 'wrong-addr' || how === 'wrong-path'
                ? [400, 404]
                : [400]
      return {
        family: 'lakefs',
        route: 'lakefs PUT pmpu complete',
        method: 'PUT',
        target: `${base}/${id}?path=${path}`,
        headers: [auth],
        body: jsonOf({ physical_address: addr, parts }, `complete ${how}`),
        setup,
        expect,
      }
    })

  const abortRoute = fc
    .tuple(
      objPath,
      fc.constantFrom('ok', 'ok', 'twice', 'wrong-id', 'wrong-addr', 'no-body', 'after-part'),
    )
    .map(([p, how]): Draft => {
      const setup: SetupStep[] = [create('M', p, 2)]
      if (how === 'after-part') setup.push(part('E1', 'M', 1, enc('abc')))
      if (how === 'twice')
        setup.push(
          step(
            'X',
            'none',
            'DELETE',
            `${base}/{{M.id}}?path=${p}`,
            [auth, json],
            enc('{"physical_address":"{{M.addr}}"}'),
          ),
        )
      const id = how === 'wrong-id' ? NO_SUCH_ID : '{{M.id}}'
      const body =
        how === 'no-body'
          ? NO_BODY
          : jsonOf(
              {
                physical_address:
                  how === 'wrong-addr' ? 'local://repo1/data/nope/nope' : '{{M.addr}}',
              },
              `abort ${how}`,
            )
      const expect =
        how === 'ok' || how === 'after-part'
          ? [204]
          : how === 'no-body'
            ? [400]
            : how === 'wrong-addr'
              ? [400, 404]
              : [404]
      return {
        family: 'lakefs',
        route: 'lakefs DELETE pmpu abort',
        method: 'DELETE',
        target: `${base}/${id}?path=${p}`,
        headers: [auth],
        body,
        setup,
        expect,
      }
    })

  const freshRoute = fc
    .tuple(
      objPath,
      fc.constantFrom('1', '2', '2', '0', '10001', 'abc', '-1', '1.5', '99999999999999999999'),
      fc.constantFrom('ok', 'ok', 'wrong-id', 'wrong-addr', 'copy'),
    )
    .map(([p, n, how]): Draft => {
      const id = how === 'wrong-id' ? NO_SUCH_ID : '{{M.id}}'
      const body = jsonOf(
        { physical_address: how === 'wrong-addr' ? 'local://repo1/data/nope/nope' : '{{M.addr}}' },
        `fresh part ${n} ${how}`,
      )
      const okN = ['1', '2'].includes(n)
      // Minting a part URL does not look the upload up (neither does lakeFS's S3 presign): a
      // wrong id may get a URL, whose PUT then answers NoSuchUpload.
      const expect =
        how === 'copy' ? [400, 501] : !okN ? [400] : how === 'ok' ? [200] : [200, 400, 404]
      return {
        family: 'lakefs',
        route: 'lakefs PUT pmpu fresh part URL',
        method: 'PUT',
        target: `${base}/${id}/parts/${n}${how === 'copy' ? '/copy' : ''}?path=${p}`,
        headers: [auth],
        body,
        setup: [create('M', p, 2)],
        expect,
      }
    })

  return [createRoute, partRoute, completeRoute, abortRoute, freshRoute]
}

function resumableRoutes(creds: Credentials): fc.Arbitrary<Draft>[] {
  return [
    tusCreation,
    tusPatch,
    tusPatch,
    tusOther,
    tusOptions,
    ietfCreation,
    ietfPatch,
    ...multipartRoutes(creds),
  ]
}
