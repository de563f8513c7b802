/**
 * Flamenco Shaman (shared/specs/flamenco-openapi.yaml, paths /api/v3/shaman/…;
 * notes/shaman-imagestore.md part 1): files by sha256 + size, requirements, checkouts of
 * relative symlinks, and garbage collection of the store.
 *
 * Choices where the spec leaves room (or Flamenco's server differs from it), written down:
 * - `checksum` must be 64 LOWERCASE hex digits; uppercase is 400. Flamenco compares it with Go's
 *   lowercase "%x", so an uppercase checksum could never be stored there (it ends in 417); we say
 *   so before the body is sent. The same rule holds for `sha` in requirements and checkouts.
 * - A 0-byte file can be uploaded (Flamenco's validator refuses an empty body, yet requirements
 *   reports such files as unknown).
 * - Upload success is 204 (spec), not Flamenco's bare 200. 208 and 425 carry no body.
 * - A non-deferrable upload of an object another upload is sending goes ahead in parallel, as in
 *   Flamenco; whichever verifies first stores it and cuts the others short with 208. Only a
 *   verified, published object cuts anything short (Flamenco also signalled on failures).
 * - Unknown routes below the prefix answer 404 and a known route with another method 405, both
 *   with the spec's Error body.
 */
import { PassThrough } from 'node:stream'
import type { Engine } from '../../app.js'
import { INLINE_HASH_MAX_BYTES } from '../../core/uploads/uploads.js'
import {
  CasStore,
  SHA256_HEX,
  collectGarbage,
  createPlannedCheckout,
  receiveBlob,
  type CasKey,
  type HashMode,
} from '../../core/cas/index.js'
import { keyAt, splitList } from '../../core/cas/file-list.js'
import { FileListPool } from '../../core/cas/file-list-pool.js'
import { UploadError } from '../../core/errors.js'
import type { Lock } from '../../core/state/types.js'
import { checkDeclaredSize, readSmallBody } from '../body.js'
import { createBearerCheck } from '../auth/bearer.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty, sendJson } from '../respond.js'
import { sendShamanError, sendShamanErrorBody } from './errors.js'
import { decodeOriginalFilename, parseDeferHeader } from './headers.js'

export const SHAMAN_PREFIX = '/api/v3/shaman'

/** Most files one requirements or checkout request may list. */
export const MAX_FILES_PER_REQUEST = 100_000

export interface ShamanOptions {
  /** Overrides the size-based choice (for measurements). */
  readonly hashMode?: HashMode
}

function parseObjectPath(checksum: string, filesize: string): CasKey {
  if (!SHA256_HEX.test(checksum)) {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'checksum must be a SHA256 checksum: 64 lowercase hexadecimal digits')
  }
  if (!/^\d{1,16}$/.test(filesize) || !Number.isSafeInteger(Number(filesize))) {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'filesize must be a non-negative integer')
  }
  return { sha256: checksum, size: Number(filesize) }
}

/** Threads that parse file lists and look blobs up; two keep one slow list from holding up the next. */
const FILE_LIST_THREADS = 2
/** Entries handled between two yields of the event loop (~1-3 ms of work each). */
const OUTPUT_SLICE = 4000

const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Runs `fn` over `items`, at most `n` at once. */
async function eachLimit<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0
  const run = async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run))
}

