/**
 * Whole-file temp files of this instance (`w-` names, temp-names.ts) from creation to publish or
 * discard. The sweep asks `inUse` before it removes one of this instance's files.
 */
import { join } from 'node:path'
import { publishFile, removeQuietly, type PublishOptions } from '../storage/files.js'
import { streamTempName } from './temp-names.js'

export class StreamFiles {
  readonly #tmp: string
  readonly #instanceId: string
  /** Stream temp files of this instance not yet published or discarded. */
  readonly #streaming = new Set<string>()

  constructor(tmpDir: string, instanceId: string) {
    this.#tmp = tmpDir
    this.#instanceId = instanceId
  }

  /**
   * A new temp file name for a whole-file stream or a small file to publish, so a sweep can tell
   * a file of a running stream (this instance is streaming it, or its instance is alive) from one
   * left by a killed process. The caller publishes it (`publish`) or lets it go (`discard`).
   */
  newPath(): string {
    const path = join(this.#tmp, streamTempName(this.#instanceId))
    this.#streaming.add(path)
    return path
  }

  inUse(path: string): boolean {
    return this.#streaming.has(path)
  }

  async publish(tempPath: string, target: string, opts: PublishOptions): Promise<void> {
    try {
      await publishFile(tempPath, target, { ...opts, alreadySynced: opts.alreadySynced ?? false })
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
