/**
 * HTTP hooks (`FERRY_HOOK_URL`): JSON POSTs that tell another service about uploads, modelled on
 * tusd's HTTP hooks (`pkg/hooks/http`: pre-create may reject, post-* are notifications, retries
 * with backoff, a timeout per call).
 *
 *   request thread                      HttpHooks                         hook service
 *   ──────────────                      ─────────                         ────────────
 *   preCreate(upload) ──await──▶ POST {event:'pre-create'} ───────────▶ 2xx / 4xx
 *                      ◀── allow / reject(status, message) / unavailable
 *   notify('post-finish', upload) ─▶ bounded queue ─▶ N senders ─▶ POST, retry with backoff
 *     (returns at once)                                   until 2xx or a deliberate 4xx
 *
 * Wire format: `POST <url>`, `Content-Type: application/json`, headers `Ferry-Hook-Event` and
 * `Ferry-Hook-Delivery` (one id per event, the same on every retry, so a receiver can drop
 * duplicates: delivery is at-least-once), body `HookPayload`. With `concurrency` > 1 or after a
 * retry, events may arrive out of order (a post-terminate before the post-finish of the same
 * upload): receivers order by `time`.
 *
 * pre-create answers: 2xx allows, unless its JSON body is `{"reject": true, "status"?: 4xx,
 * "message"?: "…"}`; a 4xx answer (other than 408/429) rejects with that status and the body's
 * `message` (JSON) or text. Anything else — 3xx, 408, 429, 5xx, a timeout, no connection — is
 * a hook failure, retried `preCreateAttempts` times, then `onPreCreateUnavailable` decides.
 *
 * Crash semantics: the post-* queue lives in this process's memory only. Events are delivered
 * at least once while the process lives; on a crash or kill -9 the queued and in-flight events
 * are lost (the uploads themselves are not: they were committed before the event was queued).
 * A receiver that must see every finished upload reconciles against Ferry's listing after a
 * restart; a durable outbox (a Redis stream per instance) would close that gap.
 */
import { randomUUID } from 'node:crypto'
import { maskUrl } from '../../observability/redact.js'

export type HookEventName = 'pre-create' | 'post-finish' | 'post-terminate'
export type PostEventName = Exclude<HookEventName, 'pre-create'>

/** What a hook is told about an upload. */
export interface HookUpload {
  readonly id: string
  /** The API family: `tus`, `imagestore`, `shaman`, `staging`, `ingest`. */
  readonly family: string
  /** Total bytes; null while unknown (tus `Upload-Defer-Length`). */
  readonly size: number | null
  /** Hex sha256 of the whole file when Ferry knows it (Shaman, ImageStore commit), else null. */
  readonly sha256: string | null
  readonly metadata: Readonly<Record<string, string>>
}

export interface HookPayload {
  readonly event: HookEventName
  /** Same on every retry of one event. */
  readonly deliveryId: string
  /** ISO 8601 time the event happened (not the time of this attempt). */
  readonly time: string
  readonly upload: HookUpload
}

export type PreCreateDecision =
  | { readonly allow: true; readonly degraded: boolean }
  | {
      readonly allow: false
      /** 4xx chosen by the hook, or 503 when the hook could not be asked. */
      readonly status: number
      readonly message: string
      readonly reason: 'rejected' | 'unavailable'
    }

