/**
 * The ObjectStore on a local (or shared, POSIX) filesystem, with every optional capability. An
 * object is a regular file at `<root>/<key>`; folders exist only as the filesystem's own.
 *
 * Publication is the one in files.ts (publishFile): fsync the temp file, rename it (overwrite) or
 * link it (if-absent: link(2) lets exactly one of racing creators make the name, on every
 * instance sharing the directory, with no lock), fsync the folder. Temp files live in TempFiles'
 * folder on the same filesystem, so the rename and the link are atomic.
 */
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readlink,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  utimes,
  writeFile,
  type FileHandle,
} from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { Readable } from 'node:stream'
import { UploadError } from '../errors.js'
import { resolveUnder } from '../paths.js'
import { errnoOf, isAbsent, isExists, isNotFound } from './errno.js'
import { DiskSync } from './disk-sync.js'
import { publishFile } from './files.js'
import {
  type Appendable,
  type AppendHandle,
  type FolderSync,
  checkObjectKey,
  checkObjectPrefix,
  checkObjectRange,
  type AtomicFolders,
  type DeleteOptions,
  type EntryKind,
  type HardLinkSnapshots,
  type ListEntry,
  type ListOptions,
  type LocalPaths,
  type ObjectInfo,
  type ObjectRange,
  type ObjectStore,
  type PutOptions,
  type SymlinkEntry,
  type SymlinkTrees,
  type Toucher,
  type TreeBuilder,
} from './object-store.js'
import { removeIfPresent } from './remove.js'
import { CHECKOUT_TEMP_PREFIX, type TempFiles } from './temp-files.js'
import { walkTree } from './walk.js'

export interface FsObjectStoreOptions {
  /** The store's folder (created if missing). */
  readonly root: string
  /** Names temp files in the data directory's tmp/ (same filesystem as `root`). */
  readonly temps: TempFiles
  /** Flushes files and folders (default); DiskSync.off for FERRY_FSYNC=none. */
  readonly sync?: DiskSync
}

/**
 * How often a put retries when the target's folder vanished between its mkdir and its link or
 * rename: Shaman GC removes a blob's emptied folders, and may do so right then.
 */
const VANISHED_FOLDER_RETRIES = 2

interface BigStats {
  readonly size: bigint
  readonly ino: bigint
  readonly mtimeNs: bigint
  readonly mtimeMs: bigint
}

function infoOf(key: string, st: BigStats): ObjectInfo {
  const etag = `${st.ino}:${st.size}:${st.mtimeNs}`
  return { key, size: Number(st.size), mtimeMs: Number(st.mtimeMs), etag }
}