export function createShamanFamily(engine: Engine, options: ShamanOptions = {}): Family {
  const { config, layout, state, uploads } = engine
  const log = engine.log.child({ family: 'shaman' })
  const lockTtlMs = config.locks.ttlMs
  const cas = new CasStore({ root: layout.cas, locker: state.locker, bus: state.bus, claimTtlMs: lockTtlMs, log })
  const started = cas.start()
  started.catch((err: unknown) => log.error({ err }, 'shaman could not subscribe to the bus'))
  const maxUploadBytes = config.limits.maxUploadBytes
  // Flamenco leaves Shaman open (notes 1.1); FERRY_CONFIG `shaman.auth` puts a bearer token in front.
  const authenticate = config.shaman.auth ? createBearerCheck(config.shaman.auth) : null

  // Parsing large file lists and looking up their blobs happens on these threads (issue 9.6).
  const lists = new FileListPool(FILE_LIST_THREADS)

  const hashModeFor = (size: number): HashMode => options.hashMode ?? (size <= INLINE_HASH_MAX_BYTES ? 'inline' : 'pool')

  // ---- garbage collection -------------------------------------------------------------------
  let gcRunning: Promise<unknown> | null = null
  const runGc = () => {
    gcRunning ??= collectGarbage({
      cas,
      checkoutsRoot: layout.checkouts,
      locker: state.locker,
      lockTtlMs,
      maxAgeMs: config.shaman.gcMaxAgeSec * 1000,
      log,
    })
      .catch((err: unknown) => log.error({ err }, 'shaman garbage collection failed'))
      .finally(() => {
        gcRunning = null
      })
    return gcRunning
  }
  const gcTimer = config.shaman.gcIntervalSec > 0 ? setInterval(() => void runGc(), config.shaman.gcIntervalSec * 1000) : null
  gcTimer?.unref()

  // ---- requests ------------------------------------------------------------------------------

  /** After an early answer: stop feeding our consumer and read the rest of the body away. */
  function releaseBody(ctx: RequestContext, key: CasKey) {
    const { req } = ctx
    req.unpipe()
    if (req.complete || req.destroyed) return
    // urllib3 does not retry a POST whose connection is reset, so let the client finish sending
    // (notes/clients.md). A chunked body has no declared end: past the object's size plus
    // some slack we stop listening and close.
    const cap = key.size + 1024 * 1024
    let n = 0
    req.on('data', (d: Buffer) => {
      n += d.length
      if (n > cap && req.headers['content-length'] === undefined) req.destroy()
    })
    req.resume()
  }

  async function fileStatus(ctx: RequestContext, key: CasKey) {
    sendJson(ctx.res, 200, { status: await cas.status(key) })
  }

  async function upload(ctx: RequestContext, key: CasKey) {
    const { req, res } = ctx
    const canDefer = parseDeferHeader(req.headers['x-shaman-can-defer-upload'])
    const filename = decodeOriginalFilename(req.headers['x-shaman-original-filename'])
    const rlog = ctx.log.child({ sha256: key.sha256, size: key.size, filename })
    if (key.size > maxUploadBytes) throw new UploadError('ERR_BODY_TOO_LARGE', `a file of ${key.size} bytes is over the limit of ${maxUploadBytes}`)
    const declared = checkDeclaredSize(req, maxUploadBytes)
    await started

    // Spec: 208 "The file was already known to the server", answered before reading the body.
    // node:http reads the unread body away after the answer, so a client still sending sees it.
    if (await cas.touchSettled(key, ctx.signal)) {
      rlog.info({ status: 208 }, 'shaman upload: already stored')
      return sendEmpty(res, 208)
    }
    if (declared !== null && declared !== key.size) {
      throw new UploadError('ERR_SIZE_MISMATCH', `file size mismatched, declared ${key.size} but received ${declared} bytes`)
    }
    let claim: Lock | null = await cas.claim(key)
    if (claim === null && canDefer) {
      // Spec: 425 "The file is currently in the process of being uploaded by someone else, and
      // `X-Shaman-Can-Defer-Upload: true` was sent in the request."
      rlog.info({ status: 425 }, 'shaman upload: deferred, another upload is in flight')
      return sendEmpty(res, 425)
    }
    // An upload running beside the claimant takes the claim as soon as the claimant lets go, so
    // that when the claimant fails (417, dropped client) the object still shows as "uploading".
    let finished = false
    const waiting = claim === null ? new AbortController() : null
    if (waiting !== null) {
      cas.claimWhenFree(key, waiting.signal).then(
        (got) => {
          if (finished) void got.release().catch(() => {})
          else claim = got
        },
        () => {},
      )
    }
    try {
      await receiveAndStore(ctx, key, rlog)
    } finally {
      finished = true
      waiting?.abort()
      // Released after the object is published and announced: status goes uploading → stored.
      await (claim as Lock | null)?.release().catch(() => {})
    }
  }

  async function receiveAndStore(ctx: RequestContext, key: CasKey, rlog: typeof log) {
    const { req, res } = ctx
    // The body reaches the temp file through `feed`, never directly: cutting the upload short
    // must not destroy the request (that would reset the client's connection).
    const feed = new PassThrough()
    let receiving = true
    let cut = false
    const cutShort = () => {
      if (!receiving || cut) return
      cut = true
      req.unpipe(feed)
      feed.destroy(new UploadError('ERR_ALREADY_EXISTS', 'the object was stored by another upload'))
    }
    const broke = () => feed.destroy(Object.assign(new Error('the client went away mid-body'), { code: 'ECONNRESET' }))
    const onClose = () => {
      if (!req.complete) broke()
    }
    req.on('error', broke)
    req.on('close', onClose)
    const stopWatching = cas.watch(key, cutShort)
    req.pipe(feed)
    // Stored between our first look and the watch: stop at once.
    void cas.isStored(key).then((yes) => yes && cutShort(), () => {})

    let got
    try {
      got = await receiveBlob(feed, {
        uploads,
        declaredBytes: key.size,
        mode: hashModeFor(key.size),
        signal: ctx.signal,
      })
    } catch (err) {
      receiving = false
      if (!(err instanceof UploadError && err.code === 'ERR_CLIENT_ABORTED')) releaseBody(ctx, key)
      if (cut) {
        // Another upload verified and published the object (the bus message is sent only then,
        // and `watch` re-checked the blob on disk before calling us).
        if (!(await cas.touchSettled(key, ctx.signal))) throw new UploadError('ERR_UNAVAILABLE', 'the object was removed meanwhile; upload it again')
        rlog.info({ status: 208 }, 'shaman upload: cut short, stored by another upload')
        return sendEmpty(res, 208)
      }
      if (err instanceof UploadError && err.code === 'ERR_CLIENT_ABORTED') rlog.info('shaman upload: client went away')
      throw err
    } finally {
      receiving = false
      stopWatching()
      req.off('error', broke)
      req.off('close', onClose)
    }

    // Flamenco checks the size first, then the checksum (receivefile.go), with these messages.
    if (got.bytes !== key.size) {
      await uploads.discard(got.tempPath)
      throw new UploadError('ERR_SIZE_MISMATCH', `file size mismatched, declared ${key.size} but received ${got.bytes} bytes`)
    }
    if (got.sha256 !== key.sha256) {
      await uploads.discard(got.tempPath)
      rlog.warn({ actual: got.sha256 }, 'shaman upload: checksum mismatch')
      throw new UploadError('ERR_CHECKSUM_MISMATCH', `file SHA256 mismatched, declared ${key.sha256} but received ${got.sha256}`)
    }
    const outcome = await cas.publish(got.tempPath, key)
    const status = outcome === 'stored' ? 204 : 208
    rlog.info({ status }, outcome === 'stored' ? 'shaman upload: stored' : 'shaman upload: verified, already stored')
    sendEmpty(res, status)
  }

  /**
   * Work per request grows with the request (capped: MAX_FILES_PER_REQUEST entries, maxJsonBytes
   * of JSON), never with the store, and the event loop stays free meanwhile: the list is parsed
   * and checked on a FileListPool thread, the blobs are looked up (and touched) there in one
   * batch, and the answer is built in slices with the loop let go between them.
   */
  async function requirements(ctx: RequestContext) {
    const list = await lists.parse(await readSmallBody(ctx.req, config.limits.maxJsonBytes), 'requirements', MAX_FILES_PER_REQUEST)
    const files = list.files
    const n = files.count
    // Stored objects are left out and touched (mtime now) so GC keeps them until the checkout;
    // after a running GC pass is over, they are checked again (see cas-store.ts).
    const stored = await lists.lookUp(layout.cas, files, true)
    if (stored.includes(1)) {
      await cas.settle(ctx.signal)
      const still = await lists.lookUp(layout.cas, files, true)
      for (let i = 0; i < n; i++) stored[i]! &= still[i]!
    }
    const unknown: number[] = []
    for (let i = 0; i < n; i++) if (stored[i] === 0) unknown.push(i)
    const claimed = new Uint8Array(n)
    // In slices with the loop let go between them: the embedded Locker answers at once, and
    // 80,000 already-settled promises in a row would run as one long microtask chain.
    for (let u = 0; u < unknown.length; u += OUTPUT_SLICE) {
      await eachLimit(unknown.slice(u, u + OUTPUT_SLICE), 64, async (i) => {
        if (await cas.isClaimed(keyAt(files, i))) claimed[i] = 1
      })
      await yieldLoop()
    }
    const json = await lists.renderRequirements(files, stored, claimed)
    ctx.log.info({ files: list.listed, needed: unknown.length }, 'shaman requirements')
    ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': json.length })
    ctx.res.end(json)
  }

  async function checkout(ctx: RequestContext) {
    const list = await lists.parse(await readSmallBody(ctx.req, config.limits.maxJsonBytes), 'checkout', MAX_FILES_PER_REQUEST)
    const keys: CasKey[] = []
    for (let i = 0; i < list.keys.count; i++) {
      keys.push(keyAt(list.keys, i))
      if (i % OUTPUT_SLICE === OUTPUT_SLICE - 1) await yieldLoop()
    }
    const paths = splitList(list.links.paths)
    const made = await createPlannedCheckout(
      { cas, root: layout.checkouts, locker: state.locker, lockTtlMs, log: ctx.log, signal: ctx.signal },
      list.checkoutPath,
      { linkCount: list.links.count, linkPath: (i) => paths[i]!, linkKey: (i) => list.links.keyIndex[i]!, keys, dirs: splitList(list.dirs) },
    )
    sendJson(ctx.res, 200, { checkoutPath: made })
  }

  function methodNotAllowed(ctx: RequestContext, allow: string) {
    sendShamanErrorBody(ctx, 405, `method ${ctx.req.method ?? ''} is not allowed here; use ${allow}`, { Allow: allow })
  }

  return {
    name: 'shaman',
    prefix: SHAMAN_PREFIX,
    sendError: sendShamanError,
    async handle(ctx) {
      // Before routing: an anonymous client learns nothing, not even which routes exist.
      if (authenticate !== null) await authenticate(ctx.req.headers.authorization)
      const rest = ctx.rawPath.slice(SHAMAN_PREFIX.length)
      const method = ctx.req.method
      if (rest === '/checkout/requirements' || rest === '/checkout/create') {
        if (method !== 'POST') return methodNotAllowed(ctx, 'POST'), true
        await (rest === '/checkout/create' ? checkout(ctx) : requirements(ctx))
        return true
      }
      const m = /^\/files\/([^/]*)\/([^/]*)$/.exec(rest)
      if (m) {
        if (method !== 'GET' && method !== 'POST') return methodNotAllowed(ctx, 'GET, POST'), true
        const key = parseObjectPath(m[1]!, m[2]!)
        await (method === 'GET' ? fileStatus(ctx, key) : upload(ctx, key))
        return true
      }
      throw new UploadError('ERR_NOT_FOUND', `no Shaman route ${rest || '/'}`)
    },
    async close() {
      if (gcTimer !== null) clearInterval(gcTimer)
      await gcRunning
      await cas.close()
      await lists.close()
    },
  }
}