export interface HookLogger {
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface HttpHooksOptions {
  /** The hook endpoint, http or https. User info becomes a Basic Authorization header. */
  readonly url: string
  /**
   * Limit for one POST, connect to last answer byte. Default 5000 ms (tusd: 15 s; a pre-create
   * holds a waiting client, so shorter).
   */
  readonly attemptTimeoutMs?: number
  /** pre-create tries before giving up. Default 2. */
  readonly preCreateAttempts?: number
  /**
   * What a pre-create does when the hook cannot be asked (timeout, no connection, 5xx).
   * Default `'reject'`, answered 503: the pre-create hook is where operators enforce quotas and
   * authorisation, so an unreachable hook must not let uploads past it (fail closed), and 503 is
   * the answer tus clients retry later (tus-js-client retries 5xx, not 4xx). `'allow'` suits
   * hooks that only observe.
   */
  readonly onPreCreateUnavailable?: 'reject' | 'allow'
  /** post-* tries per event; Infinity (default): until success, close, or a deliberate 4xx. */
  readonly maxAttempts?: number
  /** First retry delay; doubles per attempt up to `backoffMaxMs`, each with ±25 % jitter. */
  readonly backoffBaseMs?: number
  readonly backoffMaxMs?: number
  /** Most post-* events waiting or in flight; beyond it `notify` drops and logs. Default 1000. */
  readonly queueLimit?: number
  /** post-* POSTs in flight at once. Default 2. */
  readonly concurrency?: number
  /** Extra request headers (e.g. a static bearer token). */
  readonly headers?: Readonly<Record<string, string>>
  readonly logger?: HookLogger
  /** For tests: jitter source in [0, 1). */
  readonly random?: () => number
}

export interface HookStats {
  readonly queued: number
  readonly inFlight: number
  readonly delivered: number
  /** Events given up: maxAttempts spent or a deliberate 4xx from the hook. */
  readonly failed: number
  /** Events refused by `notify` because the queue was full or closed. */
  readonly dropped: number
  /** Events still pending when `close` ran out of time. */
  readonly abandoned: number
}

type AttemptResult =
  | { readonly kind: 'answer'; readonly status: number; readonly body: string }
  | { readonly kind: 'error'; readonly cause: unknown }

const MAX_BODY_BYTES = 16 * 1024
const MAX_MESSAGE_CHARS = 512
const CLOSING_RETRY_MS = 100

/** 408 and 429 mean "try again later", like 5xx. */
function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429 || (status >= 300 && status < 400)
}

export class HttpHooks {
  readonly #url: string
  readonly #shownUrl: string
  readonly #headers: Record<string, string>
  readonly #attemptTimeoutMs: number
  readonly #preCreateAttempts: number
  readonly #onUnavailable: 'reject' | 'allow'
  readonly #maxAttempts: number
  readonly #backoffBaseMs: number
  readonly #backoffMaxMs: number
  readonly #queueLimit: number
  readonly #concurrency: number
  readonly #logger: HookLogger | undefined
  readonly #random: () => number

  readonly #queue: HookPayload[] = []
  #inFlight = 0
  #delivered = 0
  #failed = 0
  #dropped = 0
  #abandoned = 0
  #closing = false
  readonly #abort = new AbortController()
  /** Sleeping retries; woken on close so they retry once more instead of sleeping it out. */
  readonly #sleepers = new Set<() => void>()
  /** Resolved whenever the queue becomes idle. */
  #idleWaiters: Array<() => void> = []

  constructor(options: HttpHooksOptions) {
    const u = new URL(options.url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new TypeError(`hook URL must be http or https, got ${u.protocol}`)
    }
    this.#headers = { ...options.headers }
    if (u.username !== '' || u.password !== '') {
      // fetch refuses URLs with credentials; send them the way the URL meant.
      const user = decodeURIComponent(u.username)
      const pass = decodeURIComponent(u.password)
      this.#headers['Authorization'] = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`
      u.username = ''
      u.password = ''
    }
    this.#url = u.href
    this.#shownUrl = maskUrl(options.url)
    this.#attemptTimeoutMs = positive('attemptTimeoutMs', options.attemptTimeoutMs ?? 5000)
    this.#preCreateAttempts = positive('preCreateAttempts', options.preCreateAttempts ?? 2)
    this.#onUnavailable = options.onPreCreateUnavailable ?? 'reject'
    const maxAttempts = options.maxAttempts ?? Infinity
    this.#maxAttempts = maxAttempts === Infinity ? Infinity : positive('maxAttempts', maxAttempts)
    this.#backoffBaseMs = positive('backoffBaseMs', options.backoffBaseMs ?? 500)
    this.#backoffMaxMs = positive('backoffMaxMs', options.backoffMaxMs ?? 30_000)
    this.#queueLimit = positive('queueLimit', options.queueLimit ?? 1000)
    this.#concurrency = positive('concurrency', options.concurrency ?? 2)
    this.#logger = options.logger
    this.#random = options.random ?? Math.random
  }

  get stats(): HookStats {
    return {
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      delivered: this.#delivered,
      failed: this.#failed,
      dropped: this.#dropped,
      abandoned: this.#abandoned,
    }
  }

