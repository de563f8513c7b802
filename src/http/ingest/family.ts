/**
 * DaSCH dsp-ingest bulk-ingest routes (notes/lakefs-dspingest.md part 2; the 2024-05 OpenAPI file
 * for the three routes it has, the tapir code for the upload route):
 *
 *   POST /projects/{shortcode}/bulk-ingest/ingest/{file}  200 {"status":"ok"}   upload one file
 *   POST /projects/{shortcode}/bulk-ingest                202 {"id":sc}         start the ingest
 *   GET  /projects/{shortcode}/bulk-ingest/mapping.csv    200 text/csv          the mapping
 *   POST /projects/{shortcode}/bulk-ingest/finalize       200 {"id":sc}         clean up
 *
 * Order of checks: route → method (405) → bearer JWT (401) → shortcode (400) → scope (401) →
 * the route's own (404 / 409 / 400). The shortcode is echoed and used for folders and the lock
 * exactly as received (dsp-ingest does not upper-case the path parameter), so `00ff` and `00FF`
 * are different projects on disk.
 */
import type { Engine } from '../../app.js'
import type { IngestConfig } from '../../config/config.js'
import { UploadError } from '../../core/errors.js'
import { isInTheWay } from '../../core/storage/errno.js'
import { DEFAULT_INGEST_WORKER_FILE, IngestPool } from '../../core/hashing/ingest-pool.js'
import { BulkIngestService } from '../../core/ingest/bulk-ingest.js'
import { isShortcode } from '../../core/ingest/names.js'
import { uploadBody } from '../body.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty, sendJson, sendText } from '../respond.js'
import { createJwtVerifier, requireProjectWrite } from './auth.js'
import { sendIngestError } from './errors.js'

const PREFIX = '/projects'
/** dsp-ingest waits this long for a busy project semaphore before answering 409, ms. */
const LOCK_WAIT_MS = 400
/**
 * Uploads wait this long for each other's publish (a rename, held for milliseconds), ms. Unlike
 * dsp-ingest, concurrent uploads to one project do not refuse each other; a running ingest still
 * refuses them at once.
 */
const PUBLISH_WAIT_MS = 30_000

type Route = 'upload' | 'start' | 'mapping' | 'finalize'
const METHOD: Readonly<Record<Route, string>> = { upload: 'POST', start: 'POST', mapping: 'GET', finalize: 'POST' }

/** Matches the raw (still percent-encoded) path; `{file}` is exactly one segment. */
function matchRoute(rawPath: string): { route: Route; sc: string; file: string | null } | null {
  const parts = rawPath.split('/')
  if (parts.length < 4 || parts[0] !== '' || parts[1] !== 'projects' || parts[3] !== 'bulk-ingest') return null
  const sc = parts[2]!
  const rest = parts.slice(4)
  if (rest.length === 0) return { route: 'start', sc, file: null }
  if (rest.length === 1 && rest[0] === 'finalize') return { route: 'finalize', sc, file: null }
  if (rest.length === 1 && rest[0] === 'mapping.csv') return { route: 'mapping', sc, file: null }
  if (rest.length === 2 && rest[0] === 'ingest') return { route: 'upload', sc, file: rest[1]! }
  return null
}

function decode(raw: string, argument: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'bad percent-encoding', {
      details: { argument, reason: `'${raw}' is not valid percent-encoding` },
    })
  }
}

export function createIngestFamily(engine: Engine, settings: IngestConfig): Family {
  const pool = new IngestPool({ workerFile: DEFAULT_INGEST_WORKER_FILE, threads: Math.min(engine.config.pool.workers, settings.maxParallel) })
  const ingest = new BulkIngestService({
    layout: engine.layout,
    locker: engine.state.locker,
    pool,
    log: engine.log.child({ family: 'ingest' }),
    lockTtlMs: engine.config.locks.ttlMs,
    lockWaitMs: LOCK_WAIT_MS,
    publishWaitMs: PUBLISH_WAIT_MS,
    maxParallel: settings.maxParallel,
  })
  const verify = createJwtVerifier(settings.jwt)
  const maxUploadBytes = engine.config.limits.maxUploadBytes

  async function upload(ctx: RequestContext, sc: string, rawFile: string) {
    // dsp-ingest takes the project semaphore before it looks at the file name: 409 beats 400.
    await ingest.assertIdle(sc)
    const file = decode(rawFile, "Path variable: 'filename''")
    let target: { relPath: string }
    try {
      target = ingest.uploadTarget(sc, file)
    } catch (err) {
      if (!(err instanceof UploadError)) throw err
      // dsp-ingest's wording, stray quote and all: `Path variable: 'filename''`.
      throw new UploadError(err.code, err.message, {
        details: { argument: "Path variable: 'filename''", reason: `'${file}' is invalid: ${err.message}` },
      })
    }
    const body = await uploadBody(ctx.req, maxUploadBytes)
    const got = await engine.uploads.receiveWhole(body.stream, {
      maxBytes: maxUploadBytes,
      ...(body.length !== null ? { expectedBytes: body.length } : {}),
      signal: ctx.signal,
    })
    try {
      await body.done
      // The bytes streamed without the lock; only the publish (a rename) needs it, so concurrent
      // uploads to one project do not refuse each other, and none lands while an ingest runs.
      await ingest.withPublishLock(sc, () => ingest.publishUpload(sc, target.relPath, got.tempPath))
    } catch (err) {
      await engine.uploads.discard(got.tempPath)
      if (isInTheWay(err)) {
        throw new UploadError('ERR_ALREADY_EXISTS', 'a file or folder is in the way of this path', {
          cause: err,
          details: { argument: "Path variable: 'filename''", reason: `'${file}' is invalid: a file or folder is in the way` },
        })
      }
      throw err
    }
    await engine.uploads.discard(got.tempPath) // published (the temp file is gone): forget it
    ctx.log.info({ project: sc, file: target.relPath, bytes: got.bytes, sha256: got.digests.sha256 }, 'bulk-ingest file uploaded')
    sendJson(ctx.res, 200, { status: 'ok' })
  }

  return {
    name: 'ingest',
    prefix: PREFIX,
    sendError: sendIngestError,
    async handle(ctx) {
      const m = matchRoute(ctx.rawPath)
      if (m === null) return false
      const method = ctx.req.method ?? 'GET'
      if (method !== METHOD[m.route]) {
        sendEmpty(ctx.res, 405, { Allow: METHOD[m.route] })
        return true
      }
      const principal = await verify(ctx.req.headers.authorization)
      const sc = decode(m.sc, "Path variable: 'shortcode'")
      if (!isShortcode(sc)) {
        throw new UploadError('ERR_INVALID_ARGUMENT', 'invalid shortcode', {
          details: { argument: "Path variable: 'shortcode'", reason: `'${sc}' is not a project shortcode: exactly 4 hexadecimal characters` },
        })
      }
      requireProjectWrite(principal, sc)
      switch (m.route) {
        case 'upload':
          await upload(ctx, sc, m.file!)
          break
        case 'start':
          await ingest.start(sc)
          sendJson(ctx.res, 202, { id: sc })
          break
        case 'finalize':
          // As dsp-ingest: answered at once, the removal runs after the answer, under the lock.
          await ingest.finalize(sc)
          sendJson(ctx.res, 200, { id: sc })
          break
        case 'mapping':
          sendText(ctx.res, 200, await ingest.readMapping(sc), 'text/csv; charset=utf-8', {
            'Content-Disposition': 'attachment; filename=mapping.csv',
          })
          break
      }
      return true
    },
    async close() {
      await ingest.close()
      await pool.close()
    },
  }
}
