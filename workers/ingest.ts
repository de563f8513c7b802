/**
 * Bulk-ingest tasks run by Piscina (named exports). A copy reads its source by path and writes
 * a new file next to nothing the client can see (a temp name under `<dataDir>/tmp/`); the main
 * thread then publishes it with a rename. The worker hashes exactly the bytes it wrote, so the
 * checksum in an asset's info file describes the file on disk, not the source it came from.
 */
import { createHash } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs'
import type { ConcatFilesTask, CopyFileResult, CopyFileTask } from './protocol.js'

const READ_BYTES = 1024 * 1024

export function copyFile(task: CopyFileTask): CopyFileResult {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(READ_BYTES)
  const src = openSync(task.source, 'r')
  try {
    // 'wx': a temp name is never reused, so an existing file means a caller bug, not a retry.
    const dst = openSync(task.target, 'wx', 0o644)
    try {
      let bytes = 0
      for (;;) {
        const n = readSync(src, buf, 0, buf.length, bytes)
        if (n === 0) break
        let off = 0
        while (off < n) off += writeSync(dst, buf, off, n - off, bytes + off)
        hash.update(buf.subarray(0, n))
        bytes += n
      }
      if (task.sync !== false) fsyncSync(dst)
      return { bytes, sha256: hash.digest('hex') }
    } finally {
      closeSync(dst)
    }
  } finally {
    closeSync(src)
  }
}

/**
 * Writes the sources one after another into the new file `target` (each at the running offset,
 * positional reads and writes through one buffer), fsyncs it and answers its length and SHA-256.
 * Runs on a worker thread, so none of the bytes pass through the main thread's event loop.
 */
export function concatFiles(task: ConcatFilesTask): CopyFileResult {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(READ_BYTES)
  const dst = openSync(task.target, 'wx', 0o644)
  let bytes = 0
  try {
    for (const source of task.sources) {
      const src = openSync(source, 'r')
      try {
        for (let pos = 0; ; ) {
          const n = readSync(src, buf, 0, buf.length, pos)
          if (n === 0) break
          let off = 0
          while (off < n) off += writeSync(dst, buf, off, n - off, bytes + off)
          hash.update(buf.subarray(0, n))
          bytes += n
          pos += n
        }
      } finally {
        closeSync(src)
      }
    }
    if (task.sync !== false) fsyncSync(dst)
    return { bytes, sha256: hash.digest('hex') }
  } finally {
    closeSync(dst)
  }
}
