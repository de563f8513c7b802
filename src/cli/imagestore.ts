/**
 * Ferry's own client for the Service Fabric ImageStore upload-session API (no library exists):
 * chunks go out `parallel` at a time with `Content-Range`, in any order the workers finish them;
 * the session's `ExpectedRanges` (GetUploadSession) say what is still missing, on resume after a
 * kill and after any failed chunk; `CommitUploadSession` joins the file and answers its sha256
 * in `X-Ferry-Sha256`.
 *
 * Wire format (Service Fabric REST reference, "Upload File Chunk", "Get Image Store Upload Session
 * By Id", "Commit Image Store Upload Session"): `Content-Range: bytes <first>-<last>/<size>`,
 * inclusive; the first chunk with an unknown session-id creates the session; a chunk must lie
 * entirely inside one expected range (else 400 FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE);
 * JSON in PascalCase with 64-bit numbers as strings.
 */
import { randomUUID } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import { backoffMs, CliError, RetryableError, sleep } from './errors.js'
import { isRetryableStatus, send, type Reply } from './http.js'
import type { FileProgress } from './progress.js'
import type { StateFile, FileIdentity } from './state.js'

export interface Range {
  readonly start: number
  /** Inclusive. */
  readonly end: number
}

export interface TransferOptions {
  readonly chunkSize: number
  readonly parallel: number
  readonly retries: number
  readonly retryDelayMs: number
  readonly signal: AbortSignal
}

export interface UploadResult {
  readonly url: string
  readonly bytes: number
  readonly sha256: string
  readonly resumedFrom: number
}

interface ImageStoreState {
  readonly protocol: 'imagestore'
  readonly sessionId: string
  readonly file: string
  readonly target: string
}

const API = 'api-version=6.0'
const SHA_HEADER = 'x-ferry-sha256'
/** Ferry's smallest chunk (FERRY_MIN_CHUNK_BYTES default) except the last: a tail is merged. */
const MIN_CHUNK = 64 * 1024
/** Rounds of "commit refused as incomplete, send what is missing" before giving up. */
const COMMIT_ROUNDS = 3

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/')

export function imageStoreUrl(base: URL, storePath: string, op?: string, query = ''): URL {
  const root = base.pathname.replace(/\/+$/, '')
  const content = storePath === '' ? '' : `/${encodePath(storePath)}`
  const u = new URL(base.href)
  u.pathname = `${root}/ImageStore${content}${op ? `/$/${op}` : ''}`
  u.search = `?${API}${query}`
  return u
}

/** Splits missing ranges into chunks of `size`; a short tail joins the chunk before it. */
export function splitRanges(ranges: readonly Range[], size: number): Range[] {
  const out: Range[] = []
  for (const r of ranges) {
    for (let s = r.start; s <= r.end; s += size) {
      let e = Math.min(r.end, s + size - 1)
      const rest = r.end - e
      if (rest > 0 && rest < MIN_CHUNK) e = r.end
      out.push({ start: s, end: e })
      if (e === r.end) break
    }
  }
  return out
}

/** The parts of `piece` still inside the server's expected ranges. */
export function stillMissing(piece: Range, expected: readonly Range[]): Range[] {
  const out: Range[] = []
  for (const r of expected) {
    const start = Math.max(piece.start, r.start)
    const end = Math.min(piece.end, r.end)
    if (start <= end) out.push({ start, end })
  }
  return out
}

const length = (rs: readonly Range[]) => rs.reduce((n, r) => n + r.end - r.start + 1, 0)

/** The Fabric error's message, or the first line of whatever the body holds. */
function answerText(reply: Reply): string {
  try {
    const e = JSON.parse(reply.body.toString('utf8')) as {
      Error?: { Code?: string; Message?: string }
    }
    if (e.Error?.Message) return `${e.Error.Code ?? 'error'}: ${e.Error.Message}`
  } catch {
    /* not JSON */
  }
  return reply.body.toString('utf8').split('\n')[0]!.slice(0, 200) || '(no message)'
}

const isRangeRefusal = (r: Reply) =>
  r.status === 400 &&
  r.body.toString('utf8').includes('FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE')

export class ImageStoreUpload {
  readonly #file: FileIdentity
  readonly #base: URL
  readonly #storePath: string
  readonly #opts: TransferOptions
  readonly #progress: FileProgress
  readonly #state: StateFile<ImageStoreState>
  readonly #label: string
  #sessionId = ''
  #confirmed = 0
  readonly #inflight = new Map<number, number>()

  constructor(args: {
    file: FileIdentity
    label: string
    base: URL
    storePath: string
    options: TransferOptions
    progress: FileProgress
    state: StateFile<object>
  }) {
    this.#file = args.file
    this.#label = args.label
    this.#base = args.base
    this.#storePath = args.storePath
    this.#opts = args.options
    this.#progress = args.progress
    this.#state = args.state as StateFile<ImageStoreState>
  }

