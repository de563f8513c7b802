/**
 * Uploaders that behave as real resuming clients do, each with random content of known sha256:
 *
 * ImageStore (sfctl / the azure-servicefabric SDK with a resume loop): UploadChunk with
 * Content-Range in random order, a few at once; after a cut, a timeout or a 5xx they ask
 * GetUploadSession for ExpectedRanges, resend what is missing, then CommitUploadSession, retrying
 * the commit on 409/5xx/cut. GetUploadSession answering 204 for a session that a commit then calls
 * unknown (400) means the session is gone (Redis lost it): the upload starts again from scratch.
 * A quarter of the clients also stop part-way through their chunks, as a client process that
 * restarts, and resume later from the session id they saved, asking GetUploadSession first.
 * Most clients take a new session id then; a "path-keyed" client keeps the id (derived from the
 * path) and sends the file as it is now, a new smaller version, as a build output rewritten while
 * the upload was interrupted. That is the sequence of issue 9 defect 2.
 *
 * Shaman (Flamenco's add-on): POST the whole file to files/{sha256}/{size}, again on any failure,
 * until 204 or 208.
 *
 * Every request goes to a randomly chosen instance (no sticky sessions) over its own connection,
 * through that instance's chaos proxy.
 */
import { randomUUID, createHash } from 'node:crypto'
import { request } from 'node:http'
import { seededBytes, sha256 } from '../helpers/http.js'
import { API } from '../helpers/imagestore.js'
import { sleep, type Rng } from './rng.js'

export type Outcome =
  | { readonly kind: 'answer'; readonly status: number; readonly body: Buffer }
  | { readonly kind: 'cut' | 'timeout' }

/** What the uploaders of one phase share: where to send, until when, and the tallies. */
export interface Traffic {
  readonly bases: readonly string[]
  /** Requests that go idle this long are dropped and retried (a stalled instance or proxy). */
  readonly idleTimeoutMs: number
  /** Epoch ms after which an upload gives up and counts as lost. */
  deadlineMs: number
  /** Per base: commit requests in flight now (the kill loop aims at these). */
  readonly commitsInFlight: number[]
  /** Per base: chunk requests in flight now. */
  readonly chunksInFlight: number[]
  /** Answers by operation, status and error code ("chunk 400 FABRIC_E_…"), cuts and timeouts. */
  readonly answers: Map<string, number>
}

export function newTraffic(bases: readonly string[], idleTimeoutMs: number): Traffic {
  return {
    bases,
    idleTimeoutMs,
    deadlineMs: Number.POSITIVE_INFINITY,
    commitsInFlight: bases.map(() => 0),
    chunksInFlight: bases.map(() => 0),
    answers: new Map(),
  }
}

function tally(
  t: Traffic,
  op: string,
  o: Outcome,
  trace?: string[],
  base?: number,
  detail = '',
): void {
  let key = `${op} ${o.kind === 'answer' ? o.status : o.kind}`
  if (o.kind === 'answer' && o.status >= 400) {
    const code = /"Code"\s*:\s*"([A-Z_]+)"/.exec(o.body.toString('utf8', 0, 300))?.[1]
    if (code) key += ` ${code}`
  }
  t.answers.set(key, (t.answers.get(key) ?? 0) + 1)
  if (trace) {
    trace.push(`${new Date().toISOString().slice(11, 23)} i${base} ${key}${detail}`)
    if (trace.length > 40) trace.shift()
  }
}

export function send(
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body: Buffer | null,
  idleTimeoutMs: number,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const u = new URL(url)
    let settled = false
    const done = (o: Outcome) => {
      if (settled) return
      settled = true
      resolve(o)
    }
    const req = request(
      {
        host: u.hostname,
        port: Number(u.port),
        path: u.pathname + u.search,
        method,
        agent: false,
        headers: { ...headers, 'Content-Length': body?.length ?? 0 },
      },
      (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('end', () =>
          done({ kind: 'answer', status: res.statusCode ?? 0, body: Buffer.concat(parts) }),
        )
        res.on('error', () => done({ kind: 'cut' }))
        res.on('aborted', () => done({ kind: 'cut' }))
      },
    )
    req.setTimeout(idleTimeoutMs, () => {
      done({ kind: 'timeout' })
      req.destroy()
    })
    req.on('error', () => done({ kind: 'cut' }))
    req.end(body ?? undefined)
  })
}

function pickBase(t: Traffic, rng: Rng): number {
  return rng.int(0, t.bases.length - 1)
}

/** A backoff that grows to 1.5 s, with jitter. */
async function backoff(rng: Rng, attempt: number): Promise<void> {
  await sleep(Math.min(1500, 100 * 2 ** Math.min(attempt, 4)) * (0.5 + rng.next()))
}

export class LostUpload extends Error {}

// ---- ImageStore ------------------------------------------------------------------------------

