/**
 * Hash tasks run by Piscina (named exports; `run(task, {name})` picks one). They read files by
 * path and byte range: sending a path costs nothing, while copying request buffers into a
 * worker costs more than the hash itself on this class of machine (bench/README.md). A running
 * hash also takes request buffers the main thread has written and no longer needs, transferred
 * (moved, never copied), so it need not read those bytes back from the page cache.
 */
import { createHash, type Hash } from 'node:crypto'
import { closeSync, openSync, readSync } from 'node:fs'
import { MessageChannel } from 'node:worker_threads'
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

/**
 * Handed-over buffers are freed as soon as they are hashed, by moving them into a message nobody
 * receives: left to this thread's GC, which a worker that allocates little runs seldom, they
 * piled up to the external-memory limit (~64 MiB per thread, seen as the server's peak RSS).
 */
const sink = new MessageChannel()
sink.port2.close()
sink.port1.unref()
const free = (buffers: readonly ArrayBuffer[]) => {
  try {
    sink.port1.postMessage(null, buffers as ArrayBuffer[])
  } catch {
    // Left to the GC.
  }
}

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

/** Hashing ahead of the confirmed prefix, from one writer's handed-over bytes. */
interface Ahead {
  readonly writer: string
  /** Where the handed-over bytes began: the confirmed prefix's end at the time. */
  readonly from: number
  /** The end of the bytes hashed so far. */
  pos: number
  readonly hashes: Hash[]
}

export function hashStream(task: HashStreamTask): Promise<HashStreamResult> {
  let hashes = task.algos.map((a) => createHash(a))
  let fd: number | null = null
  let done = 0
  let ahead: Ahead | null = null
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
    // Handed-over bytes continue the writer's run ahead of the confirmed prefix, or start one
    // where the prefix ends (a copy of the running hash: nothing counts until confirmed).
    const take = (writer: string, at: number, buffers: readonly ArrayBuffer[]) => {
      if (ahead === null || ahead.writer !== writer || ahead.pos !== at) {
        if (at !== done) return
        ahead = { writer, from: at, pos: at, hashes: hashes.map((h) => h.copy()) }
      }
      for (const b of buffers) {
        const view = new Uint8Array(b)
        for (const h of ahead.hashes) h.update(view)
        ahead.pos += view.length
      }
    }
    // The bytes hashed ahead count when the advance comes from their writer, which recorded
    // them (`writerEnd`), and they start at the confirmed prefix; anything else is dropped.
    const confirm = (upTo: number, writer?: string, writerEnd?: number) => {
      const a = ahead
      ahead = null
      if (a === null || writer === undefined || writerEnd === undefined) return
      if (a.writer !== writer || a.from !== done || a.pos > writerEnd || a.pos > upTo) return
      hashes = a.hashes
      done = a.pos
    }
    task.port.on('message', (msg: StreamMessage) => {
      try {
        if (msg.type === 'cancel') return end({ lost: true })
        if (msg.type === 'data') {
          try {
            take(msg.writer, msg.at, msg.buffers)
          } finally {
            free(msg.buffers)
            Atomics.add(task.consumed, 0, BigInt(msg.bytes))
          }
          return arm()
        }
        if (msg.type === 'advance') {
          confirm(msg.upTo, msg.writer, msg.writerEnd)
          catchUp(msg.upTo)
          return arm()
        }
        ahead = null
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
