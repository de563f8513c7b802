/**
 * Worker threads for bulk-ingest file work (copy + hash), a sibling of HashPool over the compiled
 * `workers/ingest.js`. Kept apart from HashPool's threads so a long ingest never delays the
 * commits of interactive uploads. This folder stays the only importer of piscina.
 */
import { Piscina } from 'piscina'
import type { ConcatFilesTask, CopyFileResult, CopyFileTask } from '../../../workers/protocol.js'
import { workerExecArgv } from './worker-argv.js'

const execArgv = workerExecArgv()
const execArgvOption = execArgv ? { execArgv } : {}

export type { CopyFileResult }

export const DEFAULT_INGEST_WORKER_FILE = new URL('../../../workers/ingest.js', import.meta.url)

export interface IngestPoolOptions {
  /** Compiled worker file (dist/workers/ingest.js). */
  readonly workerFile: string | URL
  readonly threads: number
  /** false (FERRY_FSYNC=none): written files are not fsynced. Default true. */
  readonly sync?: boolean
}

export class IngestPool {
  readonly #pool: Piscina
  readonly #sync: boolean

  constructor(opts: IngestPoolOptions) {
    this.#sync = opts.sync ?? true
    const filename = opts.workerFile instanceof URL ? opts.workerFile.href : opts.workerFile
    this.#pool = new Piscina({
      filename,
      ...execArgvOption,
      minThreads: 0,
      maxThreads: opts.threads,
      idleTimeout: 30_000,
    })
  }

  /**
   * Copies `source` into the new file `target` on a worker thread, fsyncs it and answers the
   * SHA-256 of the bytes written. Aborting the signal stops the task (the caller removes `target`).
   */
  async copyFile(source: string, target: string, signal?: AbortSignal): Promise<CopyFileResult> {
    const task: CopyFileTask = { source, target, sync: this.#sync }
    return (await this.#pool.run(task, {
      name: 'copyFile',
      ...(signal ? { signal } : {}),
    })) as CopyFileResult
  }

  /**
   * Writes `sources` in order into the new file `target` on a worker thread, fsyncs it and
   * answers its length and SHA-256 (tus concatenation). The caller removes `target` on failure.
   */
  async concatFiles(sources: readonly string[], target: string): Promise<CopyFileResult> {
    const task: ConcatFilesTask = { sources, target, sync: this.#sync }
    return (await this.#pool.run(task, { name: 'concatFiles' })) as CopyFileResult
  }

  async close(): Promise<void> {
    await this.#pool.close({ force: true })
  }
}
