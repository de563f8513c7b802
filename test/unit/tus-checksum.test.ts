import { describe, expect, test } from '@jest/globals'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  CHECKSUM_ALGORITHMS,
  ChecksumTransform,
  digestsEqual,
  isChecksumAlgorithm,
  TUS_CHECKSUM_ALGORITHM_HEADER,
  verifyChecksum,
  type ChecksumAlgorithm,
} from '../../src/http/tus/checksum.js'
import { parseUploadChecksum } from '../../src/http/tus/headers.js'

// Known-answer vectors: FIPS 180-2 (SHA-1 "abc", SHA-256 "abc", SHA-512 "abc") and RFC 1321
// (MD5 "abc"), plus the digests of the empty message.
const ABC: Record<ChecksumAlgorithm, string> = {
  sha1: 'a9993e364706816aba3e25717850c26c9cd0d89d',
  md5: '900150983cd24fb0d6963f7d28e17f72',
  sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  sha512:
    'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a' +
    '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
}
const EMPTY: Record<ChecksumAlgorithm, string> = {
  sha1: 'da39a3ee5e6b4b0d3255bfef95601890afd80709',
  md5: 'd41d8cd98f00b204e9800998ecf8427e',
  sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  sha512:
    'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce' +
    '47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
}
// FIPS 180-2 two-block message for SHA-1 / SHA-256.
const TWO_BLOCK = 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'
const TWO_BLOCK_SHA1 = '84983e441c3bd26ebaae4aa1f95129e5e54670f1'
const TWO_BLOCK_SHA256 = '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'

const algorithms = Object.keys(CHECKSUM_ALGORITHMS) as ChecksumAlgorithm[]

/** Streams `text` through a ChecksumTransform in `chunk`-byte pieces to a sink. */
async function pass(text: string | Buffer, algorithm: ChecksumAlgorithm, hex: string, chunk = 1) {
  const data = Buffer.from(text)
  const t = new ChecksumTransform({ algorithm, digest: Buffer.from(hex, 'hex') })
  const out: Buffer[] = []
  const pieces: Buffer[] = []
  for (let i = 0; i < data.length; i += chunk) pieces.push(data.subarray(i, i + chunk))
  await pipeline(
    Readable.from(pieces),
    t,
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c)
        cb()
      },
    }),
  )
  return { t, forwarded: Buffer.concat(out) }
}

describe('checksum algorithms', () => {
  test('sha1 (mandatory), md5, sha256 and sha512 with their digest lengths', () => {
    expect(CHECKSUM_ALGORITHMS).toEqual({ sha1: 20, md5: 16, sha256: 32, sha512: 64 })
    expect(TUS_CHECKSUM_ALGORITHM_HEADER).toBe('sha1,md5,sha256,sha512')
    for (const a of algorithms) {
      expect(Buffer.from(ABC[a], 'hex').length).toBe(CHECKSUM_ALGORITHMS[a])
    }
  })
  test('only own names count as algorithms', () => {
    expect(isChecksumAlgorithm('sha1')).toBe(true)
    expect(isChecksumAlgorithm('toString')).toBe(false)
    expect(isChecksumAlgorithm('__proto__')).toBe(false)
    expect(isChecksumAlgorithm('crc32')).toBe(false)
  })
})

describe('ChecksumTransform', () => {
  test.each(algorithms)('%s: "abc" byte by byte matches its vector, bytes pass on', async (a) => {
    const { t, forwarded } = await pass('abc', a, ABC[a])
    expect(t.digest().toString('hex')).toBe(ABC[a])
    expect(t.matches()).toBe(true)
    expect(t.bytes).toBe(3)
    expect(forwarded.toString()).toBe('abc')
  })
  test.each(algorithms)('%s: the empty body matches the empty-message vector', async (a) => {
    const { t } = await pass('', a, EMPTY[a])
    expect(t.matches()).toBe(true)
    expect(t.bytes).toBe(0)
  })
  test('two-block vectors in odd chunk sizes', async () => {
    for (const chunk of [1, 7, 55, 56, 1000]) {
      expect((await pass(TWO_BLOCK, 'sha1', TWO_BLOCK_SHA1, chunk)).t.matches()).toBe(true)
      expect((await pass(TWO_BLOCK, 'sha256', TWO_BLOCK_SHA256, chunk)).t.matches()).toBe(true)
    }
  })
  test.each(algorithms)('%s: one changed byte does not match', async (a) => {
    const { t } = await pass('abd', a, ABC[a], 2)
    expect(t.matches()).toBe(false)
  })
  test('asking before the body ended throws (a cut body cannot be verified)', () => {
    const t = new ChecksumTransform({ algorithm: 'sha1', digest: Buffer.from(ABC.sha1, 'hex') })
    t.write(Buffer.from('ab'))
    expect(() => t.matches()).toThrow(/has not ended/)
    expect(() => t.digest()).toThrow(/has not ended/)
    t.destroy()
  })
  test('works with what parseUploadChecksum returns for a client header', async () => {
    const header = `sha256 ${Buffer.from(ABC.sha256, 'hex').toString('base64')}`
    const parsed = parseUploadChecksum(header)
    if (!parsed.ok || parsed.value === undefined) throw new Error('parse failed')
    const t = new ChecksumTransform(parsed.value)
    const sink: Buffer[] = []
    await pipeline(
      Readable.from([Buffer.from('a'), Buffer.from('bc')]),
      t,
      new Writable({
        write(c: Buffer, _e, cb) {
          sink.push(c)
          cb()
        },
      }),
    )
    expect(t.matches()).toBe(true)
  })
})

describe('verifyChecksum', () => {
  test('hashes a real file stream', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-tus-checksum-'))
    try {
      const path = join(dir, 'body')
      const body = Buffer.alloc(3 * 1024 * 1024 + 17, 'abc')
      await writeFile(path, body)
      const { createHash } = await import('node:crypto')
      const want = createHash('md5').update(body).digest()
      const stream = createReadStream(path, { highWaterMark: 65_536 })
      const r = await verifyChecksum(stream, { algorithm: 'md5', digest: want })
      expect(r.matches).toBe(true)
      expect(r.bytes).toBe(body.length)
      expect(r.digest.equals(want)).toBe(true)
      const wrong = Buffer.from(want)
      wrong[0] = wrong[0]! ^ 1
      const r2 = await verifyChecksum(createReadStream(path), { algorithm: 'md5', digest: wrong })
      expect(r2.matches).toBe(false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
  test.each(algorithms)('%s over an async iterable of Uint8Arrays', async (a) => {
    const body = Readable.from([new Uint8Array([0x61]), new Uint8Array([0x62, 0x63])])
    const r = await verifyChecksum(body, {
      algorithm: a,
      digest: Buffer.from(ABC[a], 'hex'),
    })
    expect(r.matches).toBe(true)
  })
})

describe('digestsEqual', () => {
  test('equal, unequal, and different lengths (no throw)', () => {
    expect(digestsEqual(Buffer.from([1, 2]), Buffer.from([1, 2]))).toBe(true)
    expect(digestsEqual(Buffer.from([1, 2]), Buffer.from([1, 3]))).toBe(false)
    expect(digestsEqual(Buffer.from([1, 2]), Buffer.from([1, 2, 3]))).toBe(false)
  })
})
