/**
 * One upload of one object into the content-addressed store, with every dedup decision in one
 * place; the caller only turns the outcome into its protocol's answer. In order:
 *
 *   1. the object is stored already (touched and safe from GC)       → `existed` before the body
 *   2. another upload holds the in-flight claim and the caller may defer → `deferred`
 *   3. receive and verify the body (size first, then sha256); meanwhile another upload may
 *      store the object, which cuts this one short                   → `cut-short`
 *   4. publish create-if-absent                                      → `stored` or `existed`
 *
 * A non-deferrable upload of an object another upload is sending goes ahead in parallel (as
 * Flamenco's Shaman does); whichever verifies first stores it and cuts the others short. Only a
 * verified, published object cuts anything short.
 */
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import type { Lock } from '../state/types.js'
import type { UploadService } from '../uploads/uploads.js'
import type { CasKey, CasStore } from './cas-store.js'
import { receiveBlob, type HashMode, type ReceivedBlob } from './receive.js'

export type StoreBlobOutcome =
  /** The object was stored already; `beforeBody`: known before a byte of the body was read. */
  | { readonly status: 'existed'; readonly beforeBody: boolean }
  /** Another upload is sending the object and the caller said it may come back later. */
  | { readonly status: 'deferred' }
  /** This upload verified the bytes and stored the object. */
  | { readonly status: 'stored' }
  /** Another upload stored the object while this one was receiving: its body was left unread. */
  | { readonly status: 'cut-short' }

/** The body of one upload, as its transport hands it over. */
export interface BlobBody {
  /**
   * Starts the bytes flowing into a stream that `storeBlob` owns; called at most once, and only
   * when the bytes are needed.
   */
  open(): Readable
  /** The upload is cut short: stop feeding the stream (the transport's own stream stays intact). */
  detach(): void
  /** Reading is over, whichever way it ended. */
  done(): void
  /** Reading stopped before the end of the body for another reason than the client going away. */
  leftUnread(): void
}

export interface StoreBlobOptions {
  readonly cas: CasStore
  readonly uploads: UploadService
  readonly key: CasKey
  readonly body: BlobBody
  /** The body length the transport declared (Content-Length), null when unknown. */
  readonly declaredBytes: number | null
  /** The client may be answered `deferred` instead of sending beside another upload. */
  readonly canDefer: boolean
  readonly mode: HashMode
  readonly signal?: AbortSignal
  readonly log: Logger
}

/**
 * Stores one object; throws ERR_SIZE_MISMATCH or ERR_CHECKSUM_MISMATCH for bytes that do not match
 * `key`.
 */
export async function storeBlob(o: StoreBlobOptions): Promise<StoreBlobOutcome> {
  const outcome = await storeOnce(o)
  // Deduplicated: the object was there (or arrived by another upload) and nothing was stored.
  if (outcome.status === 'existed' || outcome.status === 'cut-short') o.uploads.dedupHit()
  return outcome
}

async function storeOnce(o: StoreBlobOptions): Promise<StoreBlobOutcome> {
  const { cas, key } = o
  // Known before the body is read: the caller may answer without reading it.
  if (await cas.touchSettled(key, o.signal)) return { status: 'existed', beforeBody: true }
  if (o.declaredBytes !== null && o.declaredBytes !== key.size) {
    throw new UploadError(
      'ERR_SIZE_MISMATCH',
      `file size mismatched, declared ${key.size} but received ${o.declaredBytes} bytes`,
    )
  }
  let claim: Lock | null = await cas.claim(key)
  if (claim === null && o.canDefer) return { status: 'deferred' }
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
    return await receiveAndStore(o)
  } finally {
    finished = true
    waiting?.abort()
    // Released after the object is published and announced: status goes uploading → stored.
    await (claim as Lock | null)?.release().catch(() => {})
  }
}

async function receiveAndStore(o: StoreBlobOptions): Promise<StoreBlobOutcome> {
  const { cas, key, uploads, body } = o
  let receiving = true
  let cut = false
  const feed = body.open()
  const cutShort = () => {
    if (!receiving || cut) return
    cut = true
    body.detach()
    feed.destroy(new UploadError('ERR_ALREADY_EXISTS', 'the object was stored by another upload'))
  }
  const stopWatching = cas.watch(key, cutShort)
  // Stored between our first look and the watch: stop at once.
  void cas.isStored(key).then(
    (yes) => yes && cutShort(),
    () => {},
  )

  let got: ReceivedBlob
  try {
    got = await receiveBlob(feed, {
      uploads,
      declaredBytes: key.size,
      mode: o.mode,
      ...(o.signal ? { signal: o.signal } : {}),
    })
  } catch (err) {
    receiving = false
    if (!(err instanceof UploadError && err.code === 'ERR_CLIENT_ABORTED')) body.leftUnread()
    if (cut) {
      // Another upload verified and published the object (the bus message is sent only then,
      // and `watch` re-checked the blob on disk before calling us).
      if (!(await cas.touchSettled(key, o.signal))) {
        throw new UploadError(
          'ERR_UNAVAILABLE',
          'the object was removed meanwhile; upload it again',
        )
      }
      return { status: 'cut-short' }
    }
    throw err
  } finally {
    receiving = false
    stopWatching()
    body.done()
  }

  // Flamenco checks the size first, then the checksum (receivefile.go), with these messages.
  if (got.bytes !== key.size) {
    await uploads.discard(got.tempPath)
    throw new UploadError(
      'ERR_SIZE_MISMATCH',
      `file size mismatched, declared ${key.size} but received ${got.bytes} bytes`,
    )
  }
  if (got.sha256 !== key.sha256) {
    await uploads.discard(got.tempPath)
    o.log.warn({ actual: got.sha256 }, 'shaman upload: checksum mismatch')
    throw new UploadError(
      'ERR_CHECKSUM_MISMATCH',
      `file SHA256 mismatched, declared ${key.sha256} but received ${got.sha256}`,
    )
  }
  const published = await cas.publish(got.tempPath, key)
  return published === 'stored' ? { status: 'stored' } : { status: 'existed', beforeBody: false }
}
