// Deterministic test data: an AES-256-CTR keystream keyed by sha256(seed + label). The same
// (seed, label) always gives the same bytes, and a shorter size is a prefix of a longer one, so
// the load generator and the verifier regenerate identical sources without sharing files.
import { createCipheriv, createHash } from 'node:crypto'

const BLOCK = 16 * 1024 * 1024

/** Returns `size` bytes of the stream named by `seed` and `label`. */
export function makeData(seed, label, size) {
  const key = createHash('sha256').update(`ferry-bench:${seed}:${label}`).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  const out = Buffer.allocUnsafe(size)
  const zeros = Buffer.alloc(Math.min(BLOCK, Math.max(size, 1)))
  for (let off = 0; off < size; off += BLOCK) {
    const n = Math.min(BLOCK, size - off)
    cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n)).copy(out, off)
  }
  return out
}

export function sha256hex(buf) {
  return createHash('sha256').update(buf).digest('hex')
}

/** The n-th small file is bytes [n*size, (n+1)*size) of the 'small' stream: all distinct. */
export function smallFiles(seed, count, size) {
  const all = makeData(seed, 'small', count * size)
  const files = []
  for (let i = 0; i < count; i++) {
    const buf = all.subarray(i * size, (i + 1) * size)
    files.push({ buf, sha: sha256hex(buf) })
  }
  return files
}
