/**
 * Whole-file temp files of this instance (`w-` names from storage's TempFiles) from creation to
 * publish or discard. The sweep asks `inUse` before it removes one of this instance's files.
 */
import type { DiskSync } from '../storage/disk-sync.js'
import { publishFile, removeQuietly, type PublishOptions } from '../storage/files.js'
import type { TempFiles } from '../storage/temp-files.js'

export class StreamFiles {
  readonly #temps: TempFiles
  /** Stream temp files of this instance not yet published or discarded. */
  readonly #streaming = new Set<string>()

  readonly #sync: DiskSync

  constructor(temps: TempFiles, sync: DiskSync) {
    this.#temps = temps
    this.#sync = sync
  }

  /**
   * A new temp file name for a whole-file stream or a small file to publish, so a sweep can tell
   * a file of a running stream (this instance is streaming it, or its instance is alive) from one
   * left by a killed process. The caller publishes it (`publish`) or lets it go (`discard`).
   */
  newPath(): string {
    const path = this.#temps.streamPath()
    this.#streaming.add(path)
    return path
  }

  inUse(path: string): boolean {
    return this.#streaming.has(path)
  }

  async publish(tempPath: string, target: string, opts: PublishOptions): Promise<void> {
    try {
      await publishFile(tempPath, target, {
        ...opts,
        alreadySynced: opts.alreadySynced ?? false,
        sync: opts.sync ?? this.#sync,
      })
    } catch (err) {
      await removeQuietly(tempPath)
      throw err
    } finally {
      this.#streaming.delete(tempPath)
    }
  }

  async discard(tempPath: string): Promise<void> {
    try {
      await removeQuietly(tempPath)
    } finally {
      this.#streaming.delete(tempPath)
    }
  }
}
