/** Small HTTP client for tests: real node:http requests with a Buffer or stream body. */
import { request as httpRequest, Agent, type IncomingHttpHeaders } from 'node:http'
import { createCipheriv, createHash } from 'node:crypto'
import type { Readable } from 'node:stream'

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  json<T = unknown>(): T
  text(): string
}

export const agent = new Agent({ keepAlive: true, maxSockets: 16 })

export function request(
  url: string,
  opts: {
    method?: string
    headers?: Record<string, string | number>
    body?: Buffer | string | Readable
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = opts.body
    const headers: Record<string, string | number> = { ...opts.headers }
    if (
      (typeof body === 'string' || Buffer.isBuffer(body)) &&
      headers['Content-Length'] === undefined &&
      headers['content-length'] === undefined
    ) {
      headers['Content-Length'] = Buffer.byteLength(body)
    }
    // Parse by hand: WHATWG URL parsing would normalise `..` and `.` segments away, and tests
    // must be able to send exactly what a hostile client sends.
    const m = /^http:\/\/([^/:]+):(\d+)(\/.*)?$/.exec(url)
    if (!m) throw new Error(`bad test URL ${url}`)
    const req = httpRequest(
      {
        hostname: m[1],
        port: Number(m[2]),
        path: m[3] ?? '/',
        method: opts.method ?? 'GET',
        headers,
        agent,
      },
      (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('error', reject)
        res.on('end', () => {
          const buf = Buffer.concat(parts)
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: buf,
            json: <T>() => JSON.parse(buf.toString('utf8')) as T,
            text: () => buf.toString('utf8'),
          })
        })
      },
    )
    req.on('error', reject)
    if (body === undefined) req.end()
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body)
    else body.pipe(req)
  })
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}

/** Deterministic pseudo-random bytes (fast): AES-128-CTR keystream of a seed. */
export function seededBytes(n: number, seed = 'ferry'): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()])
}

export function shuffle<T>(xs: T[], seed = 1): T[] {
  let s = seed
  const rnd = () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    return s / 0x7fffffff
  }
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
  }
  return xs
}
