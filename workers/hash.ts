/**
 * Hash tasks run by Piscina (named exports; `run(task, {name})` picks one). They read files by
 * path and byte range: sending a path costs nothing, while copying request buffers into a
 * worker costs more than the hash itself on this class of machine (bench/README.md).
 */
import { createHash, type Hash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import type {
  HashFileTask,
  HashResult,
  HashStreamResult,
  HashStreamTask,
  StreamMessage,
} from './protocol.js'

const READ_BYTES = 1024 * 1024
/**
 * One read buffer per worker thread, shared by its tasks: every read-and-hash runs synchronously
 * to its end, so the running hashes a stream thread interleaves never use it at the same time.
 */
const buf = Buffer.allocUnsafe(READ_BYTES)

/** Reads `[from, to)` of an open file into every hash; answers the bytes read (short at EOF). */
function feed(
  fd: number,
  buf: Buffer,
  hashes: readonly Hash[],
  from: number,
  to: number | null,
): number {
  let pos = from
  for (;;) {
    const want = to === null ? buf.length : Math.min(buf.length, to - pos)
    if (want <= 0) break
    const n = readSync(fd, buf, 0, want, pos)
    if (n === 0) break
    const view = buf.subarray(0, n)
    for (const h of hashes) h.update(view)
    pos += n
  }
  return pos - from
}

export function hashFile(task: HashFileTask): HashResult {
  const hashes = task.algos.map((a) => createHash(a))
  const fd = openSync(task.path, 'r')
  try {
    const bytes = feed(fd, buf, hashes, task.start, task.end)
    return {
      bytes,
      digests: Object.fromEntries(task.algos.map((a, i) => [a, hashes[i]!.digest('hex')])),
    }
  } finally {
    closeSync(fd)
  }
}

export function hashStream(task: HashStreamTask): Promise<HashStreamResult> {
  const hashes = task.algos.map((a) => createHash(a))
  let fd: number | null = null
  let done = 0
  return new Promise<HashStreamResult>((resolve) => {
    let idle: NodeJS.Timeout | undefined
    const end = (result: HashStreamResult) => {
      clearTimeout(idle)
      task.port.close()
      if (fd !== null) closeSync(fd)
      resolve(result)
    }
    const arm = () => {
      clearTimeout(idle)
      idle = setTimeout(() => end({ lost: true }), task.idleMs)
    }
    const catchUp = (upTo: number): boolean => {
      if (upTo <= done) return true
      fd ??= openSync(task.path, 'r')
      const n = feed(fd, buf, hashes, done, upTo)
      done += n
      return done >= upTo
    }
    task.port.on('message', (msg: StreamMessage) => {
      try {
        if (msg.type === 'cancel') return end({ lost: true })
        if (msg.type === 'advance') {
          catchUp(msg.upTo)
          return arm()
        }
        if (!catchUp(msg.size) || done !== msg.size) return end({ lost: true })
        return end({
          lost: false,
          bytes: done,
          digests: Object.fromEntries(task.algos.map((a, i) => [a, hashes[i]!.digest('hex')])),
        })
      } catch {
        return end({ lost: true })
      }
    })
    arm()
  })
}

// The task pool also joins multipart parts (it already reads files by path for commits).
export { joinParts } from './part-join.js'
