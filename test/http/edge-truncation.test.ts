/**
 * Issue 9 item 1: no request body, however it is cut, stops Ferry. Every route that takes a body
 * in all four families gets every body kind (raw with Content-Length, chunked, multipart) cut at
 * every stage: in the head, in a chunk-size line, mid-chunk, before the last chunk, in a multipart
 * part header, mid-part, before the closing boundary, and the socket destroyed mid-body. After
 * each case the Ferry process (a real child process) is still running and /healthz answers; the
 * answer, when there is one, is the family's own 4xx error body. A multipart body that arrived
 * whole but ends before its closing boundary must be answered (the family's 400).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  bodyRoutes,
  familyErrorProblem,
  writeFamiliesConfig,
  type BodyRoute,
} from '../helpers/edge-families.js'
import { request } from '../helpers/http.js'
import { RawConn, type RawAnswer } from '../helpers/raw-http.js'
import { removeDir, spawnFerry, tempDir, type ChildServer } from '../helpers/server.js'

let child: ChildServer
let dir: string

beforeAll(async () => {
  dir = tempDir('ferry-edge-cut-')
  child = await spawnFerry({
    FERRY_DATA_DIR: dir,
    FERRY_CONFIG: writeFamiliesConfig(dir),
    FERRY_LOG_LEVEL: 'warn',
    FERRY_MAX_UPLOAD_BYTES: String(1024 * 1024),
  })
})
afterAll(async () => {
  child.proc.kill('SIGTERM')
  await child.exited
  removeDir(dir)
})

const B = 'XB'
const partHead = `--${B}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`

/**
 * How a case ends: `half` sends FIN and waits for an answer or a close; `wait` (a whole HTTP
 * message) waits for the answer, which must come; `destroy` closes the socket at once; `reset`
 * sends a TCP RST.
 */
interface Cut {
  readonly name: string
  /** Extra request headers (framing). */
  readonly headers: (n: number) => Record<string, string | number>
  /** Bytes written after the head. */
  readonly body: (n: number) => Buffer
  readonly end: 'half' | 'wait' | 'destroy' | 'reset'
  /** Cut inside the head: no family is known yet, node's bare 400 is the answer. */
  readonly inHead?: boolean
}

const x = (n: number) => Buffer.alloc(n, 'x')
const raw = (n: number) => ({ 'Content-Length': n, 'Content-Type': 'application/octet-stream' })
const chunked = () => ({
  'Transfer-Encoding': 'chunked',
  'Content-Type': 'application/octet-stream',
})
const multipartOf = (body: string) => ({
  'Content-Type': `multipart/form-data; boundary=${B}`,
  'Content-Length': Buffer.byteLength(body),
})

const COMMON: Cut[] = [
  {
    name: 'raw: cut in the request head',
    inHead: true,
    headers: () => ({}),
    body: () => Buffer.alloc(0),
    end: 'half',
  },
  {
    name: 'raw: cut mid-body, client half-closes',
    headers: raw,
    body: (n) => x(Math.floor(n / 2)),
    end: 'half',
  },
  {
    name: 'raw: socket destroyed mid-body',
    headers: raw,
    body: (n) => x(Math.floor(n / 2)),
    end: 'destroy',
  },
  {
    name: 'raw: connection reset (RST) mid-body',
    headers: raw,
    body: (n) => x(Math.floor(n / 2)),
    end: 'reset',
  },
  {
    name: 'chunked: cut in a chunk-size line',
    headers: chunked,
    body: () => Buffer.from('4'),
    end: 'half',
  },
  {
    name: 'chunked: cut mid-chunk',
    headers: chunked,
    body: (n) => Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), x(Math.floor(n / 2))]),
    end: 'half',
  },
  {
    name: 'chunked: cut before the last chunk',
    headers: chunked,
    body: (n) => Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), x(n), Buffer.from('\r\n')]),
    end: 'half',
  },
  {
    name: 'chunked: socket destroyed mid-chunk',
    headers: chunked,
    body: (n) => Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), x(Math.floor(n / 2))]),
    end: 'destroy',
  },
  {
    name: 'chunked: connection reset (RST) mid-chunk',
    headers: chunked,
    body: (n) => Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), x(Math.floor(n / 2))]),
    end: 'reset',
  },
  {
    name: 'chunked: malformed chunk size',
    headers: chunked,
    body: () => Buffer.from('zz\r\nxx\r\n'),
    end: 'half',
  },
]

