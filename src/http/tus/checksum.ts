/**
 * Streaming checksums for the tus checksum extension (tus 1.0.0 "Checksum"): the digest of a
 * PATCH body is computed while the body streams to storage, and compared once the body has
 * ended. The family appends the chunk only when `matches()` is true; otherwise it answers
 * 460 Checksum Mismatch and the offset does not move ("the Server MUST NOT append the chunk").
 */
import { createHash, timingSafeEqual, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

/**
 * The algorithms Ferry accepts in `Upload-Checksum`, with their digest length in bytes.
 * tus 1.0.0: "The Server MUST support at least the SHA1 checksum algorithm"; md5 and sha256 are
 * what clients such as tus-java-client and TUSKit offer, sha512 costs nothing more to accept.
 * The keys are the lower-case names `Tus-Checksum-Algorithm` advertises, in this order.
 */
export const CHECKSUM_ALGORITHMS = Object.freeze({
  sha1: 20,
  md5: 16,
  sha256: 32,
  sha512: 64,
} as const)

export type ChecksumAlgorithm = keyof typeof CHECKSUM_ALGORITHMS

/** The value of `Tus-Checksum-Algorithm` for OPTIONS. */
export const TUS_CHECKSUM_ALGORITHM_HEADER = Object.keys(CHECKSUM_ALGORITHMS).join(',')

export function isChecksumAlgorithm(name: string): name is ChecksumAlgorithm {
  return Object.hasOwn(CHECKSUM_ALGORITHMS, name)
}

/** A digest the client announced for one request body. */
export interface ExpectedChecksum {
  readonly algorithm: ChecksumAlgorithm
  /** Raw digest bytes, already checked to be `CHECKSUM_ALGORITHMS[algorithm]` long. */
  readonly digest: Buffer
}

/**
 * Compares two digests in constant time. A length difference is not secret (the length is fixed
 * per algorithm), so it is answered early; `timingSafeEqual` throws on unequal lengths.
 */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * A pass-through stream that hashes every byte it forwards. Put it between the request and the
 * storage writer; after 'finish' (or 'end'), `matches()` says whether the body had the announced
 * digest. Node's hash runs in C++ on each chunk; no copy of the chunk is made here.
 */
export class ChecksumTransform extends Transform {
  readonly expected: ExpectedChecksum
  #hash: Hash
  #digest: Buffer | null = null
  #bytes = 0

  constructor(expected: ExpectedChecksum) {
    super()
    this.expected = expected
    this.#hash = createHash(expected.algorithm)
  }

  /** Bytes that passed through so far. */
  get bytes(): number {
    return this.#bytes
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#hash.update(chunk)
    this.#bytes += chunk.length
    cb(null, chunk)
  }

  override _flush(cb: TransformCallback): void {
    this.#digest = this.#hash.digest()
    cb()
  }

  /**
   * The computed digest. Throws before the stream has flushed: a digest over a body that did
   * not end (a cut PATCH) must never be compared, because that chunk cannot be verified at all.
   */
  digest(): Buffer {
    if (this.#digest === null) throw new Error('ChecksumTransform: the body has not ended yet')
    return this.#digest
  }

  /** True when the whole body matched the announced digest. Throws like `digest()`. */
  matches(): boolean {
    return digestsEqual(this.digest(), this.expected.digest)
  }
}

/** Whether the announced digest is the digest of zero bytes (a PATCH with an empty body). */
export function emptyBodyMatches(expected: ExpectedChecksum): boolean {
  return digestsEqual(createHash(expected.algorithm).digest(), expected.digest)
}

/**
 * Hashes a whole body (any async iterable of bytes: a request, a file stream) and compares it
 * with the expected digest. For callers that buffer to a temp file first and verify afterwards.
 */
export async function verifyChecksum(
  body: AsyncIterable<Buffer | Uint8Array>,
  expected: ExpectedChecksum,
): Promise<{ matches: boolean; digest: Buffer; bytes: number }> {
  const hash = createHash(expected.algorithm)
  let bytes = 0
  for await (const chunk of body) {
    hash.update(chunk)
    bytes += chunk.length
  }
  const digest = hash.digest()
  return { matches: digestsEqual(digest, expected.digest), digest, bytes }
}
