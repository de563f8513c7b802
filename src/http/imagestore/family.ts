/**
 * Service Fabric ImageStore REST API (Azure/azure-rest-api-specs servicefabric.json 9.1;
 * runtime: microsoft/service-fabric: httpgateway/imagestorehandler.cpp,
 * Management/FileStoreService): upload sessions of Content-Range chunks, commit, cancel, whole-file
 * PUT, content listing, copy and delete. PascalCase JSON, 64-bit numbers as strings, errors as
 * {"Error":{"Code","Message"}}.
 */
import { UploadError } from '../../core/errors.js'
import { checkRelativePath, type PathRules } from '../../core/paths.js'
import type { ByteRange } from '../../core/state/range-set.js'
import type { SessionRecord } from '../../core/state/types.js'
import { isInTheWay } from '../../core/storage/errno.js'
import type { UploadService } from '../../core/uploads/uploads.js'
import { checkDeclaredSize, isMultipart, readJson, uploadBody } from '../body.js'
import type { BearerAuthConfig } from '../../config/config.js'
import { createBearerCheck } from '../auth/bearer.js'
import type { Family, RequestContext } from '../context.js'
import { SHA256_HEADER } from '../digest-header.js'
import { sendEmpty, sendJson } from '../respond.js'
import { copyContent, deleteContent, listContent, type ImageStoreObjects } from './content.js'
import { fabricRefusals, sendImageStoreError } from './errors.js'

export interface ImageStoreOptions {
  readonly uploads: UploadService
  /** The store's files (the data directory's store/ area). */
  readonly objects: ImageStoreObjects
  readonly maxUploadBytes: number
  readonly maxJsonBytes: number
  readonly pathRules?: PathRules
  /** FERRY_CONFIG `imagestore.auth`: bearer tokens or JWTs; null or absent: open. */
  readonly auth?: BearerAuthConfig | null
  /** Most entries one content listing answers before it pages (ContinuationToken). Default 1000. */
  readonly listPageSize?: number
}

const PREFIX = '/ImageStore'
const KEY_PREFIX = 'imagestore:'
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** Top-level folders the runtime refuses to delete. */
const RESERVED = new Set(['store', 'windowsfabricstore'])

// `bytes a-b/total` (inclusive), or `bytes */0` for an empty file. Anything else is refused.
export function parseContentRange(header: string | undefined): { range: ByteRange; total: number } {
  if (header === undefined || header.trim() === '') {
    throw new UploadError(
      'ERR_INVALID_RANGE',
      'Content-Range is required: bytes <first>-<last>/<length>',
    )
  }
  const empty = /^bytes\s+\*\/0$/i.exec(header.trim())
  if (empty) return { range: { start: 0, end: -1 }, total: 0 }
  const m = /^bytes\s+(\d{1,16})-(\d{1,16})\/(\d{1,16})$/i.exec(header.trim())
  if (!m)
    throw new UploadError(
      'ERR_INVALID_RANGE',
      `malformed Content-Range "${header}"; expected bytes <first>-<last>/<length>`,
    )
  const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])]
  if (![start, end, total].every(Number.isSafeInteger))
    throw new UploadError('ERR_INVALID_RANGE', 'Content-Range numbers are too large')
  if (start > end) throw new UploadError('ERR_INVALID_RANGE', 'Content-Range starts after it ends')
  if (end >= total)
    throw new UploadError(
      'ERR_INVALID_RANGE',
      `Content-Range ends at ${end}, beyond a file of ${total} bytes`,
    )
  return { range: { start, end }, total }
}

/** api-version is required and must be a number (a `-preview` suffix is allowed). */
function checkApiVersion(url: URL): void {
  const v = url.searchParams.get('api-version')
  if (v === null || v === '')
    throw new UploadError('ERR_INVALID_ARGUMENT', 'api-version is required')
  const m = /^(\d+(?:\.\d+)?)(?:-preview)?$/.exec(v)
  if (!m || Number(m[1]) < 1)
    throw new UploadError('ERR_INVALID_ARGUMENT', `unsupported api-version "${v}"`)
}

