/**
 * lakeFS staging front door under `/api/v1` (treeverse/lakeFS api/swagger.yml, v1.84, operations
 * getPhysicalAddress and linkPhysicalAddress; server behaviour from pkg/api/controller.go). Ferry
 * is a staging and upload service, not a version-control system: repositories, their storage
 * namespaces and branches come from FERRY_CONFIG.
 *
 *   GET  /healthcheck                                         204, no auth
 *   GET  /config                                              Config (pre_sign_support: true)
 *   GET  /repositories/{r}/branches/{b}/staging/backing       StagingLocation (+ presigned URL)
 *   PUT  /repositories/{r}/branches/{b}/staging/backing       StagingMetadata → ObjectStats
 * PUT  /_ferry/presigned/{r}/data/{partition}/{id},{sig}    the presigned upload (S3-style answers)
 *   POST /repositories/{r}/branches/{b}/staging/pmpu          start a presigned multipart upload
 *   PUT  /repositories/{r}/branches/{b}/staging/pmpu/{id}     complete it → ObjectStats
 *   DELETE …/staging/pmpu/{id}                                abort it (204)
 *   PUT  …/staging/pmpu/{id}/parts/{n}                        a fresh presigned URL for part n
 *   PUT  /_ferry/presigned/{r}/data/…?partNumber=n&uploadId=… one part (S3 UploadPart answers)
 *
 * The flow lakectl runs: config → GET backing?presign=true → PUT the bytes to presigned_url (the
 * answer carries ETag = "<md5 hex>" and Content-MD5 = base64 md5, as S3 single-part) → PUT backing
 * with the StagingLocation echoed and the md5 as checksum → 200 ObjectStats.
 *
 * Departures from lakeFS, on purpose:
 * - authentication is checked before the request is validated (lakeFS validates first), so an
 *   anonymous client learns nothing about repositories or parameters;
 * - the object path is checked (no empty, `.` or `..` segments, no backslash or control
 *   characters) already when an address is asked for, since it becomes folders on disk;
 * - If-Match / If-None-Match are checked before the body (lakeFS: after the address);
 * - a link of an address nothing was uploaded to answers 409 (lakeFS does not look), so lakectl
 *   starts that upload over; a size or checksum that does not match the staged bytes is 400.
 *
 * Presigned multipart, lakectl's path for files of 5 MiB or more (lakeFS
 * pkg/api/helpers/upload.go):
 * POST pmpu?path=…&parts=N → 201 {physical_address, presigned_urls, upload_id}; the parts are PUT
 * 5 at a time, in any order, to any instance; each answer carries `ETag: "<md5>"`; then PUT
 * pmpu/{id} with the parts' numbers and ETags → 200 ObjectStats (the object is linked, as lakeFS's
 * completion does); on any failure DELETE pmpu/{id} → 204. Departures, on purpose:
 * - the part rules S3 enforces under lakeFS (ascending list, known parts with their ETags, all but
 *   the last ≥ 5 MiB) answer 400 with S3's words; lakeFS passes the S3 failure on as a 500, which
 *   lakectl retries 4 times for nothing;
 * - an unknown, aborted or completed upload id is 404 (S3 NoSuchUpload; lakeFS: a 500);
 * - the completion's ObjectStats carries the physical address as the client sent it, as the link
 *   answers (lakeFS's completion answers it relative to the namespace);
 * - uploadPartCopy (…/parts/{n}/copy) answers 501.
 */
import type { LakeFsConfig } from '../../config/config.js'
import { UploadError } from '../../core/errors.js'
import {
  MAX_PART_BYTES,
  MAX_PARTS,
  type CompletedPart,
  type StagingMultipart,
} from '../../core/staging/multipart.js'
import {
  AMZ_DATE_PARAM,
  AMZ_EXPIRES_PARAM,
  PART_NUMBER_PARAM,
  PRESIGN_EXPIRES_PARAM,
  PRESIGN_SIGNATURE_PARAM,
  UPLOAD_ID_PARAM,
  type PresignRefusal,
} from '../../core/staging/signing.js'
import type { StagingStore } from '../../core/staging/store.js'
import { checkDeclaredSize, readJson, uploadBody } from '../body.js'
import type { FinishedFile } from '../../core/uploads/uploads.js'
import type { CorsPolicy } from '../cors.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty } from '../respond.js'
import { authorizeRepository, createAuthenticator } from './auth.js'
import { s3Refusals, sendLakeFsError, sendLakeFsJson, sendS3Error } from './errors.js'

