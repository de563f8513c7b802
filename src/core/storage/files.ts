/**
 * The disk side of the data path: positional writes from a stream, byte comparison for exact
 * re-sends, and atomic publication (fsync file → rename or link → fsync directory).
 */
import type { Hash } from 'node:crypto'
import { constants, writev, writevSync, type Stats } from 'node:fs'
import { mkdir, open, rename, link, unlink, stat, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Writable, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { UploadError } from '../errors.js'
import { DiskSync } from './disk-sync.js'
import { isAbsent, isExists } from './errno.js'
import { removeIfPresent } from './remove.js'

/**
 * Bytes are written in batches of about this size. Socket reads arrive as 64 KiB buffers, and each
 * write call costs the main thread a dispatch to libuv's pool (~15 µs here) whatever its size:
 * one call per MiB instead of one per 64-128 KiB (see bench/README.md, "Profiling").
 */
const WRITE_BATCH_BYTES = 1024 * 1024
/** ... or of at most this many buffers (small socket reads on slow links; IOV_MAX is 1024). */
const WRITE_BATCH_BUFFERS = 256

/**
 * Writes land here at increasing positions; `onProgress(pos)` is told each time bytes reach disk.
 * Accepted bytes wait in `#pending` until a batch is full or the stream ends, so at most one
 * batch plus the stream's own buffer (highWaterMark) is held per upload.
 */
class PositionalWriter extends Writable {
  readonly #fh: FileHandle
  readonly #limit: number
  readonly #onProgress: ((pos: number) => void) | undefined
  readonly #hashes: readonly Hash[]
  readonly #guard: (() => Error | null) | undefined
  #pos: number
  #pending: Buffer[] = []
  #pendingBytes = 0
  /** An async writev is in flight. */
  #writing = false
  /** Bytes taken from the stream (written or pending): what the limit counts. */
  #accepted = 0
  written = 0

  /** Write the waiting batch when the body is cut (`WriteAtOptions.keepCutBatch`). */
  readonly #keepCutBatch: boolean

  constructor(
    fh: FileHandle,
    start: number,
    limitBytes: number,
    onProgress?: (pos: number) => void,
    hashes: readonly Hash[] = [],
    guard?: () => Error | null,
    keepCutBatch = false,
  ) {
    super({ highWaterMark: 1024 * 1024 })
    this.#keepCutBatch = keepCutBatch
    this.#guard = guard
    this.#fh = fh
    this.#pos = start
    this.#limit = limitBytes
    this.#onProgress = onProgress
    this.#hashes = hashes
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    let n = 0
    for (const c of chunks) n += c.chunk.length
    if (this.#accepted + n > this.#limit) {
      const message = `body is longer than the ${this.#limit} bytes expected`
      cb(
        new UploadError('ERR_SIZE_MISMATCH', message, {
          detail: { kind: 'size', expectedBytes: this.#limit, receivedBytes: null, overflow: true },
        }),
      )
      return
    }
    this.#accepted += n
    for (const c of chunks) {
      for (const h of this.#hashes) h.update(c.chunk)
      this.#pending.push(c.chunk)
    }
    this.#pendingBytes += n
    if (this.#pendingBytes < WRITE_BATCH_BYTES && this.#pending.length < WRITE_BATCH_BUFFERS) {
      cb()
      return
    }
    this.#flush(cb)
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk }], cb)
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#pending.length === 0) cb()
    else this.#flush(cb)
  }

  /**
   * A body cut short while a batch waits: when the caller keeps partial progress
   * (`keepCutBatch`), the waiting batch is written too, at once and synchronously, so it lands
   * before the caller closes the file (an async write could still be queued then). Never on a
   * refused guard (a lost reservation), nor while an async write is in flight (its order with
   * this one would not be known).
   */
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const keep = this.#keepCutBatch && this.#pending.length > 0 && !this.#writing
    if (keep && this.#guard?.() == null) {
      try {
        const n = writevSync(this.#fh.fd, this.#pending, this.#pos)
        this.#pos += n
        this.written += n
        this.#onProgress?.(this.#pos)
      } catch {
        // What could not be written is simply not kept.
      }
      this.#pending = []
      this.#pendingBytes = 0
    }
    cb(err)
  }

  #flush(cb: (err?: Error | null) => void): void {
    const bufs = this.#pending
    const n = this.#pendingBytes
    this.#pending = []
    this.#pendingBytes = 0
    const refused = this.#guard?.()
    if (refused) {
      cb(refused)
      return
    }
    // The callback API on the raw fd, as fs.WriteStream uses: measurably cheaper on the main
    // thread than FileHandle.writev's promise per call.
    this.#writeAll(bufs, n, cb)
  }

  /**
   * A short write (a disk filling up mid-batch, a signal) is not an error: the rest is written by
   * the next call, which then fails with the real cause (ENOSPC → 507) if there is one.
   */
  #writeAll(bufs: Buffer[], n: number, cb: (err?: Error | null) => void): void {
    this.#writing = true
    writev(this.#fh.fd, bufs, this.#pos, (err, bytesWritten) => {
      this.#writing = false
      if (err) return cb(err)
      this.#pos += bytesWritten
      this.written += bytesWritten
      this.#onProgress?.(this.#pos)
      if (bytesWritten === n) return cb()
      if (bytesWritten === 0) return cb(new UploadError('ERR_IO', `short write: 0 of ${n} bytes`))
      let skip = bytesWritten
      const rest: Buffer[] = []
      for (const b of bufs) {
        if (skip >= b.length) {
          skip -= b.length
          continue
        }
        rest.push(skip > 0 ? b.subarray(skip) : b)
        skip = 0
      }
      this.#writeAll(rest, n - bytesWritten, cb)
    })
  }
}

