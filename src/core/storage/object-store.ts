/**
 * ObjectStore: where families keep published files, by key, whatever holds the bytes. The core
 * operations are the ones an object store (S3, GCS, Azure Blob) offers too; what only a
 * filesystem can do is an optional capability with its own interface, found with a type guard,
 * so a family states what it needs and a backend without it is refused at construction, not
 * half-way through a request (the shape of tusd's optional DataStore interfaces, pkg/handler
 * datastore.go, and its StoreComposer, composer.go).
 *
 * Keys are relative, `/`-separated paths (`ab/cdef…/12.blob`, `repo/data/p/id,sig`). A key that
 * is empty, absolute (`/x`, `C:x`), holds a NUL or another control character or a backslash, or
 * has an empty, `.` or `..` segment is refused with ERR_INVALID_PATH before anything is touched:
 * no key reaches outside the store's root.
 */
import type { Readable } from 'node:stream'
import { UploadError } from '../errors.js'
import { checkRelativePath, type PathRules } from '../paths.js'

/** Limits every key obeys in any store (families check their own, tighter rules first). */
export const OBJECT_KEY_RULES: PathRules = Object.freeze({ maxBytes: 4096, maxSegmentBytes: 255 })

/** `overwrite`: replace what is there (the last writer wins); `if-absent`: refuse a taken key. */
export type PutMode = 'if-absent' | 'overwrite'

export interface PutOptions {
  readonly mode: PutMode
  /** The temp file was fsynced already (a commit's hand-off, a worker's copy): skip that flush. */
  readonly alreadySynced?: boolean
  /**
   * The bytes' sha256 (hex), when the caller knows it: a store that keeps metadata stores it
   * with the object (the S3 store: user metadata `sha256`); the filesystem store ignores it.
   */
  readonly sha256?: string
}

export interface ObjectInfo {
  readonly key: string
  readonly size: number
  readonly mtimeMs: number
  /**
   * Opaque; changes whenever the object is replaced and never while it stays (the filesystem
   * store: inode, size and mtime in ns). Equal etags mean the same bytes.
   */
  readonly etag: string
}

/** Inclusive byte range; `end === start - 1` is the empty range. */
export interface ObjectRange {
  readonly start: number
  readonly end: number
}

/** An entry of a listing: an object, or (with `delimiter`) a folder-like prefix ending in `/`. */
export interface ListEntry {
  readonly kind: 'object' | 'prefix'
  readonly key: string
}

export interface ListOptions {
  /**
   * Stop at the next `/` after the prefix (S3's `delimiter=/`): objects directly under the
   * prefix, and one `prefix` entry (`<key>/`) per deeper level. Default: every object below.
   */
  readonly delimiter?: boolean
}

export interface DeleteOptions {
  /**
   * Remove this many levels of parent folders too when the delete leaves them empty (a store
   * without folders ignores it). Another writer may be filling one: a folder is removed only if
   * empty, never recursively.
   */
  readonly pruneEmptyParents?: number
}

/**
 * The core operations. Every method refuses a bad key with ERR_INVALID_PATH; other failures are
 * the backend's (the filesystem store throws the errno error, e.g. ENOSPC, unless a code is
 * named here).
 */
export interface ObjectStore {
  /**
   * Publishes the temp file `tempPath` (made with TempFiles, on the store's side) as `key`.
   * Atomic: a reader sees no object or the old one, or the whole new one, never a part. On
   * success the temp file is gone; on failure it is left for the caller to retry or discard.
   * `if-absent` throws ERR_ALREADY_EXISTS when `key` is taken (exactly one of racing puts wins).
   * Answers what was published.
   */
  put(key: string, tempPath: string, opts: PutOptions): Promise<ObjectInfo>
  /** The object's size, mtime and etag, or null when there is none. */
  head(key: string): Promise<ObjectInfo | null>
  /**
   * A stream of the object's bytes, or of `range` of them. ERR_NOT_FOUND when there is no
   * object (a folder is none), ERR_INVALID_RANGE for a malformed range,
   * ERR_RANGE_NOT_SATISFIABLE for one that reaches past the end. The stream reads the object as
   * it was when get answered.
   */
  get(key: string, range?: ObjectRange): Promise<Readable>
  /** Removes the object; false when there was none (not an error). */
  delete(key: string, opts?: DeleteOptions): Promise<boolean>
  /**
   * Keys that start with `prefix` (a string prefix, as S3's: `a/b` matches `a/b.txt` and
   * `a/b/c`; `''` is everything), in no promised order.
   */
  list(prefix: string, opts?: ListOptions): AsyncIterable<ListEntry>
  /**
   * Copies `from` to `to` (through a temp copy published like put). ERR_NOT_FOUND when `from`
   * has no object; `if-absent` as in put.
   */
  copy(from: string, to: string, opts: PutOptions): Promise<ObjectInfo>
}

