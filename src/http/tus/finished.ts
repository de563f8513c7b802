/**
 * Finished tus uploads in their own object store (`<data>/tus/` on the filesystem): the bytes
 * at `<id[0:2]>/<id>`, `<id>.info.json` beside them (what HEAD and GET answer once the session is
 * gone), and `<id>.gone`, the tombstone a DELETE leaves so the upload answers 410 afterwards. The
 * info object is written after the bytes are in place, so an info object always names bytes that
 * exist. Concatenation reads partials by path on a worker thread, hence `LocalPaths`.
 */
import type { Readable } from 'node:stream'
import { putSmallObject, readSmallObject } from '../../core/storage/atomic.js'
import type {
  LocalPaths,
  ObjectInfo,
  ObjectRange,
  ObjectStore,
} from '../../core/storage/object-store.js'
import type { TempFiles } from '../../core/storage/temp-files.js'

export interface FinishedInfo {
  readonly id: string
  readonly length: number
  /** Canonical `Upload-Metadata`, '' when none. */
  readonly metadata: string
  /** `partial`, `final;<urls>` as the client sent it, or null. */
  readonly concat: string | null
  /** Which protocol created it: `tus`, `ietf-6`, `ietf-8` (absent: tus). */
  readonly protocol?: string
  readonly sha256: string
  readonly createdAtMs: number
  readonly finishedAtMs: number
}

const INFO = '.info.json'
const GONE = '.gone'

export class FinishedUploads {
  readonly #objects: ObjectStore & LocalPaths
  readonly #temps: TempFiles

  constructor(objects: ObjectStore & LocalPaths, temps: TempFiles) {
    this.#objects = objects
    this.#temps = temps
  }

  #key(id: string): string {
    return `${id.slice(0, 2)}/${id}`
  }

  /** The local file of the upload's bytes (worker threads read it by path). */
  dataPath(id: string): string {
    return this.#objects.localPath(this.#key(id))
  }

  async info(id: string): Promise<FinishedInfo | null> {
    const text = await readSmallObject(this.#objects, this.#key(id) + INFO)
    return text === null ? null : (JSON.parse(text) as FinishedInfo)
  }

  async isGone(id: string): Promise<boolean> {
    return (await this.#objects.head(this.#key(id) + GONE)) !== null
  }

  head(id: string): Promise<ObjectInfo | null> {
    return this.#objects.head(this.#key(id))
  }

  read(id: string, range?: ObjectRange): Promise<Readable> {
    return this.#objects.get(this.#key(id), range)
  }

  /**
   * Moves the synced temp file into place and then writes the info object: from then on HEAD
   * and GET see the finished upload.
   */
  async publish(tempPath: string, info: FinishedInfo): Promise<void> {
    const key = this.#key(info.id)
    await this.#objects.put(key, tempPath, { mode: 'if-absent', alreadySynced: true })
    await putSmallObject(this.#objects, key + INFO, `${JSON.stringify(info)}\n`, {
      tempPath: this.#temps.streamPath(),
      overwrite: true,
    })
  }

  /** Terminates a finished upload: the tombstone first, then the info and the bytes. */
  async remove(id: string): Promise<void> {
    await this.markGone(id)
    await this.#objects.delete(this.#key(id) + INFO)
    await this.#objects.delete(this.#key(id))
  }

  async markGone(id: string): Promise<void> {
    await putSmallObject(this.#objects, this.#key(id) + GONE, `${new Date().toISOString()}\n`, {
      tempPath: this.#temps.streamPath(),
      overwrite: true,
    })
  }

  /**
   * Removes finished uploads (and tombstones) whose info (tombstone) is older than `maxAgeMs`:
   * the retention sweep. Answers how many uploads went.
   */
  async sweep(maxAgeMs: number, nowMs = Date.now()): Promise<number> {
    let removed = 0
    // Listed first, removed after: the listing does not walk folders it is emptying.
    const keys: string[] = []
    for await (const entry of this.#objects.list('')) {
      if (entry.kind === 'object' && (entry.key.endsWith(INFO) || entry.key.endsWith(GONE))) {
        keys.push(entry.key)
      }
    }
    for (const key of keys) {
      const suffix = key.endsWith(INFO) ? INFO : GONE
      const info = await this.#objects.head(key)
      if (info === null || nowMs - info.mtimeMs < maxAgeMs) continue
      await this.#objects.delete(key, { pruneEmptyParents: 1 })
      if (suffix === INFO) {
        await this.#objects.delete(key.slice(0, -INFO.length), { pruneEmptyParents: 1 })
        removed++
      }
    }
    return removed
  }
}
