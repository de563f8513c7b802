/**
 * Runs fuzz cases against a FuzzTarget and checks, after every case:
 * - the process is still up (a crash shows as a cut connection, a failed /healthz and an exit);
 * - no 5xx but 503 and 507 (any family) and 501 (lakeFS, whose spec answers If-Match with it);
 * - the request was answered or its connection closed within 10 s of the client's last byte;
 * - nothing appeared beside the data directory, or beside the layout's folders inside it;
 * - the server's RSS stays under the bound.
 * A violation throws, so fast-check shrinks the case; the report carries the seed, the path and
 * the shrunk request as bytes, with a command that replays it.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import fc from 'fast-check'
import { sendRaw, type RawOutcome } from '../helpers/raw-http.js'
import { fillPlaceholders, fuzzCase, type FuzzCase, type SetupStep } from './generators.js'
import type { FuzzTarget } from './target.js'

export const ANSWER_TIMEOUT_MS = 10_000
export const RSS_LIMIT_BYTES = 512 * 1024 * 1024

export interface FuzzStats {
  cases: number
  status2xx: number
  status3xx: number
  status4xx: number
  status5xx: number
  /** Connections the server closed without a final answer (truncated requests, mostly). */
  closedWithoutAnswer: number
  /** Of those, whole requests whose client was waiting for the answer. */
  closedWhileWaiting: number
  /** The first few of them (route and bends), to look at. */
  closedWhileWaitingExamples: string[]
  /** Cases whose client reset the connection (nothing awaited). */
  resets: number
  maxLatencyMs: number
  maxLatencyRoute: string
  maxRssBytes: number
  byRoute: Record<string, number>
  byStatus: Record<string, number>
}

export function newStats(): FuzzStats {
  return {
    cases: 0,
    status2xx: 0,
    status3xx: 0,
    status4xx: 0,
    status5xx: 0,
    closedWithoutAnswer: 0,
    closedWhileWaiting: 0,
    closedWhileWaitingExamples: [],
    resets: 0,
    maxLatencyMs: 0,
    maxLatencyRoute: '',
    maxRssBytes: 0,
    byRoute: {},
    byStatus: {},
  }
}

export class InvariantViolation extends Error {
  constructor(
    readonly kind:
      | 'crash'
      | '5xx'
      | 'timeout'
      | 'stalled-connection'
      | 'escape'
      | 'rss'
      | 'wrong-status'
      | 'setup',
    message: string,
  ) {
    super(`${kind}: ${message}`)
  }
}

const allowed5xx = (c: FuzzCase, status: number) =>
  status === 503 || status === 507 || (status === 501 && c.family === 'lakefs')

function record(stats: FuzzStats, c: FuzzCase, o: RawOutcome): void {
  stats.cases++
  stats.byRoute[c.route] = (stats.byRoute[c.route] ?? 0) + 1
  const key = o.status === null ? (c.ending === 'reset' ? 'reset' : 'closed') : String(o.status)
  stats.byStatus[key] = (stats.byStatus[key] ?? 0) + 1
  if (o.status === null) {
    if (c.ending === 'reset') stats.resets++
    else {
      stats.closedWithoutAnswer++
      if (c.ending === 'wait') {
        stats.closedWhileWaiting++
        if (stats.closedWhileWaitingExamples.length < 20)
          stats.closedWhileWaitingExamples.push(
            `${c.route}: ${c.notes.join('; ')} | ${escapedView(c.bytes, 300)}`,
          )
      }
    }
  } else if (o.status >= 500) stats.status5xx++
  else if (o.status >= 400) stats.status4xx++
  else if (o.status >= 300) stats.status3xx++
  else stats.status2xx++
  if (o.latencyMs > stats.maxLatencyMs) {
    stats.maxLatencyMs = o.latencyMs
    stats.maxLatencyRoute = c.route
  }
}

const FOLLOW_UP = Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')

/**
 * Sends one case and throws an InvariantViolation when it broke one. With `followUp`, a request
 * answered on a connection kept alive must leave that connection usable: a /healthz sent next on
 * it is answered (or the connection closed) within 10 s.
 */