// ---- optional capabilities --------------------------------------------------------------------

/** The store keeps objects as local files that other threads may open by path (hash workers). */
export interface LocalPaths {
  /** The local file of `key` (it may not exist); `''` is the store's root folder. */
  localPath(key: string): string
  /** The key of a local path inside the store, or null for a path outside it. */
  keyOfLocalPath(path: string): string | null
}

/** Set an object's mtime to now without changing its bytes (Shaman GC spares touched blobs). */
export interface Toucher {
  /** false when there is no object. */
  touch(key: string): Promise<boolean>
}

/**
 * Snapshots that cost nothing and never change: a hard link (lakeFS link keeps the inode it
 * checked, so a later PUT to the address cannot change a linked object).
 */
export interface HardLinkSnapshots {
  /**
   * Makes `to` a second name of the object `from` (the same bytes, not a copy). ERR_NOT_FOUND
   * when `from` has none, ERR_ALREADY_EXISTS when `to` is taken. Answers the snapshot's info.
   * Not yet durable: a caller that keeps it makes it so with FolderSync.
   */
  snapshot(from: string, to: string): Promise<ObjectInfo>
}

/**
 * A store whose deletes and snapshots are not durable by themselves (a filesystem: an unlink or
 * link lives in its folder until that is fsynced). put and the folder operations sync on their
 * own; a caller that must order a delete before a later step (bulk ingest removes a source,
 * then its journal entry) syncs in between.
 */
export interface FolderSync {
  /** Makes every name change in the folder holding `key` durable. */
  syncFolderOf(key: string): Promise<void>
}

/** Appends in place, each one durable when it answers: a log (the bulk-ingest mapping). */
export interface Appendable {
  /** Opens `key` for appends, creating an empty object if there is none. */
  openAppend(key: string): Promise<AppendHandle>
  /** Cuts `key` to its first `bytes` bytes, durably (a torn last line after a crash). */
  truncate(key: string, bytes: number): Promise<void>
}

export interface AppendHandle {
  /** Writes `data` at the end and makes it durable (fdatasync) before answering. */
  append(data: string | Uint8Array): Promise<void>
  close(): Promise<void>
}

/** Folders as things of their own, removed in one atomic step (ImageStore delete and listings). */
export interface AtomicFolders {
  /** Whether `prefix` (no trailing `/`; `''` is the root) is a folder, an empty one too. */
  hasFolder(prefix: string): Promise<boolean>
  /**
   * Removes the folder and everything in it. It is renamed out of the store in one step first,
   * so no reader sees it half deleted. false when there is no folder. The root is refused.
   */
  removeFolder(prefix: string): Promise<boolean>
}

/** What is at a key, symlinks not followed. */
export type EntryKind = 'file' | 'folder' | 'symlink' | 'other'

/**
 * Trees of symlinks into another local store (Shaman checkouts), built aside and renamed into
 * place: a reader sees no tree or the whole one.
 */
export interface SymlinkTrees {
  /** What is at `key` (not followed), or null. */
  entryKind(key: string): Promise<EntryKind | null>
  /**
   * Starts a tree that will appear at `key`: a hidden temp folder (TempFiles'
   * CHECKOUT_TEMP_PREFIX) next to it, so relative link targets are already right.
   */
  beginTree(key: string): Promise<TreeBuilder>
  /**
   * Every symlink below `prefix`; `target` is its key in `into` when it points inside that
   * store, else null. A folder renamed or removed mid-walk throws TreeChangedError (walk.ts), so
   * a caller that must see every link can start over.
   */
  links(prefix: string, into: LocalPaths): AsyncIterable<SymlinkEntry>
}

