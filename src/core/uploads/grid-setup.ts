/**
 * The part grid of the composition root (FERRY_STORAGE=s3): ImageStore's chunked sessions live
 * in the bucket (grid.ts), their staging objects under `<FERRY_S3_PREFIX>uploads/`, their files
 * at the ImageStore store's keys (`<FERRY_S3_PREFIX>imagestore/<path>`).
 */
import { S3Client } from '@aws-sdk/client-s3'
import type { Logger } from 'pino'
import type { Config } from '../../config/config.js'
import type { StateBackend } from '../state/types.js'
import { SessionGrid } from './grid.js'
import { GridBucket } from './grid-bucket.js'

/** The session key prefix of ImageStore sessions (http/imagestore/family.ts). */
const IMAGESTORE_KEYS = 'imagestore:'

export function createSessionGrid(
  config: Config,
  state: StateBackend,
  log: Logger,
): { grid: SessionGrid; close(): Promise<void> } | null {
  const s3 = config.storage.s3
  if (s3 === null) return null
  const client = new S3Client({
    region: s3.region,
    ...(s3.endpoint !== null ? { endpoint: s3.endpoint } : {}),
    forcePathStyle: s3.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  const grid = new SessionGrid({
    bucket: new GridBucket(client, s3.bucket),
    sessions: state.sessions,
    locker: state.locker,
    keyPrefix: IMAGESTORE_KEYS,
    stagingPrefix: `${s3.prefix}uploads/`,
    finalKey: (target) => `${s3.prefix}imagestore/${target}`,
    partBytes: s3.partBytes,
    log: log.child({ component: 's3-grid' }),
  })
  return {
    grid,
    async close() {
      client.destroy()
    },
  }
}