  /**
   * Asks the hook whether an upload may be created. Never throws: the answer is a decision.
   * `signal` is the client's request; when it aborts, the hook call stops and the decision is
   * "unavailable" (nobody is waiting for it anyway).
   */
  async preCreate(upload: HookUpload, signal?: AbortSignal): Promise<PreCreateDecision> {
    const payload = this.#payload('pre-create', upload)
    let last = 'hook not called'
    for (let attempt = 1; attempt <= this.#preCreateAttempts && !this.#closing; attempt++) {
      if (signal?.aborted) break
      const r = await this.#post(payload, signal)
      if (r.kind === 'answer' && !isRetryableStatus(r.status)) return decisionFrom(r.status, r.body)
      last = r.kind === 'answer' ? `status ${r.status}` : describe(r.cause)
      if (attempt < this.#preCreateAttempts) await this.#sleep(this.#delay(attempt), signal)
    }
    this.#logger?.warn(
      { hookUrl: this.#shownUrl, uploadId: upload.id, cause: last },
      'pre-create hook unavailable',
    )
    if (this.#onUnavailable === 'allow') return { allow: true, degraded: true }
    return {
      allow: false,
      status: 503,
      message: 'upload hook unavailable, try again later',
      reason: 'unavailable',
    }
  }

  /**
   * Queues a post-* event and returns at once: a slow or failing hook never delays an upload's
   * answer, and the upload stays committed whatever the hook says. False when the event was
   * dropped (queue full or hooks closed); the drop is logged with the upload id so an operator
   * can replay it.
   */
  notify(event: PostEventName, upload: HookUpload): boolean {
    if (this.#closing || this.#queue.length + this.#inFlight >= this.#queueLimit) {
      this.#dropped++
      this.#logger?.error(
        { hookUrl: this.#shownUrl, event, uploadId: upload.id, closing: this.#closing },
        'hook event dropped',
      )
      return false
    }
    this.#queue.push(this.#payload(event, upload))
    this.#pump()
    return true
  }

  /**
   * Stops taking events and delivers what is queued, waiting at most `timeoutMs`. Sleeping
   * retries are woken to try once more at once; what is still pending at the deadline is
   * aborted, counted as abandoned and returned.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<{ abandoned: number }> {
    const timeoutMs = options.timeoutMs ?? 5000
    this.#closing = true
    for (const wake of this.#sleepers) wake()
    if (!this.#isIdle()) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs)
        }),
      ])
      clearTimeout(timer)
    }
    if (!this.#isIdle()) {
      this.#abandoned += this.#queue.length
      this.#queue.length = 0
      this.#abort.abort(new Error('hooks closed'))
      for (const wake of this.#sleepers) wake()
      // In-flight senders see the abort at once and count themselves abandoned.
      await new Promise<void>((resolve) => {
        if (this.#isIdle()) resolve()
        else this.#idleWaiters.push(resolve)
      })
    }
    return { abandoned: this.#abandoned }
  }

  #payload(event: HookEventName, upload: HookUpload): HookPayload {
    return { event, deliveryId: randomUUID(), time: new Date().toISOString(), upload }
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#inFlight === 0
  }

  #pump(): void {
    while (this.#inFlight < this.#concurrency && this.#queue.length > 0) {
      const payload = this.#queue.shift()!
      this.#inFlight++
      void this.#deliver(payload).finally(() => {
        this.#inFlight--
        this.#pump()
        if (this.#isIdle()) {
          const waiters = this.#idleWaiters
          this.#idleWaiters = []
          for (const w of waiters) w()
        }
      })
    }
  }

  async #deliver(payload: HookPayload): Promise<void> {
    const ctx = { hookUrl: this.#shownUrl, event: payload.event, uploadId: payload.upload.id }
    for (let attempt = 1; ; attempt++) {
      if (this.#abort.signal.aborted) {
        this.#abandoned++
        return
      }
      const r = await this.#post(payload)
      if (r.kind === 'answer' && r.status >= 200 && r.status < 300) {
        this.#delivered++
        return
      }
      if (r.kind === 'answer' && !isRetryableStatus(r.status)) {
        // A deliberate 4xx: retrying the same body cannot change the answer.
        this.#failed++
        this.#logger?.error({ ...ctx, status: r.status, attempt }, 'hook refused the event')
        return
      }
      if (this.#abort.signal.aborted) {
        this.#abandoned++
        return
      }
      if (attempt >= this.#maxAttempts) {
        this.#failed++
        this.#logger?.error({ ...ctx, attempt }, 'hook event given up after its last attempt')
        return
      }
      const cause = r.kind === 'answer' ? `status ${r.status}` : describe(r.cause)
      this.#logger?.warn({ ...ctx, attempt, cause }, 'hook call failed; retrying')
      await this.#sleep(this.#delay(attempt))
    }
  }

  /** Delay before retry `attempt + 1`: base·2^(attempt-1), capped, ±25 % jitter. */
  #delay(attempt: number): number {
    const d = Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** Math.min(attempt - 1, 30))
    const jittered = Math.round(d * (0.75 + 0.5 * this.#random()))
    // While closing, the drain deadline is what bounds the work: retry soon, not in 30 s.
    return this.#closing ? Math.min(jittered, CLOSING_RETRY_MS) : jittered
  }

  #sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve()
        return
      }
      const done = (): void => {
        clearTimeout(timer)
        this.#sleepers.delete(done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.#sleepers.add(done)
      signal?.addEventListener('abort', done, { once: true })
    })
  }

  async #post(payload: HookPayload, signal?: AbortSignal): Promise<AttemptResult> {
    const signals = [AbortSignal.timeout(this.#attemptTimeoutMs), this.#abort.signal]
    if (signal !== undefined) signals.push(signal)
    try {
      const res = await fetch(this.#url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'ferry-hooks',
          'Ferry-Hook-Event': payload.event,
          'Ferry-Hook-Delivery': payload.deliveryId,
          ...this.#headers,
        },
        body: JSON.stringify(payload),
        // A redirect is a misconfigured URL; following it would turn the POST into a GET.
        redirect: 'manual',
        signal: AbortSignal.any(signals),
      })
      return { kind: 'answer', status: res.status, body: await readCapped(res) }
    } catch (cause) {
      return { kind: 'error', cause }
    }
  }
}

