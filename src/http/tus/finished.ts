/**
 * Finished tus uploads in the data directory: `tus/<id[0:2]>/<id>` (the bytes) and
 * `<id>.info.json` (what HEAD and GET answer once the session is gone), plus `<id>.gone`, the
 * tombstone a DELETE leaves so the upload answers 410 afterwards. The info file is written after
 * the bytes are in place, so an info file always names bytes that exist.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fsyncDir, removeQuietly } from '../../core/storage/files.js'

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

export class FinishedUploads {
  readonly #root: string

  constructor(root: string) {
    this.#root = root
  }

  dataPath(id: string): string {
    return join(this.#root, id.slice(0, 2), id)
  }

  #infoPath(id: string): string {
    return `${this.dataPath(id)}.info.json`
  }

  #gonePath(id: string): string {
    return `${this.dataPath(id)}.gone`
  }

  async info(id: string): Promise<FinishedInfo | null> {
    try {
      return JSON.parse(await readFile(this.#infoPath(id), 'utf8')) as FinishedInfo
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }

  async isGone(id: string): Promise<boolean> {
    return stat(this.#gonePath(id)).then(
      () => true,
      () => false,
    )
  }

  /**
   * Moves the synced temp file into place and then writes the info file (atomically, by
   * rename): from then on HEAD and GET see the finished upload.
   */
  async publish(tempPath: string, info: FinishedInfo): Promise<void> {
    const path = this.dataPath(info.id)
    const dir = join(this.#root, info.id.slice(0, 2))
    await mkdir(dir, { recursive: true })
    await rename(tempPath, path)
    const tmpInfo = `${this.#infoPath(info.id)}.${randomUUID()}.tmp`
    await writeFile(tmpInfo, `${JSON.stringify(info)}\n`, { flag: 'wx' })
    await rename(tmpInfo, this.#infoPath(info.id))
    await fsyncDir(dir)
  }

  /** Terminates a finished upload: the tombstone first, then the info and the bytes. */
  async remove(id: string): Promise<void> {
    await this.markGone(id)
    await removeQuietly(this.#infoPath(id))
    await removeQuietly(this.dataPath(id))
  }

  async markGone(id: string): Promise<void> {
    await mkdir(join(this.#root, id.slice(0, 2)), { recursive: true })
    await writeFile(this.#gonePath(id), `${new Date().toISOString()}\n`)
  }

  /**
   * Removes finished uploads (and tombstones) older than `maxAgeMs`: the retention sweep.
   * Answers how many uploads went.
   */
  async sweep(maxAgeMs: number, nowMs = Date.now()): Promise<number> {
    let removed = 0
    const fans = await readdir(this.#root).catch(() => [] as string[])
    for (const fan of fans) {
      const dir = join(this.#root, fan)
      const names = await readdir(dir).catch(() => [] as string[])
      for (const name of names) {
        const id = name.endsWith('.info.json')
          ? name.slice(0, -'.info.json'.length)
          : name.endsWith('.gone')
            ? name.slice(0, -'.gone'.length)
            : null
        if (id === null) continue
        const st = await stat(join(dir, name)).catch(() => null)
        if (st === null || nowMs - st.mtimeMs < maxAgeMs) continue
        if (name.endsWith('.gone')) {
          await removeQuietly(join(dir, name))
        } else {
          await removeQuietly(join(dir, name))
          await removeQuietly(this.dataPath(id))
          removed++
        }
      }
    }
    return removed
  }
}
