/**
 * The ObjectStore on an S3-compatible bucket (`@aws-sdk/client-s3`; tested against OpenStack
 * Swift's s3api, issue 15). Keys live under a prefix of the bucket (`<prefix><key>`), one per
 * family, so families share a bucket without sharing names. None of the filesystem capabilities:
 * an object store has no local paths, no cheap snapshots, no appends and no folders.
 *
 * - put uploads the local temp file: one PutObject below `multipartThresholdBytes`, else a
 *   multipart upload whose parts (≥ 8 MiB, bigger when the file needs more than `maxParts`) are
 *   streamed from the file, `partConcurrency` at a time; a failure aborts the multipart upload,
 *   so neither an object nor its parts remain. Either way S3 makes the object visible only whole.
 *   The object carries its size (and the sha256 the caller knows) as user metadata, and its
 *   ETag is checked against the MD5 of what was sent (single PUT) so bytes damaged on the way
 *   are refused. The temp file is removed once the object is published.
 * - `if-absent` cannot use `If-None-Match: *` (Swift answers 501): the put takes Ferry's Locker
 *   lock on the key (every instance sharing the state store takes the same one), looks (HEAD),
 *   uploads, checks the lock is still held before the object becomes visible, and releases.
 *   Exactly one of racing if-absent puts wins; an overwrite put does not take the lock.
 * - get is one GetObject (with a Range); a range that reaches past the end is refused with the
 *   object's size. head/delete/list/copy are the S3 calls of the same name (delete looks first,
 *   to answer whether there was an object; copy is server-side, UploadPartCopy above 5 GiB).
 * - etag is the S3 ETag: content-derived (equal etags mean equal bytes), so a replacement with
 *   the very same bytes keeps it. mtimeMs is Last-Modified (whole seconds on most stores).
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type GetObjectCommandOutput,
  type ListObjectsV2CommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat, unlink } from 'node:fs/promises'
import { pipeline, Readable, Transform } from 'node:stream'
import { UploadError } from '../errors.js'
import type { Lock, Locker } from '../state/types.js'
import {
  checkObjectKey,
  checkObjectPrefix,
  checkObjectRange,
  type ListEntry,
  type ListOptions,
  type ObjectInfo,
  type ObjectRange,
  type ObjectStore,
  type PutOptions,
} from './object-store.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

/** S3's limits: parts of 5 MiB at least (but the last), 5 GiB at most; one PUT or copy ≤ 5 GiB. */
export const S3_MIN_PART_BYTES = 5 * MiB
export const S3_MAX_PART_BYTES = 5 * GiB

export interface S3ObjectStoreOptions {
  readonly client: S3Client
  readonly bucket: string
  /** Prepended to every key (`''`, or ending in `/`): the family's area of the bucket. */
  readonly prefix: string
  /** Ferry's lock service, for `if-absent` (shared by every instance that shares the bucket). */
  readonly locker: Locker
  /** Files of this size or more go up as a multipart upload. Default 16 MiB. */
  readonly multipartThresholdBytes?: number
  /** Part size of a multipart put (at least 5 MiB). Default 8 MiB. */
  readonly partBytes?: number
  /** Most parts of one upload (Swift's s3api: 1000; S3: 10000). Default 1000. */
  readonly maxParts?: number
  /** Parts in flight at once per put. Default 4. */
  readonly partConcurrency?: number
  /** Objects of this size or more are copied part by part (UploadPartCopy). Default 5 GiB. */
  readonly copyPartThresholdBytes?: number
  /** Lease of an if-absent put's lock (renewed while held), ms. Default 30000. */
  readonly lockTtlMs?: number
  /** How long an if-absent put waits for another put of the same key, ms. Default 600000. */
  readonly lockWaitMs?: number
  /** Attempts of one streamed request (a PUT or a part) on a transient failure. Default 3. */
  readonly uploadAttempts?: number
  /** Keys asked for per listing request (MaxKeys); default the store's (1000). */
  readonly listPageSize?: number
}

interface S3ErrorLike {
  readonly name?: string
  readonly code?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
  readonly $retryable?: unknown
}

