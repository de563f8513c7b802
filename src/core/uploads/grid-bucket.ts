/**
 * The bucket operations the part grid (grid.ts) needs, over `@aws-sdk/client-s3`: multipart
 * uploads, fragment objects, a streaming read, and the server-side copy that publishes. Every key
 * here is a whole bucket key; the grid names them.
 */
import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import { isMissing } from './grid.js'

/** An upload under way, as ListMultipartUploads answers it. */
export interface PendingUpload {
  readonly key: string
  readonly uploadId: string
  readonly initiatedMs: number
}

export interface BucketObject {
  readonly key: string
  readonly size: number
  readonly modifiedMs: number
}

/** Largest object one CopyObject may copy (S3's limit; larger ones are copied part by part). */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3

export class GridBucket {
  readonly #s3: S3Client
  readonly bucket: string

  constructor(client: S3Client, bucket: string) {
    this.#s3 = client
    this.bucket = bucket
  }

  async createUpload(key: string): Promise<string> {
    const r = await this.#s3.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }),
    )
    if (!r.UploadId) throw new Error('CreateMultipartUpload answered no UploadId')
    return r.UploadId
  }

  /** Uploads part `partNumber` from `body` of exactly `bytes` bytes; answers its ETag. */
  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Readable | Uint8Array,
    bytes: number,
  ): Promise<string> {
    const r = await this.#s3.send(
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: bytes,
      }),
    )
    if (!r.ETag) throw new Error('UploadPart answered no ETag')
    return r.ETag
  }

  async put(
    key: string,
    body: Readable | Uint8Array,
    bytes: number,
    meta?: Record<string, string>,
  ) {
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: bytes,
        ...(meta ? { Metadata: meta } : {}),
      }),
    )
  }

  async complete(key: string, uploadId: string, parts: { n: number; etag: string }[]) {
    await this.#s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.n, ETag: p.etag })) },
      }),
    )
  }

  /** false when there was no such upload (aborted or completed already). */
  async abort(key: string, uploadId: string): Promise<boolean> {
    try {
      await this.#s3.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      )
      return true
    } catch (err) {
      if (isMissing(err)) return false
      throw err
    }
  }

  /** The object's size, or null when there is none. */
  async size(key: string): Promise<number | null> {
    try {
      const r = await this.#s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      return r.ContentLength ?? 0
    } catch (err) {
      if (isMissing(err)) return null
      throw err
    }
  }

  /** The object's bytes (an inclusive range of them), streamed. */
  async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const r = await this.#s3.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
      }),
    )
    return r.Body as Readable
  }

  async delete(key: string): Promise<void> {
    await this.#s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }))
  }

  /**
   * Copies `from` to `to` in the bucket with new metadata (`REPLACE`): `to` appears whole or not
   * at all. Past S3's single-copy limit, as a multipart copy created with the metadata.
   */
  async copyWithMetadata(from: string, to: string, size: number, meta: Record<string, string>) {
    const source = `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`
    if (size <= MAX_SINGLE_COPY_BYTES) {
      await this.#s3.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: source,
          MetadataDirective: 'REPLACE',
          Metadata: meta,
        }),
      )
      return
    }
    const id = (
      await this.#s3.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, Metadata: meta }),
      )
    ).UploadId
    if (!id) throw new Error('CreateMultipartUpload answered no UploadId')
    try {
      const step = 1024 ** 3
      const parts: { n: number; etag: string }[] = []
      for (let start = 0, n = 1; start < size; start += step, n++) {
        const end = Math.min(size, start + step) - 1
        const r = await this.#s3.send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: to,
            UploadId: id,
            PartNumber: n,
            CopySource: source,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        )
        const etag = r.CopyPartResult?.ETag
        if (!etag) throw new Error('UploadPartCopy answered no ETag')
        parts.push({ n, etag })
      }
      await this.complete(to, id, parts)
    } catch (err) {
      await this.abort(to, id).catch(() => {})
      throw err
    }
  }

  async *pendingUploads(prefix: string): AsyncGenerator<PendingUpload> {
    let keyMarker: string | undefined
    let idMarker: string | undefined
    for (;;) {
      const r = await this.#s3.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(idMarker !== undefined ? { UploadIdMarker: idMarker } : {}),
        }),
      )
      for (const u of r.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue
        yield { key: u.Key, uploadId: u.UploadId, initiatedMs: u.Initiated?.getTime() ?? 0 }
      }
      if (!r.IsTruncated) return
      keyMarker = r.NextKeyMarker
      idMarker = r.NextUploadIdMarker
      if (keyMarker === undefined) return
    }
  }

  async *objects(prefix: string): AsyncGenerator<BucketObject> {
    let token: string | undefined
    for (;;) {
      const r = await this.#s3.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(token !== undefined ? { ContinuationToken: token } : {}),
        }),
      )
      for (const o of r.Contents ?? []) {
        if (o.Key === undefined) continue
        yield { key: o.Key, size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 }
      }
      if (!r.IsTruncated || r.NextContinuationToken === undefined) return
      token = r.NextContinuationToken
    }
  }
}
