/**
 * Whole-file receive: a body streamed into a new temp file and hashed on the way, inline for
 * small bodies, by a pool thread following the file for larger ones.
 */
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { HashAlgo, HashPool } from '../hashing/hash-pool.js'
import { writeStreamAt } from '../storage/files.js'
import type { OwedFlusher } from './flush.js'
import type { StreamFiles } from './publish.js'
import type { WholeFile } from './types.js'

/**
 * Bodies up to this size are hashed on the main thread as they arrive; larger ones by a pool
 * thread that follows the temp file. Measured with Shaman uploads of distinct files over loopback
 * on the 2-core project machine (medians of interleaved rounds, fsync included; inline vs pool):
 * 64 KiB 198 vs 120 files/s, 1 MiB 70 vs 47 files/s, 4 MiB 163 vs 187 MB/s, 16 MiB 212 vs 251,
 * 256 MiB 195 vs 348. Small files lose to the pool's per-file round trip; from a few MiB on,
 * hashing on another core while the main thread moves bytes wins. The crossover lies between
 * 1 and 4 MiB.
 */
export const INLINE_HASH_MAX_BYTES = 2 * 1024 * 1024

export interface ReceiveWholeOptions {
  readonly maxBytes: number
  readonly expectedBytes?: number
  readonly algos?: readonly HashAlgo[]
  readonly signal?: AbortSignal
  /** Hash on this thread as bytes arrive; default: when the length is known and small. */
  readonly hashInline?: boolean
}

export interface ReceiveDeps {
  readonly pool: HashPool
  readonly files: StreamFiles
  readonly flusher: OwedFlusher
}

/**
 * Streams a whole body into a new temp file while a pool thread hashes what has landed. The
 * caller publishes `tempPath` (publishFile) or discards it (discard).
 */
export async function receiveWhole(
  deps: ReceiveDeps,
  body: Readable,
  opts: ReceiveWholeOptions,
): Promise<WholeFile> {
  const { pool, files, flusher } = deps
  const tempPath = files.newPath()
  const algos = opts.algos ?? ['sha256']
  // A small body of known length is hashed inline as it arrives: cheaper than a pool round trip.
  // Anything larger (or of unknown length) is hashed by a pool thread following the writes.
  const small = opts.expectedBytes !== undefined && opts.expectedBytes <= INLINE_HASH_MAX_BYTES
  const inline = opts.hashInline ?? small
  const hashes = inline ? algos.map((a) => createHash(a)) : []
  const h = inline ? null : pool.openStream(tempPath, algos)
  let last = 0
  const onProgress = (pos: number) => {
    h?.advance(pos)
    flusher.wrote(tempPath, pos - last)
    last = pos
  }
  try {
    const bytes = await writeStreamAt(tempPath, 0, body, {
      ...(opts.expectedBytes !== undefined
        ? { expectedBytes: opts.expectedBytes }
        : { maxBytes: opts.maxBytes }),
      ...(opts.signal ? { signal: opts.signal } : {}),
      onProgress,
      hashes,
    })
    await flusher.settle(tempPath)
    if (inline) {
      const digests = Object.fromEntries(algos.map((a, i) => [a, hashes[i]!.digest('hex')]))
      return { tempPath, bytes, digests }
    }
    const streamed = h ? await h.finish(bytes) : null
    const digests = streamed?.digests ?? (await pool.hashFile(tempPath, { algos })).digests
    return { tempPath, bytes, digests }
  } catch (err) {
    h?.cancel()
    await flusher.settle(tempPath)
    await files.discard(tempPath)
    throw err
  }
}