export class FsObjectStore
  implements
    ObjectStore,
    LocalPaths,
    Toucher,
    HardLinkSnapshots,
    FolderSync,
    Appendable,
    AtomicFolders,
    SymlinkTrees
{
  readonly #root: string
  readonly #temps: TempFiles
  readonly #sync: DiskSync

  constructor(o: FsObjectStoreOptions) {
    this.#root = resolve(o.root)
    this.#temps = o.temps
    this.#sync = o.sync ?? DiskSync.on
  }

  #path(key: string): string {
    return resolveUnder(this.#root, checkObjectKey(key))
  }

  #folder(prefix: string): string {
    return prefix === '' ? this.#root : this.#path(prefix)
  }

  async put(key: string, tempPath: string, opts: PutOptions): Promise<ObjectInfo> {
    const target = this.#path(key)
    // The temp file's identity is the object's after the rename or link (same inode).
    const st = await stat(tempPath, { bigint: true })
    for (let attempt = 0; ; attempt++) {
      try {
        await publishFile(tempPath, target, {
          overwrite: opts.mode === 'overwrite',
          alreadySynced: (opts.alreadySynced ?? false) || attempt > 0,
          sync: this.#sync,
        })
        return infoOf(key, st)
      } catch (err) {
        if (!(isNotFound(err) && attempt < VANISHED_FOLDER_RETRIES)) throw err
      }
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.#path(key)
    try {
      const st = await stat(path, { bigint: true })
      return st.isFile() ? infoOf(key, st) : null
    } catch (err) {
      if (isAbsent(err)) return null
      throw err
    }
  }

  async get(key: string, range?: ObjectRange): Promise<Readable> {
    const path = this.#path(key)
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (err) {
      // ENOTDIR (a file where the key needs a folder) stays an errno error: a broken layout,
      // not a missing object (head, which only looks, answers null for it).
      if (isNotFound(err) || errnoOf(err) === 'EISDIR') {
        throw new UploadError('ERR_NOT_FOUND', 'no such object', { cause: err })
      }
      throw err
    }
    try {
      const st = await fh.stat()
      if (!st.isFile()) throw new UploadError('ERR_NOT_FOUND', 'no such object')
      const r = range ?? { start: 0, end: st.size - 1 }
      checkObjectRange(r, st.size)
      if (r.end < r.start) {
        await fh.close()
        return Readable.from([])
      }
      // The handle keeps the bytes of this very file, even if it is replaced while it is read.
      return fh.createReadStream({ start: r.start, end: r.end, autoClose: true })
    } catch (err) {
      await fh.close().catch(() => {})
      throw err
    }
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<boolean> {
    const path = this.#path(key)
    const gone = await removeIfPresent(path)
    let dir = dirname(path)
    for (let i = 0; gone && i < (opts.pruneEmptyParents ?? 0) && dir !== this.#root; i++) {
      // rmdir refuses a folder that is not empty (another object landed): that is fine.
      if (
        !(await rmdir(dir).then(
          () => true,
          () => false,
        ))
      )
        break
      dir = dirname(dir)
    }
    return gone
  }

  async *list(prefix: string, opts: ListOptions = {}): AsyncGenerator<ListEntry> {
    const { folder } = checkObjectPrefix(prefix)
    const base = folder.length === 0 ? this.#root : resolveUnder(this.#root, folder)
    const baseKey = folder.length === 0 ? '' : `${folder.join('/')}/`
    if (opts.delimiter === true) {
      // One level: one readdir, no stat (a folder of 100,000 files lists in one call).
      const entries = await readdir(base, { withFileTypes: true }).catch((err: unknown) => {
        if (isAbsent(err)) return []
        throw err
      })
      for (const e of entries) {
        const key = baseKey + e.name
        if (!key.startsWith(prefix)) continue
        if (e.isFile()) yield { kind: 'object', key }
        else if (e.isDirectory()) yield { kind: 'prefix', key: `${key}/` }
      }
      return
    }
    // Enter only folders that can hold matching keys.
    const skip = (_: string, rel: string) => {
      const key = baseKey + rel
      return !key.startsWith(prefix) && !prefix.startsWith(`${key}/`)
    }
    for await (const e of walkTree(base, { skip })) {
      const key = baseKey + e.rel
      if (e.dirent.isFile() && key.startsWith(prefix)) yield { kind: 'object', key }
    }
  }

  async copy(from: string, to: string, opts: PutOptions): Promise<ObjectInfo> {
    const source = this.#path(from)
    this.#path(to)
    const tmp = this.#temps.copyPath()
    try {
      try {
        await copyFile(source, tmp)
      } catch (err) {
        if (isAbsent(err) || errnoOf(err) === 'EISDIR') {
          throw new UploadError('ERR_NOT_FOUND', 'no object to copy', { cause: err })
        }
        throw err
      }
      return await this.put(to, tmp, { mode: opts.mode })
    } catch (err) {
      await removeIfPresent(tmp)
      throw err
    }
  }

  // ---- LocalPaths ----

  localPath(key: string): string {
    return key === '' ? this.#root : this.#path(key)
  }

  keyOfLocalPath(path: string): string | null {
    const abs = resolve(path)
    if (!abs.startsWith(this.#root + sep)) return null
    return relative(this.#root, abs).split(sep).join('/')
  }

  // ---- Toucher ----

  async touch(key: string): Promise<boolean> {
    const now = new Date()
    try {
      await utimes(this.#path(key), now, now)
      return true
    } catch (err) {
      if (isAbsent(err)) return false
      throw err
    }
  }

  // ---- HardLinkSnapshots ----

  async snapshot(from: string, to: string): Promise<ObjectInfo> {
    const source = this.#path(from)
    const target = this.#path(to)
    await mkdir(dirname(target), { recursive: true })
    try {
      await link(source, target)
    } catch (err) {
      if (isAbsent(err)) {
        throw new UploadError('ERR_NOT_FOUND', 'no object to snapshot', { cause: err })
      }
      if (isExists(err)) {
        throw new UploadError('ERR_ALREADY_EXISTS', 'an object exists at this key', { cause: err })
      }
      throw err
    }
    return infoOf(to, await stat(target, { bigint: true }))
  }

  // ---- FolderSync ----

  async syncFolderOf(key: string): Promise<void> {
    await this.#sync.dir(dirname(this.#path(key)))
  }

  // ---- Appendable ----

  async openAppend(key: string): Promise<AppendHandle> {
    const path = this.#path(key)
    await mkdir(dirname(path), { recursive: true })
    const fh = await open(path, 'a')
    return {
      append: async (data) => {
        await fh.appendFile(data)
        await this.#sync.handle(fh)
      },
      close: () => fh.close(),
    }
  }

  async truncate(key: string, bytes: number): Promise<void> {
    const fh = await open(this.#path(key), 'r+')
    try {
      await fh.truncate(bytes)
      await this.#sync.handle(fh)
    } finally {
      await fh.close()
    }
  }

  // ---- AtomicFolders ----

  async hasFolder(prefix: string): Promise<boolean> {
    const st = await stat(this.#folder(prefix)).catch((err: unknown) => {
      if (isAbsent(err)) return null
      throw err
    })
    return st?.isDirectory() === true
  }

  async removeFolder(prefix: string): Promise<boolean> {
    if (prefix === '') {
      throw new UploadError('ERR_INVALID_PATH', 'the root folder cannot be removed')
    }
    const dir = this.#path(prefix)
    if (!(await this.hasFolder(prefix))) return false
    const trash = this.#temps.trashPath()
    try {
      await rename(dir, trash)
    } catch (err) {
      if (isAbsent(err)) return false
      throw err
    }
    await rm(trash, { recursive: true, force: true })
    return true
  }

  // ---- SymlinkTrees ----

  async entryKind(key: string): Promise<EntryKind | null> {
    const st = await lstat(this.#folder(key)).catch((err: unknown) => {
      if (isAbsent(err)) return null
      throw err
    })
    if (st === null) return null
    if (st.isFile()) return 'file'
    if (st.isDirectory()) return 'folder'
    return st.isSymbolicLink() ? 'symlink' : 'other'
  }

  async beginTree(key: string): Promise<TreeBuilder> {
    const final = this.#path(key)
    const parent = dirname(final)
    await mkdir(parent, { recursive: true })
    const tmp = await mkdtemp(join(parent, CHECKOUT_TEMP_PREFIX))
    let done = false
    const inTree = (rel: string) => resolveUnder(tmp, checkObjectKey(rel))
    try {
      // mkdtemp makes it 0700; a tree is read by other users' processes (render workers).
      await chmod(tmp, 0o755)
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {})
      throw err
    }
    return {
      mkdir: async (rel) => {
        await mkdir(inTree(rel))
      },
      writeEmpty: async (rel) => {
        await writeFile(inTree(rel), '', { flag: 'wx' })
      },
      symlink: async (rel, into, target) => {
        // Relative to where the link will live after the rename (the same depth as in tmp).
        await symlink(relative(dirname(join(final, rel)), into.localPath(target)), inTree(rel))
      },
      publish: async () => {
        await rename(tmp, final)
        done = true
        await this.#sync.dir(parent)
      },
      abandon: async () => {
        if (!done) await rm(tmp, { recursive: true, force: true })
      },
    }
  }

  async *links(prefix: string, into: LocalPaths): AsyncGenerator<SymlinkEntry> {
    const base = this.#folder(prefix)
    const baseKey = prefix === '' ? '' : `${prefix}/`
    for await (const e of walkTree(base, { onVanished: 'throw' })) {
      if (!e.dirent.isSymbolicLink()) continue
      let target: string
      try {
        target = await readlink(e.path)
      } catch {
        // Removed meanwhile: its tree is being erased.
        yield { link: baseKey + e.rel, target: null }
        continue
      }
      yield { link: baseKey + e.rel, target: into.keyOfLocalPath(resolve(dirname(e.path), target)) }
    }
  }
}

/**
 * The filesystem identity inside an FsObjectStore etag (`<ino>:<size>:<mtimeNs>`) as fs.Stats
 * numbers (mtimeMs computed as Node computes it), or null for an etag of another store. For
 * records that stored this identity before there were etags (bulk-ingest journal entries).
 */
export function fsIdentityOf(etag: string): { ino: number; size: number; mtimeMs: number } | null {
  const m = /^(\d+):(\d+):(\d+)$/.exec(etag)
  if (m === null) return null
  const ns = BigInt(m[3]!)
  const mtimeMs = Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6
  return { ino: Number(m[1]), size: Number(m[2]), mtimeMs }
}
