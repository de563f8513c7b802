/**
 * The part grid of the composition root (FERRY_STORAGE=s3): ImageStore's chunked sessions live
 * in the bucket (grid.ts), their staging objects under `<FERRY_S3_PREFIX>uploads/`, their files
 * at the ImageStore store's keys. Loaded only with s3 (it brings the SDK).
 */
import type { S3Client } from '@aws-sdk/client-s3'
import type { Logger } from 'pino'
import type { S3StorageConfig } from '../../config/config.js'
import type { StateBackend } from '../state/types.js'
import type { S3ObjectStore } from '../storage/s3-object-store.js'
import { SessionGrid } from './grid.js'
import { GridBucket } from './grid-bucket.js'

/** The session key prefix of ImageStore sessions (http/imagestore/family.ts). */
const IMAGESTORE_KEYS = 'imagestore:'

export function createSessionGrid(o: {
  readonly s3: S3StorageConfig
  readonly client: S3Client
  /** ImageStore's store: a committed session's file is at its key for the session's path. */
  readonly imagestore: S3ObjectStore
  readonly state: StateBackend
  readonly log: Logger
}): SessionGrid {
  return new SessionGrid({
    bucket: new GridBucket(o.client, o.s3.bucket),
    sessions: o.state.sessions,
    locker: o.state.locker,
    keyPrefix: IMAGESTORE_KEYS,
    stagingPrefix: `${o.s3.prefix}uploads/`,
    finalKey: (target) => o.imagestore.bucketKey(target),
    partBytes: o.s3.partBytes,
    log: o.log.child({ component: 's3-grid' }),
  })
}
