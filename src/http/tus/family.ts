/**
 * tus 1.0.0 (https://tus.io/protocols/resumable-upload) at FERRY_TUS_PATH (`/files/`), with
 * creation, creation-with-upload, creation-defer-length, termination, checksum, concatenation
 * and expiration, over the same session engine as every other family. README.md beside this
 * file is the design; the statuses are its table.
 *
 *   OPTIONS /files/          discovery (204, Tus-*), or a CORS preflight
 *   POST    /files/          creation (201 + Location), with a body: creation-with-upload;
 *                            `Upload-Concat: final;…`: concatenation of finished partials
 *   HEAD    /files/<id>      Upload-Offset, Upload-Length | Upload-Defer-Length, metadata…
 *   PATCH   /files/<id>      append at Upload-Offset (204 + the new offset)
 *   DELETE  /files/<id>      termination (204; 410 afterwards)
 *   GET     /files/<id>      a finished upload's bytes (206 with Range)
 *
 * An open upload is a session `tus:<id>` (bytes in its temp file, state in the session store),
 * so any instance answers it; a finished one is a file under `<data>/tus/` (finished.ts).
 */
import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { UploadError } from '../../core/errors.js'
import type { HttpHooks, HookUpload } from '../../core/hooks/index.js'
import type { Lock, Locker, SessionRecord } from '../../core/state/types.js'
import { removeQuietly } from '../../core/storage/files.js'
import type { UploadService } from '../../core/uploads/uploads.js'
import type { Family, RequestContext } from '../context.js'
import type { CorsPolicy } from '../cors.js'
import { sendEmpty } from '../respond.js'
import { ChecksumTransform, emptyBodyMatches, type ExpectedChecksum } from './checksum.js'
import { refuse, sendTusError, tusRefusals } from './errors.js'
import { SHA256_HEADER } from '../digest-header.js'
import type { ConcatWorker, FinishedInfo, FinishedUploads } from './finished.js'
import { sendUploadResumptionSupported } from './informational.js'
import {
  completedUploadProblem,
  formatUploadLimit,
  inconsistentLengthProblem,
  type InteropVersion,
  parseInteropVersion,
  parseSfBoolean,
  parseSfNonNegativeInteger,
  PROBLEM_CONTENT_TYPE,
  type UploadLimits,
} from './headers.js'
import {
  effectiveMethod,
  metadataToRecord,
  parseCreationLength,
  parseNonNegativeInteger,
  parseTusResumable,
  parseUploadChecksum,
  parseUploadConcat,
  parseUploadMetadata,
  requireNonNegativeInteger,
  TUS_HEADER_STATUS,
  type HeaderValue,
  type Parsed,
  type UploadMetadata,
} from './headers.js'
import {
  ietfHeadHeaders,
  ietfOffsetMismatch,
  ietfOptionsHeaders,
  TUS_EXTENSIONS,
  tusHeadHeaders,
  tusOptionsHeaders,
  tusPatchHeaders,
  tusVersionMismatchHeaders,
  type HeaderMap,
} from './responses.js'

/** Concatenation of local files runs here: a worker-thread copy (IngestPool.concatFiles). */
export type { ConcatWorker }

/** What the tus family uses; the composition root builds it. */
export interface TusDeps {
  readonly uploads: UploadService
  /** Where finished uploads live (`<data>/tus`, finished.ts). */
  readonly finished: FinishedUploads
  readonly locker: Locker
  readonly concat: ConcatWorker
  readonly cors: CorsPolicy
  /** FERRY_HOOK_URL's client; null: no hooks. */
  readonly hooks: HttpHooks | null
  readonly settings: {
    /** The endpoint, `/files/`. */
    readonly path: string
    /** Tus-Max-Size. */
    readonly maxSizeBytes: number
    /** Open uploads expire this long after their last write (the session TTL). */
    readonly sessionTtlMs: number
    readonly lockTtlMs: number
    /** FERRY_PUBLIC_URL: the origin (and path prefix) of Locations; null: the request's Host. */
    readonly publicUrl: string | null
  }
}

const KEY_PREFIX = 'tus:'
const LOCK_PREFIX = 'tus-upload:'
/** 128 random bits, base64url: unguessable, since the id is the client's only credential. */
const ID = /^[A-Za-z0-9_-]{22}$/
const OCTET_STREAM = 'application/offset+octet-stream'
/** The draft's append media type (mandatory from interop 6). */
const PARTIAL_UPLOAD = 'application/partial-upload'
/** Session metadata keys (the session store keeps opaque strings). */
const META_HEADER = 'tus.metadata'
const META_CONCAT = 'tus.concat'
/** Which protocol created the upload: `tus`, `ietf-6`, `ietf-8` (absent: tus). */
const META_PROTOCOL = 'tus.protocol'
/** How long a request waits for the request holding its upload (which may be stale), ms. */
const LOCK_WAIT_MS = 2000
/** A holder whose body brought nothing for this long lets go when asked, ms. */
const STALE_MS = 500
/** HEAD waits less: it can answer without the lock. */
const HEAD_LOCK_WAIT_MS = 1000

