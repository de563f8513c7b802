import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { DEFAULTS, type Config } from '../config/config.js'
import { UploadError } from '../core/errors.js'
import { EDGE_FAMILY, NO_FAMILY, type FerryMetrics } from '../observability/metrics.js'
import { redactUrl } from '../observability/redact.js'
import { BodyRateWatch, type MinBodyRate } from './body.js'
import type { Family, RequestContext } from './context.js'
import { isClientGone, RETRY_AFTER_SEC } from './errors.js'
import { sendJson, sendText } from './respond.js'

/** One readiness check: `ok: false` takes this instance out of rotation (`/readyz` 503). */
export type ReadyCheck = () => Promise<{ ok: boolean; reason?: string }>

export interface HttpServerOptions {
  readonly families: readonly Family[]
  readonly log: Logger
  readonly requestTimeoutMs: number
  readonly idleTimeoutMs: number
  /**
   * `GET /healthz` answers 200 while this is true (and `/readyz` 503 while it is false: draining).
   */
  readonly ready: () => boolean
  /**
   * Slowest accepted request body (408 and close below it). Default: config DEFAULTS (1 KiB/s over
   * 60 s).
   */
  readonly minBodyRate?: MinBodyRate
  /** Readiness checks (the state backend's, the data directory's, …), run on every `/readyz`. */
  readonly readyChecks?: readonly ReadyCheck[]
  /** Counted at the edge by family, and served at `GET /metrics`. Unset: no `/metrics`. */
  readonly metrics?: FerryMetrics
  /** `GET /metrics` answers 401 without `Authorization: Bearer <this>`. Null: open. */
  readonly metricsToken?: string | null
}

/** The options `createHttpServer` takes from the configuration (for the composition root). */
export function edgeOptionsFrom(
  config: Config,
): Pick<HttpServerOptions, 'minBodyRate' | 'metricsToken'> {
  return {
    minBodyRate: {
      bytesPerSec: config.http.minBodyRateBytesPerSec,
      windowSec: config.http.minBodyRateWindowSec,
    },
    metricsToken: config.http.metricsToken,
  }
}

const sha256Of = (text: string) => createHash('sha256').update(text).digest()

/**
 * Whether the request carries the bearer token, compared in constant time: digests of equal
 * length, so neither the token's bytes nor its length show in the timing.
 */
function bearerMatches(req: IncomingMessage, token: string): boolean {
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
  return m !== null && timingSafeEqual(sha256Of(m[1]!), sha256Of(token))
}

/**
 * Counts the body bytes node's parser hands the request (`push`, as for any Readable whose
 * source pushes), as they arrive: the counter moves during a long upload, not only at its end,
 * and nothing is added between the socket and the reader of the body.
 */
function countBody(req: IncomingMessage, add: (n: number) => void): void {
  const push = req.push
  req.push = function countedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk instanceof Uint8Array) add(chunk.length)
    return push.call(this, chunk, encoding)
  }
}

/** A request between its head and its answer: what the edge needs to answer it itself. */
interface InFlight {
  readonly ctx: RequestContext
  readonly family: Family | null
  readonly socket: Socket
  readonly abort: (reason: Error) => void
  /** The edge answered (slow body, broken body): the handler's own outcome is moot. */
  answeredByEdge: boolean
}

const READY_CHECK_TIMEOUT_MS = 2000

/**
 * node:http server: request id, family dispatch by prefix, last-resort 500 that logs the stack and
 * shows the client nothing internal; `/healthz` and `/readyz`; the minimum body rate; answers to
 * broken requests ('clientError') in the family's own error shape where one is in flight.
 */
/** How much of a refused request's unread body is read and dropped to keep its connection. */
const UNREAD_BODY_DRAIN_BYTES = 1024 * 1024
/** How long that may take before the connection is closed instead. */
const UNREAD_BODY_DRAIN_MS = 5000