const MULTIPART: Cut[] = [
  {
    name: 'multipart: cut in the first boundary',
    headers: () => multipartOf(`--${B.slice(0, 1)}`),
    body: () => Buffer.from(`--${B.slice(0, 1)}`),
    end: 'wait',
  },
  {
    name: 'multipart: cut in a part header',
    headers: () => multipartOf(partHead.slice(0, 30)),
    body: () => Buffer.from(partHead.slice(0, 30)),
    end: 'wait',
  },
  {
    name: 'multipart: cut mid-part',
    headers: (n) => multipartOf(partHead + 'x'.repeat(Math.floor(n / 2))),
    body: (n) => Buffer.from(partHead + 'x'.repeat(Math.floor(n / 2))),
    end: 'wait',
  },
  {
    name: 'multipart: cut before the closing boundary',
    headers: (n) => multipartOf(`${partHead}${'x'.repeat(n)}\r\n--${B}`),
    body: (n) => Buffer.from(`${partHead}${'x'.repeat(n)}\r\n--${B}`),
    end: 'wait',
  },
  {
    name: "multipart: the issue's repro (no closing boundary at all)",
    headers: () => multipartOf(`${partHead}x`),
    body: () => Buffer.from(`${partHead}x`),
    end: 'wait',
  },
  {
    name: 'multipart in chunks: cut before the closing boundary',
    headers: () => ({
      'Content-Type': `multipart/form-data; boundary=${B}`,
      'Transfer-Encoding': 'chunked',
    }),
    body: (n) => {
      const p = Buffer.from(`${partHead}${'x'.repeat(n)}`)
      return Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')])
    },
    end: 'half',
  },
  {
    name: 'multipart: socket destroyed mid-part',
    headers: (n) => ({
      'Content-Type': `multipart/form-data; boundary=${B}`,
      'Content-Length': partHead.length + n + 100,
    }),
    body: (n) => Buffer.from(partHead + 'x'.repeat(Math.floor(n / 2))),
    end: 'destroy',
  },
  {
    name: 'multipart: connection reset (RST) mid-part',
    headers: (n) => ({
      'Content-Type': `multipart/form-data; boundary=${B}`,
      'Content-Length': partHead.length + n + 100,
    }),
    body: (n) => Buffer.from(partHead + 'x'.repeat(Math.floor(n / 2))),
    end: 'reset',
  },
]

const JSON_CUT: Cut[] = [
  {
    name: 'JSON: complete message, document cut short',
    headers: () => ({ 'Content-Type': 'application/json', 'Content-Length': 17 }),
    body: () => Buffer.from('{"files":[{"sha":'),
    end: 'wait',
  },
]

function casesFor(r: BodyRoute): Cut[] {
  return r.kind === 'json' ? [...COMMON, ...JSON_CUT] : [...COMMON, ...MULTIPART]
}

async function runCase(r: BodyRoute, cut: Cut): Promise<RawAnswer | null> {
  const conn = await RawConn.open(child.url, { answerTimeoutMs: 10_000 })
  try {
    const target = await r.target(child.url)
    const n = r.bytes ?? 64
    if (cut.inHead) {
      // The request line and part of a header, then FIN.
      await conn.write(
        Buffer.from(`${r.method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Typ`, 'latin1'),
      )
    } else {
      await conn.head(r.method, target, { ...(await r.headers()), ...cut.headers(n) })
      const body = cut.body(n)
      if (body.length > 0) await conn.write(body)
    }
    if (cut.end === 'destroy' || cut.end === 'reset') {
      // Give the server a moment to be inside the body before the connection goes.
      await new Promise((res) => setTimeout(res, 20))
      if (cut.end === 'reset') conn.reset()
      else conn.close()
      return null
    }
    // node's server (httpAllowHalfOpen off) closes at a client's FIN: only a cut body gets one.
    if (cut.end === 'half') conn.end()
    return await conn.answerOrClose(10_000)
  } finally {
    conn.close()
  }
}

const routes = bodyRoutes()
const table = routes.flatMap((r) => casesFor(r).map((cut) => [r.name, cut.name, r, cut] as const))

describe('a cut request body never stops Ferry (issue 9 item 1)', () => {
  test.each(table)(
    "%s — %s: process up, /healthz 200, the answer (if any) is the family's 4xx",
    async (_rn, _cn, r, cut) => {
      const a = await runCase(r, cut)
      if (cut.end === 'wait') expect(a).not.toBeNull()
      if (a !== null) {
        if (cut.inHead) {
          // No route was known yet: node's bare answer, no body.
          expect([a.status, a.body.length]).toEqual([400, 0])
        } else {
          expect(familyErrorProblem(r.family, a, [400, 408, 411, 413, 417, 499])).toBeNull()
        }
      }
      expect(child.proc.exitCode).toBeNull()
      const h = await request(`${child.url}/healthz`)
      expect(h.status).toBe(200)
    },
  )

  test('after every case: the process never exited and logged no error-level line', () => {
    expect(child.proc.exitCode).toBeNull()
    const errors = child
      .output()
      .split('\n')
      .filter((l) => l.includes('"level":50') || l.includes('"level":60'))
    expect(errors).toEqual([])
  })
})
