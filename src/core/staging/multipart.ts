/**
 * lakeFS presigned multipart uploads (createPresignMultipartUpload, uploadPart,
 * completePresignMultipartUpload, abortPresignMultipartUpload) over the staging area. The HTTP
 * edge is src/http/staging/family.ts; the addresses and the link are StagingStore's.
 *
 *   <dataDir>/staging/<repo>/pmpu/<upload id>/
 *     upload.json      {uploadId, repository, branch, path, relative, createdMs}: the upload exists
 *     <n>.part         part n as last PUT (replaced by rename, like an S3 part re-upload)
 *     completed.json   {etag, stats}: the completion's answer, for a retried completion
 *
 * Why one file per part, joined at completion, and not byte ranges of one upload session:
 * - the client says how many parts there are, never how long they are (lakectl sends `parts=N`
 *   and cuts 5 MiB parts, or size/10000+1 for files over ~48.8 GiB; any other S3 client may cut
 *   parts of any size ≥ 5 MiB). Part n's offset is unknown until every part before it has
 *   arrived, so a part that arrives first (they come 5 at a time, in any order) has nowhere to go
 *   in one file; and a part may be sent again with other bytes, which a range that was already
 *   received must refuse.
 * - a part file is exactly an S3 part: the same rules (last PUT wins, the ETag is its MD5, only
 *   the parts named at completion count), and the same shape when the staging area moves to an
 *   object store, where each part becomes the store's own UploadPart.
 * The join costs one sequential copy, done by a pool thread (workers/part-join.ts) that hashes as
 * it copies, so no byte crosses the event loop and the object's MD5 and SHA-256 come for free.
 *
 * Everything is an object of the staging area's ObjectStore (keys `<repo>/pmpu/<id>/…`, the
 * folder above on a filesystem), beside the addresses the parts are joined into; the join reads
 * the parts by path on a pool thread when the store has LocalPaths; on a store without (a
 * bucket) it streams them from the store, hashing on the event loop. Any instance may take
 * any request: the upload id and address are checked against `upload.json`, not against memory.
 * An abort (or the sweeper) removes the folder in one step (AtomicFolders: renamed into tmp/,
 * then deleted), so no request sees half an upload; on a store without folders `upload.json`
 * goes first, so every later request sees no upload, then the parts. A part that lands after
 * that (its put makes the folder again) finds no `upload.json` when it looks again, removes
 * itself and is answered NoSuchUpload.
 *
 * Limits: at most 10,000 parts (S3's and lakeFS's), each at most 5 GiB and FERRY_MAX_UPLOAD_BYTES,
 * all but the last at least 5 MiB (S3 EntityTooSmall, checked at completion as S3 does), and the
 * object at most FERRY_MAX_UPLOAD_BYTES. The total is checked at completion, not per part: the
 * parts stored for one upload are bounded by what the same client could stage through as many
 * presigned PUT addresses, and abandoned uploads are swept (`sweep`).
 */
import { createHash, randomBytes } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { LakeFsConfig } from '../../config/config.js'
import { UploadError } from '../errors.js'
import type { HashPool } from '../hashing/hash-pool.js'
import type { Locker } from '../state/types.js'
import { putSmallObject, readSmallJson } from '../storage/atomic.js'
import { hasAtomicFolders, hasLocalPaths, type ObjectStore } from '../storage/object-store.js'
import type { JoinPartsResult } from '../../../workers/protocol.js'
import type { UploadService } from '../uploads/uploads.js'
import {
  checkPresignedPart,
  LINK_ADDRESS_TTL_SEC,
  presignPartQuery,
  verifySignedAddress,
  type PresignRefusal,
} from './signing.js'
import type { ObjectStats, StagingStore } from './store.js'

/** S3 and lakeFS (helpers.MaxUploadParts): part numbers run from 1 to 10,000. */
export const MAX_PARTS = 10_000
/** S3's smallest part but the last (lakectl's part size, helpers.MinUploadPartSize). */
export const MIN_PART_BYTES = 5 * 1024 * 1024
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024

