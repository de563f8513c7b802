/**
 * Finished tus uploads in their own object store (`<data>/tus/` on the filesystem): the bytes
 * at `<id[0:2]>/<id>`, `<id>.info.json` beside them (what HEAD and GET answer once the session is
 * gone), and `<id>.gone`, the tombstone a DELETE leaves so the upload answers 410 afterwards. The
 * info object is written after the bytes are in place, so an info object always names bytes that
 * exist. The store needs only the core operations: on a store with `LocalPaths` (the data
 * directory) concatenation reads the partials by path on a worker thread; on one without (a
 * bucket) it streams them from the store into the local temp file, hashing on the way.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { putSmallObject, readSmallObject } from '../../core/storage/atomic.js'
import {
  hasLocalPaths,
  type ObjectInfo,
  type ObjectRange,
  type ObjectStore,
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

/** Copies files by path into a new file on a worker thread (IngestPool.concatFiles). */
export interface ConcatWorker {
  concatFiles(
    sources: readonly string[],
    target: string,
  ): Promise<{ bytes: number; sha256: string }>
}

export class FinishedUploads {
  readonly #objects: ObjectStore
  readonly #temps: TempFiles

  constructor(objects: ObjectStore, temps: TempFiles) {
    this.#objects = objects
    this.#temps = temps
  }

  #key(id: string): string {
    return `${id.slice(0, 2)}/${id}`
  }

  /**
   * The local file of the upload's bytes (worker threads read it by path); only on a store with
   * `LocalPaths`.
   */
  dataPath(id: string): string {
    if (!hasLocalPaths(this.#objects)) throw new Error('finished uploads are not local files')
    return this.#objects.localPath(this.#key(id))
  }

  /**
   * Writes the finished uploads `ids`, in order, into the new local file `target`, fsynced, and
   * answers its length and SHA-256 (tus concatenation). Local files are copied by `worker`;
   * objects of a store without local paths are streamed from it. The caller removes `target`
   * on failure.
   */
  async concatenate(
    ids: readonly string[],
    target: string,
    worker: ConcatWorker,
  ): Promise<{ bytes: number; sha256: string }> {
    if (hasLocalPaths(this.#objects)) {
      return worker.concatFiles(
        ids.map((id) => this.dataPath(id)),
        target,
      )
    }
    const hash = createHash('sha256')
    let bytes = 0
    const fh = await open(target, 'wx', 0o644)
    try {
      for (const id of ids) {
        for await (const chunk of (await this.read(id)) as AsyncIterable<Buffer>) {
          hash.update(chunk)
          // write() may write less than asked: loop until the chunk is all out.
          let off = 0
          while (off < chunk.length) {
            const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, bytes + off)
            off += bytesWritten
          }
          bytes += chunk.length
        }
      }
      await fh.sync()
    } finally {
      await fh.close()
    }
    return { bytes, sha256: hash.digest('hex') }
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
    await this.#objects.put(key, tempPath, {
      mode: 'if-absent',
      alreadySynced: true,
      sha256: info.sha256,
    })
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
