/**
 * The one place that makes an S3 client (`@aws-sdk/client-s3`) for the S3 object store.
 *
 * Credentials come only from the SDK's default provider chain (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and the shared config and credentials
 * files, web identity, the instance metadata service): Ferry's configuration never holds them,
 * so they cannot reach a log through it. The SDK's own logger is given only warnings, without
 * requests.
 *
 * Checksums: the SDK would add CRC32 trailers (aws-chunked uploads) to every streamed PutObject
 * and UploadPart by default; S3-compatible stores that predate them (OpenStack Swift's s3api, the
 * test store) refuse those, so checksums are sent and checked only where an operation needs one.
 * Integrity of a put is checked by the store against the ETag (MD5) instead.
 */
import { S3Client } from '@aws-sdk/client-s3'
import type { Logger } from 'pino'

export interface S3ClientOptions {
  /** `http(s)://host[:port]`; null: AWS's endpoint for the region. */
  readonly endpoint: string | null
  readonly region: string
  /** Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need. */
  readonly forcePathStyle: boolean
  /** Attempts of a request with a body the SDK can re-send (not a streamed upload). Default 3. */
  readonly maxAttempts?: number
  /** Connecting may take this long, ms. Default 10000. */
  readonly connectTimeoutMs?: number
  /** A request whose socket stays idle this long fails, ms. Default 120000. */
  readonly socketTimeoutMs?: number
  /** Sockets per client (parallel part uploads and reads). Default 32. */
  readonly maxSockets?: number
  readonly log?: Logger
}

export function createS3Client(o: S3ClientOptions): S3Client {
  const log = o.log
  return new S3Client({
    region: o.region,
    ...(o.endpoint !== null ? { endpoint: o.endpoint } : {}),
    forcePathStyle: o.forcePathStyle,
    maxAttempts: o.maxAttempts ?? 3,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: o.connectTimeoutMs ?? 10_000,
      socketTimeout: o.socketTimeoutMs ?? 120_000,
      httpAgent: { keepAlive: true, maxSockets: o.maxSockets ?? 32 },
      httpsAgent: { keepAlive: true, maxSockets: o.maxSockets ?? 32 },
    },
    // The SDK logs nothing but warnings here (a failed streamed request, a slow socket pool);
    // they carry no credentials. Without a logger it would print them to the console.
    logger: {
      debug: () => {},
      info: () => {},
      warn: (...args: unknown[]) => log?.warn({ component: 's3' }, args.map(String).join(' ')),
      error: (...args: unknown[]) => log?.error({ component: 's3' }, args.map(String).join(' ')),
    },
  })
}