type IdRule = 'chunk' | 'commit'
function sessionIdOf(url: URL, rule: IdRule): string {
  const id = url.searchParams.get('session-id')
  if (id === null || id === '') {
    // Runtime: missing id is FABRIC_E_INVALID_UPLOAD_SESSION_ID for UploadChunk/GetUploadSession,
    // E_INVALIDARG for commit and delete.
    if (rule === 'chunk') {
      throw fabricRefusals.error('ERR_INVALID_ARGUMENT', 'session-id is required', {
        fabricCode: 'FABRIC_E_INVALID_UPLOAD_SESSION_ID',
      })
    }
    throw new UploadError('ERR_INVALID_ARGUMENT', 'session-id is required')
  }
  if (!GUID.test(id)) throw new UploadError('ERR_INVALID_ARGUMENT', `Invalid GUID "${id}"`)
  return id.toLowerCase()
}

function sessionInfo(uploads: UploadService, s: SessionRecord) {
  return {
    StoreRelativePath: s.target,
    SessionId: s.key.slice(KEY_PREFIX.length),
    FileSize: String(s.totalBytes),
    ModifiedDate: new Date(s.updatedAtMs).toISOString(),
    ExpectedRanges: uploads
      .missing(s)
      .map((r) => ({ StartPosition: String(r.start), EndPosition: String(r.end) })),
  }
}

/** Splits `/ImageStore/<content path>/$/<Op>` (raw, percent-encoded) into decoded path and op. */
function splitPath(rawPath: string): { content: string | null; op: string | null } {
  let rest = rawPath.slice(PREFIX.length)
  let op: string | null = null
  const m = /\/(?:\$|%24)\/([A-Za-z]+)$/.exec(rest)
  if (m) {
    op = m[1]!
    rest = rest.slice(0, m.index)
  }
  if (rest === '' || rest === '/') return { content: null, op }
  let decoded: string
  try {
    decoded = decodeURIComponent(rest.slice(1))
  } catch {
    throw new UploadError('ERR_INVALID_PATH', 'the path is not valid percent-encoding')
  }
  return { content: decoded, op }
}