/** What S3 answers for an upload id that is not (or no longer) there. */
const NO_SUCH_UPLOAD =
  'The specified upload does not exist. The upload ID may be invalid, ' +
  'or the upload may have been aborted or completed.'
const INVALID_PART =
  'One or more of the specified parts could not be found. The part may not ' +
  "have been uploaded, or the specified entity tag may not match the part's entity tag."
/**
 * An upload folder without upload.json is removed once its newest part is this old; an empty
 * one once two sweeps this far apart found it empty (the store tells no folder's age, and a
 * create makes the folder a moment before upload.json lands in it).
 */
const CREATE_GRACE_MS = 60_000

const UPLOAD_ID_RE = /^[0-9a-f]{32}$/

interface Manifest {
  readonly v: 1
  readonly uploadId: string
  readonly repository: string
  readonly branch: string
  readonly path: string
  /** The address, relative to the storage namespace (`data/…,<sig>`). */
  readonly relative: string
  readonly createdMs: number
}

interface Completed {
  readonly v: 1
  readonly etag: string
  readonly stats: ObjectStats
}

export interface CreatedUpload {
  readonly uploadId: string
  readonly physicalAddress: string
  readonly relative: string
  /** Query strings (without `?`) of the presigned PUT of parts 1..N. */
  readonly partQueries: readonly string[]
}

export interface UploadRef {
  readonly repository: string
  readonly branch: string
  readonly path: string
  readonly uploadId: string
  /** As the client sent it: `<storage namespace>/data/…,<sig>`. */
  readonly physicalAddress: string
}

export interface CompletedPart {
  readonly partNumber: number
  readonly etag: string
}

export interface CompleteInput extends UploadRef {
  readonly parts: readonly CompletedPart[]
  readonly userMetadata: Readonly<Record<string, string>>
  readonly contentType: string | null
}

export interface PartBody {
  readonly stream: Readable
  readonly length: number | null
}

/**
 * What the uploads need of their store: the core operations. Local paths let a pool thread join
 * the parts by path, atomic folders let an abort take the whole upload away in one step; a store
 * without them (a bucket) streams the parts and removes `upload.json` first (see above).
 */
export type MultipartObjects = ObjectStore

export interface StagingMultipartOptions {
  readonly config: LakeFsConfig
  /** The staging area's store (StagingStore's): keys `<repo>/pmpu/<upload id>/…`. */
  readonly objects: MultipartObjects
  readonly uploads: UploadService
  readonly pool: HashPool
  readonly store: StagingStore
  /**
   * One completion per upload at a time, fleet-wide: two completes racing on two instances would
   * each stage the joined file over the other's and link against a sidecar the other replaced.
   */
  readonly locker: Locker
  /** The completion lock's lease, ms (renewed while held; FERRY_LOCK_TTL_MS). */
  readonly lockTtlMs: number
  readonly maxUploadBytes: number
  /** An upload with no part PUT for this long is removed by `sweep`, ms (FERRY_SESSION_TTL_SEC). */
  readonly idleTtlMs: number
  readonly log: Logger
  /** The clock, ms; tests pass their own. */
  readonly now?: () => number
}

/** S3's multipart ETag: MD5 of the parts' binary MD5s, `-`, the number of parts. */
/** How long a complete waits for another complete of the same upload (a join of GiBs). */
const COMPLETE_WAIT_MS = 120_000

export function multipartEtag(partMd5s: readonly string[]): string {
  const h = createHash('md5')
  for (const m of partMd5s) h.update(Buffer.from(m, 'hex'))
  return `${h.digest('hex')}-${partMd5s.length}`
}

