import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Family, RequestContext } from './context.js'
import { sendJson, sendText } from './respond.js'

export interface HttpServerOptions {
  readonly families: readonly Family[]
  readonly log: Logger
  readonly requestTimeoutMs: number
  readonly idleTimeoutMs: number
  /** `GET /healthz` answers 200 while this is true. */
  readonly ready: () => boolean
}

/**
 * node:http server: request id, family dispatch by prefix, last-resort 500 that logs the stack and
 * shows the client nothing internal.
 */
export function createHttpServer(opts: HttpServerOptions): Server {
  const families = [...opts.families].sort((a, b) => b.prefix.length - a.prefix.length)
  const server = createServer(
    // Idle keep-alive sockets live longer than a load balancer's (commonly 60 s), so the balancer,
    // not Ferry, closes them: a server closing first races the balancer's reuse (ECONNRESET).
    { requestTimeout: opts.requestTimeoutMs, keepAliveTimeout: 65_000, headersTimeout: 30_000 },
    (req, res) => {
      void handle(req, res)
    },
  )
  server.timeout = opts.idleTimeoutMs // a socket silent this long is closed

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const reqId = (typeof req.headers['x-request-id'] === 'string' && /^[\w.-]{1,128}$/.test(req.headers['x-request-id'])
      ? req.headers['x-request-id']
      : randomUUID())
    res.setHeader('X-Request-Id', reqId)
    const log = opts.log.child({ reqId })
    const ctl = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort(new Error('client went away'))
    })
    const started = process.hrtime.bigint()
    res.on('finish', () => {
      log.info({ method: req.method, url: req.url, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request')
    })
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/'
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://ferry.invalid')
    } catch {
      sendText(res, 400, 'bad request target')
      return
    }
    if (rawPath === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      if (opts.ready()) sendJson(res, 200, { status: 'ok' })
      else sendJson(res, 503, { status: 'starting or stopping' })
      return
    }
    const family = families.find((f) => rawPath === f.prefix || rawPath.startsWith(f.prefix.endsWith('/') ? f.prefix : `${f.prefix}/`) || rawPath.startsWith(`${f.prefix}?`))
    const ctx: RequestContext = { req, res, url, rawPath, reqId, log, signal: ctl.signal }
    if (family === undefined) {
      sendJson(res, 404, { message: 'not found' })
      return
    }
    try {
      const took = await family.handle(ctx)
      if (!took && !res.headersSent) sendJson(res, 404, { message: 'not found' })
    } catch (err) {
      if (res.headersSent) {
        log.error({ err }, 'failed after the response started')
        res.destroy()
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