export function createImageStoreFamily(opts: ImageStoreOptions): Family {
  const { uploads, objects } = opts
  const authenticate = opts.auth ? createBearerCheck(opts.auth) : null

  const storePath = (content: string) => {
    const segs = checkRelativePath(content, opts.pathRules)
    return { segs, rel: segs.join('/') }
  }

  async function uploadChunk(ctx: RequestContext, content: string) {
    const id = sessionIdOf(ctx.url, 'chunk')
    const { rel } = storePath(content)
    const { range, total } = parseContentRange(ctx.req.headers['content-range'])
    if (total > opts.maxUploadBytes) {
      throw new UploadError(
        'ERR_BODY_TOO_LARGE',
        `a file of ${total} bytes is over the limit of ${opts.maxUploadBytes}`,
      )
    }
    const want = range.end - range.start + 1
    const declared = isMultipart(ctx.req) ? null : checkDeclaredSize(ctx.req, opts.maxUploadBytes)
    if (declared !== null && declared !== Math.max(0, want)) {
      throw new UploadError(
        'ERR_SIZE_MISMATCH',
        `Content-Length ${declared} does not match the range's ${Math.max(0, want)} bytes`,
      )
    }
    const body = await uploadBody(ctx.req, Math.max(0, want))
    await uploads.writeChunk({
      key: KEY_PREFIX + id,
      target: rel,
      totalBytes: total,
      range,
      body: body.stream,
      signal: ctx.signal,
    })
    await body.done
    sendEmpty(ctx.res, 200)
  }

  async function uploadFile(ctx: RequestContext, content: string) {
    const { rel } = storePath(content)
    const body = await uploadBody(ctx.req, opts.maxUploadBytes)
    const got = await uploads.receiveWhole(body.stream, {
      maxBytes: opts.maxUploadBytes,
      ...(body.length !== null ? { expectedBytes: body.length } : {}),
      signal: ctx.signal,
    })
    try {
      await body.done
    } catch (err) {
      await uploads.discard(got.tempPath)
      throw err
    }
    const sha256 = got.digests.sha256 ?? null
    await publishInStore(got.tempPath, rel, false, sha256)
    uploads.announceFinished({ family: 'imagestore', id: rel, size: got.bytes, sha256 })
    ctx.log.info({ path: content, bytes: got.bytes, sha256: got.digests.sha256 }, 'file stored')
    sendEmpty(ctx.res, 200, sha256 ? { [SHA256_HEADER]: sha256 } : {})
  }

  async function publishInStore(
    tempPath: string,
    rel: string,
    alreadySynced = false,
    sha256: string | null = null,
  ) {
    try {
      // The sha256 rides along as the object's metadata where the store keeps any (S3).
      await objects.put(rel, tempPath, {
        mode: 'overwrite',
        alreadySynced,
        ...(sha256 !== null ? { sha256 } : {}),
      })
    } catch (err) {
      if (isInTheWay(err)) {
        const msg = 'a file or folder is in the way of this path'
        throw new UploadError('ERR_ALREADY_EXISTS', msg, { cause: err })
      }
      throw err
    } finally {
      // Published, the temp file is gone: this forgets it; after a failure it also removes it.
      await uploads.discard(tempPath)
    }
  }

  async function commit(ctx: RequestContext) {
    const id = sessionIdOf(ctx.url, 'commit')
    let result: string
    try {
      result = await uploads.commit(KEY_PREFIX + id, async ({ session, tempPath, digests }) => {
        const rel = storePath(session.target).rel
        await publishInStore(tempPath, rel, true) // commit fsynced it
        uploads.announceFinished({
          family: 'imagestore',
          id: rel,
          size: session.totalBytes,
          sha256: digests.sha256 ?? null,
        })
        return JSON.stringify({ sha256: digests.sha256, bytes: session.totalBytes })
      })
    } catch (err) {
      // Runtime: an unknown or expired session id on commit is 400 E_INVALIDARG.
      if (err instanceof UploadError && err.code === 'ERR_SESSION_NOT_FOUND') {
        throw new UploadError('ERR_INVALID_ARGUMENT', `no upload session ${id}`)
      }
      throw err
    }
    // Ferry's addition (the runtime answers an empty 200): the committed file's sha256, so a
    // client can check what was stored against what it read; a repeated commit answers it too.
    const { sha256 } = JSON.parse(result) as { sha256: string }
    sendEmpty(ctx.res, 200, { [SHA256_HEADER]: sha256 })
  }

  async function getSessionById(ctx: RequestContext) {
    const id = sessionIdOf(ctx.url, 'chunk')
    const s = await uploads.getSession(KEY_PREFIX + id)
    if (s === null || s.state === 'committed') return sendEmpty(ctx.res, 204)
    sendJson(ctx.res, 200, { UploadSessions: [sessionInfo(uploads, s)] })
  }

  async function getSessionByPath(ctx: RequestContext, content: string) {
    const { rel } = storePath(content)
    const found = (await uploads.listByTarget(KEY_PREFIX, rel)).filter(
      (s) => s.state !== 'committed',
    )
    if (found.length === 0) return sendEmpty(ctx.res, 204)
    sendJson(ctx.res, 200, { UploadSessions: found.map((s) => sessionInfo(uploads, s)) })
  }

  async function deleteSession(ctx: RequestContext) {
    const id = sessionIdOf(ctx.url, 'commit')
    if (!(await uploads.abort(KEY_PREFIX + id)))
      throw new UploadError('ERR_SESSION_NOT_FOUND', `no upload session ${id}`)
    sendEmpty(ctx.res, 200)
  }

  async function getContent(ctx: RequestContext, content: string | null) {
    const path = content === null ? '' : storePath(content).rel
    // The runtime reads `ContinuationToken` from the query (UriArgumentParser) and unescapes it.
    const token = ctx.url.searchParams.get('ContinuationToken')
    if (token !== null && token.length > 4096)
      throw new UploadError('ERR_INVALID_ARGUMENT', 'ContinuationToken is too long')
    const pageSize = opts.listPageSize ?? 1000
    const continuationToken = token === '' ? null : token
    const listed = await listContent(objects, path, { pageSize, continuationToken })
    // Runtime: empty listings are a bare 204 (path exists) or 404 (it does not), with no body.
    if (listed === null) return sendEmpty(ctx.res, content === null ? 204 : 404)
    if (listed.StoreFiles.length === 0 && listed.StoreFolders.length === 0)
      return sendEmpty(ctx.res, 204)
    sendJson(ctx.res, 200, listed)
  }

  async function copy(ctx: RequestContext) {
    const body = await readJson(ctx.req, opts.maxJsonBytes)
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'ImageStoreCopyDescription must be a JSON object',
      )
    }
    const d = body as Record<string, unknown>
    const src = d['RemoteSource']
    const dst = d['RemoteDestination']
    if (typeof src !== 'string' || typeof dst !== 'string') {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'RemoteSource and RemoteDestination are required strings',
      )
    }
    const skip = d['SkipFiles'] ?? []
    if (!Array.isArray(skip) || !skip.every((s) => typeof s === 'string') || skip.length > 10_000) {
      throw new UploadError('ERR_INVALID_ARGUMENT', 'SkipFiles must be an array of strings')
    }
    const check = d['CheckMarkFile'] ?? false
    if (typeof check !== 'boolean')
      throw new UploadError('ERR_INVALID_ARGUMENT', 'CheckMarkFile must be a boolean')
    const from = storePath(src)
    const to = storePath(dst)
    if (to.rel === from.rel || to.rel.startsWith(`${from.rel}/`)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        'RemoteDestination must not be inside RemoteSource',
      )
    }
    const n = await copyContent(objects, {
      source: from.rel,
      destination: to.rel,
      skipFiles: skip as string[],
      checkMarkFile: check,
    })
    ctx.log.info({ from: from.rel, to: to.rel, files: n }, 'copied')
    sendEmpty(ctx.res, 200)
  }

  async function deleteStoreContent(ctx: RequestContext, content: string) {
    const { segs, rel } = storePath(content)
    if (segs.length === 1 && RESERVED.has(segs[0]!.toLowerCase())) {
      throw new UploadError('ERR_RESERVED_NAME', `"${segs[0]}" is a reserved directory`)
    }
    await deleteContent(objects, rel)
    sendEmpty(ctx.res, 200)
  }

  return {
    name: 'imagestore',
    prefix: PREFIX,
    sendError: sendImageStoreError,
    async handle(ctx) {
      const { method } = ctx.req
      // Before anything else, so an anonymous client learns nothing about routes or paths.
      if (authenticate !== null) await authenticate(ctx.req.headers.authorization)
      checkApiVersion(ctx.url)
      const { content, op } = splitPath(ctx.rawPath)
      if (op === null) {
        if (content === null) {
          if (method === 'GET') return getContent(ctx, null).then(() => true)
        } else if (method === 'PUT') return uploadFile(ctx, content).then(() => true)
        else if (method === 'GET') return getContent(ctx, content).then(() => true)
        else if (method === 'DELETE') return deleteStoreContent(ctx, content).then(() => true)
      } else if (content === null) {
        if (op === 'Copy' && method === 'POST') return copy(ctx).then(() => true)
        if (op === 'CommitUploadSession' && method === 'POST') return commit(ctx).then(() => true)
        if (op === 'DeleteUploadSession' && method === 'DELETE')
          return deleteSession(ctx).then(() => true)
        if (op === 'GetUploadSession' && method === 'GET')
          return getSessionById(ctx).then(() => true)
      } else {
        if (op === 'UploadChunk' && method === 'PUT')
          return uploadChunk(ctx, content).then(() => true)
        if (op === 'GetUploadSession' && method === 'GET')
          return getSessionByPath(ctx, content).then(() => true)
      }
      // The runtime's route matcher answers an unknown route or method with 400 "Invalid URL".
      throw new UploadError('ERR_INVALID_ARGUMENT', 'Invalid URL')
    },
  }
}