export interface CommitWait {
  readonly startMs: number
  readonly endMs: number
}

export interface ImageStoreUpload {
  readonly n: number
  readonly path: string
  readonly pathKeyed: boolean
  /** Every version sent to this path (the observer's allowed contents), sha256 → size. */
  readonly versions: Map<string, number>
  data: Buffer
  /** Every version's content, in the order sent. */
  readonly allData: Buffer[]
  sessionId: string
  restarts: number
  completed: boolean
  lost: string | null
  commitWaits: CommitWait[]
  startedMs: number
  endedMs: number
  /** The last answers this upload got (time, instance, operation, status). */
  readonly trace: string[]
  /** Times the client itself stopped and resumed from its saved session id. */
  clientRestarts: number
  /** Checked and removed by the harness right after its commit (the disk phase). */
  takenAway: boolean
}

interface Range {
  readonly start: number
  readonly end: number
}

/** Versions are registered with the observer (through `versions`) before any byte is sent. */
export function newImageStoreUpload(
  n: number,
  path: string,
  size: number,
  rng: Rng,
  pathKeyed: boolean,
  versions: Map<string, number>,
): ImageStoreUpload {
  const data = seededBytes(size, `is-${n}-${rng.next()}`)
  versions.set(sha256(data), data.length)
  return {
    n,
    path,
    pathKeyed,
    versions,
    data,
    allData: [data],
    sessionId: pathKeyed ? uuidFrom(path) : randomUUID(),
    restarts: 0,
    completed: false,
    lost: null,
    commitWaits: [],
    startedMs: Date.now(),
    endedMs: 0,
    takenAway: false,
    clientRestarts: 0,
    trace: [],
  }
}

/** A stable UUID from a path (the id a path-keyed client would derive). */
function uuidFrom(s: string): string {
  const h = createHash('sha256').update(s).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
}

function split(r: Range, chunk: number): Range[] {
  const out: Range[] = []
  for (let s = r.start; s <= r.end; s += chunk)
    out.push({ start: s, end: Math.min(r.end, s + chunk - 1) })
  return out
}

async function eachParallel<T>(
  xs: readonly T[],
  n: number,
  fn: (x: T) => Promise<void>,
): Promise<void> {
  let i = 0
  await Promise.all(
    Array.from({ length: Math.min(n, xs.length) }, async () => {
      while (i < xs.length) await fn(xs[i++]!)
    }),
  )
}