export const LAKEFS_PREFIX = '/api/v1'
/** Presigned upload URLs live here (inside the family's prefix, outside lakeFS's own routes). */
export const PRESIGNED_PATH = '/_ferry/presigned/'

/** What the lakeFS family uses; the composition root builds the store and hands it in. */
export interface StagingDeps {
  readonly store: StagingStore
  /** FERRY_CONFIG `lakefs`: repositories, credentials, JWT settings. */
  readonly lakefs: LakeFsConfig
  readonly maxUploadBytes: number
  readonly maxJsonBytes: number
  /** FERRY_PUBLIC_URL: the origin of the presigned URLs handed out; null: from the request. */
  readonly publicUrl: string | null
  /** Presigned multipart uploads; null: off (FERRY_CONFIG lakefs.presignMultipart false). */
  readonly multipart: StagingMultipart | null
  /** FERRY_CORS_ORIGINS, applied to the presigned PUTs (a browser uploads to them directly). */
  readonly cors?: CorsPolicy
  /** Told about every linked object (the post-finish hook). */
  readonly announce?: (file: FinishedFile) => void
}

/** The lakeFS API version whose contract this front door follows. */
const API_VERSION = '1.84.0'

interface LinkBody {
  readonly physicalAddress: string
  readonly checksum: string
  readonly sizeBytes: number
  readonly userMetadata: Record<string, string>
  readonly contentType: string | null
  readonly mtimeSec: number | null
}

const bodyError = (msg: string) =>
  new UploadError('ERR_INVALID_ARGUMENT', `request body has an error: doesn't match schema: ${msg}`)

function isInt64(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v)
}

/** StagingMetadata, checked against the spec's schema (required: staging, checksum, size_bytes). */
export function parseStagingMetadata(raw: unknown): LinkBody {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bodyError('value must be an object')
  const o = raw as Record<string, unknown>
  for (const k of ['staging', 'checksum', 'size_bytes']) {
    if (o[k] === undefined) throw bodyError(`property "${k}" is missing`)
  }
  const staging = o['staging']
  if (typeof staging !== 'object' || staging === null || Array.isArray(staging))
    throw bodyError('property "staging": value must be an object')
  const st = staging as Record<string, unknown>
  // presigned_url and presigned_url_expiry are echoed back by clients: accepted and ignored.
  if (
    st['presigned_url'] !== undefined &&
    st['presigned_url'] !== null &&
    typeof st['presigned_url'] !== 'string'
  ) {
    throw bodyError('property "staging.presigned_url": value must be a string')
  }
  if (st['presigned_url_expiry'] !== undefined && !isInt64(st['presigned_url_expiry'])) {
    throw bodyError('property "staging.presigned_url_expiry": value must be an integer')
  }
  const addr = st['physical_address']
  if (typeof addr !== 'string' || addr === '')
    throw new UploadError('ERR_INVALID_ARGUMENT', 'physical_address is required')
  if (typeof o['checksum'] !== 'string')
    throw bodyError('property "checksum": value must be a string')
  if (!isInt64(o['size_bytes'])) throw bodyError('property "size_bytes": value must be an integer')
  if (o['size_bytes'] < 0)
    throw new UploadError('ERR_INVALID_ARGUMENT', 'size_bytes must not be negative')
  const meta: Record<string, string> = {}
  const um = o['user_metadata']
  if (um !== undefined && um !== null) {
    if (typeof um !== 'object' || Array.isArray(um))
      throw bodyError('property "user_metadata": value must be an object')
    for (const [k, v] of Object.entries(um)) {
      if (typeof v !== 'string')
        throw bodyError(`property "user_metadata.${k}": value must be a string`)
      meta[k] = v
    }
  }
  const ct = o['content_type']
  if (ct !== undefined && ct !== null && typeof ct !== 'string')
    throw bodyError('property "content_type": value must be a string')
  const mtime = o['mtime']
  if (mtime !== undefined && mtime !== null && !isInt64(mtime))
    throw bodyError('property "mtime": value must be an integer')
  const force = o['force']
  if (force !== undefined && typeof force !== 'boolean')
    throw bodyError('property "force": value must be a boolean')
  return {
    physicalAddress: addr,
    checksum: o['checksum'],
    sizeBytes: o['size_bytes'],
    userMetadata: meta,
    contentType: typeof ct === 'string' && ct !== '' ? ct : null,
    mtimeSec: typeof mtime === 'number' ? mtime : null,
  }
}