export async function runCase(
  target: FuzzTarget,
  c: FuzzCase,
  stats: FuzzStats,
  followUp = false,
): Promise<void> {
  await target.ensureUp()
  let bytes = c.bytes
  if (c.setup !== undefined && c.render !== undefined) {
    const vars = await runSetup(target.port, c.setup).catch(async (err: unknown) => {
      // A setup request the server did not answer is a crash when the server is gone.
      if (!(await target.healthy())) {
        const tail = target.output().slice(-3000)
        throw new InvariantViolation(
          'crash',
          `the server stopped answering during the case's setup\n--- server output (tail) ---\n${tail}`,
        )
      }
      throw err
    })
    bytes = c.render(vars)
  }
  const o = await sendRaw(target.port, bytes, {
    ending: c.ending,
    timeoutMs: ANSWER_TIMEOUT_MS,
    ...(followUp ? { followUp: FOLLOW_UP } : {}),
    ...(c.slow !== undefined
      ? { slow: { ...c.slow, headBytes: bytes.indexOf('\r\n\r\n') + 4 } }
      : {}),
  })
  record(stats, c, o)
  // A crash cuts every connection, ours included: confirm with a health check whenever ours was
  // cut.
  if ((o.status === null || !target.alive()) && !(await target.healthy())) {
    const tail = target.output().slice(-3000)
    throw new InvariantViolation(
      'crash',
      `the server stopped answering after this request${target.alive() ? '' : ' and exited'}\n--- server output (tail) ---\n${tail}`,
    )
  }
  if (o.status !== null && o.status >= 500 && !allowed5xx(c, o.status)) {
    throw new InvariantViolation(
      '5xx',
      `answered ${o.status}: ${JSON.stringify(o.answer.subarray(0, 600).toString('latin1'))}`,
    )
  }
  const sent = () =>
    bytes === c.bytes ? '' : `\n--- request as sent ---\n${escapedView(bytes, 3000)}`
  if (
    c.expect !== undefined &&
    o.status !== null &&
    !c.expect.includes(o.status) &&
    !transient(o.status)
  ) {
    throw new InvariantViolation(
      'wrong-status',
      `answered ${o.status}, the protocol says ${c.expect.join(' or ')}: ${JSON.stringify(o.answer.subarray(0, 600).toString('latin1'))}${sent()}`,
    )
  }
  if (o.timedOut)
    throw new InvariantViolation(
      'timeout',
      `neither answered nor closed within ${ANSWER_TIMEOUT_MS} ms`,
    )
  if (o.followUp === 'timeout') {
    throw new InvariantViolation(
      'stalled-connection',
      `answered ${o.status} and kept the connection open, but a request sent next on it got neither an answer nor a close within ${ANSWER_TIMEOUT_MS} ms`,
    )
  }
  const escapes = target.escapes()
  if (escapes.length > 0)
    throw new InvariantViolation(
      'escape',
      `created outside the data directory's layout: ${escapes.join(', ')}`,
    )
  const rss = target.rssBytes()
  stats.maxRssBytes = Math.max(stats.maxRssBytes, rss)
  if (rss > RSS_LIMIT_BYTES)
    throw new InvariantViolation(
      'rss',
      `server RSS ${(rss / 2 ** 20).toFixed(0)} MiB is over ${RSS_LIMIT_BYTES / 2 ** 20} MiB`,
    )
}

/** Statuses any request may get whatever the protocol says: busy, shutting down, full disk. */
const transient = (status: number) => status === 423 || status === 503 || status === 507

/**
 * Sends a case's setup requests (whole, valid, one connection each) and keeps what they answer
 * for the case's placeholders. A setup request that is not answered 2xx is itself a finding.
 */