const statusOf = (err: unknown) => (err as S3ErrorLike | null)?.$metadata?.httpStatusCode

function isMissing(err: unknown): boolean {
  const e = err as S3ErrorLike | null
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || statusOf(err) === 404
}

/** A failure that another try may not meet: a 5xx, a throttle, a network error or timeout. */
function isTransient(err: unknown): boolean {
  const status = statusOf(err)
  if (status !== undefined) return status >= 500 || status === 429 || status === 408
  const e = err as (S3ErrorLike & { code?: string }) | null
  if (e?.$retryable) return true
  const code = e?.code ?? e?.name ?? ''
  return /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|TimeoutError|RequestTimeout)/.test(
    code,
  )
}

/** The error as the core's: the store unreachable or failing is ERR_UNAVAILABLE (retryable). */
function mapped(err: unknown, what: string): unknown {
  if (err instanceof UploadError) return err
  if (isTransient(err)) {
    return new UploadError('ERR_UNAVAILABLE', `the object store failed to ${what}`, { cause: err })
  }
  return err
}

const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '')

/** A key as CopySource wants it: every segment URL-encoded, the `/` kept. */
const encodeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class S3ObjectStore implements ObjectStore {
  readonly #s3: S3Client
  readonly #bucket: string
  readonly #prefix: string
  readonly #locker: Locker
  readonly #threshold: number
  readonly #partBytes: number
  readonly #maxParts: number
  readonly #concurrency: number
  readonly #copyThreshold: number
  readonly #lockTtlMs: number
  readonly #lockWaitMs: number
  readonly #attempts: number
  readonly #listPageSize: number | undefined

  constructor(o: S3ObjectStoreOptions) {
    if (o.prefix !== '') checkObjectPrefix(o.prefix)
    if (o.prefix !== '' && !o.prefix.endsWith('/')) {
      throw new TypeError(`an S3 store prefix ends with '/': ${JSON.stringify(o.prefix)}`)
    }
    this.#s3 = o.client
    this.#bucket = o.bucket
    this.#prefix = o.prefix
    this.#locker = o.locker
    this.#partBytes = Math.max(S3_MIN_PART_BYTES, o.partBytes ?? 8 * MiB)
    this.#threshold = Math.max(o.multipartThresholdBytes ?? 16 * MiB, this.#partBytes)
    this.#maxParts = o.maxParts ?? 1000
    this.#concurrency = Math.max(1, o.partConcurrency ?? 4)
    this.#copyThreshold = o.copyPartThresholdBytes ?? S3_MAX_PART_BYTES
    this.#lockTtlMs = o.lockTtlMs ?? 30_000
    this.#lockWaitMs = o.lockWaitMs ?? 600_000
    this.#attempts = Math.max(1, o.uploadAttempts ?? 3)
    this.#listPageSize = o.listPageSize
  }

  /** Where the store's keys live: `s3://bucket/prefix` (logs, README). */
  describe(): string {
    return `s3://${this.#bucket}/${this.#prefix}`
  }

  get bucket(): string {
    return this.#bucket
  }

  /** The bucket key of a store key (checked). */
  bucketKey(key: string): string {
    checkObjectKey(key)
    return this.#prefix + key
  }

  // ---- put ----

  async put(key: string, tempPath: string, opts: PutOptions): Promise<ObjectInfo> {
    const full = this.bucketKey(key)
    const { size } = await stat(tempPath)
    const metadata: Record<string, string> = { size: String(size) }
    if (opts.sha256 !== undefined) metadata['sha256'] = opts.sha256
    const upload = (lock: Lock | null) =>
      size < this.#threshold
        ? this.#putOnce(full, tempPath, size, metadata, lock)
        : this.#putMultipart(full, tempPath, size, metadata, lock)
    const etag =
      opts.mode === 'if-absent'
        ? await this.#ifAbsent(key, () => this.#exists(full), upload)
        : await upload(null)
    await unlink(tempPath).catch(() => {})
    return this.#infoAfterWrite(key, full, size, etag)
  }

  /** Runs `write` holding the key's lock, refusing with ERR_ALREADY_EXISTS when `taken()`. */
  async #ifAbsent(
    key: string,
    taken: () => Promise<boolean>,
    write: (lock: Lock) => Promise<string>,
  ): Promise<string> {
    const lockKey = `s3obj:${createHash('sha256').update(`${this.#bucket}\0${this.#prefix}${key}`).digest('hex')}`
    const lock = await this.#locker.acquire(lockKey, {
      ttlMs: this.#lockTtlMs,
      waitMs: this.#lockWaitMs,
    })
    try {
      if (await taken()) {
        throw new UploadError('ERR_ALREADY_EXISTS', 'an object exists at this key')
      }
      return await write(lock)
    } finally {
      await lock.release().catch(() => {})
    }
  }

  async #exists(full: string): Promise<boolean> {
    return (await this.#headFull(full)) !== null
  }

  /** One PutObject streamed from the file; answers the ETag (checked against the MD5 sent). */
  async #putOnce(
    full: string,
    path: string,
    size: number,
    metadata: Record<string, string>,
    lock: Lock | null,
  ): Promise<string> {
    return this.#retrying('upload an object', async () => {
      // The fence: a lost lock must not publish (another if-absent put may hold it now).
      await lock?.check()
      const md5 = createHash('md5')
      // Hashed on the way through (a 'data' listener on the file stream would start it flowing
      // before the SDK reads it, and lose bytes).
      const body = new Transform({
        transform(chunk: Buffer, _enc, done) {
          md5.update(chunk)
          done(null, chunk)
        },
      })
      pipeline(createReadStream(path), body, () => {})
      const out = await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: full,
          Body: body,
          ContentLength: size,
          Metadata: metadata,
        }),
      )
      const sent = md5.digest('hex')
      const etag = unquote(out.ETag)
      // A single PUT's ETag is the MD5 of what the store kept; S3 with SSE-KMS is the exception.
      if (/^[0-9a-f]{32}$/.test(etag) && etag !== sent) {
        throw new UploadError('ERR_IO', `the object store kept other bytes (etag ${etag})`)
      }
      return etag
    })
  }

  /** A multipart upload from the file; aborted (parts removed) on any failure. */
  async #putMultipart(
    full: string,
    path: string,
    size: number,
    metadata: Record<string, string>,
    lock: Lock | null,
  ): Promise<string> {
    const partBytes = Math.max(this.#partBytes, Math.ceil(size / this.#maxParts))
    if (partBytes > S3_MAX_PART_BYTES) {
      throw new UploadError('ERR_BODY_TOO_LARGE', `${size} bytes is more than one object can hold`)
    }
    const count = Math.ceil(size / partBytes)
    const created = await this.#s3
      .send(
        new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: full, Metadata: metadata }),
      )
      .catch((err: unknown) => {
        throw mapped(err, 'start a multipart upload')
      })
    const UploadId = created.UploadId!
    try {
      const parts: CompletedPart[] = new Array(count)
      let next = 0
      let failed = false
      const worker = async () => {
        while (!failed && next < count) {
          const i = next++
          const start = i * partBytes
          const end = Math.min(size, start + partBytes) - 1
          try {
            const out = await this.#retrying('upload a part', () =>
              this.#s3.send(
                new UploadPartCommand({
                  Bucket: this.#bucket,
                  Key: full,
                  UploadId,
                  PartNumber: i + 1,
                  Body: createReadStream(path, { start, end }),
                  ContentLength: end - start + 1,
                }),
              ),
            )
            parts[i] = { PartNumber: i + 1, ETag: out.ETag! }
          } catch (err) {
            failed = true
            throw err
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(this.#concurrency, count) }, worker))
      await lock?.check()
      const done = await this.#s3
        .send(
          new CompleteMultipartUploadCommand({
            Bucket: this.#bucket,
            Key: full,
            UploadId,
            MultipartUpload: { Parts: parts },
          }),
        )
        .catch((err: unknown) => {
          throw mapped(err, 'complete a multipart upload')
        })
      return unquote(done.ETag)
    } catch (err) {
      await this.#abort(full, UploadId)
      throw err
    }
  }

  async #abort(full: string, UploadId: string): Promise<void> {
    for (let attempt = 0; attempt < this.#attempts; attempt++) {
      try {
        await this.#s3.send(
          new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: full, UploadId }),
        )
        return
      } catch (err) {
        if (statusOf(err) === 404) return
        await sleep(100 * 2 ** attempt)
      }
    }
    // Left for the bucket's lifecycle rule or the S3 sweeper (ListMultipartUploads).
  }

  /** Runs a request whose body is a stream (the SDK cannot re-send one) with fresh attempts. */
  async #retrying<T>(what: string, send: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await send()
      } catch (err) {
        if (attempt >= this.#attempts || !isTransient(err)) throw mapped(err, what)
        await sleep(200 * 2 ** (attempt - 1))
      }
    }
  }

  /** The info of what was just written: HEAD's, or (replaced meanwhile) what the write knew. */
  async #infoAfterWrite(
    key: string,
    full: string,
    size: number,
    etag: string,
  ): Promise<ObjectInfo> {
    const now = await this.#headFull(full).catch(() => null)
    if (now !== null && now.etag === etag) return { ...now, key }
    return { key, size, mtimeMs: Date.now(), etag }
  }

  // ---- head / get ----

  async #headFull(full: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.#s3.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: full }))
      return {
        key: full.slice(this.#prefix.length),
        size: out.ContentLength ?? 0,
        mtimeMs: out.LastModified?.getTime() ?? 0,
        etag: unquote(out.ETag),
      }
    } catch (err) {
      if (isMissing(err)) return null
      throw mapped(err, 'look at an object')
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    return this.#headFull(this.bucketKey(key))
  }

  async get(key: string, range?: ObjectRange): Promise<Readable> {
    const full = this.bucketKey(key)
    if (range !== undefined) {
      checkObjectRange(range, Number.MAX_SAFE_INTEGER)
      if (range.end < range.start) {
        // S3 has no empty range: the object's size says whether `start` is inside it.
        const info = await this.#headFull(full)
        if (info === null) throw new UploadError('ERR_NOT_FOUND', 'no such object')
        checkObjectRange(range, info.size)
        return Readable.from([])
      }
    }
    let out: GetObjectCommandOutput
    try {
      out = await this.#s3.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: full,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      )
    } catch (err) {
      if (isMissing(err)) throw new UploadError('ERR_NOT_FOUND', 'no such object', { cause: err })
      if (range && statusOf(err) === 416) {
        const info = await this.#headFull(full)
        if (info === null) throw new UploadError('ERR_NOT_FOUND', 'no such object', { cause: err })
        checkObjectRange(range, info.size)
      }
      throw mapped(err, 'read an object')
    }
    const body = out.Body as Readable
    if (range) {
      // S3 cuts a range that runs past the end short (`bytes 0-499/500` for 0-999): refuse it.
      const total = Number(/\/(\d+)$/.exec(out.ContentRange ?? '')?.[1] ?? Number.NaN)
      if (!Number.isFinite(total) || range.end >= total) {
        body.destroy()
        checkObjectRange(range, Number.isFinite(total) ? total : 0)
      }
    }
    return body
  }

  // ---- delete / list / copy ----

  async delete(key: string): Promise<boolean> {
    const full = this.bucketKey(key)
    if (!(await this.#exists(full))) return false
    try {
      await this.#s3.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: full }))
    } catch (err) {
      if (isMissing(err)) return false
      throw mapped(err, 'delete an object')
    }
    return true
  }

  async *list(prefix: string, opts: ListOptions = {}): AsyncGenerator<ListEntry> {
    checkObjectPrefix(prefix)
    let token: string | undefined
    do {
      let out: ListObjectsV2CommandOutput
      try {
        out = await this.#s3.send(
          new ListObjectsV2Command({
            Bucket: this.#bucket,
            Prefix: this.#prefix + prefix,
            ...(opts.delimiter === true ? { Delimiter: '/' } : {}),
            ...(token !== undefined ? { ContinuationToken: token } : {}),
            ...(this.#listPageSize !== undefined ? { MaxKeys: this.#listPageSize } : {}),
          }),
        )
      } catch (err) {
        throw mapped(err, 'list objects')
      }
      const cut = this.#prefix.length
      for (const c of out.Contents ?? []) {
        if (c.Key !== undefined) yield { kind: 'object', key: c.Key.slice(cut) }
      }
      for (const p of out.CommonPrefixes ?? []) {
        if (p.Prefix !== undefined) yield { kind: 'prefix', key: p.Prefix.slice(cut) }
      }
      token = out.IsTruncated === true ? out.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  async copy(from: string, to: string, opts: PutOptions): Promise<ObjectInfo> {
    const src = this.bucketKey(from)
    const dst = this.bucketKey(to)
    const run = async (lock: Lock | null) => {
      const info = await this.#headFull(src)
      if (info === null) throw new UploadError('ERR_NOT_FOUND', 'no object to copy')
      await lock?.check()
      const etag =
        info.size >= this.#copyThreshold
          ? await this.#copyParts(src, dst, info.size)
          : await this.#copyOnce(src, dst)
      return { etag, size: info.size }
    }
    let done: { etag: string; size: number } | null = null
    if (opts.mode === 'if-absent') {
      await this.#ifAbsent(
        to,
        () => this.#exists(dst),
        async (lock) => {
          done = await run(lock)
          return done.etag
        },
      )
    } else done = await run(null)
    const { etag, size } = done!
    return this.#infoAfterWrite(to, dst, size, etag)
  }

  async #copyOnce(src: string, dst: string): Promise<string> {
    try {
      const out = await this.#s3.send(
        new CopyObjectCommand({
          Bucket: this.#bucket,
          Key: dst,
          CopySource: `${this.#bucket}/${encodeKey(src)}`,
        }),
      )
      return unquote(out.CopyObjectResult?.ETag)
    } catch (err) {
      if (isMissing(err))
        throw new UploadError('ERR_NOT_FOUND', 'no object to copy', { cause: err })
      throw mapped(err, 'copy an object')
    }
  }

  /** A server-side copy part by part (objects past one CopyObject's 5 GiB). */
  async #copyParts(src: string, dst: string, size: number): Promise<string> {
    const head = await this.#s3
      .send(new HeadObjectCommand({ Bucket: this.#bucket, Key: src }))
      .catch((err: unknown) => {
        if (isMissing(err)) throw new UploadError('ERR_NOT_FOUND', 'no object to copy')
        throw mapped(err, 'look at an object')
      })
    const partBytes = Math.max(
      Math.min(this.#copyThreshold, S3_MAX_PART_BYTES),
      S3_MIN_PART_BYTES,
      Math.ceil(size / this.#maxParts),
    )
    const count = Math.ceil(size / partBytes)
    const created = await this.#s3
      .send(
        new CreateMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: dst,
          ...(head.Metadata ? { Metadata: head.Metadata } : {}),
        }),
      )
      .catch((err: unknown) => {
        throw mapped(err, 'start a multipart copy')
      })
    const UploadId = created.UploadId!
    try {
      const parts: CompletedPart[] = []
      for (let i = 0; i < count; i++) {
        const start = i * partBytes
        const end = Math.min(size, start + partBytes) - 1
        const out = await this.#s3
          .send(
            new UploadPartCopyCommand({
              Bucket: this.#bucket,
              Key: dst,
              UploadId,
              PartNumber: i + 1,
              CopySource: `${this.#bucket}/${encodeKey(src)}`,
              CopySourceRange: `bytes=${start}-${end}`,
              ...(head.ETag ? { CopySourceIfMatch: head.ETag } : {}),
            }),
          )
          .catch((err: unknown) => {
            if (isMissing(err) || statusOf(err) === 412) {
              throw new UploadError('ERR_NOT_FOUND', 'the object to copy changed or went away')
            }
            throw mapped(err, 'copy a part')
          })
        parts.push({ PartNumber: i + 1, ETag: out.CopyPartResult!.ETag! })
      }
      const done = await this.#s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: dst,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      )
      return unquote(done.ETag)
    } catch (err) {
      await this.#abort(dst, UploadId)
      throw mapped(err, 'copy an object')
    }
  }
}