export async function runImageStoreUpload(
  u: ImageStoreUpload,
  t: Traffic,
  rng: Rng,
): Promise<void> {
  const chunkBytes = rng.pick([64, 128, 256, 512]) * 1024
  const parallel = rng.int(1, 3)
  const check = () => {
    if (Date.now() > t.deadlineMs)
      throw new LostUpload(
        `not committed by the deadline (session ${u.sessionId}, ${u.restarts} restarts)`,
      )
  }
  const putRange = async (r: Range): Promise<boolean> => {
    const b = pickBase(t, rng)
    const url = `${t.bases[b]}/ImageStore/${u.path}/$/UploadChunk?${API}&session-id=${u.sessionId}`
    t.chunksInFlight[b]!++
    const total = u.data.length
    const o = await send(
      url,
      'PUT',
      {
        'Content-Range': total === 0 ? 'bytes */0' : `bytes ${r.start}-${r.end}/${total}`,
        'Content-Type': 'application/octet-stream',
      },
      u.data.subarray(r.start, r.end + 1),
      t.idleTimeoutMs,
    )
    t.chunksInFlight[b]!--
    tally(t, 'chunk', o, u.trace, b, ` ${r.start}-${r.end}/${total}`)
    return o.kind === 'answer' && o.status === 200
  }

  for (;;) {
    check()
    // First pass: every chunk once, in random order.
    const all =
      u.data.length === 0
        ? [{ start: 0, end: -1 }]
        : rng.shuffle(split({ start: 0, end: u.data.length - 1 }, chunkBytes))
    let failed = false
    // A quarter of the clients stop part-way (their process restarted) and come back after a
    // while with the session id they saved: they ask GetUploadSession before sending more.
    const stopAfter = rng.chance(0.25) ? rng.int(1, all.length) : all.length
    await eachParallel(all.slice(0, stopAfter), parallel, async (r) => {
      if (!(await putRange(r))) failed = true
    })
    if (stopAfter < all.length) {
      u.clientRestarts++
      await sleep(rng.int(500, 3000))
      failed = true
    }
    // Resume loop: ask what is missing, resend it, commit.
    let needCheck = failed
    let commitStart: number | null = null
    let restart = false
    for (let attempt = 0; ; attempt++) {
      check()
      if (needCheck) {
        const b = pickBase(t, rng)
        const o = await send(
          `${t.bases[b]}/ImageStore/$/GetUploadSession?${API}&session-id=${u.sessionId}`,
          'GET',
          {},
          null,
          t.idleTimeoutMs,
        )
        tally(t, 'session', o, u.trace, b)
        if (o.kind !== 'answer' || o.status >= 500) {
          await backoff(rng, attempt)
          continue
        }
        if (o.status === 200) {
          const info = JSON.parse(o.body.toString('utf8')) as {
            UploadSessions: { ExpectedRanges: { StartPosition: string; EndPosition: string }[] }[]
          }
          const missing = (info.UploadSessions[0]?.ExpectedRanges ?? []).map((x) => ({
            start: Number(x.StartPosition),
            end: Number(x.EndPosition),
          }))
          if (missing.length > 0) {
            const pieces = rng.shuffle(missing.flatMap((m) => split(m, chunkBytes)))
            let ok = true
            await eachParallel(pieces, parallel, async (r) => {
              if (!(await putRange(r))) ok = false
            })
            if (!ok) await backoff(rng, attempt)
            continue
          }
        } else if (o.status !== 204) {
          await backoff(rng, attempt)
          continue
        }
        // 204: committed (a commit will say 200 again) or unknown (a commit says 400): ask the
        // commit.
      }
      const b = pickBase(t, rng)
      commitStart ??= Date.now()
      t.commitsInFlight[b]!++
      const o = await send(
        `${t.bases[b]}/ImageStore/$/CommitUploadSession?${API}&session-id=${u.sessionId}`,
        'POST',
        {},
        null,
        t.idleTimeoutMs,
      )
      t.commitsInFlight[b]!--
      tally(t, 'commit', o, u.trace, b)
      if (o.kind === 'answer' && o.status === 200) {
        u.commitWaits.push({ startMs: commitStart, endMs: Date.now() })
        u.completed = true
        u.endedMs = Date.now()
        return
      }
      if (o.kind === 'answer' && o.status === 400) {
        if (needCheck && (await sessionGone(u, t, rng))) {
          restart = true
          break
        }
        needCheck = true
        continue
      }
      // 409 (another commit running), 5xx, a cut or a timeout: the same commit again.
      await backoff(rng, attempt)
    }
    if (restart) {
      u.restarts++
      u.trace.push(`restart from scratch (${u.pathKeyed ? 'same id, new version' : 'new id'})`)
      if (u.pathKeyed) {
        // The file changed meanwhile: a new, smaller version under the same session id.
        const size = Math.max(1, Math.floor(u.data.length * (0.3 + 0.5 * rng.next())))
        u.data = seededBytes(size, `is-${u.n}-v${u.restarts}-${rng.next()}`)
        u.versions.set(sha256(u.data), u.data.length)
        u.allData.push(u.data)
      } else u.sessionId = randomUUID()
    }
  }
}

/**
 * True when GetUploadSession answers 204 once more (after a commit said 400): the session is gone.
 */
async function sessionGone(u: ImageStoreUpload, t: Traffic, rng: Rng): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    const b = pickBase(t, rng)
    const o = await send(
      `${t.bases[b]}/ImageStore/$/GetUploadSession?${API}&session-id=${u.sessionId}`,
      'GET',
      {},
      null,
      t.idleTimeoutMs,
    )
    tally(t, 'session', o, u.trace, b)
    if (o.kind === 'answer' && o.status === 204) return true
    if (o.kind === 'answer' && o.status === 200) return false
    await backoff(rng, i)
  }
  return false
}

// ---- Shaman ----------------------------------------------------------------------------------

export interface ShamanUpload {
  readonly n: number
  readonly sha256: string
  readonly data: Buffer
  completed: boolean
  lost: string | null
  /** 204 stored by this upload, 208 known already or cut short by a duplicate. */
  status: number
}

export function newShamanUpload(n: number, data: Buffer): ShamanUpload {
  return { n, sha256: sha256(data), data, completed: false, lost: null, status: 0 }
}

export async function runShamanUpload(u: ShamanUpload, t: Traffic, rng: Rng): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (Date.now() > t.deadlineMs)
      throw new LostUpload(`shaman ${u.sha256.slice(0, 12)}… not stored by the deadline`)
    const b = pickBase(t, rng)
    const o = await send(
      `${t.bases[b]}/api/v3/shaman/files/${u.sha256}/${u.data.length}`,
      'POST',
      {
        'Content-Type': 'application/octet-stream',
        'X-Shaman-Can-Defer-Upload': 'false',
        'X-Shaman-Original-Filename': `chaos-${u.n}.bin`,
      },
      u.data,
      t.idleTimeoutMs,
    )
    tally(t, 'shaman', o)
    if (o.kind === 'answer' && (o.status === 204 || o.status === 208)) {
      u.completed = true
      u.status = o.status
      return
    }
    await backoff(rng, attempt)
  }
}
