/**
 * Receiving one object's bytes into a temp file while hashing them, in one of two ways:
 *
 *   inline: body ──▶ Meter (count, limit, sha256 on the main thread) ──▶ temp file
 *   pool:   body ──▶ Meter (count, limit) ──▶ temp file ◀── pool thread hashes each stretch
 *                                                           that landed (UploadService.receiveWhole)
 *
 * Which is faster depends on the size (measured: see the Shaman family's HASH_INLINE_MAX_BYTES).
 * Either way memory stays bounded (backpressure) and a body longer than declared stops before
 * its excess is written.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { join } from 'node:path'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { UploadError } from '../errors.js'
import { removeQuietly, writeStreamAt } from '../storage/files.js'
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
  /** `layout.tmp`; files are named `w-*.part` so the engine's sweeper removes crash leftovers. */
  readonly tmpDir: string
  /** The size the client declared; one byte more stops the body with ERR_SIZE_MISMATCH. */
  readonly declaredBytes: number
  readonly mode: HashMode
  readonly signal?: AbortSignal
}

/** Counts bytes, refuses more than the limit, and hashes (inline mode). */
class Meter extends Transform {
  readonly #limit: number
  readonly #hash: Hash | null
  bytes = 0
  overflowed = false

  constructor(limit: number, hash: Hash | null) {
    super()
    this.#limit = limit
    this.#hash = hash
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length
    if (this.bytes > this.#limit) {
      this.overflowed = true
      cb(new UploadError('ERR_SIZE_MISMATCH', `body is longer than the ${this.#limit} bytes declared`))
      return
    }
    this.#hash?.update(chunk)
    cb(null, chunk)
  }
}

/**
 * Streams `body` into a new temp file and hashes it. Throws ERR_SIZE_MISMATCH (details:
 * `{declared, received, overflow: true}`) as soon as the body passes the declared size, and
 * ERR_CLIENT_ABORTED when the body breaks off; the temp file is gone in both cases. A body shorter
 * than declared is returned as is: the caller compares `bytes`.
 */
export async function receiveBlob(body: Readable, o: ReceiveOptions): Promise<ReceivedBlob> {
  const hash = o.mode === 'inline' ? createHash('sha256') : null
  const meter = new Meter(o.declaredBytes, hash)
  // Errors of `body` reach the writer through the meter; the writer's own pipeline reports them.
  const feeding = pipeline(body, meter).catch(() => {})
  const overflow = () =>
    new UploadError('ERR_SIZE_MISMATCH', `file size mismatched, declared ${o.declaredBytes} but received ${meter.bytes} bytes`, {
      details: { declared: o.declaredBytes, received: meter.bytes, overflow: true },
    })
  const signal = o.signal ? { signal: o.signal } : {}
  try {
    if (hash !== null) {
      const tempPath = join(o.tmpDir, `w-${randomUUID()}.part`)
      try {
        const bytes = await writeStreamAt(tempPath, 0, meter, { maxBytes: o.declaredBytes, ...signal })
        return { tempPath, bytes, sha256: hash.digest('hex') }
      } catch (err) {
        await removeQuietly(tempPath)
        throw meter.overflowed ? overflow() : err
      }
    }
    try {
      const got = await o.uploads.receiveWhole(meter, { maxBytes: o.declaredBytes, algos: ['sha256'], ...signal })
      const sha256 = got.digests['sha256']
      if (sha256 === undefined) {
        await removeQuietly(got.tempPath)
        throw new UploadError('ERR_IO', 'the hash pool answered no sha256')
      }
      return { tempPath: got.tempPath, bytes: got.bytes, sha256 }
    } catch (err) {
      throw meter.overflowed ? overflow() : err
    }
  } finally {
    await feeding
  }
}