export interface WriteAtOptions {
  /** Exactly this many bytes must arrive (a longer body fails before it is written). */
  readonly expectedBytes?: number
  /** At most this many bytes (when the length is not known in advance). */
  readonly maxBytes?: number
  /** fdatasync before answering. */
  readonly durable?: boolean
  readonly onProgress?: (pos: number) => void
  /**
   * A body cut short still writes the batch waiting in memory (synchronously, before the file is
   * closed), so `onProgress` reports every byte that arrived: for callers that keep a cut body's
   * prefix (tus PATCH). Default: the waiting batch is dropped with the body.
   */
  readonly keepCutBatch?: boolean
  /** Hashes fed with every byte, in order, on this thread (small bodies only). */
  readonly hashes?: readonly Hash[]
  readonly signal?: AbortSignal
  /** Asked before each batch is written: an error stops the write (a lease that may be lost). */
  readonly guard?: () => Error | null
  /** The file must exist already (a session's temp file): never create it again once deleted. */
  readonly mustExist?: boolean
}

function isAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return (
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    code === 'ECONNRESET' ||
    code === 'ABORT_ERR' ||
    (err as Error)?.name === 'AbortError'
  )
}

/** Opens (creating, never truncating) a file for positional writes. */
export async function openForWrite(path: string): Promise<FileHandle> {
  return open(path, constants.O_WRONLY | constants.O_CREAT, 0o644)
}

/**
 * Streams `source` into `path` from `position` with backpressure: memory stays bounded whatever
 * the size. Answers the bytes written; throws ERR_SIZE_MISMATCH for a body shorter or longer
 * than expected, ERR_BODY_TOO_LARGE past maxBytes, ERR_CLIENT_ABORTED when the client went away.
 */
export async function writeStreamAt(
  path: string,
  position: number,
  source: Readable,
  opts: WriteAtOptions = {},
): Promise<number> {
  const limit = opts.expectedBytes ?? opts.maxBytes ?? Number.MAX_SAFE_INTEGER
  const fh = opts.mustExist ? await open(path, constants.O_WRONLY) : await openForWrite(path)
  try {
    const writer = new PositionalWriter(
      fh,
      position,
      limit,
      opts.onProgress,
      opts.hashes,
      opts.guard,
      opts.keepCutBatch,
    )
    try {
      await pipeline(source, writer, opts.signal ? { signal: opts.signal } : {})
    } catch (err) {
      if (err instanceof UploadError) {
        if (opts.expectedBytes === undefined && err.code === 'ERR_SIZE_MISMATCH') {
          throw new UploadError('ERR_BODY_TOO_LARGE', `body is larger than ${limit} bytes`, {
            detail: { kind: 'limit', maxBytes: limit },
          })
        }
        throw err
      }
      if (isAbort(err))
        throw new UploadError('ERR_CLIENT_ABORTED', 'the client went away mid-body', { cause: err })
      throw err
    }
    if (opts.expectedBytes !== undefined && writer.written !== opts.expectedBytes) {
      throw new UploadError(
        'ERR_SIZE_MISMATCH',
        `body has ${writer.written} bytes, the range needs ${opts.expectedBytes}`,
        {
          detail: {
            kind: 'size',
            expectedBytes: opts.expectedBytes,
            receivedBytes: writer.written,
            overflow: false,
          },
        },
      )
    }
    if (opts.durable) await fh.datasync()
    return writer.written
  } finally {
    await fh.close()
  }
}

/**
 * Reads `source` to its end and tells whether it equals `expectedBytes` bytes of `path` from
 * `position` (an exact re-send of received bytes). Memory stays bounded.
 */