export async function runSetup(
  port: number,
  steps: readonly SetupStep[],
): Promise<Record<string, string>> {
  const vars: Record<string, string> = {}
  for (const s of steps) {
    const target = fillPlaceholders(s.target, vars)
    const body = Buffer.from(fillPlaceholders(s.body.toString('latin1'), vars), 'latin1')
    const headers: Record<string, string> = { 'Content-Length': String(body.length) }
    for (const [k, v] of s.headers) headers[k] = fillPlaceholders(v, vars)
    if (
      s.capture === 'pmpu' ||
      (body.length > 0 && s.capture === 'none' && target.includes('/pmpu'))
    )
      headers['Content-Type'] ??= 'application/json'
    const a = await new Promise<{
      status: number
      headers: Record<string, string | string[] | undefined>
      body: string
    }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, method: s.method, path: target, headers, agent: false },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (d: Buffer) => chunks.push(d))
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          )
          res.on('error', reject)
        },
      )
      req.setTimeout(ANSWER_TIMEOUT_MS, () => req.destroy(new Error('setup request timed out')))
      req.on('error', reject)
      req.end(body)
    }).catch((err: unknown) => {
      throw new InvariantViolation(
        'setup',
        `setup ${s.method} ${target}: ${err instanceof Error ? err.message : String(err)}`,
      )
    })
    if (a.status < 200 || a.status > 299) {
      throw new InvariantViolation(
        a.status >= 500 && !transient(a.status) ? '5xx' : 'setup',
        `setup ${s.method} ${target} answered ${a.status}: ${a.body.slice(0, 400)}`,
      )
    }
    if (s.capture === 'location') {
      const loc = String(a.headers['location'] ?? '')
      vars[s.name] = new URL(loc, `http://127.0.0.1:${port}`).pathname
    } else if (s.capture === 'etag') {
      vars[s.name] = String(a.headers['etag'] ?? '').replace(/"/g, '')
    } else if (s.capture === 'pmpu') {
      const j = JSON.parse(a.body) as {
        upload_id: string
        physical_address: string
        presigned_urls?: string[]
      }
      vars[`${s.name}.id`] = j.upload_id
      vars[`${s.name}.addr`] = j.physical_address
      ;(j.presigned_urls ?? []).forEach((u, i) => {
        const url = new URL(u)
        vars[`${s.name}.p${i + 1}`] = url.pathname + url.search
      })
      const p1 = vars[`${s.name}.p1`]
      if (p1 !== undefined) {
        // Bent copies of part 1's URL: tampered, expired, unsigned, another part or upload.
        const q = new URL(p1, 'http://x').searchParams
        const withQ = (f: (q: URLSearchParams) => void) => {
          const c = new URLSearchParams(q)
          f(c)
          return `${p1.split('?')[0]}?${c.toString()}`
        }
        vars[`${s.name}.p1sig`] = withQ((c) =>
          c.set('X-Ferry-Signature', `${c.get('X-Ferry-Signature') ?? ''}A`),
        )
        vars[`${s.name}.p1exp`] = withQ((c) => {
          c.set('X-Amz-Date', '20000101T000000Z')
          c.set('X-Ferry-Expires', '946684800')
        })
        vars[`${s.name}.p1nosig`] = withQ((c) => c.delete('X-Ferry-Signature'))
        vars[`${s.name}.p1part`] = withQ((c) => c.set('partNumber', '2'))
        vars[`${s.name}.p1upid`] = withQ((c) => c.set('uploadId', `${c.get('uploadId') ?? ''}x`))
        vars[`${s.name}.p1part0`] = withQ((c) => c.set('partNumber', '0'))
        vars[`${s.name}.p1part10001`] = withQ((c) => c.set('partNumber', '10001'))
        vars[`${s.name}.p1partabc`] = withQ((c) => c.set('partNumber', 'abc'))
      }
    }
  }
  return vars
}

// ---- reports -------------------------------------------------------------------------------

/** The bytes as a printf format string: printable ASCII as is, the rest as \xHH. */
export function printfEscape(b: Buffer): string {
  let s = ''
  for (const byte of b) {
    if (byte === 0x25) s += '%%'
    else if (byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x27)
      s += String.fromCharCode(byte)
    else s += `\\x${byte.toString(16).padStart(2, '0')}`
  }
  return s
}

/** A readable, escaped view of the bytes (long runs of one byte collapsed). */
export function escapedView(b: Buffer, max = 4000): string {
  const esc = printfEscape(b)
    .replace(/%%/g, '%')
    .replace(/(.)\1{63,}/g, (run, ch: string) => `${ch}…(×${run.length})`)
  return esc.length > max ? `${esc.slice(0, max)}… (${b.length} bytes in all)` : esc
}

