/**
 * The test store itself (scripts/swift-s3.mjs, test/helpers/swift.ts): the private Swift answers
 * the S3 calls the S3 backend relies on, and refuses the one it must not rely on
 * (`If-None-Match: *`, issue 15). If Swift's packages change behaviour, this fails first.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import { testBucket } from '../helpers/swift.js'

const MiB = 1024 * 1024
const bytes = (n: number, seed: number) => {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}

describe('the test Swift (s3api)', () => {
  let s3: S3Client
  let Bucket: string
  beforeAll(async () => {
    const t = await testBucket()
    Bucket = t.bucket
    s3 = new S3Client({
      endpoint: t.endpoint,
      region: t.region,
      forcePathStyle: true,
      credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
    })
  }, 180_000)
  afterAll(() => s3?.destroy())

  test('PutObject then GetObject with a Range; metadata comes back', async () => {
    const body = bytes(10_000, 3)
    await s3.send(
      new PutObjectCommand({ Bucket, Key: 'a/b c+d.bin', Body: body, Metadata: { sha256: 'x1' } }),
    )
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'a/b c+d.bin' }))
    expect(head.ContentLength).toBe(10_000)
    expect(head.Metadata?.['sha256']).toBe('x1')
    const got = await s3.send(
      new GetObjectCommand({ Bucket, Key: 'a/b c+d.bin', Range: 'bytes=100-199' }),
    )
    expect(Buffer.from(await got.Body!.transformToByteArray())).toEqual(body.subarray(100, 200))
  })

  test('If-None-Match: * is not supported (create-if-absent must come from Ferry)', async () => {
    await expect(
      s3.send(new PutObjectCommand({ Bucket, Key: 'inm', Body: 'x', IfNoneMatch: '*' })),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 501 } })
  })

  test('multipart: parts sent out of order complete in order; abort leaves nothing', async () => {
    const p1 = bytes(5 * MiB, 1)
    const p2 = bytes(1000, 2)
    const Key = 'mp/obj'
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }))
    const e2 = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: p2 }),
    )
    const e1 = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: p1 }),
    )
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: e1.ETag! },
            { PartNumber: 2, ETag: e2.ETag! },
          ],
        },
      }),
    )
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }))
    const all = Buffer.from(await got.Body!.transformToByteArray())
    const want = Buffer.concat([p1, p2])
    expect(createHash('sha256').update(all).digest('hex')).toBe(
      createHash('sha256').update(want).digest('hex'),
    )

    const other = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: 'mp/aborted' }))
    const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'mp/' }))
    expect(listed.Uploads?.map((u) => u.UploadId)).toEqual([other.UploadId])
    await s3.send(
      new AbortMultipartUploadCommand({ Bucket, Key: 'mp/aborted', UploadId: other.UploadId }),
    )
    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'mp/' }))
    expect(after.Uploads ?? []).toEqual([])
  })
})