/** Reads at most 16 KiB of an answer and drops the rest, so a chatty hook cannot fill memory. */
async function readCapped(res: Response): Promise<string> {
  if (res.body === null) return ''
  const reader = res.body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  try {
    while (size < MAX_BODY_BYTES) {
      const { done, value } = await reader.read()
      if (done) break
      parts.push(value)
      size += value.length
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
  return Buffer.concat(parts).subarray(0, MAX_BODY_BYTES).toString('utf8')
}

function decisionFrom(status: number, body: string): PreCreateDecision {
  const json = parseJsonObject(body)
  if (status >= 200 && status < 300) {
    if (json?.['reject'] !== true) return { allow: true, degraded: false }
    return {
      allow: false,
      status: rejectionStatus(json['status']),
      message: cleanMessage(json['message'], 'upload rejected by hook'),
      reason: 'rejected',
    }
  }
  return {
    allow: false,
    status: rejectionStatus(status),
    message: cleanMessage(json === null ? body : json['message'], 'upload rejected by hook'),
    reason: 'rejected',
  }
}

/** A hook rejects with a client error; anything else it names becomes 403. */
function rejectionStatus(value: unknown): number {
  const ok = typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 499
  return ok ? value : 403
}

/** The hook's message goes to the client: printable text only, bounded. */
function cleanMessage(value: unknown, fallback: string): string {
  if (typeof value !== 'string') return fallback
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a hook's message is stripped of them
  const text = value.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()
  return text === '' ? fallback : text.slice(0, MAX_MESSAGE_CHARS)
}

function parseJsonObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text)
    const isObject = typeof v === 'object' && v !== null && !Array.isArray(v)
    return isObject ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : ''
    return `${cause.name}: ${cause.message}${inner}`
  }
  return String(cause)
}

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new RangeError(`HttpHooks option ${name} must be a positive integer, got ${v}`)
  }
  return v
}

export function createHttpHooks(options: HttpHooksOptions): HttpHooks {
  return new HttpHooks(options)
}