/** An ETag as clients send it back: quotes and spaces stripped, lower case. */
function normalEtag(etag: string): string {
  return etag.replace(/["\s]/g, '').toLowerCase()
}

export class StagingMultipart {
  readonly #o: StagingMultipartOptions
  readonly #objects: MultipartObjects
  readonly #now: () => number
  /** Upload folders a sweep found empty, and when it first did (see CREATE_GRACE_MS). */
  readonly #emptySince = new Map<string, number>()

  constructor(o: StagingMultipartOptions) {
    this.#o = o
    this.#objects = o.objects
    this.#now = o.now ?? Date.now
  }

  /**
   * Starts an upload of `path` on `branch` at a new signed address, with presigned URLs for parts
   * 1..`parts` (0 to 10,000; lakeFS hands out none for 0). The branch must exist (lakeFS checks
   * it here, so an upload does not fail only at its end).
   */
  async create(
    repository: string,
    branch: string,
    path: string,
    parts: number,
  ): Promise<CreatedUpload> {
    const repo = this.#o.store.repository(repository)
    if (!repo.branches.includes(branch)) {
      throw new UploadError('ERR_NOT_FOUND', `branch '${branch}' not found`)
    }
    if (path === '') throw new UploadError('ERR_INVALID_ARGUMENT', 'path is required')
    if (!Number.isSafeInteger(parts) || parts < 0 || parts > MAX_PARTS) {
      throw new UploadError('ERR_INVALID_ARGUMENT', `parts can be between 0 and ${MAX_PARTS}`)
    }
    const address = this.#o.store.newAddress(repository, branch, path, false)
    const uploadId = randomBytes(16).toString('hex')
    const manifest: Manifest = {
      v: 1,
      uploadId,
      repository,
      branch,
      path,
      relative: address.relative,
      createdMs: this.#now(),
    }
    const dir = this.#uploadDir(repository, uploadId)
    await this.#writeJson(`${dir}/upload.json`, manifest)
    const partQueries: string[] = []
    for (let n = 1; n <= parts; n++) {
      partQueries.push(this.partQuery(repository, address.relative, uploadId, n))
    }
    const { physicalAddress, relative } = address
    return { uploadId, physicalAddress, relative, partQueries }
  }

  /**
   * A fresh presigned URL query for one part (lakeFS uploadPart). Like lakeFS, it checks the
   * address (signed for this branch and path) but not the upload: the part PUT does.
   */
  freshPartQuery(
    ref: UploadRef,
    partNumber: number,
  ): { readonly relative: string; readonly query: string } {
    const relative = this.#verifyAddress(ref)
    return { relative, query: this.partQuery(ref.repository, relative, ref.uploadId, partNumber) }
  }

  partQuery(repository: string, relative: string, uploadId: string, partNumber: number): string {
    const claims = { repository, relative, uploadId, partNumber }
    const { signingSecret, presignTtlSec } = this.#o.config
    return presignPartQuery(signingSecret, claims, this.#now(), presignTtlSec)
  }

  /** Checks a part PUT's URL (null: authorized). */
  checkPartUrl(
    claims: { repository: string; relative: string; uploadId: string; partNumber: number },
    q: { date: string | null; expires: string | null; signature: string | null },
  ): PresignRefusal | null {
    const secret = this.#o.config.signingSecret
    return checkPresignedPart(secret, claims, q.date, q.expires, q.signature, this.#now())
  }

  /**
   * Stores part `partNumber` of an upload (any order, again to replace it): streams it into a
   * temp file while a pool thread hashes it, checks `contentMd5` (base64) when given, then puts
   * it into the upload's folder. Answers its MD5 (the part's ETag). ERR_SESSION_NOT_FOUND when
   * the upload does not exist, or was aborted or completed.
   */
  async receivePart(
    repository: string,
    relative: string,
    uploadId: string,
    partNumber: number,
    body: PartBody,
    opts: { readonly contentMd5: string | null; readonly signal: AbortSignal },
  ): Promise<{ readonly md5: string; readonly bytes: number }> {
    const dir = this.#uploadDir(repository, uploadId)
    const manifest = await this.#manifest(dir)
    const gone = manifest === null || manifest.relative !== relative
    if (gone || (await this.#objects.head(`${dir}/completed.json`)) !== null) {
      throw noSuchUpload()
    }
    const got = await this.#o.uploads.receiveWhole(body.stream, {
      maxBytes: Math.min(MAX_PART_BYTES, this.#o.maxUploadBytes),
      ...(body.length !== null ? { expectedBytes: body.length } : {}),
      algos: ['md5'],
      signal: opts.signal,
    })
    try {
      const md5 = got.digests.md5
      if (md5 === undefined) throw new Error('hash pool answered without md5')
      const given = opts.contentMd5?.trim() ?? null
      if (given !== null && Buffer.from(md5, 'hex').toString('base64') !== given) {
        const message = 'The Content-MD5 you specified did not match what we received.'
        throw new UploadError('ERR_CHECKSUM_MISMATCH', message)
      }
      const key = partKey(dir, partNumber)
      await this.#objects.put(key, got.tempPath, { mode: 'overwrite' })
      // An abort (or a sweep) that removed the upload while the body arrived: the put made the
      // folder again, for nothing. Take the part back out (and the folder, once empty).
      if ((await this.#manifest(dir)) === null) {
        await this.#objects.delete(key, { pruneEmptyParents: 1 })
        throw noSuchUpload()
      }
      return { md5, bytes: got.bytes }
    } finally {
      // Removes the temp file if it is still there, and forgets it as a running stream.
      await this.#o.uploads.discard(got.tempPath)
    }
  }

  /**
   * Completes an upload (lakeFS completePresignMultipartUpload): checks the part list as S3 does
   * (ascending, each part there with this ETag, all but the last ≥ 5 MiB), joins the parts into
   * the address on a pool thread, stages it there, and links it at the path like a presigned
   * PUT's address, with the multipart ETag as checksum. A repeated completion with the same list
   * answers the first one's ObjectStats (lakectl retries on transport errors and 5xx).
   */
  async complete(input: CompleteInput): Promise<ObjectStats> {
    if (input.parts.length === 0) {
      throw new UploadError('ERR_INVALID_ARGUMENT', 'parts are required')
    }
    const relative = this.#verifyAddress(input)
    const dir = this.#uploadDir(input.repository, input.uploadId)
    await this.#ownManifest(dir, input, relative)
    let previous = 0
    const md5s: string[] = []
    for (const p of input.parts) {
      if (!Number.isSafeInteger(p.partNumber) || p.partNumber < 1 || p.partNumber > MAX_PARTS) {
        const message = `part numbers run from 1 to ${MAX_PARTS}, not ${p.partNumber}`
        throw new UploadError('ERR_INVALID_ARGUMENT', message)
      }
      if (p.partNumber <= previous) {
        const message =
          'The list of parts was not in ascending order. ' + 'Parts must be ordered by part number.'
        throw new UploadError('ERR_INVALID_ARGUMENT', message)
      }
      previous = p.partNumber
      const etag = normalEtag(p.etag)
      if (!/^[0-9a-f]{32}$/.test(etag)) throw new UploadError('ERR_INVALID_ARGUMENT', INVALID_PART)
      md5s.push(etag)
    }
    const etag = multipartEtag(md5s)
    // A second complete waits for the first and then answers what it recorded (S3 answers a
    // retried CompleteMultipartUpload alike).
    const lock = await this.#o.locker.acquire(`pmpu:${input.repository}:${input.uploadId}`, {
      ttlMs: this.#o.lockTtlMs,
      waitMs: COMPLETE_WAIT_MS,
    })
    try {
      return await this.#completeHeld(input, dir, relative, md5s, etag)
    } finally {
      await lock.release().catch(() => {})
    }
  }

  async #completeHeld(
    input: CompleteInput,
    dir: string,
    relative: string,
    md5s: readonly string[],
    etag: string,
  ): Promise<ObjectStats> {
    const done = await this.#completed(dir, etag)
    if (done !== null) return done
    const sources: { key: string; expectedMd5: string }[] = []
    let total = 0
    for (const [i, p] of input.parts.entries()) {
      const key = partKey(dir, p.partNumber)
      const st = await this.#objects.head(key)
      if (st === null) return this.#afterLostPart(dir, etag)
      if (i < input.parts.length - 1 && st.size < MIN_PART_BYTES) {
        const message =
          'Your proposed upload is smaller than the minimum allowed size: ' +
          `part ${p.partNumber} has ${st.size} bytes, and every part but the last needs at ` +
          `least ${MIN_PART_BYTES}.`
        throw new UploadError('ERR_INVALID_ARGUMENT', message)
      }
      total += st.size
      sources.push({ key, expectedMd5: md5s[i]! })
    }
    this.#checkTotal(total)
    const tempPath = this.#o.uploads.streamTempPath()
    let staged = false
    try {
      const joined = await this.#join(sources, tempPath)
      if (joined.status === 'missing') return await this.#afterLostPart(dir, etag)
      if (joined.status === 'mismatch') throw new UploadError('ERR_INVALID_ARGUMENT', INVALID_PART)
      // A part replaced between the size check and the join: its ETag still matched, so its bytes
      // are the ones named, but the sizes must be checked on what was joined.
      for (const [i, n] of joined.sourceBytes.entries()) {
        const last = i === joined.sourceBytes.length - 1
        if (!last && n < MIN_PART_BYTES) throw new UploadError('ERR_INVALID_ARGUMENT', INVALID_PART)
      }
      this.#checkTotal(joined.bytes)
      // An abort that won the race: nothing is staged or linked for it.
      if ((await this.#manifest(dir)) === null) throw noSuchUpload()
      staged = true
      const { md5, sha256 } = joined
      await this.#o.store.stage(input.repository, relative, { tempPath, md5, sha256, etag })
      const stats = await this.#o.store.link({
        repository: input.repository,
        branch: input.branch,
        path: input.path,
        physicalAddress: input.physicalAddress,
        checksum: etag,
        sizeBytes: joined.bytes,
        userMetadata: input.userMetadata,
        contentType: input.contentType,
        mtimeSec: null,
        createOnly: false,
      })
      await this.#writeJson(`${dir}/completed.json`, { v: 1, etag, stats } satisfies Completed)
      await this.#removeParts(dir)
      return stats
    } finally {
      if (!staged) await this.#o.uploads.discard(tempPath)
    }
  }

  /** Aborts an upload (lakeFS abortPresignMultipartUpload): its parts are deleted. */
  async abort(ref: UploadRef): Promise<void> {
    const relative = this.#verifyAddress(ref)
    const dir = this.#uploadDir(ref.repository, ref.uploadId)
    await this.#ownManifest(dir, ref, relative)
    if ((await this.#objects.head(`${dir}/completed.json`)) !== null) throw noSuchUpload()
    if (!(await this.#removeUpload(dir))) throw noSuchUpload()
  }

  /**
   * Removes uploads nobody will finish: no part PUT for `idleTtlMs`, or older than an address
   * may be linked (24 h: completing it could only fail); completed ones once their answer is
   * `idleTtlMs` old (lakectl's retries come within seconds); folders left without upload.json
   * (see CREATE_GRACE_MS). An upload's last activity is its newest object's mtime (a part's is
   * when its body ended), since the store tells no folder's age.
   */
  async sweep(nowMs = this.#now()): Promise<{ readonly removed: number }> {
    let removed = 0
    const seen = new Set<string>()
    for (const repo of this.#o.config.repositories) {
      for await (const e of this.#objects.list(`${pmpuPrefix(repo.name)}/`, { delimiter: true })) {
        if (e.kind !== 'prefix') continue
        const dir = e.key.slice(0, -1)
        seen.add(dir)
        try {
          if ((await this.#abandoned(dir, nowMs)) && (await this.#removeUpload(dir))) {
            removed++
          }
        } catch (err) {
          // A name Ferry never made (not a valid key): not ours to judge or remove.
          if (!(err instanceof UploadError && err.code === 'ERR_INVALID_PATH')) throw err
        }
      }
    }
    for (const dir of this.#emptySince.keys()) if (!seen.has(dir)) this.#emptySince.delete(dir)
    if (removed > 0) this.#o.log.info({ removed }, 'swept lakeFS multipart uploads')
    return { removed }
  }

  /** Whether the sweep removes the upload folder `dir` (see `sweep`). */
  async #abandoned(dir: string, nowMs: number): Promise<boolean> {
    const completed = await this.#objects.head(`${dir}/completed.json`)
    if (completed !== null) return nowMs - completed.mtimeMs > this.#o.idleTtlMs
    const manifest = await this.#manifest(dir)
    if (manifest !== null && nowMs - manifest.createdMs > LINK_ADDRESS_TTL_SEC * 1000) return true
    // Idle since its newest object: the last part PUT, or upload.json when none came.
    const idleLimitMs = manifest === null ? CREATE_GRACE_MS : this.#o.idleTtlMs
    const activity = await this.#activity(dir, nowMs - idleLimitMs)
    if (activity !== 'empty') {
      this.#emptySince.delete(dir)
      return activity === 'stale'
    }
    const first = this.#emptySince.get(dir)
    if (first === undefined) this.#emptySince.set(dir, nowMs)
    return first !== undefined && nowMs - first > CREATE_GRACE_MS
  }

  /** Whether an object in `dir` changed after `sinceMs` (`recent`), none did, or there is none. */
  async #activity(dir: string, sinceMs: number): Promise<'recent' | 'stale' | 'empty'> {
    let any = false
    for await (const e of this.#objects.list(`${dir}/`, { delimiter: true })) {
      if (e.kind !== 'object') continue
      const info = await this.#objects.head(e.key)
      if (info === null) continue
      if (info.mtimeMs >= sinceMs) return 'recent'
      any = true
    }
    return any ? 'stale' : 'empty'
  }

  /** The address relative to the namespace, checked as lakeFS's VerifyLinkAddress does. */
  #verifyAddress(ref: UploadRef): string {
    const repo = this.#o.store.repository(ref.repository)
    if (ref.physicalAddress === '') {
      throw new UploadError('ERR_INVALID_ARGUMENT', 'physical_address is required')
    }
    const ns = repo.storageNamespace.replace(/\/+$/, '')
    if (!ref.physicalAddress.startsWith(`${ns}/data/`)) {
      const message = 'physical address must be relative to the storage namespace'
      throw new UploadError('ERR_INVALID_ARGUMENT', message)
    }
    const relative = ref.physicalAddress.slice(ns.length + 1)
    const claims = { repository: ref.repository, branch: ref.branch, path: ref.path }
    verifySignedAddress(this.#o.config.signingSecret, claims, relative, this.#now())
    return relative
  }

  /** The upload's manifest, which must be for this address; else NoSuchUpload. */
  async #ownManifest(dir: string, ref: UploadRef, relative: string): Promise<Manifest> {
    const m = await this.#manifest(dir)
    if (m === null || m.relative !== relative || m.branch !== ref.branch || m.path !== ref.path) {
      throw noSuchUpload()
    }
    return m
  }

  async #manifest(dir: string): Promise<Manifest | null> {
    const m = await readSmallJson<Manifest>(this.#objects, `${dir}/upload.json`)
    return m !== null && m.v === 1 ? m : null
  }

  /** The first completion's answer when it was for the same parts; null when not completed. */
  async #completed(dir: string, etag: string): Promise<ObjectStats | null> {
    const c = await readSmallJson<Completed>(this.#objects, `${dir}/completed.json`)
    if (c === null) return null
    if (c.etag !== etag) throw noSuchUpload()
    return c.stats
  }

  /**
   * A listed part is not there: either never uploaded (InvalidPart) or removed by a completion
   * that ran at the same time, whose answer is then ours too.
   */
  async #afterLostPart(dir: string, etag: string): Promise<ObjectStats> {
    const done = await this.#completed(dir, etag)
    if (done !== null) return done
    if ((await this.#manifest(dir)) === null) throw noSuchUpload()
    throw new UploadError('ERR_INVALID_ARGUMENT', INVALID_PART)
  }

  #checkTotal(bytes: number): void {
    const max = this.#o.maxUploadBytes
    if (bytes <= max) return
    const message = `the parts hold ${bytes} bytes, over the limit of ${max}`
    const detail = { kind: 'limit', maxBytes: max } as const
    throw new UploadError('ERR_BODY_TOO_LARGE', message, { detail })
  }

  /**
   * Joins the parts into the new local file `target`, checking each part's MD5: on a pool thread
   * by path when the store has local files, else streamed from the store.
   */
  async #join(
    sources: readonly { key: string; expectedMd5: string }[],
    target: string,
  ): Promise<JoinPartsResult> {
    const objects = this.#objects
    if (hasLocalPaths(objects)) {
      const paths = sources.map((s) => ({
        path: objects.localPath(s.key),
        expectedMd5: s.expectedMd5,
      }))
      return this.#o.pool.joinParts(paths, target)
    }
    return joinStreamed(objects, sources, target)
  }

  /**
   * Removes an upload's objects; false when there were none. In one step with AtomicFolders;
   * else `upload.json` first (from then on the upload is gone for every request), then the rest.
   */
  async #removeUpload(dir: string): Promise<boolean> {
    const objects = this.#objects
    if (hasAtomicFolders(objects)) return objects.removeFolder(dir)
    let any = await objects.delete(`${dir}/upload.json`)
    const keys: string[] = []
    for await (const e of objects.list(`${dir}/`)) if (e.kind === 'object') keys.push(e.key)
    for (const key of keys) any = (await objects.delete(key)) || any
    return any
  }

  async #removeParts(dir: string): Promise<void> {
    for await (const e of this.#objects.list(`${dir}/`, { delimiter: true })) {
      if (e.kind === 'object' && e.key.endsWith('.part')) await this.#objects.delete(e.key)
    }
  }

  /** Writes a small JSON object through a temp file, replacing what is there. */
  async #writeJson(key: string, doc: unknown): Promise<void> {
    const tempPath = this.#o.uploads.streamTempPath()
    try {
      await putSmallObject(this.#objects, key, JSON.stringify(doc), { tempPath, overwrite: true })
    } finally {
      // Forgets it as a running stream (the file is gone already, published or removed).
      await this.#o.uploads.discard(tempPath)
    }
  }

  /** The key prefix of an upload's objects (`<repo>/pmpu/<id>`), a folder on a filesystem. */
  #uploadDir(repository: string, uploadId: string): string {
    // Ids are ours (32 hex); anything else names no upload, and never a key outside pmpu/.
    if (!UPLOAD_ID_RE.test(uploadId)) throw noSuchUpload()
    return `${pmpuPrefix(this.#o.store.repository(repository).name)}/${uploadId}`
  }
}

/**
 * Writes the parts, streamed from `objects`, into the new file `target` (fsynced), checking
 * each one's MD5 (JoinPartsResult, as the pool's join answers).
 */
async function joinStreamed(
  objects: ObjectStore,
  sources: readonly { key: string; expectedMd5: string }[],
  target: string,
): Promise<JoinPartsResult> {
  const md5 = createHash('md5')
  const sha256 = createHash('sha256')
  const sourceBytes: number[] = []
  let bytes = 0
  const fh = await open(target, 'wx', 0o644)
  try {
    for (const [index, s] of sources.entries()) {
      let stream: Readable
      try {
        stream = await objects.get(s.key)
      } catch (err) {
        if (err instanceof UploadError && err.code === 'ERR_NOT_FOUND') {
          return { status: 'missing', index }
        }
        throw err
      }
      const partMd5 = createHash('md5')
      let n = 0
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        partMd5.update(chunk)
        md5.update(chunk)
        sha256.update(chunk)
        let off = 0
        while (off < chunk.length) {
          const w = await fh.write(chunk, off, chunk.length - off, bytes + n + off)
          off += w.bytesWritten
        }
        n += chunk.length
      }
      if (partMd5.digest('hex') !== s.expectedMd5) return { status: 'mismatch', index }
      sourceBytes.push(n)
      bytes += n
    }
    await fh.sync()
  } finally {
    await fh.close()
  }
  return {
    status: 'joined',
    bytes,
    md5: md5.digest('hex'),
    sha256: sha256.digest('hex'),
    sourceBytes,
  }
}

/** Where a repository's uploads live in the staging store (beside `data/`, `blobs/`…). */
function pmpuPrefix(repository: string): string {
  return `${repository}/pmpu`
}

function partKey(dir: string, partNumber: number): string {
  return `${dir}/${partNumber}.part`
}

function noSuchUpload(): UploadError {
  return new UploadError('ERR_SESSION_NOT_FOUND', NO_SUCH_UPLOAD)
}
