/** The local sha256 of a file, read in order alongside the upload. */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'

/**
 * Hashes `path` front to back. The upload itself reads out of order (parallel chunks) and skips
 * what the server already has, so the digest comes from its own sequential pass, run at the same
 * time: the second read mostly hits the page cache.
 */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  const stream = createReadStream(path, {
    highWaterMark: 1024 * 1024,
    ...(signal ? { signal } : {}),
  })
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
