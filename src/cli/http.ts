/**
 * The few HTTP requests the ImageStore client and the checks around tus need: node:http with a
 * keep-alive agent, a Buffer body written in slices (so progress follows the socket), and
 * failures sorted into "retry" (network, 5xx, 408/423/429) and "refused" (other 4xx).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { RetryableError } from './errors.js'

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
}

export interface RequestOptions {
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: Buffer
  /** Called with the number of body bytes handed to the socket, as they go. */
  readonly onSent?: (bytes: number) => void
  readonly signal?: AbortSignal
}

const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 })
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 64 })
/** A request that moves no byte for this long is given up (and retried). */
const IDLE_TIMEOUT_MS = 120_000
/** Request bodies go out in slices of this size, so the progress bar moves within a chunk. */
const SLICE = 256 * 1024
/** Answers are small JSON documents or nothing; more than this is not read. */
const MAX_ANSWER = 1024 * 1024

const NETWORK_WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'timed out',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
}

/** A readable reason for a network failure: "connection refused", not an errno dump. */
export function networkReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return (e.code && NETWORK_WORDS[e.code]) ?? e.message ?? String(err)
}

export function send(url: URL, opts: RequestOptions = {}): Promise<Reply> {
  const https = url.protocol === 'https:'
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.body !== undefined) headers['Content-Length'] = String(opts.body.length)
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method: opts.method ?? 'GET',
        headers,
        agent: https ? httpsAgent : httpAgent,
        signal: opts.signal,
      },
      (res) => {
        const parts: Buffer[] = []
        let size = 0
        res.on('data', (d: Buffer) => {
          size += d.length
          if (size <= MAX_ANSWER) parts.push(d)
        })
        res.on('error', (err) => reject(new RetryableError(networkReason(err))))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts),
          }),
        )
      },
    )
    req.setTimeout(IDLE_TIMEOUT_MS, () =>
      req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
    )
    req.on('error', (err) => {
      if (opts.signal?.aborted) return reject(opts.signal.reason)
      reject(new RetryableError(networkReason(err)))
    })
    const body = opts.body
    if (body === undefined || body.length === 0) return void req.end()
    let at = 0
    const writeMore = () => {
      while (at < body.length) {
        const slice = body.subarray(at, at + SLICE)
        at += slice.length
        const n = slice.length
        const ok = req.write(slice, (err) => {
          if (!err) opts.onSent?.(n)
        })
        if (!ok) return void req.once('drain', writeMore)
      }
      req.end()
    }
    writeMore()
  })
}

/** Statuses that say "try again": the server or a proxy in trouble, or the upload busy. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 409 || status === 423 || status === 429
}
