/**
 * The one importer of piscina. Two pools over the compiled `workers/hash.js`:
 *
 *   main thread ──advance(upTo)──▶ MessagePort ──▶ stream pool: one long task per session,
 *   (receives bytes,                                 reads each newly contiguous stretch from
 *    writes the temp file)                           page cache while later chunks arrive
 *                ──hashFile(path, range)──────────▶ task pool: short whole-file passes
 *
 * A stream task lasts as long as its upload, mostly waiting for its port, so stream tasks get
 * their own pool, several per thread (`streamsPerThread`; the worker's event loop interleaves
 * them), and are only started while a slot is free; otherwise (or when a stream is lost to a
 * restart or an idle timeout) the commit hashes the file in one full pass on the task pool, or
 * gets the digest from the instance that runs it. So a commit never waits behind another
 * session's stream. With one stream per thread and 4 threads, 8 uploads at once left 4 to a full
 * pass at commit (1.6 s for 1 GiB); 8 per thread on 2 threads hash all of them as they arrive.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import { Piscina } from 'piscina'
import type {
  HashAlgo,
  HashFileTask,
  HashResult,
  HashStreamResult,
  HashStreamTask,
  JoinPartsResult,
  JoinPartsTask,
  StreamMessage,
} from '../../../workers/protocol.js'
import { workerExecArgv } from './worker-argv.js'

const execArgv = workerExecArgv()
const execArgvOption = execArgv ? { execArgv } : {}

export type { HashAlgo, HashResult, JoinPartsResult }

export interface HashPoolOptions {
  /** Compiled worker file (dist/workers/hash.js). */
  readonly workerFile: string | URL
  /** Threads for short whole-file tasks. */
  readonly threads: number
  /** Threads for running hashes that follow an upload as it arrives. */
  readonly streamThreads: number
  /** Running hashes one stream thread follows at once. */
  readonly streamsPerThread: number
  /** A running hash that hears nothing this long gives its thread back, ms. */
  readonly streamIdleMs: number
  /** false (FERRY_FSYNC=none): joined files are not fsynced. Default true. */
  readonly sync?: boolean
}

export const DEFAULT_WORKER_FILE = new URL('../../../workers/hash.js', import.meta.url)

/** A running hash over a file that grows; advance it as bytes become contiguous. */
export class StreamHasher {
  readonly #port: MessagePort
  readonly #result: Promise<HashStreamResult>
  #sent = 0
  #closed = false

  constructor(port: MessagePort, result: Promise<HashStreamResult>) {
    this.#port = port
    this.#result = result
    result.then(
      () => this.#close(),
      () => this.#close(),
    )
  }

  #close() {
    if (this.#closed) return
    this.#closed = true
    this.#port.close()
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Bytes `[0, upTo)` are on disk: hash them now. */
  advance(upTo: number): void {
    if (this.#closed || upTo <= this.#sent) return
    this.#sent = upTo
    this.#port.postMessage({ type: 'advance', upTo } satisfies StreamMessage)
  }

  /** The digest of exactly `size` bytes, or null when this running hash was lost. */
  async finish(size: number): Promise<HashResult | null> {
    if (!this.#closed) this.#port.postMessage({ type: 'finish', size } satisfies StreamMessage)
    const r = await this.#result.catch(() => ({ lost: true }) as const)
    return r.lost ? null : r
  }

  cancel(): void {
    if (!this.#closed) this.#port.postMessage({ type: 'cancel' } satisfies StreamMessage)
    this.#close()
  }
}

export class HashPool {
  readonly #tasks: Piscina
  readonly #streams: Piscina
  readonly #streamSlots: number
  readonly #idleMs: number
  readonly #syncJoins: boolean
  #activeStreams = 0

  constructor(opts: HashPoolOptions) {
    this.#syncJoins = opts.sync ?? true
    const filename = opts.workerFile instanceof URL ? opts.workerFile.href : opts.workerFile
    this.#tasks = new Piscina({
      filename,
      ...execArgvOption,
      minThreads: 1,
      maxThreads: opts.threads,
      idleTimeout: 30_000,
    })
    this.#streams = new Piscina({
      filename,
      ...execArgvOption,
      minThreads: 0,
      maxThreads: opts.streamThreads,
      concurrentTasksPerWorker: opts.streamsPerThread,
      idleTimeout: 30_000,
      // Stream tasks wait on their MessagePort, so the worker's event loop must keep turning.
      atomics: 'disabled',
    })
    this.#streamSlots = opts.streamThreads * opts.streamsPerThread
    this.#idleMs = opts.streamIdleMs
  }

  /** Hashes `[start, end)` of a file on a worker thread. */
  async hashFile(
    path: string,
    opts: {
      start?: number
      end?: number | null
      algos?: readonly HashAlgo[]
      signal?: AbortSignal
    } = {},
  ): Promise<HashResult> {
    const task: HashFileTask = {
      path,
      start: opts.start ?? 0,
      end: opts.end ?? null,
      algos: opts.algos ?? ['sha256'],
    }
    return (await this.#tasks.run(task, {
      name: 'hashFile',
      ...(opts.signal ? { signal: opts.signal } : {}),
    })) as HashResult
  }

  /**
   * Joins `sources` in order into the new file `target` on a worker thread, checking each
   * source's MD5, and answers the MD5 and SHA-256 of the result (see JoinPartsTask). The caller
   * removes `target` unless the answer is `joined`.
   */
  async joinParts(
    sources: JoinPartsTask['sources'],
    target: string,
    signal?: AbortSignal,
  ): Promise<JoinPartsResult> {
    const task: JoinPartsTask = { sources, target, sync: this.#syncJoins }
    const run = this.#tasks.run(task, { name: 'joinParts', ...(signal ? { signal } : {}) })
    return (await run) as JoinPartsResult
  }

  /** Starts a running hash of a growing file, or null when every stream slot is taken. */
  openStream(path: string, algos: readonly HashAlgo[] = ['sha256']): StreamHasher | null {
    if (this.#activeStreams >= this.#streamSlots) return null
    this.#activeStreams++
    const { port1, port2 } = new MessageChannel()
    const task: HashStreamTask = { path, algos, port: port2, idleMs: this.#idleMs }
    const result = (
      this.#streams.run(task, {
        name: 'hashStream',
        transferList: [port2],
      }) as Promise<HashStreamResult>
    ).finally(() => {
      this.#activeStreams--
    })
    return new StreamHasher(port1, result)
  }

  /** Tasks waiting for a free worker thread (metrics). */
  get queueDepth(): number {
    return this.#tasks.queueSize + this.#streams.queueSize
  }

  async close(): Promise<void> {
    await Promise.all([this.#tasks.close({ force: true }), this.#streams.close({ force: true })])
  }
}