/** CompletePresignMultipartUpload (required: physical_address, parts). */
export function parseCompleteBody(raw: unknown): {
  physicalAddress: string
  parts: CompletedPart[]
  userMetadata: Record<string, string>
  contentType: string | null
} {
  const o = physicalAddressBody(raw, ['physical_address', 'parts'])
  const parts = o.raw['parts']
  if (!Array.isArray(parts)) throw bodyError('property "parts": value must be an array')
  const list = parts.map((p: unknown, i): CompletedPart => {
    const at = `property "parts[${i}]`
    if (typeof p !== 'object' || p === null || Array.isArray(p)) {
      throw bodyError(`${at}": value must be an object`)
    }
    const po = p as Record<string, unknown>
    for (const k of ['part_number', 'etag']) {
      if (po[k] === undefined) throw bodyError(`${at}.${k}" is missing`)
    }
    if (!isInt64(po['part_number'])) throw bodyError(`${at}.part_number": value must be an integer`)
    if (typeof po['etag'] !== 'string') throw bodyError(`${at}.etag": value must be a string`)
    return { partNumber: po['part_number'], etag: po['etag'] }
  })
  const meta: Record<string, string> = {}
  const um = o.raw['user_metadata']
  if (um !== undefined && um !== null) {
    if (typeof um !== 'object' || Array.isArray(um)) {
      throw bodyError('property "user_metadata": value must be an object')
    }
    for (const [k, v] of Object.entries(um)) {
      if (typeof v !== 'string') {
        throw bodyError(`property "user_metadata.${k}": value must be a string`)
      }
      meta[k] = v
    }
  }
  const ct = o.raw['content_type']
  if (ct !== undefined && ct !== null && typeof ct !== 'string') {
    throw bodyError('property "content_type": value must be a string')
  }
  return {
    physicalAddress: o.physicalAddress,
    parts: list,
    userMetadata: meta,
    contentType: typeof ct === 'string' && ct !== '' ? ct : null,
  }
}

/** A body with a required `physical_address` (AbortPresignMultipartUpload, UploadPartFrom). */
export function physicalAddressBody(
  raw: unknown,
  required: readonly string[] = ['physical_address'],
): { physicalAddress: string; raw: Record<string, unknown> } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw bodyError('value must be an object')
  }
  const o = raw as Record<string, unknown>
  for (const k of required) {
    if (o[k] === undefined) throw bodyError(`property "${k}" is missing`)
  }
  if (typeof o['physical_address'] !== 'string') {
    throw bodyError('property "physical_address": value must be a string')
  }
  return { physicalAddress: o['physical_address'], raw: o }
}

/** An integer parameter as lakeFS's validator reads it; null when absent. */
function intParam(
  name: string,
  where: 'query' | 'path',
  raw: string | null,
  range: { readonly min: number; readonly max: number } | null = null,
): number | null {
  if (raw === null) return null
  const bad = (why: string) =>
    new UploadError('ERR_INVALID_ARGUMENT', `parameter "${name}" in ${where} has an error: ${why}`)
  if (!/^[+-]?\d{1,15}$/.test(raw)) throw bad(`value ${raw}: an invalid integer: invalid syntax`)
  const n = Number(raw)
  if (range !== null && n < range.min) throw bad(`number must be at least ${range.min}`)
  if (range !== null && n > range.max) throw bad(`number must be at most ${range.max}`)
  return n
}

/** Go's strconv.ParseBool, which the lakeFS validator uses for boolean query parameters. */
function parseBool(name: string, raw: string | null): boolean {
  if (raw === null) return false
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false
  throw new UploadError(
    'ERR_INVALID_ARGUMENT',
    `parameter "${name}" in query has an error: value ${raw}: an invalid boolean: invalid syntax`,
  )
}