export function createHttpServer(opts: HttpServerOptions): Server {
  const families = [...opts.families].sort((a, b) => b.prefix.length - a.prefix.length)
  const minRate = opts.minBodyRate ?? {
    bytesPerSec: DEFAULTS.http.minBodyRateBytesPerSec,
    windowSec: DEFAULTS.http.minBodyRateWindowSec,
  }
  const rateWatch = new BodyRateWatch(minRate)
  /** Requests whose body is still being read, per socket (the one 'clientError' concerns). */
  const reading = new Map<Socket, InFlight>()
  /** Responses not yet finished, per socket: node's bare error answer only where this is 0. */
  const open = new Map<Socket, number>()
  const server = createServer(
    // Idle keep-alive sockets live longer than a load balancer's (commonly 60 s), so the balancer,
    // not Ferry, closes them: a server closing first races the balancer's reuse (ECONNRESET).
    { requestTimeout: opts.requestTimeoutMs, keepAliveTimeout: 65_000, headersTimeout: 30_000 },
    (req, res) => {
      void handle(req, res)
    },
  )
  server.timeout = opts.idleTimeoutMs // a socket silent this long is closed
  const metrics = opts.metrics
  if (metrics) {
    server.on('connection', (socket: Socket) => {
      metrics.connectionOpened()
      socket.once('close', () => metrics.connectionClosed())
    })
  }
  // A server 'error' after listening (an accept failure) must not end the process; a listen
  // failure still reaches the composition root's own listener.
  server.on('error', (err: NodeJS.ErrnoException) => opts.log.error({ err }, 'http server error'))

  /**
   * Answers an in-flight request from the edge (its body is broken or too slow): the family's
   * error body if nothing was sent yet, then the connection is closed (the unread rest of the body
   * cannot be skipped). The handler, still waiting on the body, is aborted.
   */
  function answerFromEdge(f: InFlight, err: UploadError): void {
    const { res } = f.ctx
    const socket = f.socket // req.socket is null once the socket is gone
    f.answeredByEdge = true
    if (!res.headersSent && !res.writableEnded && !socket.destroyed) {
      res.setHeader('Connection', 'close')
      try {
        if (f.family) f.family.sendError(f.ctx, err)
        else sendJson(res, err.code === 'ERR_BODY_TIMEOUT' ? 408 : 400, { message: err.message })
      } catch (e) {
        f.ctx.log.error({ err: e }, 'error handler failed')
      }
      res.once('finish', () => socket.destroySoon())
      setTimeout(() => socket.destroy(), 5000).unref() // a client that does not read its answer
    } else {
      socket.destroy()
    }
    f.abort(err)
  }

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const code = err.code ?? 'unknown'
    opts.log.debug({ code, reason: err.message }, 'broken request or connection')
    const f = reading.get(socket)
    if (f !== undefined && !f.ctx.req.complete && code !== 'ECONNRESET' && socket.writable) {
      // The error is in the body of a request a family is reading: its answer, its shape.
      reading.delete(socket)
      const timeout = code === 'ERR_HTTP_REQUEST_TIMEOUT'
      answerFromEdge(
        f,
        timeout
          ? new UploadError('ERR_BODY_TIMEOUT', 'the request took longer than the server allows')
          : new UploadError(
              'ERR_INVALID_ARGUMENT',
              `the request body is malformed or was cut short (${code})`,
            ),
      )
      return
    }
    // No request a family could answer (a broken head, a reset, a parse error between requests):
    // node's own bare answers, where nothing else was written on this connection.
    if (
      socket.writable &&
      f === undefined &&
      code !== 'ECONNRESET' &&
      (open.get(socket) ?? 0) === 0
    ) {
      const [status, text] =
        code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large']
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout']
            : [400, 'Bad Request']
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      setTimeout(() => socket.destroy(), 1000).unref()
      return
    }
    socket.destroy()
  })

  async function readiness(): Promise<{ ok: boolean; reasons: string[] }> {
    const reasons: string[] = []
    if (!opts.ready()) reasons.push('starting or draining')
    const results = await Promise.all(
      (opts.readyChecks ?? []).map(async (check) => {
        let timer: NodeJS.Timeout | undefined
        try {
          return await Promise.race([
            check(),
            new Promise<{ ok: boolean; reason: string }>((resolve) => {
              timer = setTimeout(
                () => resolve({ ok: false, reason: 'a readiness check did not answer in time' }),
                READY_CHECK_TIMEOUT_MS,
              )
            }),
          ])
        } catch (err) {
          return { ok: false, reason: `a readiness check failed: ${(err as Error).message}` }
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    for (const r of results) if (!r.ok) reasons.push(r.reason ?? 'not ready')
    return { ok: reasons.length === 0, reasons }
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const reqId =
      typeof req.headers['x-request-id'] === 'string' &&
      /^[\w.-]{1,128}$/.test(req.headers['x-request-id'])
        ? req.headers['x-request-id']
        : randomUUID()
    res.setHeader('X-Request-Id', reqId)
    const sock = req.socket
    // `Connection: upgrade` with `Upgrade`: Ferry upgrades to nothing (RFC 9110 §7.8 lets a server
    // ignore it), but node's parser, once it has seen the upgrade, hands the connection's later
    // bytes to no one: no further request could be read on it. Answer this one, then close.
    if (
      req.headers.upgrade !== undefined &&
      /(?:^|,)\s*upgrade\s*(?:,|$)/i.test(String(req.headers.connection ?? ''))
    ) {
      res.setHeader('Connection', 'close')
      res.once('finish', () => sock.destroySoon())
    }
    open.set(sock, (open.get(sock) ?? 0) + 1)
    res.once('close', () => {
      const n = (open.get(sock) ?? 1) - 1
      if (n <= 0) open.delete(sock)
      else open.set(sock, n)
    })
    const log = opts.log.child({ reqId })
    // Errors on the request or response after the client went away are expected; without a
    // listener one would end the process.
    req.on('error', (err: NodeJS.ErrnoException) =>
      log.debug({ code: err.code }, 'request stream error'),
    )
    res.on('error', (err: NodeJS.ErrnoException) =>
      log.debug({ code: err.code }, 'response stream error'),
    )
    const ctl = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort(new Error('client went away'))
    })
    const started = process.hrtime.bigint()
    res.once('finish', () => {
      if (req.complete || sock.destroyed) return
      // The handler gave up on the body (an abandoned async iterator destroys the request): what
      // is left of it can no longer be read, so the connection cannot carry another request.
      if (req.destroyed) {
        sock.destroySoon()
        return
      }
      // Someone still reads it (Shaman lets a client finish sending after an early 208): theirs.
      if (req.readableFlowing === true) return
      // Answered before the body was read to its end (a refusal: too large, bad JSON, no auth):
      // read the rest and drop it, so the connection can carry the next request; a rest larger
      // than UNREAD_BODY_DRAIN_BYTES, or slower than its deadline, closes the connection instead.
      let left = UNREAD_BODY_DRAIN_BYTES
      const stop = setTimeout(() => sock.destroy(), UNREAD_BODY_DRAIN_MS).unref()
      req.unpipe()
      req.on('data', (d: Buffer) => {
        left -= d.length
        if (left < 0) sock.destroy()
      })
      req.once('end', () => clearTimeout(stop))
      req.once('close', () => clearTimeout(stop))
      req.resume()
    })
    res.on('finish', () => {
      // Never the raw URL: presigned-URL signatures and tokens travel in query strings.
      log.info(
        {
          method: req.method,
          url: redactUrl(req.url ?? '/'),
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
        },
        'request',
      )
    })
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/'
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://ferry.invalid')
    } catch {
      sendText(res, 400, 'bad request target')
      return
    }
    let metricsLabel: string = NO_FAMILY
    const family =
      families.find(
        (f) =>
          rawPath === f.prefix ||
          rawPath.startsWith(f.prefix.endsWith('/') ? f.prefix : `${f.prefix}/`) ||
          rawPath.startsWith(`${f.prefix}?`),
      ) ?? null
    if (metrics) {
      const own = rawPath === '/healthz' || rawPath === '/readyz' || rawPath === '/metrics'
      // The server's own routes are the edge's even under a family mounted at `/` (the
      // uploader page); a request its family does not take is nobody's (see `took` below).
      metricsLabel = own ? EDGE_FAMILY : (family?.name ?? NO_FAMILY)
      res.once('close', () => {
        const status = res.writableFinished ? res.statusCode : 'aborted'
        metrics.request(metricsLabel, req.method, status)
      })
      if (family !== null && !req.complete) countBody(req, metrics.family(family.name).bytes)
      if (rawPath === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        if (opts.metricsToken && !bearerMatches(req, opts.metricsToken)) {
          sendJson(
            res,
            401,
            { message: 'a bearer token is required' },
            {
              'WWW-Authenticate': 'Bearer realm="ferry-metrics"',
            },
          )
          return
        }
        try {
          const m = await metrics.render()
          sendText(res, 200, m.body, m.contentType)
        } catch (err) {
          log.error({ err }, 'metrics could not be rendered')
          sendText(res, 500, 'metrics unavailable')
        }
        return
      }
    }
    if (
      (rawPath === '/healthz' || rawPath === '/readyz') &&
      (req.method === 'GET' || req.method === 'HEAD')
    ) {
      const retry = { 'Retry-After': String(RETRY_AFTER_SEC[503]) }
      if (rawPath === '/healthz') {
        if (opts.ready()) sendJson(res, 200, { status: 'ok' })
        else sendJson(res, 503, { status: 'starting or stopping' }, retry)
        return
      }
      const r = await readiness()
      if (r.ok) sendJson(res, 200, { status: 'ready' })
      else sendJson(res, 503, { status: 'not ready', reasons: r.reasons }, retry)
      return
    }
    const ctx: RequestContext = { req, res, url, rawPath, reqId, log, signal: ctl.signal }
    const inflight: InFlight = {
      ctx,
      family,
      socket: sock,
      abort: (reason) => ctl.abort(reason),
      answeredByEdge: false,
    }
    let stopWatch = () => {}
    if (!req.complete) {
      const socket = sock
      reading.set(socket, inflight)
      const done = () => {
        stopWatch()
        if (reading.get(socket) === inflight) reading.delete(socket)
      }
      // Watched until the body is read or the connection goes, not until the answer: node reads
      // away the body of an early answer (a 401 before the body), and a trickle there would hold
      // the connection as well.
      req.once('end', done)
      req.once('close', done)
      stopWatch = rateWatch.watch(req, () => {
        done()
        log.info(
          { minBytesPerSec: minRate.bytesPerSec, windowSec: minRate.windowSec },
          'request body too slow; closing',
        )
        answerFromEdge(
          inflight,
          new UploadError(
            'ERR_BODY_TIMEOUT',
            `the request body arrived slower than ${minRate.bytesPerSec} bytes/s over ${minRate.windowSec} s`,
          ),
        )
      })
    }
    if (family === null) {
      sendJson(res, 404, { message: 'not found' })
      return
    }
    try {
      const took = await family.handle(ctx)
      if (!took) metricsLabel = NO_FAMILY
      if (!took && !res.headersSent) sendJson(res, 404, { message: 'not found' })
    } catch (err) {
      if (res.headersSent || inflight.answeredByEdge) {
        // Answered already (by the edge, or partly by the handler): nothing more can be said.
        if (inflight.answeredByEdge || isClientGone(err))
          log.debug({ code: (err as { code?: unknown }).code }, 'request ended after its answer')
        else log.error({ err }, 'failed after the response started')
        if (!res.writableFinished) res.destroy()
        return
      }
      try {
        family.sendError(ctx, err)
      } catch (err2) {
        log.error({ err: err2 }, 'error handler failed')
        if (!res.headersSent) sendText(res, 500, 'internal error')
      }
    }
  }

  return server
}