export interface SymlinkEntry {
  /** The symlink's key. */
  readonly link: string
  /** The key it points at in the store asked about, or null (elsewhere, or removed meanwhile). */
  readonly target: string | null
}

/** A tree under construction (see SymlinkTrees). Paths are relative to the tree's top. */
export interface TreeBuilder {
  mkdir(rel: string): Promise<void>
  /** An empty file (a mark), created exclusively. */
  writeEmpty(rel: string): Promise<void>
  /** A relative symlink at `rel` to the object `key` of `into`. */
  symlink(rel: string, into: LocalPaths, key: string): Promise<void>
  /**
   * Renames the tree into place and makes that durable. The errno error when something is in
   * the way (EEXIST, ENOTEMPTY, ENOTDIR). After this, abandon does nothing.
   */
  publish(): Promise<void>
  /** Removes the temp tree (after a failure). */
  abandon(): Promise<void>
}

const has = (o: object, ...fns: string[]) =>
  fns.every((f) => typeof (o as Record<string, unknown>)[f] === 'function')

export function hasLocalPaths<S extends ObjectStore>(s: S): s is S & LocalPaths {
  return has(s, 'localPath', 'keyOfLocalPath')
}
export function hasToucher<S extends ObjectStore>(s: S): s is S & Toucher {
  return has(s, 'touch')
}
export function hasHardLinkSnapshots<S extends ObjectStore>(s: S): s is S & HardLinkSnapshots {
  return has(s, 'snapshot')
}
export function hasFolderSync<S extends ObjectStore>(s: S): s is S & FolderSync {
  return has(s, 'syncFolderOf')
}
export function hasAppendable<S extends ObjectStore>(s: S): s is S & Appendable {
  return has(s, 'openAppend', 'truncate')
}
export function hasAtomicFolders<S extends ObjectStore>(s: S): s is S & AtomicFolders {
  return has(s, 'hasFolder', 'removeFolder')
}
export function hasSymlinkTrees<S extends ObjectStore>(s: S): s is S & SymlinkTrees {
  return has(s, 'entryKind', 'beginTree', 'links')
}

/** The optional capabilities a store has, by name (for logs and the contract suite). */
export function capabilitiesOf(s: ObjectStore): string[] {
  const out: string[] = []
  if (hasLocalPaths(s)) out.push('LocalPaths')
  if (hasToucher(s)) out.push('Toucher')
  if (hasHardLinkSnapshots(s)) out.push('HardLinkSnapshots')
  if (hasFolderSync(s)) out.push('FolderSync')
  if (hasAppendable(s)) out.push('Appendable')
  if (hasAtomicFolders(s)) out.push('AtomicFolders')
  if (hasSymlinkTrees(s)) out.push('SymlinkTrees')
  return out
}

/** Checks a key and answers its segments (ERR_INVALID_PATH / ERR_PATH_TOO_LONG). */
export function checkObjectKey(key: string): string[] {
  if (typeof key !== 'string') {
    throw new UploadError('ERR_INVALID_PATH', 'an object key must be a string')
  }
  return checkRelativePath(key, OBJECT_KEY_RULES)
}

/**
 * Checks a listing prefix: `''`, or a key with at most one trailing `/`. Answers the folder part
 * (segments before the last `/`) and the partial name after it.
 */
export function checkObjectPrefix(prefix: string): {
  readonly folder: string[]
  readonly partial: string
} {
  if (prefix === '') return { folder: [], partial: '' }
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  const segs = checkObjectKey(body)
  if (prefix.endsWith('/')) return { folder: segs, partial: '' }
  return { folder: segs.slice(0, -1), partial: segs[segs.length - 1]! }
}

/** Checks a range for an object of `size` bytes. */
export function checkObjectRange(range: ObjectRange, size: number): void {
  const { start, end } = range
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start - 1) {
    throw new UploadError('ERR_INVALID_RANGE', `invalid byte range ${start}-${end}`)
  }
  if (end >= size || start > size) {
    const msg = `byte range ${start}-${end} is outside an object of ${size} bytes`
    throw new UploadError('ERR_RANGE_NOT_SATISFIABLE', msg, {
      detail: { kind: 'unsatisfiable', size },
    })
  }
}