  get #sessionQuery() {
    return `&session-id=${this.#sessionId}`
  }

  /**
   * Runs `fn` until it succeeds, retrying a RetryableError up to `retries` times with
   * exponential backoff; the last failure becomes one clear CliError.
   */
  async #retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        if (!(err instanceof RetryableError)) throw err
        if (attempt > this.#opts.retries) {
          throw new CliError(
            `${this.#label}: ${what}: ${err.message} (gave up after ${this.#opts.retries} retries)`,
          )
        }
        this.#progress.retried(err.message)
        await sleep(backoffMs(attempt, this.#opts.retryDelayMs), this.#opts.signal)
      }
    }
  }

  #refused(what: string, reply: Reply): CliError {
    return new CliError(
      `${this.#label}: ${what}: the server answered ${reply.status} (${answerText(reply)})`,
    )
  }

  /** The session's size and missing ranges; null when the server has no open session of this id. */
  #session(): Promise<{ size: number; expected: Range[] } | null> {
    return this.#retrying('asking for the upload session', () => this.#fetchSession())
  }

  async #fetchSession(): Promise<{ size: number; expected: Range[] } | null> {
    {
      const url = imageStoreUrl(this.#base, '', 'GetUploadSession', this.#sessionQuery)
      const reply = await send(url, { signal: this.#opts.signal })
      if (reply.status === 204) return null
      if (isRetryableStatus(reply.status))
        throw new RetryableError(`${reply.status} ${answerText(reply)}`)
      if (reply.status !== 200) throw this.#refused('asking for the upload session', reply)
      const doc = JSON.parse(reply.body.toString('utf8')) as {
        UploadSessions?: {
          FileSize?: string
          ExpectedRanges?: { StartPosition?: string; EndPosition?: string }[]
        }[]
      }
      const s = doc.UploadSessions?.[0]
      if (!s) return null
      return {
        size: Number(s.FileSize),
        expected: (s.ExpectedRanges ?? []).map((r) => ({
          start: Number(r.StartPosition),
          end: Number(r.EndPosition),
        })),
      }
    }
  }

  /** The committed file's sha256 as the server reports it; null when it refuses (incomplete). */
  async #commit(): Promise<{ sha256: string | undefined } | Reply> {
    return this.#retrying('committing', async () => {
      const url = imageStoreUrl(this.#base, '', 'CommitUploadSession', this.#sessionQuery)
      const reply = await send(url, {
        method: 'POST',
        body: Buffer.alloc(0),
        signal: this.#opts.signal,
      })
      if (reply.status === 200) {
        const sha = reply.headers[SHA_HEADER]
        return { sha256: typeof sha === 'string' ? sha : undefined }
      }
      if (isRetryableStatus(reply.status))
        throw new RetryableError(`${reply.status} ${answerText(reply)}`)
      return reply
    })
  }

  #report(): void {
    let n = this.#confirmed
    for (const v of this.#inflight.values()) n += v
    this.#progress.update(n)
  }

  /** One PUT of `r`: null when stored, else the reason to retry; a refusal throws. */
  async #put(
    fh: FileHandle,
    r: Range,
    worker: number,
    signal: AbortSignal,
  ): Promise<string | null> {
    const len = r.end - r.start + 1
    const buf = Buffer.allocUnsafe(len)
    const { bytesRead } = await fh.read(buf, 0, len, r.start)
    if (bytesRead !== len)
      throw new CliError(`${this.#label}: the file shrank while it was uploading`)
    const url = imageStoreUrl(this.#base, this.#storePath, 'UploadChunk', this.#sessionQuery)
    this.#inflight.set(worker, 0)
    try {
      const reply = await send(url, {
        method: 'PUT',
        headers: {
          'Content-Range': `bytes ${r.start}-${r.end}/${this.#file.size}`,
          'Content-Type': 'application/octet-stream',
        },
        body: buf,
        signal,
        onSent: (n) => {
          this.#inflight.set(worker, (this.#inflight.get(worker) ?? 0) + n)
          this.#report()
        },
      })
      if (reply.status === 200) {
        this.#confirmed += len
        return null
      }
      // A range refused as not expected: most often a chunk whose answer was lost, which the
      // server holds already. The session's expected ranges settle it.
      if (!isRetryableStatus(reply.status) && !isRangeRefusal(reply))
        throw this.#refused('sending a chunk', reply)
      return `${reply.status} ${answerText(reply)}`
    } finally {
      this.#inflight.delete(worker)
      this.#report()
    }
  }

  /**
   * Sends `range`; after a failure, waits (backoff), asks the session what it still misses of
   * the range and sends only that. Each failed request, PUT or GetUploadSession, is one retry.
   */
  async #sendRange(
    fh: FileHandle,
    range: Range,
    worker: number,
    signal: AbortSignal,
  ): Promise<void> {
    let todo: Range[] = [range]
    let attempt = 0
    let resync = false
    while (todo.length > 0) {
      let reason: string | null
      try {
        if (resync) {
          const session = await this.#fetchSession()
          if (session === null) {
            await this.#state.remove()
            throw new CliError(
              `${this.#label}: the server no longer has the upload session (expired?); ` +
                'run the command again to start over',
            )
          }
          const missing = todo.flatMap((t) => stillMissing(t, session.expected))
          this.#confirmed += length(todo) - length(missing)
          todo = missing
          resync = false
          continue
        }
        reason = await this.#put(fh, todo[0]!, worker, signal)
        if (reason === null) {
          todo.shift()
          attempt = 0
          continue
        }
      } catch (err) {
        if (!(err instanceof RetryableError)) throw err
        reason = err.message
      }
      attempt++
      if (attempt > this.#opts.retries) {
        throw new CliError(
          `${this.#label}: sending a chunk: ${reason} ` +
            `(gave up after ${this.#opts.retries} retries)`,
        )
      }
      this.#progress.retried(reason)
      await sleep(backoffMs(attempt, this.#opts.retryDelayMs), signal)
      resync = true
    }
  }

  async #sendAll(missing: readonly Range[]): Promise<void> {
    const queue = splitRanges(missing, this.#opts.chunkSize)
    const fh = await open(this.#file.path, 'r')
    // The first failure stops the other workers' requests at once, and is the one reported.
    const stop = new AbortController()
    const signal = AbortSignal.any([this.#opts.signal, stop.signal])
    let failure: { err: unknown } | null = null
    const worker = async (w: number) => {
      try {
        while (queue.length > 0 && !signal.aborted)
          await this.#sendRange(fh, queue.shift()!, w, signal)
      } catch (err) {
        failure ??= { err }
        stop.abort(err)
      }
    }
    try {
      const n = Math.max(1, Math.min(this.#opts.parallel, queue.length))
      await Promise.all(Array.from({ length: n }, (_, w) => worker(w)))
    } finally {
      await fh.close()
    }
    if (failure !== null) throw (failure as { err: unknown }).err
    if (this.#opts.signal.aborted) throw this.#opts.signal.reason
  }

  /** Uploads the file (resuming a saved session when the server still has it); verifies later. */
  async run(): Promise<{ url: string; resumedFrom: number; serverSha256: string | undefined }> {
    const url = imageStoreUrl(this.#base, this.#storePath).href
    if (this.#file.size === 0) {
      this.#progress.begin(0)
      return { url, resumedFrom: 0, serverSha256: await this.#putEmpty() }
    }
    let missing: Range[] | null = null
    const saved = await this.#state.load()
    if (saved?.protocol === 'imagestore' && typeof saved.sessionId === 'string') {
      this.#sessionId = saved.sessionId
      const session = await this.#session()
      if (session !== null && session.size === this.#file.size) missing = session.expected
      else if (session === null) {
        // Gone: expired, or complete and committed by a run killed before it could say so.
        const done = await this.#commit()
        if (!('status' in done)) {
          this.#progress.begin(this.#file.size)
          return { url, resumedFrom: this.#file.size, serverSha256: done.sha256 }
        }
      }
    }
    if (missing === null) {
      this.#sessionId = randomUUID()
      await this.#state.save({
        protocol: 'imagestore',
        sessionId: this.#sessionId,
        file: this.#file.path,
        target: url,
      })
      missing = [{ start: 0, end: this.#file.size - 1 }]
    }
    const resumedFrom = this.#file.size - length(missing)
    this.#confirmed = resumedFrom
    this.#progress.begin(resumedFrom)
    this.#report()
    for (let round = 1; ; round++) {
      await this.#sendAll(missing)
      const done = await this.#commit()
      if (!('status' in done)) return { url, resumedFrom, serverSha256: done.sha256 }
      const session = round < COMMIT_ROUNDS && done.status === 400 ? await this.#session() : null
      if (session === null || session.expected.length === 0) throw this.#refused('committing', done)
      missing = session.expected
      this.#confirmed = this.#file.size - length(missing)
    }
  }

  /** A 0-byte file cannot be committed through a session (the runtime's rule): one PUT. */
  async #putEmpty(): Promise<string | undefined> {
    return this.#retrying('storing the empty file', async () => {
      const reply = await send(imageStoreUrl(this.#base, this.#storePath), {
        method: 'PUT',
        body: Buffer.alloc(0),
        signal: this.#opts.signal,
      })
      if (reply.status === 200) {
        const sha = reply.headers[SHA_HEADER]
        return typeof sha === 'string' ? sha : undefined
      }
      if (isRetryableStatus(reply.status))
        throw new RetryableError(`${reply.status} ${answerText(reply)}`)
      throw this.#refused('storing the empty file', reply)
    })
  }
}