function requiredQuery(url: URL, name: string): string {
  const v = url.searchParams.get(name)
  if (v === null)
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      `parameter "${name}" in query has an error: value is required but missing`,
    )
  return v
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'malformed percent-encoding in the path')
  }
}

/**
 * The origin of the URLs this family hands out: FERRY_PUBLIC_URL when set (issue 9 item 13: behind
 * a proxy or on port 80/443 the Host header does not name where clients reach Ferry); else `Host`
 * as the client sent it, when it is a plain host[:port]; else this socket's address.
 */
function originOf(ctx: RequestContext, publicUrl: string | null): string {
  if (publicUrl !== null) return publicUrl
  const host = ctx.req.headers.host
  if (
    typeof host === 'string' &&
    /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)
  )
    return `http://${host}`
  const addr = ctx.req.socket.localAddress ?? '127.0.0.1'
  const port = ctx.req.socket.localPort ?? 80
  return `http://${addr.includes(':') ? `[${addr}]` : addr}:${port}`
}

function blockstoreType(lakefs: LakeFsConfig): string {
  const first = lakefs.repositories[0]?.storageNamespace ?? 'local://'
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(first)?.[1]?.toLowerCase() ?? 'local'
}

/** …/staging/pmpu, …/pmpu/{uploadId}, …/pmpu/{uploadId}/parts/{n}, …/parts/{n}/copy */
const PMPU_ROUTE = new RegExp(
  '^/repositories/([^/]+)/branches/([^/]+)/staging/pmpu' +
    '(?:/([^/]+)(?:/parts/([^/]+)(/copy)?)?)?$',
)

/** A route under one multipart upload. */
interface PmpuRoute {
  readonly repo: string
  readonly branch: string
  readonly uploadId: string
}

/** The presigned PUT's S3-style refusal of a URL that is unsigned, tampered or expired. */
function presignRefusal(refusal: PresignRefusal, missingParams: string): UploadError {
  if (refusal === 'missing') {
    const message = `Query-string authentication requires the ${missingParams} parameters`
    return s3Refusals.error('ERR_FORBIDDEN', message, { s3Code: 'AccessDenied' })
  }
  if (refusal === 'mismatch') {
    const message = 'The request signature we calculated does not match the signature you provided.'
    return s3Refusals.error('ERR_FORBIDDEN', message, { s3Code: 'SignatureDoesNotMatch' })
  }
  return s3Refusals.error('ERR_FORBIDDEN', 'Request has expired', { s3Code: 'AccessDenied' })
}

