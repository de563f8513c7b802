/**
 * Flamenco Shaman (Flamenco pkg/api/flamenco-openapi.yaml, v3.9-dev, paths /api/v3/shaman/…;
 * server behaviour from Flamenco pkg/shaman): files by sha256 + size, requirements, checkouts of
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
import type { BearerAuthConfig } from '../../config/config.js'
import { INLINE_HASH_MAX_BYTES, type UploadService } from '../../core/uploads/uploads.js'
import {
  SHA256_HEX,
  createPlannedCheckout,
  storeBlob,
  type BlobBody,
  type CasKey,
  type CasStore,
  type CheckoutObjects,
  type HashMode,
  type StoreBlobOutcome,
} from '../../core/cas/index.js'
import { keyAt, splitList } from '../../core/cas/file-list.js'
import type { FileListPool } from '../../core/cas/file-list-pool.js'
import { UploadError } from '../../core/errors.js'
import type { Locker } from '../../core/state/types.js'
import { checkDeclaredSize, readSmallBody } from '../body.js'
import { createBearerCheck } from '../auth/bearer.js'
import type { Family, RequestContext } from '../context.js'
import { sendEmpty, sendJson } from '../respond.js'
import { sendShamanError, sendShamanErrorBody } from './errors.js'
import { decodeOriginalFilename, parseDeferHeader } from './headers.js'

export const SHAMAN_PREFIX = '/api/v3/shaman'

/** Most files one requirements or checkout request may list. */
export const MAX_FILES_PER_REQUEST = 100_000

/** What the Shaman family uses; the composition root builds the services and hands them in. */
export interface ShamanDeps {
  /** The content-addressed store (its bus subscription is started by the root). */
  readonly cas: CasStore
  /** Threads that parse file lists and look their blobs up. */
  readonly lists: FileListPool
  readonly uploads: UploadService
  readonly locker: Locker
  /** The checkouts' store (blobs are reached through `cas`). */
  readonly checkouts: CheckoutObjects
  readonly settings: ShamanSettings
  /** Overrides the size-based choice (for measurements). */
  readonly hashMode?: HashMode
}

/** Shaman's slice of the configuration. */
export interface ShamanSettings {
  /** FERRY_CONFIG `shaman.auth`; null: open, as Flamenco leaves it. */
  readonly auth: BearerAuthConfig | null
  /** Lifetime of in-flight claims and checkout locks unless renewed, ms. */
  readonly lockTtlMs: number
  readonly maxUploadBytes: number
  /** Largest requirements or checkout body, bytes. */
  readonly maxJsonBytes: number
}

function parseObjectPath(checksum: string, filesize: string): CasKey {
  if (!SHA256_HEX.test(checksum)) {
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      'checksum must be a SHA256 checksum: 64 lowercase hexadecimal digits',
    )
  }
  if (!/^\d{1,16}$/.test(filesize) || !Number.isSafeInteger(Number(filesize))) {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'filesize must be a non-negative integer')
  }
  return { sha256: checksum, size: Number(filesize) }
}

/** Entries handled between two yields of the event loop (~1-3 ms of work each). */
/** A body up to this size is read to its end before an early answer (letSmallBodyArrive). */
const SMALL_BODY_BYTES = 1024 * 1024
/** How long an early answer waits for such a body. */
const SMALL_BODY_WAIT_MS = 10_000

const OUTPUT_SLICE = 4000

const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Runs `fn` over `items`, at most `n` at once. */
async function eachLimit<T>(
  items: readonly T[],
  n: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const run = async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run))
}

