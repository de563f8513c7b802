/**
 * Receiving one object's bytes into a temp file while hashing them, in one of two ways:
 *
 *   inline: body ──▶ Meter (count, limit) ──▶ receiveWhole: sha256 on the main thread ──▶ temp file
 *   pool:   body ──▶ Meter (count, limit) ──▶ receiveWhole: temp file ◀── pool thread hashes
 *                                                           each stretch that landed
 *
 * Which is faster depends on the size (measured: see INLINE_HASH_MAX_BYTES in uploads/receive.ts).
 * Either way memory stays bounded (backpressure) and a body longer than declared stops before
 * its excess is written.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { UploadError } from '../errors.js'
import { removeIfPresent } from '../storage/remove.js'
import type { UploadService } from '../uploads/uploads.js'

export type HashMode = 'inline' | 'pool'

export interface ReceivedBlob {
  readonly tempPath: string
  /** Bytes received (≤ the declared size; fewer means a short body). */
  readonly bytes: number
  readonly sha256: string
}

export interface ReceiveOptions {
  readonly uploads: UploadService
  /** The size the client declared; one byte more stops the body with ERR_SIZE_MISMATCH. */
  readonly declaredBytes: number
  readonly mode: HashMode
  readonly signal?: AbortSignal
}

/** Counts bytes and refuses more than the limit (so the excess is never written). */
class Meter extends Transform {
  readonly #limit: number
  bytes = 0
  overflowed = false

  constructor(limit: number) {
    super()
    this.#limit = limit
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length
    if (this.bytes > this.#limit) {
      this.overflowed = true
      cb(
        new UploadError(
          'ERR_SIZE_MISMATCH',
          `body is longer than the ${this.#limit} bytes declared`,
        ),
      )
      return
    }
    cb(null, chunk)
  }
}

/**
 * Streams `body` into a new temp file and hashes it. Throws ERR_SIZE_MISMATCH (detail
 * `{kind: 'size', overflow: true}`) as soon as the body passes the declared size, and
 * ERR_CLIENT_ABORTED when the body breaks off; the temp file is gone in both cases. A body shorter
 * than declared is returned as is: the caller compares `bytes`.
 */
export async function receiveBlob(body: Readable, o: ReceiveOptions): Promise<ReceivedBlob> {
  const meter = new Meter(o.declaredBytes)
  // Errors of `body` reach the writer through the meter; the writer's own pipeline reports them.
  const feeding = pipeline(body, meter).catch(() => {})
  try {
    const got = await o.uploads.receiveWhole(meter, {
      maxBytes: o.declaredBytes,
      algos: ['sha256'],
      hashInline: o.mode === 'inline',
      ...(o.signal ? { signal: o.signal } : {}),
    })
    const sha256 = got.digests['sha256']
    if (sha256 === undefined) {
      await removeIfPresent(got.tempPath)
      throw new UploadError('ERR_IO', 'the hash pool answered no sha256')
    }
    return { tempPath: got.tempPath, bytes: got.bytes, sha256 }
  } catch (err) {
    if (!meter.overflowed) throw err
    throw new UploadError(
      'ERR_SIZE_MISMATCH',
      `file size mismatched, declared ${o.declaredBytes} but received ${meter.bytes} bytes`,
      {
        detail: {
          kind: 'size',
          expectedBytes: o.declaredBytes,
          receivedBytes: meter.bytes,
          overflow: true,
        },
      },
    )
  } finally {
    await feeding
  }
}