export function createStagingFamily(deps: StagingDeps): Family {
  const { store, lakefs, maxJsonBytes, maxUploadBytes, publicUrl, multipart } = deps
  const authenticate = createAuthenticator(lakefs)
  const type = blockstoreType(lakefs)
  const storageConfig = {
    blockstore_type: type,
    blockstore_namespace_example: `${type}://example-bucket/`,
    blockstore_namespace_ValidityRegex: `^${type}://`,
    blockstore_description: 'Ferry staging area',
    pre_sign_support: true,
    // Ferry has no web UI of lakeFS's. A page can still PUT to the presigned URLs: they answer
    // with the CORS headers of FERRY_CORS_ORIGINS (any origin by default).
    pre_sign_support_ui: false,
    import_support: false,
    import_validity_regex: `^${type}://`,
    // lakectl uploads files of 5 MiB or more through /staging/pmpu when this is true.
    pre_sign_multipart_upload: multipart !== null,
  }
  const configBody = {
    version_config: { version: API_VERSION, version_context: 'ferry', upgrade_recommended: false },
    storage_config: storageConfig,
    storage_config_list: [storageConfig],
    ui_config: {},
    capabilities_config: {},
  }

  function methodNotAllowed(ctx: RequestContext, allow: string): true {
    sendLakeFsJson(ctx.res, 405, { message: 'method not allowed' }, { Allow: allow })
    return true
  }

  async function getPhysicalAddress(
    ctx: RequestContext,
    repo: string,
    branch: string,
  ): Promise<void> {
    authorizeRepository(await authenticate(ctx.req), repo)
    store.repository(repo)
    const path = requiredQuery(ctx.url, 'path')
    const presign = parseBool('presign', ctx.url.searchParams.get('presign'))
    const a = store.newAddress(repo, branch, path, presign)
    // Go emits presigned_url always (null when not asked for), presigned_url_expiry only when set.
    const body: Record<string, unknown> = {
      physical_address: a.physicalAddress,
      presigned_url: null,
    }
    if (a.presign !== null) {
      const origin = originOf(ctx, publicUrl)
      body['presigned_url'] =
        `${origin}${LAKEFS_PREFIX}${PRESIGNED_PATH}${encodeURIComponent(repo)}/${a.relative}?${a.presign.query}`
      body['presigned_url_expiry'] = a.presign.expiresSec
    }
    sendLakeFsJson(ctx.res, 200, body)
  }

  async function linkPhysicalAddress(
    ctx: RequestContext,
    repo: string,
    branch: string,
  ): Promise<void> {
    authorizeRepository(await authenticate(ctx.req), repo)
    store.repository(repo)
    const path = requiredQuery(ctx.url, 'path')
    // lakeFS (v1.71+): any If-Match, and any If-None-Match but `*`, is 501.
    if (ctx.req.headers['if-match'] !== undefined)
      throw new UploadError('ERR_NOT_IMPLEMENTED', 'Not Implemented')
    const inm = ctx.req.headers['if-none-match']
    if (inm !== undefined && inm.trim() !== '*')
      throw new UploadError('ERR_NOT_IMPLEMENTED', 'Not Implemented')
    const body = parseStagingMetadata(await readJson(ctx.req, maxJsonBytes))
    const stats = await store.link({
      repository: repo,
      branch,
      path,
      physicalAddress: body.physicalAddress,
      checksum: body.checksum,
      sizeBytes: body.sizeBytes,
      userMetadata: body.userMetadata,
      contentType: body.contentType,
      mtimeSec: body.mtimeSec,
      createOnly: inm !== undefined,
    })
    deps.announce?.({
      family: 'lakefs',
      id: `${repo}/${branch}/${path}`,
      size: stats.size_bytes,
      sha256: null,
      metadata: body.userMetadata,
    })
    sendLakeFsJson(ctx.res, 200, stats)
  }

  function presignedUrl(ctx: RequestContext, repo: string, rel: string, query: string): string {
    const origin = originOf(ctx, publicUrl)
    const repoSegment = encodeURIComponent(repo)
    return `${origin}${LAKEFS_PREFIX}${PRESIGNED_PATH}${repoSegment}/${rel}?${query}`
  }

  /** The multipart store, or lakeFS's 501 when the feature is off. */
  function multipartOn(): StagingMultipart {
    if (multipart !== null) return multipart
    throw new UploadError('ERR_NOT_IMPLEMENTED', 'presign multipart upload API is not supported')
  }

  /**
   * What every multipart route checks first, in lakeFS's order: the caller may reach the
   * repository, the repository exists, the feature is on; then the `path` query (`nonEmpty`:
   * complete and abort refuse an empty one).
   */
  async function multipartRequest(
    ctx: RequestContext,
    repo: string,
    nonEmpty = false,
  ): Promise<{ mp: StagingMultipart; path: string }> {
    authorizeRepository(await authenticate(ctx.req), repo)
    store.repository(repo)
    const mp = multipartOn()
    const path = requiredQuery(ctx.url, 'path')
    if (nonEmpty && path === '') throw new UploadError('ERR_INVALID_ARGUMENT', 'path is required')
    return { mp, path }
  }

  async function createMultipart(ctx: RequestContext, repo: string, branch: string): Promise<void> {
    const { mp, path } = await multipartRequest(ctx, repo)
    // The range (0..10000) is the handler's check, with lakeFS's words.
    const parts = intParam('parts', 'query', ctx.url.searchParams.get('parts')) ?? 0
    const up = await mp.create(repo, branch, path, parts)
    // Go's field order; presigned_urls only when there are some (lakeFS leaves it out for 0).
    const body: Record<string, unknown> = { physical_address: up.physicalAddress }
    if (up.partQueries.length > 0) {
      body['presigned_urls'] = up.partQueries.map((q) => presignedUrl(ctx, repo, up.relative, q))
    }
    body['upload_id'] = up.uploadId
    sendLakeFsJson(ctx.res, 201, body)
  }

  async function freshPartUrl(ctx: RequestContext, ref: PmpuRoute, partRaw: string): Promise<void> {
    const { repo, branch, uploadId } = ref
    const { mp, path } = await multipartRequest(ctx, repo)
    const partNumber = intParam('partNumber', 'path', partRaw, { min: 1, max: MAX_PARTS })!
    const { physicalAddress } = physicalAddressBody(await readJson(ctx.req, maxJsonBytes))
    const upload = { repository: repo, branch, path, uploadId, physicalAddress }
    const p = mp.freshPartQuery(upload, partNumber)
    sendLakeFsJson(ctx.res, 200, { presigned_url: presignedUrl(ctx, repo, p.relative, p.query) })
  }

  async function completeMultipart(ctx: RequestContext, ref: PmpuRoute): Promise<void> {
    const { repo, branch, uploadId } = ref
    const { mp, path } = await multipartRequest(ctx, repo, true)
    const body = parseCompleteBody(await readJson(ctx.req, maxJsonBytes))
    const stats = await mp.complete({ repository: repo, branch, path, uploadId, ...body })
    sendLakeFsJson(ctx.res, 200, stats)
  }

  async function abortMultipart(ctx: RequestContext, ref: PmpuRoute): Promise<void> {
    const { repo, branch, uploadId } = ref
    const { mp, path } = await multipartRequest(ctx, repo, true)
    const { physicalAddress } = physicalAddressBody(await readJson(ctx.req, maxJsonBytes))
    await mp.abort({ repository: repo, branch, path, uploadId, physicalAddress })
    sendEmpty(ctx.res, 204)
  }

  /** One part of a multipart upload, PUT to its presigned URL (S3 UploadPart). */
  async function partPut(ctx: RequestContext, repo: string, relative: string): Promise<void> {
    const mp = multipartOn()
    const q = ctx.url.searchParams
    const uploadId = q.get(UPLOAD_ID_PARAM) ?? ''
    const partRaw = q.get(PART_NUMBER_PARAM) ?? ''
    if (!/^\d{1,5}$/.test(partRaw) || Number(partRaw) < 1 || Number(partRaw) > MAX_PARTS) {
      const message = `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`
      throw new UploadError('ERR_INVALID_ARGUMENT', message)
    }
    const partNumber = Number(partRaw)
    store.repository(repo)
    const refusal = mp.checkPartUrl(
      { repository: repo, relative, uploadId, partNumber },
      {
        date: q.get(AMZ_DATE_PARAM),
        expires: q.get(AMZ_EXPIRES_PARAM),
        signature: q.get(PRESIGN_SIGNATURE_PARAM),
      },
    )
    if (refusal !== null) {
      const params = `${AMZ_DATE_PARAM}, ${AMZ_EXPIRES_PARAM} and ${PRESIGN_SIGNATURE_PARAM}`
      throw presignRefusal(refusal, params)
    }
    const length = checkDeclaredSize(ctx.req, Math.min(maxUploadBytes, MAX_PART_BYTES))
    const md5Header = ctx.req.headers['content-md5']
    // Raw bytes whatever the Content-Type says: lakectl sends the object's own type on every part.
    const got = await mp.receivePart(
      repo,
      relative,
      uploadId,
      partNumber,
      {
        stream: ctx.req,
        length,
      },
      {
        contentMd5: typeof md5Header === 'string' ? md5Header : null,
        signal: ctx.signal,
      },
    )
    // S3 UploadPart: the part's ETag is its quoted MD5 (what the completion lists).
    sendEmpty(ctx.res, 200, { ETag: `"${got.md5}"` })
  }

  async function presignedPut(ctx: RequestContext, rest: string): Promise<void> {
    const segs = rest.split('/').map(decodeSegment)
    const repo = segs[0] ?? ''
    const relative = segs.slice(1).join('/')
    if (ctx.url.searchParams.has(UPLOAD_ID_PARAM) || ctx.url.searchParams.has(PART_NUMBER_PARAM)) {
      return partPut(ctx, repo, relative)
    }
    const refusal = store.checkPresigned(
      repo,
      relative,
      ctx.url.searchParams.get(PRESIGN_EXPIRES_PARAM),
      ctx.url.searchParams.get(PRESIGN_SIGNATURE_PARAM),
    )
    if (refusal !== null) {
      throw presignRefusal(refusal, `${PRESIGN_SIGNATURE_PARAM} and ${PRESIGN_EXPIRES_PARAM}`)
    }
    const body = await uploadBody(ctx.req, maxUploadBytes)
    const md5Header = ctx.req.headers['content-md5']
    const got = await store.receive(repo, relative, body, {
      contentMd5: typeof md5Header === 'string' ? md5Header : null,
      signal: ctx.signal,
    })
    // S3 single-part: ETag is the quoted md5 hex; Content-MD5 the base64 md5. lakectl takes
    // either as the checksum it links with.
    sendEmpty(ctx.res, 200, {
      ETag: `"${got.md5}"`,
      'Content-MD5': Buffer.from(got.md5, 'hex').toString('base64'),
    })
  }

  return {
    name: 'lakefs',
    prefix: LAKEFS_PREFIX,
    async handle(ctx) {
      const rest = ctx.rawPath.slice(LAKEFS_PREFIX.length)
      const method = ctx.req.method ?? 'GET'
      if (rest.startsWith(PRESIGNED_PATH)) {
        const origin = ctx.req.headers.origin
        const cors = deps.cors
        if (cors && method === 'OPTIONS') {
          const asked = ctx.req.headers['access-control-request-method']
          if (cors.isPreflight(method, origin, asked)) {
            sendEmpty(ctx.res, 204, cors.preflightHeaders(origin))
            return true
          }
        }
        for (const [k, v] of Object.entries(cors?.responseHeaders(origin) ?? {})) {
          ctx.res.setHeader(k, v)
        }
        if (method !== 'PUT') {
          ctx.res.writeHead(405, { Allow: 'PUT', 'Content-Length': 0 })
          ctx.res.end()
          return true
        }
        await presignedPut(ctx, rest.slice(PRESIGNED_PATH.length))
        return true
      }
      if (rest === '/healthcheck') {
        if (method !== 'GET') return methodNotAllowed(ctx, 'GET')
        sendEmpty(ctx.res, 204)
        return true
      }
      if (rest === '/config') {
        if (method !== 'GET') return methodNotAllowed(ctx, 'GET')
        await authenticate(ctx.req)
        sendLakeFsJson(ctx.res, 200, configBody)
        return true
      }
      const m = /^\/repositories\/([^/]+)\/branches\/([^/]+)\/staging\/backing$/.exec(rest)
      if (m) {
        const repo = decodeSegment(m[1]!)
        const branch = decodeSegment(m[2]!)
        if (method === 'GET') await getPhysicalAddress(ctx, repo, branch)
        else if (method === 'PUT') await linkPhysicalAddress(ctx, repo, branch)
        else return methodNotAllowed(ctx, 'GET, PUT')
        return true
      }
      const pm = PMPU_ROUTE.exec(rest)
      if (pm) {
        const repo = decodeSegment(pm[1]!)
        const branch = decodeSegment(pm[2]!)
        if (pm[3] === undefined) {
          if (method !== 'POST') return methodNotAllowed(ctx, 'POST')
          await createMultipart(ctx, repo, branch)
          return true
        }
        const ref: PmpuRoute = { repo, branch, uploadId: decodeSegment(pm[3]) }
        if (pm[4] === undefined) {
          if (method === 'PUT') await completeMultipart(ctx, ref)
          else if (method === 'DELETE') await abortMultipart(ctx, ref)
          else return methodNotAllowed(ctx, 'PUT, DELETE')
        } else {
          if (method !== 'PUT') return methodNotAllowed(ctx, 'PUT')
          // uploadPartCopy copies from another lakeFS object; Ferry keeps no versioned objects.
          if (pm[5] !== undefined) throw new UploadError('ERR_NOT_IMPLEMENTED', 'Not Implemented')
          await freshPartUrl(ctx, ref, decodeSegment(pm[4]))
        }
        return true
      }
      // lakeFS's answer for a path under /api/v1 that matches no operation.
      sendLakeFsJson(ctx.res, 404, { message: 'invalid API endpoint' })
      return true
    },
    sendError(ctx, err) {
      if (ctx.rawPath.startsWith(LAKEFS_PREFIX + PRESIGNED_PATH)) sendS3Error(ctx, err)
      else sendLakeFsError(ctx, err)
    },
  }
}
