/**
 * DaSCH dsp-ingest bulk-ingest routes (dasch-swiss/dsp-ingest v0.21.1 BulkIngestService; the
 * 2024-05 OpenAPI file for the three routes it has, the tapir code for the upload route):
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
import type { JwtSettings } from './auth.js'
import { UploadError } from '../../core/errors.js'
import type { BulkIngestService } from '../../core/ingest/bulk-ingest.js'
import { isInTheWay } from '../../core/storage/errno.js'
import { isShortcode } from '../../core/ingest/names.js'
import type { UploadService } from '../../core/uploads/uploads.js'
import { uploadBody } from '../body.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty, sendJson, sendText } from '../respond.js'
import { createJwtVerifier, requireProjectWrite } from './auth.js'
import { ingestRefusals, sendIngestError } from './errors.js'

const PREFIX = '/projects'

/** What the bulk-ingest family uses; the composition root builds the services and hands them in. */
export interface IngestDeps {
  /** Project locks, ingest jobs, mapping; with its own worker pool. */
  readonly ingest: BulkIngestService
  readonly uploads: UploadService
  /** FERRY_CONFIG `ingest.jwt`. */
  readonly jwt: JwtSettings
  readonly maxUploadBytes: number
}

/** dsp-ingest's names of the path parameters in a BadRequest; the stray quote is theirs. */
const FILENAME_ARGUMENT = "Path variable: 'filename''"
const SHORTCODE_ARGUMENT = "Path variable: 'shortcode'"

type Route = 'upload' | 'start' | 'mapping' | 'finalize'
const METHOD: Readonly<Record<Route, string>> = {
  upload: 'POST',
  start: 'POST',
  mapping: 'GET',
  finalize: 'POST',
}

/** Matches the raw (still percent-encoded) path; `{file}` is exactly one segment. */
function matchRoute(rawPath: string): { route: Route; sc: string; file: string | null } | null {
  const parts = rawPath.split('/')
  if (parts.length < 4 || parts[0] !== '' || parts[1] !== 'projects' || parts[3] !== 'bulk-ingest')
    return null
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
    throw ingestRefusals.error('ERR_INVALID_ARGUMENT', 'bad percent-encoding', {
      kind: 'argument',
      argument,
      reason: `'${raw}' is not valid percent-encoding`,
    })
  }
}

export function createIngestFamily(deps: IngestDeps): Family {
  const { ingest, uploads, maxUploadBytes } = deps
  const verify = createJwtVerifier(deps.jwt)

  async function upload(ctx: RequestContext, sc: string, rawFile: string) {
    // dsp-ingest takes the project semaphore before it looks at the file name: 409 beats 400.
    await ingest.assertIdle(sc)
    const file = decode(rawFile, FILENAME_ARGUMENT)
    let target: { relPath: string }
    try {
      target = ingest.uploadTarget(sc, file)
    } catch (err) {
      if (!(err instanceof UploadError)) throw err
      throw ingestRefusals.error(err.code, err.message, {
        kind: 'argument',
        argument: FILENAME_ARGUMENT,
        reason: `'${file}' is invalid: ${err.message}`,
      })
    }
    const body = await uploadBody(ctx.req, maxUploadBytes)
    const got = await uploads.receiveWhole(body.stream, {
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
      await uploads.discard(got.tempPath)
      if (isInTheWay(err)) {
        const reason = `'${file}' is invalid: a file or folder is in the way`
        const message = 'a file or folder is in the way of this path'
        throw ingestRefusals.error(
          'ERR_ALREADY_EXISTS',
          message,
          {
            kind: 'argument',
            argument: FILENAME_ARGUMENT,
            reason,
          },
          { cause: err },
        )
      }
      throw err
    }
    await uploads.discard(got.tempPath) // published (the temp file is gone): forget it
    uploads.announceFinished({
      family: 'ingest',
      id: `${sc}/${target.relPath}`,
      size: got.bytes,
      sha256: got.digests.sha256 ?? null,
    })
    ctx.log.info(
      { project: sc, file: target.relPath, bytes: got.bytes, sha256: got.digests.sha256 },
      'bulk-ingest file uploaded',
    )
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
      const sc = decode(m.sc, SHORTCODE_ARGUMENT)
      if (!isShortcode(sc)) {
        throw ingestRefusals.error('ERR_INVALID_ARGUMENT', 'invalid shortcode', {
          kind: 'argument',
          argument: SHORTCODE_ARGUMENT,
          reason: `'${sc}' is not a project shortcode: exactly 4 hexadecimal characters`,
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
  }
}