export function createShamanFamily(deps: ShamanDeps): Family {
  const { cas, lists, checkouts, locker, uploads, settings } = deps
  const { lockTtlMs, maxUploadBytes } = settings
  // Flamenco leaves Shaman open (notes 1.1); FERRY_CONFIG `shaman.auth` puts a bearer token in
  // front.
  const authenticate = settings.auth ? createBearerCheck(settings.auth) : null

  const hashModeFor = (size: number): HashMode =>
    deps.hashMode ?? (size <= INLINE_HASH_MAX_BYTES ? 'inline' : 'pool')

  // ---- requests ------------------------------------------------------------------------------

  /** After an early answer: stop feeding our consumer and read the rest of the body away. */
  function releaseBody(ctx: RequestContext, key: CasKey) {
    const { req } = ctx
    req.unpipe()
    if (req.complete || req.destroyed) return
    // urllib3 does not retry a POST whose connection is reset, so let the client finish sending
    // (the Blender add-on's addon/flamenco/bat/shaman.py). A chunked body has no declared end: past
    // the object's size plus some slack we stop listening and close.
    const cap = key.size + 1024 * 1024
    let n = 0
    req.on('data', (d: Buffer) => {
      n += d.length
      if (n > cap && req.headers['content-length'] === undefined) req.destroy()
    })
    req.resume()
  }

  /**
   * Before an answer that needs no body (208, 425), a small body still on its way is read to its
   * end. Answering early is what the spec allows and what saves a large upload, but a proxy that
   * gets the answer while the client is still sending may close the client's connection with
   * bytes unread, and the kernel's reset then throws away the answer the client had not yet
   * read: through haproxy, 1 to 2 of 8 runs of 1,000 dedup POSTs of 64 KiB lost one answer as
   * "socket hang up". A body of up to SMALL_BODY_BYTES costs less to take than that; a larger one
   * (or one of no declared length) is answered at once, as before. Waits at most
   * SMALL_BODY_WAIT_MS for a slow client.
   */
  async function letSmallBodyArrive(ctx: RequestContext, key: CasKey, declared: number | null) {
    const { req } = ctx
    if (req.complete || req.destroyed) return
    if (declared === null || declared > SMALL_BODY_BYTES) return
    releaseBody(ctx, key)
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        req.off('end', done)
        req.off('close', done)
        req.off('error', done)
        resolve()
      }
      const timer = setTimeout(done, SMALL_BODY_WAIT_MS)
      req.once('end', done)
      req.once('close', done)
      req.once('error', done)
    })
  }

  async function fileStatus(ctx: RequestContext, key: CasKey) {
    sendJson(ctx.res, 200, { status: await cas.status(key) })
  }

  async function upload(ctx: RequestContext, key: CasKey) {
    const { req, res } = ctx
    const canDefer = parseDeferHeader(req.headers['x-shaman-can-defer-upload'])
    const filename = decodeOriginalFilename(req.headers['x-shaman-original-filename'])
    const rlog = ctx.log.child({ sha256: key.sha256, size: key.size, filename })
    if (key.size > maxUploadBytes)
      throw new UploadError(
        'ERR_BODY_TOO_LARGE',
        `a file of ${key.size} bytes is over the limit of ${maxUploadBytes}`,
      )
    const declared = checkDeclaredSize(req, maxUploadBytes)
    // The root started the bus subscription; a failed start fails the uploads that need it.
    await cas.start()
    let outcome: StoreBlobOutcome
    try {
      outcome = await storeBlob({
        cas,
        uploads,
        key,
        body: requestBody(ctx, key),
        declaredBytes: declared,
        canDefer,
        mode: hashModeFor(key.size),
        signal: ctx.signal,
        log: rlog,
      })
    } catch (err) {
      if (err instanceof UploadError && err.code === 'ERR_CLIENT_ABORTED')
        rlog.info('shaman upload: client went away')
      throw err
    }
    switch (outcome.status) {
      case 'existed':
        // Spec: 208 "The file was already known to the server", answered before reading the
        // body when possible. node:http reads the unread body away after the answer, so a
        // client still sending sees it.
        rlog.info(
          { status: 208 },
          outcome.beforeBody
            ? 'shaman upload: already stored'
            : 'shaman upload: verified, already stored',
        )
        await letSmallBodyArrive(ctx, key, declared)
        return sendEmpty(res, 208)
      case 'deferred':
        // Spec: 425 "The file is currently in the process of being uploaded by someone else, and
        // `X-Shaman-Can-Defer-Upload: true` was sent in the request."
        rlog.info({ status: 425 }, 'shaman upload: deferred, another upload is in flight')
        await letSmallBodyArrive(ctx, key, declared)
        return sendEmpty(res, 425)
      case 'cut-short':
        rlog.info({ status: 208 }, 'shaman upload: cut short, stored by another upload')
        await letSmallBodyArrive(ctx, key, declared)
        return sendEmpty(res, 208)
      case 'stored':
        uploads.announceFinished({
          family: 'shaman',
          id: `${key.sha256}/${key.size}`,
          size: key.size,
          sha256: key.sha256,
        })
        rlog.info({ status: 204 }, 'shaman upload: stored')
        return sendEmpty(res, 204)
    }
  }

  /**
   * The request body as storeBlob reads it: through `feed`, never directly, so that cutting the
   * upload short does not destroy the request (that would reset the client's connection).
   */
  function requestBody(ctx: RequestContext, key: CasKey): BlobBody {
    const { req } = ctx
    const feed = new PassThrough()
    const broke = () => {
      const reset = new Error('the client went away mid-body')
      feed.destroy(Object.assign(reset, { code: 'ECONNRESET' }))
    }
    const onClose = () => {
      if (!req.complete) broke()
    }
    return {
      open() {
        req.on('error', broke)
        req.on('close', onClose)
        req.pipe(feed)
        return feed
      },
      detach: () => req.unpipe(feed),
      done() {
        req.off('error', broke)
        req.off('close', onClose)
      },
      leftUnread: () => releaseBody(ctx, key),
    }
  }

  /**
   * Work per request grows with the request (capped: MAX_FILES_PER_REQUEST entries, maxJsonBytes
   * of JSON), never with the store, and the event loop stays free meanwhile: the list is parsed
   * and checked on a FileListPool thread, the blobs are looked up (and touched) there in one
   * batch, and the answer is built in slices with the loop let go between them.
   */
  async function requirements(ctx: RequestContext) {
    const body = await readSmallBody(ctx.req, settings.maxJsonBytes)
    const list = await lists.parse(body, 'requirements', MAX_FILES_PER_REQUEST)
    const files = list.files
    const n = files.count
    // Stored objects are left out and touched (mtime now) so GC keeps them until the checkout;
    // after a running GC pass is over, they are checked again (see cas-store.ts).
    const stored = await lists.lookUp(cas.objects, files, true)
    if (stored.includes(1)) {
      await cas.settle(ctx.signal)
      const still = await lists.lookUp(cas.objects, files, true)
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
    ctx.res.writeHead(200, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': json.length,
    })
    ctx.res.end(json)
  }

  async function checkout(ctx: RequestContext) {
    const body = await readSmallBody(ctx.req, settings.maxJsonBytes)
    const list = await lists.parse(body, 'checkout', MAX_FILES_PER_REQUEST)
    const keys: CasKey[] = []
    for (let i = 0; i < list.keys.count; i++) {
      keys.push(keyAt(list.keys, i))
      if (i % OUTPUT_SLICE === OUTPUT_SLICE - 1) await yieldLoop()
    }
    const paths = splitList(list.links.paths)
    const made = await createPlannedCheckout(
      { cas, checkouts, locker, lockTtlMs, log: ctx.log, signal: ctx.signal },
      list.checkoutPath,
      {
        linkCount: list.links.count,
        linkPath: (i) => paths[i]!,
        linkKey: (i) => list.links.keyIndex[i]!,
        keys,
        dirs: splitList(list.dirs),
      },
    )
    sendJson(ctx.res, 200, { checkoutPath: made })
  }

  function methodNotAllowed(ctx: RequestContext, allow: string) {
    sendShamanErrorBody(
      ctx,
      405,
      `method ${ctx.req.method ?? ''} is not allowed here; use ${allow}`,
      { Allow: allow },
    )
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
        if (method !== 'POST') {
          methodNotAllowed(ctx, 'POST')
          return true
        }
        await (rest === '/checkout/create' ? checkout(ctx) : requirements(ctx))
        return true
      }
      const m = /^\/files\/([^/]*)\/([^/]*)$/.exec(rest)
      if (m) {
        if (method !== 'GET' && method !== 'POST') {
          methodNotAllowed(ctx, 'GET, POST')
          return true
        }
        const key = parseObjectPath(m[1]!, m[2]!)
        await (method === 'GET' ? fileStatus(ctx, key) : upload(ctx, key))
        return true
      }
      throw new UploadError('ERR_NOT_FOUND', `no Shaman route ${rest || '/'}`)
    },
  }
}