export interface FailureReport {
  readonly seed: number
  readonly path: string
  readonly numShrinks: number
  readonly error: string
  readonly route: string
  readonly notes: readonly string[]
  readonly ending: FuzzCase['ending']
  readonly bytes: Buffer
}

/** Text for a human: what broke, the seed and path, the request, and how to send it again. */
export function describeFailure(f: FailureReport, port: number, rawFile: string | null): string {
  const printf = `printf '${printfEscape(f.bytes)}'`
  const nc = f.ending === 'wait' ? 'nc -q 10' : 'nc -q 0'
  const replay = f.bytes.length <= 8192 ? `${printf} | ${nc} 127.0.0.1 ${port}` : null
  return [
    `FUZZ FAILURE: ${f.error.split('\n')[0]}`,
    `  seed ${f.seed}, path "${f.path}" (${f.numShrinks} shrinks); replay: npm run fuzz -- --seed ${f.seed} --path ${f.path}`,
    `  route: ${f.route}`,
    `  bent: ${f.notes.join('; ') || 'nothing'}`,
    `  client ending: ${f.ending}`,
    `  request (${f.bytes.length} bytes, escaped):`,
    `    ${escapedView(f.bytes)}`,
    ...(replay !== null
      ? ['  reproduce against a running Ferry (port as yours):', `    ${replay}`]
      : []),
    ...(rawFile !== null
      ? [
          `  raw bytes: ${rawFile}; without nc:`,
          `    node -e "const s=require('net').connect(${port},'127.0.0.1',()=>s.${f.ending === 'wait' ? 'write' : 'end'}(require('fs').readFileSync(process.argv[1])));s.pipe(process.stdout);setTimeout(()=>s.destroy(),10000)" ${rawFile}`,
        ]
      : []),
    ...(f.error.includes('\n')
      ? [
          '  details:',
          ...f.error
            .split('\n')
            .slice(1)
            .map((l) => `    ${l}`),
        ]
      : []),
  ].join('\n')
}

export function writeRawFile(dir: string, seed: number, bytes: Buffer): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `failure-seed-${seed}.bin`)
  writeFileSync(file, bytes)
  return file
}

export interface FuzzRunOptions {
  readonly runs: number
  readonly seed: number
  readonly path?: string
  /** Called every `progressEvery` cases. */
  readonly onProgress?: (stats: FuzzStats) => void
  readonly progressEvery?: number
  /** Also check that a kept-alive connection still takes the next request (see runCase). */
  readonly followUp?: boolean
}

/**
 * One fast-check run of `runs` cases from `seed`. Answers the failure (shrunk) or null. Shrinking
 * restarts a crashed server before each attempt, so a crash shrinks like any other failure.
 */
export async function fuzzOnce(
  target: FuzzTarget,
  stats: FuzzStats,
  opts: FuzzRunOptions,
): Promise<FailureReport | null> {
  const every = opts.progressEvery ?? 0
  let lastCase: FuzzCase | null = null
  const prop = fc.asyncProperty(fuzzCase(target.creds), async (c) => {
    lastCase = c
    await runCase(target, c, stats, opts.followUp ?? false)
    if (every > 0 && stats.cases % every === 0) opts.onProgress?.(stats)
  })
  const details = await fc.check(prop, {
    numRuns: opts.runs,
    seed: opts.seed,
    ...(opts.path !== undefined ? { path: opts.path } : {}),
    endOnFailure: false,
  })
  if (!details.failed) return null
  const c = (details.counterexample?.[0] ?? lastCase) as FuzzCase | null
  const err = details.errorInstance
  return {
    seed: details.seed,
    path: details.counterexamplePath ?? '',
    numShrinks: details.numShrinks,
    error: err instanceof Error ? err.message : String(err),
    route: c?.route ?? '?',
    notes: c?.notes ?? [],
    ending: c?.ending ?? 'wait',
    bytes: c?.bytes ?? Buffer.alloc(0),
  }
}