export async function streamEqualsFile(
  path: string,
  position: number,
  expectedBytes: number,
  source: Readable,
): Promise<boolean> {
  const fh = await open(path, 'r')
  let pos = position
  let same = true
  let seen = 0
  const buf = Buffer.allocUnsafe(1024 * 1024)
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      seen += chunk.length
      if (!same || seen > expectedBytes) {
        same = false
        continue // keep reading so the client gets its answer, not a reset
      }
      let off = 0
      while (off < chunk.length) {
        const n = Math.min(buf.length, chunk.length - off)
        const { bytesRead } = await fh.read(buf, 0, n, pos)
        if (bytesRead !== n || buf.compare(chunk, off, off + n, 0, n) !== 0) {
          same = false
          break
        }
        off += n
        pos += n
      }
    }
  } catch (err) {
    if (isAbort(err))
      throw new UploadError('ERR_CLIENT_ABORTED', 'the client went away mid-body', { cause: err })
    throw err
  } finally {
    await fh.close()
  }
  return same && seen === expectedBytes
}

/** fsync a directory so a rename or link inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.datasync()
  } finally {
    await fh.close()
  }
}

export interface PublishOptions {
  /**
   * true: replace what is there (rename); false: create-if-absent (link + unlink), else
   * ERR_ALREADY_EXISTS.
   */
  readonly overwrite: boolean
  /** The temp file was already fsynced (durable chunks); skip that flush. */
  readonly alreadySynced?: boolean
  /** Flushes the file and the folder; default DiskSync.on (FERRY_FSYNC=none: DiskSync.off). */
  readonly sync?: DiskSync
}

/**
 * Publishes a finished temp file at `target` atomically: a reader sees the old file or the whole
 * new one, never a part. fsync the data, rename (or link), fsync the directory.
 */
export async function publishFile(
  tempPath: string,
  target: string,
  opts: PublishOptions,
): Promise<void> {
  const sync = opts.sync ?? DiskSync.on
  if (!opts.alreadySynced) await sync.file(tempPath)
  const dir = dirname(target)
  await mkdir(dir, { recursive: true })
  if (opts.overwrite) {
    await rename(tempPath, target)
  } else {
    try {
      await link(tempPath, target)
    } catch (err) {
      if (isExists(err)) {
        throw new UploadError('ERR_ALREADY_EXISTS', 'an object already exists at this path')
      }
      throw err
    }
    await unlink(tempPath)
  }
  await sync.dir(dir)
}

/**
 * Creates an empty file at `path`, exclusively: EEXIST when the name is taken, so the file is
 * never one somebody else made.
 */
export async function createEmptyExclusive(path: string): Promise<void> {
  await (await open(path, 'wx', 0o644)).close()
}

/** Gives the file `existing` a second name, `newPath` (a hard link); EEXIST when it is taken. */
export async function linkFile(existing: string, newPath: string): Promise<void> {
  await link(existing, newPath)
}

/** The size of the file at `path`, bytes (ENOENT when there is none). */
export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size
}

/** removeIfPresent (remove.ts) for callers that do not ask whether the file was there. */
export async function removeQuietly(path: string): Promise<void> {
  await removeIfPresent(path)
}

export async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path)
  } catch (err) {
    if (isAbsent(err)) return null
    throw err
  }
}

/**
 * Flushes files in the background while their bodies still arrive, so the fsync at commit only
 * waits for the tail (measured on the 2-core machine: 1.33× for a 1 GiB PUT). One flush runs at a
 * time in the process, for the file with the most unflushed bytes once it has `everyBytes`: with a
 * flush per file at once, 8 uploads of 1 GiB side by side reached 600-650 MB/s; one at a time,
 * 790-830 (bench/probe.js --sessions 8), as concurrent fdatasyncs queue on the journal.
 */
export class BackgroundFlusher {
  readonly #everyBytes: number
  readonly #flush: (path: string) => Promise<void>
  readonly #files = new Map<string, { pending: number; running: Promise<void> | null }>()
  #running = false

  constructor(everyBytes: number, flush: (path: string) => Promise<void> = fsyncFile) {
    this.#everyBytes = everyBytes
    this.#flush = flush
  }

  wrote(path: string, bytes: number): void {
    let f = this.#files.get(path)
    if (f === undefined) {
      f = { pending: 0, running: null }
      this.#files.set(path, f)
    }
    f.pending += bytes
    this.#startNext()
  }

  #startNext(): void {
    if (this.#running) return
    let path: string | null = null
    let most = this.#everyBytes - 1
    for (const [p, f] of this.#files) {
      if (f.pending > most) {
        path = p
        most = f.pending
      }
    }
    if (path === null) return
    const entry = this.#files.get(path)!
    entry.pending = 0
    this.#running = true
    entry.running = this.#flush(path)
      .catch(() => {
        /* the file went away (aborted, expired); the fsync at publish is the one that counts */
      })
      .finally(() => {
        entry.running = null
        this.#running = false
        this.#startNext()
      })
  }

  /** Waits for a running flush of `path` and forgets it. */
  async settle(path: string): Promise<void> {
    const f = this.#files.get(path)
    this.#files.delete(path)
    await f?.running
  }

  forget(path: string): void {
    this.#files.delete(path)
  }
}
