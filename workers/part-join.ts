/**
 * Joins the parts of a lakeFS presigned multipart upload into its object on a pool thread, so
 * the bytes never cross the main thread's event loop (nor its heap). One pass reads each part
 * once and feeds three hashes: the part's MD5 (its ETag, checked against the client's list), and
 * the whole object's MD5 and SHA-256 (what a later link is checked against).
 */
import { createHash } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs'
import type { JoinPartsResult, JoinPartsTask } from './protocol.js'

/**
 * Read size. Joining 8 parts of 32 MiB on the 2-core project machine (page cache warm, fsync
 * included, two rounds): 1 MiB reads copied at 850-1020 MiB/s and 4 MiB reads at 270-520 (the
 * buffer no longer fits the cache); with the three hashes both ran at 130-220 MiB/s, so a join
 * of 1 GiB takes ~5 s and the hashing, not the copy, sets the pace.
 */
const READ_BYTES = 1024 * 1024

function openSource(path: string): number | null {
  try {
    return openSync(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

export function joinParts(task: JoinPartsTask): JoinPartsResult {
  const md5 = createHash('md5')
  const sha256 = createHash('sha256')
  const buf = Buffer.allocUnsafe(READ_BYTES)
  const sourceBytes: number[] = []
  // 'wx': a temp name is never reused, so an existing file means a caller bug, not a retry.
  const dst = openSync(task.target, 'wx', 0o644)
  try {
    let written = 0
    for (const [index, source] of task.sources.entries()) {
      const src = openSource(source.path)
      if (src === null) return { status: 'missing', index }
      const partMd5 = createHash('md5')
      let partBytes = 0
      try {
        for (;;) {
          const n = readSync(src, buf, 0, buf.length, partBytes)
          if (n === 0) break
          let off = 0
          while (off < n) off += writeSync(dst, buf, off, n - off, written + off)
          const view = buf.subarray(0, n)
          partMd5.update(view)
          md5.update(view)
          sha256.update(view)
          partBytes += n
          written += n
        }
      } finally {
        closeSync(src)
      }
      if (partMd5.digest('hex') !== source.expectedMd5) return { status: 'mismatch', index }
      sourceBytes.push(partBytes)
    }
    if (task.sync !== false) fsyncSync(dst)
    const digests = { md5: md5.digest('hex'), sha256: sha256.digest('hex') }
    return { status: 'joined', bytes: written, ...digests, sourceBytes }
  } finally {
    closeSync(dst)
  }
}
