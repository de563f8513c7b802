#!/usr/bin/env node
/**
 * What carrying the sha256 as S3 metadata costs a grid commit (src/core/uploads/grid.ts), on a
 * private Swift (scripts/swift-s3.mjs): S3 fixes metadata when a multipart upload is created, and
 * the sha256 is known only at commit. Interleaved per rep, the same parts uploaded beforehand:
 *   direct: CompleteMultipartUpload at the final key (no metadata possible, no copy)
 *   copy:   CompleteMultipartUpload to a staging key, CopyObject REPLACE with sha256+size
 *           metadata to the final key, DeleteObject of the staging key (what the grid does)
 * Prints each commit's time and the ratio copy/direct (medians).
 *   node bench/s3-commit-copy.js [--mib 64,256] [--reps 3] [--part-mib 8]
 */
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { startSwift } from '../scripts/swift-s3.mjs'

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64,256' },
    reps: { type: 'string', default: '3' },
    'part-mib': { type: 'string', default: '8' },
  },
})
const MiB = 1024 * 1024
const sizes = values.mib.split(',').map(Number)
const reps = Number(values.reps)
const partBytes = Number(values['part-mib']) * MiB

const swift = await startSwift()
const s3 = new S3Client({
  endpoint: swift.endpoint,
  region: swift.region,
  forcePathStyle: true,
  credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
})
const Bucket = 'commitcopy'
const { createBucket } = await import('../scripts/swift-s3.mjs')
await createBucket(swift.endpoint, Bucket)
const part = randomBytes(partBytes)

/** A multipart upload of `mib` MiB with every part uploaded; answers what Complete needs. */
async function staged(key, mib) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: key }))
  const n = Math.ceil((mib * MiB) / partBytes)
  const Parts = []
  for (let i = 1; i <= n; i++) {
    const r = await s3.send(
      new UploadPartCommand({ Bucket, Key: key, UploadId, PartNumber: i, Body: part }),
    )
    Parts.push({ PartNumber: i, ETag: r.ETag })
  }
  return { UploadId, Parts, bytes: n * partBytes }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
try {
  for (const mib of sizes) {
    const direct = []
    const copy = []
    for (let rep = 0; rep < reps; rep++) {
      for (const kind of rep % 2 === 0 ? ['direct', 'copy'] : ['copy', 'direct']) {
        const final = `final/${mib}-${rep}-${kind}`
        const key = kind === 'direct' ? final : `uploads/${mib}-${rep}/object`
        const u = await staged(key, mib)
        const t0 = performance.now()
        await s3.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: key,
            UploadId: u.UploadId,
            MultipartUpload: { Parts: u.Parts },
          }),
        )
        if (kind === 'copy') {
          await s3.send(
            new CopyObjectCommand({
              Bucket,
              Key: final,
              CopySource: `${Bucket}/${key}`,
              MetadataDirective: 'REPLACE',
              Metadata: { sha256: '0'.repeat(64), size: String(u.bytes) },
            }),
          )
          await s3.send(new DeleteObjectCommand({ Bucket, Key: key }))
        }
        const ms = performance.now() - t0
        ;(kind === 'direct' ? direct : copy).push(ms)
        await s3.send(new DeleteObjectCommand({ Bucket, Key: final }))
      }
    }
    const d = median(direct)
    const c = median(copy)
    console.log(
      `${mib} MiB: direct ${direct.map((x) => x.toFixed(0)).join('/')} ms, copy ${copy
        .map((x) => x.toFixed(0))
        .join('/')} ms; median copy/direct ${(c / d).toFixed(2)}x (+${(c - d).toFixed(0)} ms, ` +
        `${((mib / (c - d)) * 1000).toFixed(0)} MiB/s of copy)`,
    )
  }
} finally {
  s3.destroy()
  await swift.stop()
}