const newId = () => randomBytes(16).toString('base64url')

/** The end (exclusive) of the contiguous bytes from 0: a tus offset. */
function offsetOf(s: SessionRecord): number {
  const first = s.received[0]
  return first !== undefined && first.start === 0 ? first.end + 1 : 0
}

function value<T>(p: Parsed<T>): T {
  if (p.ok) return p.value
  const status = TUS_HEADER_STATUS[p.error.code]
  throw refuse(status, p.error.message, status === 412 ? tusVersionMismatchHeaders() : {})
}

export type UploadProtocol = 'tus' | 'ietf-6' | 'ietf-8'

function sameProtocol(made: string | undefined, asked: UploadProtocol): void {
  const was = made === undefined || made === '' ? 'tus' : made
  if (was !== asked) {
    throw refuse(409, `this upload was created with ${was}; it cannot be continued with ${asked}`)
  }
}

/** The request's media type, lower-case, without parameters. */
function mediaType(req: RequestContext['req']): string {
  return String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase()
}

function headerOf(req: RequestContext['req'], name: string): HeaderValue {
  return req.headers[name.toLowerCase()]
}

export function createTusFamily(deps: TusDeps): Family {
  const { uploads, locker, cors, hooks, settings } = deps
  const { finished } = deps
  const base = settings.path.replace(/\/$/, '')
  const allExtensions = [...TUS_EXTENSIONS]

  /** What the client sees as this server's origin (and path prefix). */
  const originOf = (ctx: RequestContext): string =>
    settings.publicUrl ?? `http://${ctx.req.headers.host ?? '127.0.0.1'}`

  const locationOf = (ctx: RequestContext, id: string) => `${originOf(ctx)}${settings.path}${id}`

  const expiresAt = (s: SessionRecord) => new Date(s.updatedAtMs + settings.sessionTtlMs)

  /**
   * One request per upload at a time, on any instance (the shared Locker). A request that finds
   * the upload held asks the holder to let go (a release request over the bus) and waits up to
   * LOCK_WAIT_MS. The holder lets go only when it is stale: its body has brought no byte for
   * STALE_MS (a client that vanished without closing its connection). A PATCH whose bytes still
   * flow keeps the upload, and the other request answers 423 (or 409 once the offset moved).
   * `fn` gets a signal that aborts when the holder is pre-empted or loses its lock.
   */
  async function withLock<T>(
    ctx: RequestContext,
    id: string,
    fn: (signal: AbortSignal) => Promise<T>,
    waitMs = LOCK_WAIT_MS,
  ): Promise<T> {
    const preempted = new AbortController()
    const socket = ctx.req.socket
    let watchdog: NodeJS.Timeout | undefined
    const onReleaseRequested = () => {
      if (watchdog !== undefined) return
      let seen = socket.bytesRead
      let idleSince = Date.now()
      watchdog = setInterval(() => {
        if (socket.bytesRead !== seen) {
          seen = socket.bytesRead
          idleSince = Date.now()
        } else if (Date.now() - idleSince >= STALE_MS) {
          clearInterval(watchdog)
          ctx.log.info({ id }, 'tus: a stale request lets another one take the upload')
          preempted.abort(new UploadError('ERR_SESSION_BUSY', 'another request took the upload'))
        }
      }, 100)
      watchdog.unref()
    }
    let lock: Lock
    try {
      lock = await locker.acquire(LOCK_PREFIX + id, {
        ttlMs: settings.lockTtlMs,
        waitMs,
        signal: ctx.signal,
        requestRelease: true,
        onReleaseRequested,
      })
    } catch (err) {
      if (err instanceof UploadError && err.code === 'ERR_LOCKED') {
        throw refuse(423, 'another request is writing this upload; retry shortly')
      }
      throw err
    }
    try {
      return await fn(AbortSignal.any([ctx.signal, lock.signal, preempted.signal]))
    } finally {
      clearInterval(watchdog)
      await lock.release().catch(() => {})
    }
  }

  /**
   * The open session of `id`, or the answer for one that is not open: 404, 410; 409 when another
   * protocol created it (README.md: an upload stays in its protocol).
   */
  async function openSession(id: string, protocol?: UploadProtocol): Promise<SessionRecord> {
    const s = await uploads.getSession(KEY_PREFIX + id)
    if (s === null || s.state === 'committed') {
      if (await finished.isGone(id)) throw refuse(410, 'the upload was terminated')
      throw refuse(404, 'no such upload')
    }
    if (Date.now() >= s.updatedAtMs + settings.sessionTtlMs) throw refuse(410, 'the upload expired')
    if (protocol !== undefined) sameProtocol(s.metadata[META_PROTOCOL], protocol)
    return s
  }

  /** A finished upload of `id` in `protocol`, or null; 409 when another protocol made it. */
  async function finishedInfo(id: string, protocol: UploadProtocol): Promise<FinishedInfo | null> {
    const info = await finished.info(id)
    if (info !== null) sameProtocol(info.protocol, protocol)
    return info
  }

  function hookUpload(id: string, size: number | null, meta: string, sha256: string | null) {
    const parsed = parseUploadMetadata(meta)
    const metadata = parsed.ok ? metadataToRecord(parsed.value.entries) : {}
    const upload: HookUpload = { id, family: 'tus', size, sha256, metadata }
    return upload
  }

  /** The pre-create hook (when configured) may refuse a creation with its own status. */
  async function askPreCreate(
    ctx: RequestContext,
    id: string,
    total: number | null,
    metadata: UploadMetadata,
  ): Promise<void> {
    if (hooks === null) return
    const decision = await hooks.preCreate(hookUpload(id, total, metadata.header, null), ctx.signal)
    if (!decision.allow) throw refuse(decision.status, decision.message)
  }

  /**
   * Appends the request body at `offset`. Without a checksum, the bytes that arrived count even
   * when the body is cut; with one, nothing counts unless the whole body matched.
   */
  async function append(
    ctx: RequestContext,
    s: SessionRecord,
    offset: number,
    checksum: ExpectedChecksum | undefined,
    signal: AbortSignal,
  ): Promise<SessionRecord> {
    const length = s.totalBytes
    const limit = length ?? settings.maxSizeBytes
    const declared = value(
      parseNonNegativeInteger('Content-Length', ctx.req.headers['content-length']),
    )
    if (declared !== undefined && offset + declared > limit) {
      throw refuse(
        413,
        length === null
          ? `the upload would pass Tus-Max-Size (${settings.maxSizeBytes} bytes)`
          : `the body passes the upload's length (${length} bytes)`,
      )
    }
    const chunked = declared === undefined && ctx.req.headers['transfer-encoding'] !== undefined
    if ((declared ?? 0) === 0 && !chunked) {
      // An empty body has a digest too: a checksum that is not the empty body's is a mismatch
      // (tus checksum extension: 460), even though there is nothing to keep or drop.
      if (checksum !== undefined && !emptyBodyMatches(checksum)) {
        throw new UploadError(
          'ERR_CHECKSUM_MISMATCH',
          `the empty body does not match its ${checksum.algorithm} checksum`,
        )
      }
      return s
    }
    if (offset >= limit) throw refuse(413, `the upload's length (${limit} bytes) is reached`)
    let body: Readable = ctx.req
    let verify: (() => void) | undefined
    if (checksum !== undefined) {
      const t = new ChecksumTransform(checksum)
      pipeline(ctx.req, t).catch(() => {})
      body = t
      verify = () => {
        if (!t.matches()) {
          throw new UploadError(
            'ERR_CHECKSUM_MISMATCH',
            `the body does not match its ${checksum.algorithm} checksum; nothing was appended`,
          )
        }
      }
    }
    const got = await uploads.writeChunk({
      key: s.key,
      target: s.target,
      totalBytes: null,
      range: { start: offset, end: limit - 1 },
      body,
      signal,
      keepPartial: checksum === undefined,
      openEnded: true,
      ...(verify ? { verify } : {}),
    })
    return got.session
  }

  /** Publishes a session whose offset reached its length; answers the finished upload. */
  async function finish(id: string, s: SessionRecord): Promise<FinishedInfo> {
    let info: FinishedInfo | null = null
    await uploads.commit(s.key, async ({ session, tempPath, digests }) => {
      info = {
        id,
        length: session.totalBytes ?? 0,
        metadata: session.metadata[META_HEADER] ?? '',
        concat: session.metadata[META_CONCAT] || null,
        protocol: (session.metadata[META_PROTOCOL] || 'tus') as UploadProtocol,
        sha256: digests['sha256'] ?? '',
        createdAtMs: session.createdAtMs,
        finishedAtMs: Date.now(),
      }
      await finished.publish(tempPath, info)
      return JSON.stringify({ id })
    })
    const done = info ?? (await finished.info(id))
    if (done === null) throw new UploadError('ERR_IO', 'the finished upload has no info file')
    hooks?.notify('post-finish', hookUpload(id, done.length, done.metadata, done.sha256 || null))
    return done
  }

  function answer(ctx: RequestContext, status: number, headers: HeaderMap): void {
    sendEmpty(ctx.res, status, headers)
  }

  async function options(ctx: RequestContext): Promise<void> {
    const origin = ctx.req.headers.origin
    const reqMethod = ctx.req.headers['access-control-request-method']
    const tus = tusOptionsHeaders({
      extensions: allExtensions,
      maxSizeBytes: settings.maxSizeBytes,
    })
    if (cors.isPreflight('OPTIONS', origin, reqMethod)) {
      answer(ctx, 204, { ...tus, ...cors.preflightHeaders(origin) })
      return
    }
    answer(ctx, 204, tus)
  }

  async function create(ctx: RequestContext): Promise<void> {
    const { req } = ctx
    const length = value(
      parseCreationLength(headerOf(req, 'Upload-Length'), headerOf(req, 'Upload-Defer-Length')),
    )
    const metadata: UploadMetadata = value(parseUploadMetadata(headerOf(req, 'Upload-Metadata')))
    const host = `http://${req.headers.host ?? '127.0.0.1'}`
    const prefixes = [`${host}${settings.path}`]
    if (settings.publicUrl !== null) prefixes.push(`${settings.publicUrl}${settings.path}`)
    const concat = value(
      parseUploadConcat(headerOf(req, 'Upload-Concat'), {
        prefixes,
        requestUrl: `${originOf(ctx)}${ctx.rawPath}`,
        isValidId: (id) => ID.test(id),
      }),
    )
    if (concat?.kind === 'final') {
      if (length.kind !== 'none') {
        throw refuse(400, 'a final upload takes its length from its partial uploads')
      }
      await createFinal(ctx, concat.ids, String(headerOf(req, 'Upload-Concat')).trim(), metadata)
      return
    }
    if (length.kind === 'none') {
      throw refuse(400, 'Upload-Length or Upload-Defer-Length: 1 is required')
    }
    const total = length.kind === 'known' ? length.length : null
    if (total !== null && total > settings.maxSizeBytes) {
      throw refuse(413, `the upload is larger than Tus-Max-Size (${settings.maxSizeBytes} bytes)`)
    }
    const id = newId()
    await askPreCreate(ctx, id, total, metadata)
    const hasBody = mediaType(req) === OCTET_STREAM
    const checksum = hasBody
      ? value(parseUploadChecksum(headerOf(req, 'Upload-Checksum')))
      : undefined
    await withLock(ctx, id, async (signal) => {
      let s = await uploads.openSession({
        key: KEY_PREFIX + id,
        target: id,
        totalBytes: total,
        metadata: {
          [META_HEADER]: metadata.header,
          [META_PROTOCOL]: 'tus',
          ...(concat?.kind === 'partial' ? { [META_CONCAT]: 'partial' } : {}),
        },
      })
      const headers: HeaderMap = { Location: locationOf(ctx, id) }
      if (hasBody) {
        try {
          s = await append(ctx, s, 0, checksum, signal)
        } catch (err) {
          // The upload exists: a failed first chunk is answered like a failed PATCH, but the
          // client must learn the Location to resume (tus-js-client reads it from a 201 only).
          if (!(err instanceof UploadError) || err.code === 'ERR_CLIENT_ABORTED') throw err
          ctx.log.info({ code: err.code, id }, 'creation-with-upload: the body was not appended')
          s = (await uploads.getSession(s.key)) ?? s
        }
      }
      const offset = offsetOf(s)
      if (s.totalBytes !== null && offset === s.totalBytes) {
        await finish(id, s)
      } else {
        headers['Upload-Expires'] = tusPatchHeaders(offset, expiresAt(s))['Upload-Expires']!
      }
      if (hasBody) headers['Upload-Offset'] = String(offset)
      answer(ctx, 201, headers)
    })
  }

  /** `Upload-Concat: final;…`: every partial must be finished; they are copied on a worker. */
  async function createFinal(
    ctx: RequestContext,
    ids: readonly string[],
    concatHeader: string,
    metadata: UploadMetadata,
  ): Promise<void> {
    const id = newId()
    await askPreCreate(ctx, id, null, metadata)
    // Each distinct partial once, in sorted order, so two finals sharing partials cannot deadlock.
    const distinct = [...new Set(ids)].sort()
    const held: Lock[] = []
    const tmp = uploads.streamTempPath()
    try {
      for (const p of distinct) {
        const lock = await locker
          .acquire(LOCK_PREFIX + p, {
            ttlMs: settings.lockTtlMs,
            waitMs: LOCK_WAIT_MS,
            signal: ctx.signal,
          })
          .catch((err: unknown) => {
            if (err instanceof UploadError && err.code === 'ERR_LOCKED') {
              throw refuse(423, `partial upload ${p} is busy; retry shortly`)
            }
            throw err
          })
        held.push(lock)
      }
      const infos = new Map<string, FinishedInfo>()
      for (const p of distinct) {
        const info = await finished.info(p)
        if (info === null || info.concat !== 'partial') {
          throw refuse(400, `${p} is not a finished partial upload`)
        }
        infos.set(p, info)
      }
      const total = ids.reduce((n, p) => n + infos.get(p)!.length, 0)
      if (total > settings.maxSizeBytes) {
        throw refuse(413, `the final upload is larger than Tus-Max-Size (${settings.maxSizeBytes})`)
      }
      const got = await finished.concatenate(ids, tmp, deps.concat)
      if (got.bytes !== total) {
        throw new UploadError('ERR_IO', `concatenation wrote ${got.bytes} bytes, not ${total}`)
      }
      const now = Date.now()
      const info: FinishedInfo = {
        id,
        length: total,
        metadata: metadata.header,
        concat: concatHeader,
        protocol: 'tus',
        sha256: got.sha256,
        createdAtMs: now,
        finishedAtMs: now,
      }
      await finished.publish(tmp, info)
      hooks?.notify('post-finish', hookUpload(id, total, metadata.header, got.sha256))
      answer(ctx, 201, { Location: locationOf(ctx, id) })
    } finally {
      await removeQuietly(tmp)
      for (const l of held) await l.release().catch(() => {})
    }
  }

  /**
   * HEAD takes the upload's lock too (as tusd does), so a stale PATCH is asked to let go and its
   * bytes are counted before the offset is answered; a PATCH still receiving keeps the lock, and
   * the HEAD then answers the offset as it stands.
   */
  /**
   * HEAD of a finished upload, with Ferry's `X-Ferry-Sha256` (the stored bytes' sha256, hex):
   * tus has no way to report a digest, and an uploader checks what it read against it.
   */
  function answerFinished(ctx: RequestContext, info: FinishedInfo): void {
    const headers = tusHeadHeaders({
      offset: info.length,
      length: info.length,
      metadata: info.metadata,
      concat: info.concat,
      expiresAt: null,
    })
    answer(ctx, 200, info.sha256 ? { ...headers, [SHA256_HEADER]: info.sha256 } : headers)
  }

  async function head(ctx: RequestContext, id: string): Promise<void> {
    const info = await finishedInfo(id, 'tus')
    if (info !== null) {
      answerFinished(ctx, info)
      return
    }
    const report = async (locked: boolean) => {
      const done = await finishedInfo(id, 'tus')
      if (done !== null) {
        answerFinished(ctx, done)
        return
      }
      const s = await openSession(id, 'tus')
      if (locked && s.totalBytes !== null && offsetOf(s) === s.totalBytes) {
        // Every byte arrived but the upload was not finished (its last PATCH failed after the
        // write): finish it now, or the client would take the offset for success.
        const done = await finish(id, s)
        answerFinished(ctx, done)
        return
      }
      answer(
        ctx,
        200,
        tusHeadHeaders({
          offset: offsetOf(s),
          length: s.totalBytes,
          metadata: s.metadata[META_HEADER] ?? '',
          concat: s.metadata[META_CONCAT] || null,
          expiresAt: expiresAt(s),
        }),
      )
    }
    try {
      await withLock(ctx, id, () => report(true), HEAD_LOCK_WAIT_MS)
    } catch (err) {
      if (!(err instanceof UploadError && tusRefusals.fieldsOf(err)?.status === 423)) throw err
      await report(false)
    }
  }

  async function patch(ctx: RequestContext, id: string): Promise<void> {
    const { req } = ctx
    if (mediaType(req) !== OCTET_STREAM) {
      throw refuse(415, `a PATCH must have Content-Type: ${OCTET_STREAM}`)
    }
    const offset = value(requireNonNegativeInteger('Upload-Offset', headerOf(req, 'Upload-Offset')))
    const checksum = value(parseUploadChecksum(headerOf(req, 'Upload-Checksum')))
    const newLength = value(
      parseNonNegativeInteger('Upload-Length', headerOf(req, 'Upload-Length')),
    )
    await withLock(ctx, id, async (signal) => {
      const info = await finishedInfo(id, 'tus')
      if (info !== null) {
        if (info.concat?.startsWith('final;')) throw refuse(403, 'a final upload takes no PATCH')
        const empty = (req.headers['content-length'] ?? '0') === '0'
        if (offset === info.length && empty) {
          // As for an open upload: the empty body's digest must be the one announced.
          if (checksum !== undefined && !emptyBodyMatches(checksum)) {
            throw new UploadError(
              'ERR_CHECKSUM_MISMATCH',
              `the empty body does not match its ${checksum.algorithm} checksum`,
            )
          }
          answer(ctx, 204, tusPatchHeaders(info.length, null))
          return
        }
        throw refuse(409, `the upload is complete at offset ${info.length}`)
      }
      let s = await openSession(id, 'tus')
      if (newLength !== undefined && s.totalBytes === null) {
        if (newLength > settings.maxSizeBytes) {
          throw refuse(413, `the upload is larger than Tus-Max-Size (${settings.maxSizeBytes})`)
        }
        s = await uploads.declareLength(s.key, newLength)
      } else if (newLength !== undefined && newLength !== s.totalBytes) {
        throw refuse(400, `the upload's length is ${s.totalBytes}, not ${newLength}`)
      }
      const current = offsetOf(s)
      if (offset !== current) {
        throw refuse(409, `Upload-Offset is ${offset}, the upload is at ${current}`, {
          'Upload-Offset': String(current),
        })
      }
      s = await append(ctx, s, offset, checksum, signal)
      const now = offsetOf(s)
      if (s.totalBytes !== null && now === s.totalBytes) {
        await finish(id, s)
        answer(ctx, 204, tusPatchHeaders(now, null))
        return
      }
      answer(ctx, 204, tusPatchHeaders(now, expiresAt(s)))
    })
  }

  async function terminate(
    ctx: RequestContext,
    id: string,
    protocol: UploadProtocol = 'tus',
  ): Promise<void> {
    await withLock(ctx, id, async () => {
      const info = await finishedInfo(id, protocol)
      let size: number | null
      let meta: string
      if (info !== null) {
        await finished.remove(id)
        size = info.length
        meta = info.metadata
      } else {
        const s = await openSession(id, protocol)
        await uploads.abort(s.key)
        await finished.markGone(id)
        size = s.totalBytes
        meta = s.metadata[META_HEADER] ?? ''
      }
      hooks?.notify('post-terminate', hookUpload(id, size, meta, info?.sha256 || null))
      answer(ctx, 204, {})
    })
  }

  async function download(ctx: RequestContext, id: string): Promise<void> {
    const info = await finished.info(id)
    if (info === null) {
      await openSession(id)
      throw refuse(409, 'the upload is not finished; its bytes are served once it is')
    }
    const object = await finished.head(id)
    if (object === null) throw refuse(404, 'no such upload')
    const size = object.size
    const meta = parseUploadMetadata(info.metadata)
    const rec = meta.ok ? metadataToRecord(meta.value.entries) : {}
    const type = rec['filetype'] ?? rec['type'] ?? 'application/octet-stream'
    const headers: HeaderMap = {
      'Content-Type': /^[\w.+-]+\/[\w.+-]+$/.test(type) ? type : 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
    }
    const range = parseRange(ctx.req.headers.range, size)
    if (range === 'unsatisfiable') {
      answer(ctx, 416, { 'Content-Range': `bytes */${size}` })
      return
    }
    const [start, end, status] = range === null ? [0, size - 1, 200] : [range.start, range.end, 206]
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${size}`
    headers['Content-Length'] = String(end - start + 1)
    ctx.res.writeHead(status, headers)
    if (ctx.req.method === 'HEAD' || end < start) {
      ctx.res.end()
      return
    }
    await pipeline(await finished.read(id, { start, end }), ctx.res)
  }

  // --- IETF "Resumable Uploads for HTTP" (interop 6 and 8) on the same endpoint -------------

  const protocolOfVersion = (v: InteropVersion): UploadProtocol => (v === 6 ? 'ietf-6' : 'ietf-8')

  function ietfLimits(s: SessionRecord | null): UploadLimits {
    const limits: { maxSize: number; maxAgeSec?: number } = { maxSize: settings.maxSizeBytes }
    if (s !== null) {
      const left = Math.ceil((s.updatedAtMs + settings.sessionTtlMs - Date.now()) / 1000)
      limits.maxAgeSec = Math.max(0, left)
    }
    return limits
  }

  function sendProblem(
    ctx: RequestContext,
    status: number,
    problem: object,
    headers: HeaderMap = {},
  ): void {
    const body = JSON.stringify(problem)
    ctx.res.writeHead(status, {
      'Content-Type': PROBLEM_CONTENT_TYPE,
      'Content-Length': String(Buffer.byteLength(body)),
      ...headers,
    })
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body)
  }

  /** The draft's answer to a request whose body was read to its end with `Upload-Complete: ?1`. */
  async function ietfComplete(
    id: string,
    s: SessionRecord,
  ): Promise<{ info: FinishedInfo } | { inconsistent: true }> {
    const end = offsetOf(s)
    let session = s
    if (session.totalBytes === null) session = await uploads.declareLength(s.key, end)
    else if (session.totalBytes !== end) return { inconsistent: true }
    return { info: await finish(id, session) }
  }

  async function ietfCreate(ctx: RequestContext, version: InteropVersion): Promise<void> {
    const { req } = ctx
    const complete = value(parseSfBoolean('Upload-Complete', headerOf(req, 'Upload-Complete')))
    if (complete === undefined) {
      throw refuse(400, 'Upload-Complete (?0 or ?1) is required to create an upload')
    }
    const declared = value(
      parseSfNonNegativeInteger('Upload-Length', headerOf(req, 'Upload-Length')),
    )
    const bodyLength = value(
      parseNonNegativeInteger('Content-Length', req.headers['content-length']),
    )
    if (complete && declared !== undefined && bodyLength !== undefined && declared !== bodyLength) {
      sendProblem(ctx, 400, inconsistentLengthProblem())
      return
    }
    const total = declared ?? (complete ? (bodyLength ?? null) : null)
    if (total !== null && total > settings.maxSizeBytes) {
      const limit = formatUploadLimit(ietfLimits(null), version)
      throw refuse(413, `the upload is larger than ${settings.maxSizeBytes} bytes`, {
        'Upload-Limit': limit,
      })
    }
    const metadata: UploadMetadata = value(parseUploadMetadata(headerOf(req, 'Upload-Metadata')))
    const id = newId()
    await askPreCreate(ctx, id, total, metadata)
    const protocol = protocolOfVersion(version)
    await withLock(ctx, id, async (signal) => {
      let s = await uploads.openSession({
        key: KEY_PREFIX + id,
        target: id,
        totalBytes: total,
        metadata: { [META_HEADER]: metadata.header, [META_PROTOCOL]: protocol },
      })
      const location = locationOf(ctx, id)
      // Before the body: the client learns where to resume if the request breaks.
      sendUploadResumptionSupported(ctx.res, {
        location,
        interopVersion: version,
        uploadLimit: formatUploadLimit(ietfLimits(s), version),
      })
      s = await append(ctx, s, 0, undefined, signal)
      const headers: HeaderMap = {
        Location: location,
        'Upload-Draft-Interop-Version': String(version),
      }
      if (complete) {
        const done = await ietfComplete(id, s)
        if ('inconsistent' in done) {
          sendProblem(ctx, 400, inconsistentLengthProblem(), headers)
          return
        }
        headers['Upload-Offset'] = String(done.info.length)
        headers['Upload-Complete'] = '?1'
      } else {
        headers['Upload-Offset'] = String(offsetOf(s))
        headers['Upload-Complete'] = '?0'
      }
      answer(ctx, 201, headers)
    })
  }

  async function ietfHead(ctx: RequestContext, id: string, version: InteropVersion): Promise<void> {
    const protocol = protocolOfVersion(version)
    const report = async () => {
      const info = await finishedInfo(id, protocol)
      if (info !== null) {
        const view = { offset: info.length, complete: true, length: info.length }
        answer(ctx, 204, ietfHeadHeaders({ ...view, limits: ietfLimits(null) }, version))
        return
      }
      const s = await openSession(id, protocol)
      const view = { offset: offsetOf(s), complete: false, length: s.totalBytes }
      answer(ctx, 204, ietfHeadHeaders({ ...view, limits: ietfLimits(s) }, version))
    }
    try {
      await withLock(ctx, id, report, HEAD_LOCK_WAIT_MS)
    } catch (err) {
      if (!(err instanceof UploadError && tusRefusals.fieldsOf(err)?.status === 423)) throw err
      await report()
    }
  }

  async function ietfAppend(ctx: RequestContext, id: string, version: InteropVersion) {
    const { req } = ctx
    if (mediaType(req) !== PARTIAL_UPLOAD) {
      throw refuse(415, `an append must have Content-Type: ${PARTIAL_UPLOAD}`)
    }
    const offset = value(parseSfNonNegativeInteger('Upload-Offset', headerOf(req, 'Upload-Offset')))
    if (offset === undefined) throw refuse(400, 'Upload-Offset is required')
    const complete = value(parseSfBoolean('Upload-Complete', headerOf(req, 'Upload-Complete')))
    if (complete === undefined) throw refuse(400, 'Upload-Complete (?0 or ?1) is required')
    const newLength = value(
      parseSfNonNegativeInteger('Upload-Length', headerOf(req, 'Upload-Length')),
    )
    const protocol = protocolOfVersion(version)
    const echo = { 'Upload-Draft-Interop-Version': String(version) }
    await withLock(ctx, id, async (signal) => {
      const info = await finishedInfo(id, protocol)
      if (info !== null) {
        const empty = (req.headers['content-length'] ?? '0') === '0'
        if (!empty) sendProblem(ctx, 400, inconsistentLengthProblem(), echo)
        else if (version === 6) sendProblem(ctx, 400, completedUploadProblem(), echo)
        else throw refuse(410, 'the upload is complete')
        return
      }
      let s = await openSession(id, protocol)
      if (newLength !== undefined) {
        if (s.totalBytes === null) {
          if (newLength > settings.maxSizeBytes) {
            throw refuse(413, `the upload is larger than ${settings.maxSizeBytes} bytes`)
          }
          s = await uploads.declareLength(s.key, newLength)
        } else if (s.totalBytes !== newLength) {
          sendProblem(ctx, 400, inconsistentLengthProblem(), echo)
          return
        }
      }
      const current = offsetOf(s)
      if (offset !== current) {
        const mismatch = ietfOffsetMismatch(current, offset)
        ctx.res.writeHead(mismatch.status, { ...mismatch.headers, ...echo })
        ctx.res.end(mismatch.body)
        return
      }
      s = await append(ctx, s, offset, undefined, signal)
      if (complete) {
        const done = await ietfComplete(id, s)
        if ('inconsistent' in done) {
          sendProblem(ctx, 400, inconsistentLengthProblem(), echo)
          return
        }
        answer(ctx, 200, {
          ...echo,
          'Upload-Offset': String(done.info.length),
          'Upload-Complete': '?1',
        })
        return
      }
      answer(ctx, 204, { ...echo, 'Upload-Offset': String(offsetOf(s)), 'Upload-Complete': '?0' })
    })
  }

  async function ietf(ctx: RequestContext, method: string, rest: string): Promise<void> {
    const version = value(parseInteropVersion(headerOf(ctx.req, 'Upload-Draft-Interop-Version')))
    if (method === 'OPTIONS') {
      const origin = ctx.req.headers.origin
      const preflight = cors.isPreflight(
        'OPTIONS',
        origin,
        ctx.req.headers['access-control-request-method'],
      )
      answer(ctx, 204, {
        ...ietfOptionsHeaders(ietfLimits(null), version),
        ...(preflight ? cors.preflightHeaders(origin) : {}),
      })
      return
    }
    if (rest === '') {
      if (method !== 'POST') throw refuse(405, `${method} is not allowed on the upload collection`)
      await ietfCreate(ctx, version)
      return
    }
    if (!ID.test(rest)) throw refuse(404, 'no such upload')
    switch (method) {
      case 'HEAD':
        return ietfHead(ctx, rest, version)
      case 'PATCH':
        return ietfAppend(ctx, rest, version)
      case 'DELETE':
        return terminate(ctx, rest, protocolOfVersion(version))
      case 'GET':
        return download(ctx, rest)
      default:
        throw refuse(405, `${method} is not allowed on an upload`)
    }
  }

  async function handle(ctx: RequestContext): Promise<boolean> {
    const { req, res } = ctx
    const rest = ctx.rawPath === base ? '' : ctx.rawPath.slice(settings.path.length)
    if (ctx.rawPath !== base && !ctx.rawPath.startsWith(settings.path)) return false
    for (const [k, v] of Object.entries(cors.responseHeaders(req.headers.origin)))
      res.setHeader(k, v)
    const method = value(
      effectiveMethod(req.method ?? 'GET', headerOf(req, 'X-HTTP-Method-Override')),
    )
    // The draft's requests carry their interop version; tus's carry Tus-Resumable.
    if (req.headers['upload-draft-interop-version'] !== undefined) {
      await ietf(ctx, method, rest)
      return true
    }
    if (method === 'OPTIONS') {
      await options(ctx)
      return true
    }
    res.setHeader('Tus-Resumable', '1.0.0')
    if (method !== 'GET') value(parseTusResumable(headerOf(req, 'Tus-Resumable')))
    if (rest === '') {
      if (method !== 'POST') throw refuse(405, `${method} is not allowed on the upload collection`)
      await create(ctx)
      return true
    }
    if (!ID.test(rest)) throw refuse(404, 'no such upload')
    switch (method) {
      case 'HEAD':
        await head(ctx, rest)
        return true
      case 'PATCH':
        await patch(ctx, rest)
        return true
      case 'DELETE':
        await terminate(ctx, rest)
        return true
      case 'GET':
        await download(ctx, rest)
        return true
      default:
        throw refuse(405, `${method} is not allowed on an upload`)
    }
  }

  return {
    name: 'tus',
    prefix: base,
    handle,
    sendError: sendTusError,
  }
}

/** One `bytes=` range (RFC 9110 14.1.2); null: no usable Range header (answer the whole). */
export function parseRange(
  raw: string | undefined,
  size: number,
): { start: number; end: number } | null | 'unsatisfiable' {
  if (raw === undefined) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(raw.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}
