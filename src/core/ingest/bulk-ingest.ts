/**
 * DaSCH-style bulk ingest (dasch-swiss/dsp-ingest v0.21.1 BulkIngestService), protocol-neutral. A
 * project (shortcode) owns one folder:
 *
 *   <dataDir>/ingest/<sc>/import/…            files uploaded by the client, sub-folders allowed
 *   <dataDir>/ingest/<sc>/mapping-<sc>.csv    `original,derivative` lines, one per ingested file
 * <dataDir>/ingest/<sc>/assets/ab/cd/<id>.* the assets: `<id>.<ext>.orig`, `<id>.<ext>`,
 * `<id>.info`
 *   <dataDir>/ingest/<sc>/journal/<h>.json     one entry per file whose ingest has begun, not ended
 *
 * Bulk operations of a project exclude each other through one mutex in the shared Locker, so it
 * holds across instances: an ingest and a finalize hold it for their whole background run (the
 * Locker renews it; when it is lost the run stops at its next step), mapping.csv and each
 * upload's publish hold it for a moment. A run also holds a job marker, so an upload can answer
 * "in progress" at once during a run yet wait its turn behind other uploads' publishes.
 *
 * Crash safety of one file's ingest: each step is idempotent and the steps run in this order,
 * so a run stopped anywhere (SIGKILL, lock lost, shutdown) is finished by the next run.
 *   1. journal entry `{file, id, source identity}` written atomically before any asset file;
 *      a rerun finds it and reuses the same asset id, so it never makes a second asset.
 *   2. `.orig` and the derivative: copied by a worker into `<dataDir>/tmp/`, fsynced, renamed
 *      into place (overwrite): a reader sees no file or a whole one. Redoing them is harmless
 *      because the source is still there (it is removed last).
 *   3. `.info` last: its presence marks the asset complete, so 2 is skipped on a rerun.
 *   4. the mapping line, appended (and fdatasynced) only after 3, and only if the mapping does
 *      not already name this derivative (a run reads the derivative names once at its start,
 *      after cutting a torn last line left by a crash mid-append). No duplicates, no lines for
 *      incomplete assets.
 *   5. the source removed (then its folder fsynced), and 6. the journal entry removed. A journal
 *      entry whose source is gone is finished (mapped) or abandoned (its asset files removed).
 * A source replaced by a new upload after a crash (another inode, size or mtime) is a new file:
 * the old entry is settled as in 5/6 and the new content gets a new asset.
 *
 * On a store with only the core operations (a bucket, FERRY_STORAGE=s3):
 * - the mapping has no appends: it is one object, rewritten whole (put, overwrite) for each line
 *   by the run holding the project lock, so any instance reads it and step 4 keeps its order
 *   (the line is in the bucket before the source goes). Each line costs a rewrite of the object
 *   so far: quadratic in the lines of one project, fine for thousands of files per project;
 * - `.orig` and the derivative are server-side copies (CopyObject), their sha256 read back by
 *   streaming the copy from the store;
 * - a folder is its keys: the import folder exists while it holds an object, so an upload also
 *   writes the hidden `.ferry-folder` mark there (the walk skips hidden names) and the folder
 *   outlives its ingested files until finalize deletes every key under it;
 * - deletes are durable as they answer: there is no folder to sync.
 */
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import type { IngestPool } from '../hashing/ingest-pool.js'
import { LockTimeoutError } from '../state/locker.js'
import type { Lock, Locker } from '../state/types.js'
import { putSmallObject, readSmallObject } from '../storage/atomic.js'
import { fsIdentityOf } from '../storage/fs-object-store.js'
import {
  hasAppendable,
  hasAtomicFolders,
  hasFolderSync,
  hasLocalPaths,
  type AppendHandle,
  type ObjectInfo,
  type ObjectStore,
} from '../storage/object-store.js'
import { removeIfPresent } from '../storage/remove.js'
import type { TempFiles } from '../storage/temp-files.js'
import {
  checkUploadPath,
  csvField,
  extensionOf,
  isSupported,
  MAPPING_HEADER,
  newAssetId,
} from './names.js'

/**
 * What bulk ingest needs of its ObjectStore: the core operations. On the filesystem it uses
 * local paths (the copy workers read and write by path), appends (the mapping), folder syncs (a
 * source is gone before its journal entry goes) and folders (the import folder, removed whole by
 * finalize); without them, the ways of the header comment.
 */
export type IngestObjects = ObjectStore

/** The hidden mark that keeps an import folder in a store without folders (see above). */
const FOLDER_MARK = '.ferry-folder'

export interface BulkIngestOptions {
  /**
   * Keys `<sc>/import/…`, `<sc>/mapping-<sc>.csv`, `<sc>/assets/…`, `<sc>/journal/…` (the data
   * directory's ingest/ area).
   */
  readonly objects: IngestObjects
  /** Names its temp files (the data directory's tmp/, beside `objects`). */
  readonly temps: TempFiles
  readonly locker: Locker
  readonly pool: IngestPool
  readonly log: Logger
  /** Lifetime of the project lock unless renewed, ms (the Locker renews it every third). */
  readonly lockTtlMs: number
  /** How long a request waits for a busy project lock before it answers "in progress", ms. */
  readonly lockWaitMs: number
  /** How long an upload's publish waits behind other uploads' publishes, ms. */
  readonly publishWaitMs: number
  /** Files of one ingest processed at once. */
  readonly maxParallel: number
  /**
   * Test hook: awaited by start and finalize after their first look at the import folder and
   * before they take the project lock, so a test can run the other operation in that gap.
   */
  readonly beforeJobLock?: (sc: string, op: 'start' | 'finalize') => Promise<void>
}

/**
 * A journal entry. The source's identity is the store's etag; entries also carry (and entries
 * written before etags carry only) the filesystem identity `ino`, `size`, `mtimeMs`, so versions
 * on either side of the change recognise each other's entries.
 */
interface JournalEntry {
  readonly file: string
  readonly id: string
  readonly ext: string
  readonly etag?: string
  readonly ino?: number
  readonly size?: number
  readonly mtimeMs?: number
}

export interface AssetInfo {
  readonly internalFilename: string
  readonly originalInternalFilename: string
  readonly originalFilename: string
  readonly checksumOriginal: string
  readonly checksumDerivative: string
}

/** What one finished run did (for logs and tests). */
export interface IngestSummary {
  readonly ingested: number
  readonly failed: number
  readonly skipped: number
  readonly stopped: boolean
}

function conflict(sc: string): UploadError {
  return new UploadError('ERR_LOCKED', `A bulk ingest is currently in progress for project ${sc}.`)
}

function stopped(signal: AbortSignal): void {
  if (signal.aborted)
    throw new UploadError('ERR_CLIENT_ABORTED', 'the ingest was stopped', { cause: signal.reason })
}

export class BulkIngestService {
  readonly #o: BulkIngestOptions
  readonly #objects: IngestObjects
  /**
   * Temp files (`i-<uuid>.part`) live in `<dataDir>/tmp/` (same filesystem); the sweeper removes
   * strays of a crash.
   */
  readonly #temps: TempFiles
  readonly #closing = new AbortController()
  /**
   * Background runs started on this instance (ingest or finalize), so close() can wait for them.
   */
  readonly #running = new Set<Promise<unknown>>()

  constructor(options: BulkIngestOptions) {
    this.#o = options
    this.#objects = options.objects
    this.#temps = options.temps
  }

  /** The project's import folder (a key prefix, no trailing `/`). */
  importDir(sc: string): string {
    return `${sc}/import`
  }

  mappingPath(sc: string): string {
    return `${sc}/mapping-${sc}.csv`
  }

  assetsDir(sc: string): string {
    return `${sc}/assets`
  }

  #journalDir(sc: string): string {
    return `${sc}/journal`
  }

  /**
   * The project mutex: held by a run for its whole length, by an upload's publish and a mapping
   * read briefly.
   */
  #lockKey(sc: string): string {
    return `ingest:project:${sc}`
  }

  /**
   * Held next to the mutex by an ingest or finalize run only, so uploads can tell a run from each
   * other.
   */
  #jobKey(sc: string): string {
    return `ingest:job:${sc}`
  }

  /** Throws ERR_LOCKED while any instance runs an ingest or finalize of the project. */
  async assertIdle(sc: string): Promise<void> {
    if (await this.#o.locker.isHeld(this.#jobKey(sc))) throw conflict(sc)
  }

  /**
   * Where an upload of `file` lands, relative to the import folder; throws ERR_INVALID_PATH /
   * ERR_PATH_TOO_LONG.
   */
  uploadTarget(_sc: string, file: string): { readonly relPath: string } {
    return { relPath: checkUploadPath(file).join('/') }
  }

  /**
   * Publishes an upload's temp file at `relPath` in the import folder (replacing a file there).
   * Run it under withPublishLock. Something in the way (a folder at the path, a file where a
   * folder is needed) is the errno error (EISDIR, ENOTDIR…); the temp file is then left to the
   * caller.
   */
  async publishUpload(sc: string, relPath: string, tempPath: string): Promise<void> {
    if (!hasAtomicFolders(this.#objects)) {
      const mark = `${this.importDir(sc)}/${FOLDER_MARK}`
      if ((await this.#objects.head(mark)) === null) await this.#writeAtomic(mark, '')
    }
    await this.#objects.put(`${this.importDir(sc)}/${relPath}`, tempPath, { mode: 'overwrite' })
  }

  /**
   * Runs an upload's publish under the project mutex, so no file lands while a run reads the
   * import folder (a file replaced mid-ingest would otherwise be removed as the old one's source).
   * Other publishes hold the mutex for a moment only, so this waits for them up to
   * publishWaitMs; it gives up at once with ERR_LOCKED when an ingest or finalize runs.
   */
  async withPublishLock<T>(sc: string, fn: () => Promise<T>): Promise<T> {
    await this.assertIdle(sc)
    let lock: Lock
    try {
      // Woken when the mutex is released, and when a run takes it (#acquireJob notifies): the
      // recheck then answers "in progress" at once instead of waiting out the run.
      lock = await this.#o.locker.acquire(this.#lockKey(sc), {
        ttlMs: this.#o.lockTtlMs,
        waitMs: this.#o.publishWaitMs,
        recheck: () => this.assertIdle(sc),
      })
    } catch (err) {
      throw err instanceof LockTimeoutError ? conflict(sc) : err
    }
    try {
      return await fn()
    } finally {
      await lock.release()
    }
  }

  async #acquire(sc: string): Promise<Lock> {
    try {
      const o = { ttlMs: this.#o.lockTtlMs, waitMs: this.#o.lockWaitMs }
      return await this.#o.locker.acquire(this.#lockKey(sc), o)
    } catch (err) {
      throw err instanceof LockTimeoutError ? conflict(sc) : err
    }
  }

  /** The mutex and the job marker for a background run; both renewed until released. */
  async #acquireJob(sc: string): Promise<Lock> {
    const mutex = await this.#acquire(sc)
    const job = await this.#o.locker
      .tryAcquire(this.#jobKey(sc), this.#o.lockTtlMs)
      .catch(async (err: unknown) => {
        await mutex.release()
        throw err
      })
    if (job === null) {
      // A marker without the mutex: a run whose mutex was taken over is still winding down.
      await mutex.release()
      throw conflict(sc)
    }
    // Uploads waiting for the mutex look again and see the marker: they answer "in progress".
    this.#o.locker.notifyWaiters(this.#lockKey(sc)).catch(() => {})
    return {
      key: mutex.key,
      token: mutex.token,
      signal: AbortSignal.any([mutex.signal, job.signal]),
      check: async () => {
        await mutex.check()
        await job.check()
      },
      release: async () => {
        await job.release().catch(() => {})
        await mutex.release()
      },
    }
  }

  async #requireImportDir(sc: string): Promise<void> {
    if (!(await this.#hasFolder(this.importDir(sc)))) {
      throw new UploadError('ERR_NOT_FOUND', `no import folder for project ${sc}`, {
        detail: { kind: 'not-found', resource: 'import-folder', id: sc },
      })
    }
  }

  /**
   * Starts an ingest of the project's import folder in the background and answers once it holds
   * the project lock. ERR_NOT_FOUND without an import folder, ERR_LOCKED while one runs.
   * `onDone` hears how the run ended (tests, logs).
   */
  async start(sc: string, onDone?: (s: IngestSummary) => void): Promise<void> {
    const lock = await this.#lockWithImportDir(sc, 'start')
    this.#background(
      this.#ingest(sc, lock).then((s) => {
        onDone?.(s)
        return s
      }),
      lock,
    )
  }

  /**
   * Takes the project lock and, in the background, removes the import folder, the mapping file
   * and the assets of files whose ingest never finished. Completed assets stay.
   */
  async finalize(sc: string): Promise<void> {
    const lock = await this.#lockWithImportDir(sc, 'finalize')
    this.#background(this.#finalize(sc), lock)
  }

  /**
   * The job lock, taken only while the import folder exists. The first look answers 404 without
   * touching the lock; the second, under the lock, is the one that counts: a finalize (on any
   * instance) may have removed the folder between the first look and the lock, and a start that
   * went on would create a header-only mapping that no finalize could remove (it needs the folder).
   */
  async #lockWithImportDir(sc: string, op: 'start' | 'finalize'): Promise<Lock> {
    await this.#requireImportDir(sc)
    await this.#o.beforeJobLock?.(sc, op)
    const lock = await this.#acquireJob(sc)
    try {
      await this.#requireImportDir(sc)
    } catch (err) {
      await lock.release().catch(() => {})
      throw err
    }
    return lock
  }

  /**
   * The mapping as dsp-ingest answers it: complete lines joined with `\n`, no final newline.
   * Read under the project lock. ERR_NOT_FOUND when there is no mapping file.
   */
  async readMapping(sc: string): Promise<string> {
    const lock = await this.#acquire(sc)
    try {
      const text = await readSmallObject(this.#objects, this.mappingPath(sc))
      if (text === null) {
        throw new UploadError('ERR_NOT_FOUND', `no mapping for project ${sc}`, {
          detail: { kind: 'not-found', resource: 'project', id: sc },
        })
      }
      const end = text.lastIndexOf('\n') // a torn last line (crash mid-append) is not shown
      return end < 0 ? MAPPING_HEADER : text.slice(0, end)
    } finally {
      await lock.release()
    }
  }

  #background(run: Promise<unknown>, lock: Lock): void {
    const p = run
      .catch((err: unknown) => this.#o.log.error({ err }, 'bulk ingest background run failed'))
      .finally(async () => {
        await lock.release().catch(() => {})
        this.#running.delete(p)
      })
    this.#running.add(p)
  }

  /** Stops the runs of this instance at their next step and waits for them (locks released). */
  async close(): Promise<void> {
    this.#closing.abort(new Error('shutting down'))
    await Promise.allSettled([...this.#running])
  }

  // ---- the ingest run ----

  async #ingest(sc: string, lock: Lock): Promise<IngestSummary> {
    const log = this.#o.log.child({ project: sc })
    const signal = AbortSignal.any([lock.signal, this.#closing.signal])
    const mapped = await this.#prepareMapping(sc)
    await this.#settleJournal(sc, mapped, log, true)
    const { files, skipped } = await this.#walk(sc, log)
    log.info({ files: files.length, skipped }, 'bulk ingest started')
    const fh = await this.#openMapping(this.mappingPath(sc))
    let appends: Promise<void> = Promise.resolve()
    const append = (line: string) => {
      // One writer per run: appends are chained so lines never interleave and each is synced in
      // order.
      const p = appends.then(async () => {
        // The fence: a run that stalled past its project lock must not append to a mapping that
        // a finalize (or another run) now owns.
        await lock.check()
        await fh.append(`${line}\n`)
      })
      appends = p.catch(() => {})
      return p
    }
    let ingested = 0
    let failed = 0
    let next = 0
    const lane = async () => {
      while (next < files.length && !signal.aborted) {
        const rel = files[next++]!
        try {
          if (await this.#ingestOne(sc, rel, mapped, append, signal)) ingested++
        } catch (err) {
          if (signal.aborted) break // not the file's fault: the next run finishes it
          failed++
          log.error({ err, file: rel }, 'file not ingested; it stays in the import folder')
        }
      }
    }
    try {
      await Promise.all(
        Array.from({ length: Math.max(1, Math.min(this.#o.maxParallel, files.length)) }, lane),
      )
      await appends
    } finally {
      await fh.close()
    }
    const summary = { ingested, failed, skipped, stopped: signal.aborted }
    if (signal.aborted)
      log.warn({ ...summary, reason: String(signal.reason) }, 'bulk ingest stopped before the end')
    else log.info(summary, 'bulk ingest finished')
    return summary
  }

  /** Non-hidden regular files under the import folder (relative, `/`-separated), sorted. */
  async #walk(sc: string, log: Logger): Promise<{ files: string[]; skipped: number }> {
    const files: string[] = []
    let skipped = 0
    const top = `${this.importDir(sc)}/`
    for await (const e of this.#objects.list(top)) {
      const r = e.key.slice(top.length)
      // Hidden names are skipped, as dsp-ingest skips them.
      if (e.kind !== 'object' || r.split('/').some((n) => n.startsWith('.'))) continue
      if (isSupported(r.slice(r.lastIndexOf('/') + 1))) files.push(r)
      else {
        skipped++
        log.warn({ file: r }, 'unsupported file type; left in the import folder')
      }
    }
    return { files: files.sort(), skipped }
  }

  /**
   * Ensures the mapping file exists with its header, cuts a torn last line and answers the
   * derivative names it already lists.
   */
  async #prepareMapping(sc: string): Promise<Set<string>> {
    const path = this.mappingPath(sc)
    const text = (await readSmallObject(this.#objects, path)) ?? ''
    const cut = text.lastIndexOf('\n') + 1
    if (cut === 0) {
      await this.#writeAtomic(path, `${MAPPING_HEADER}\n`)
      return new Set()
    }
    if (cut < text.length) {
      const objects = this.#objects
      if (hasAppendable(objects)) {
        await objects.truncate(path, Buffer.byteLength(text.slice(0, cut)))
      } else {
        await this.#writeAtomic(path, text.slice(0, cut))
      }
    }
    return derivativesIn(text.slice(0, cut))
  }

  #journalPath(sc: string, rel: string): string {
    const name = createHash('sha256').update(rel).digest('hex').slice(0, 40)
    return `${this.#journalDir(sc)}/${name}.json`
  }

  #assetFiles(sc: string, id: string, ext: string) {
    const lower = id.toLowerCase()
    const dir = `${this.assetsDir(sc)}/${lower.slice(0, 2)}/${lower.slice(2, 4)}`
    const derivative = `${id}.${ext}`
    return {
      derivativeName: derivative,
      origName: `${derivative}.orig`,
      orig: `${dir}/${derivative}.orig`,
      derivative: `${dir}/${derivative}`,
      info: `${dir}/${id}.info`,
    }
  }

  /** Answers true when this call finished the file (false: it vanished before we began). */
  async #ingestOne(
    sc: string,
    rel: string,
    mapped: Set<string>,
    append: (line: string) => Promise<void>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const source = `${this.importDir(sc)}/${rel}`
    const st = await this.#objects.head(source).catch(() => null)
    if (st === null) return false
    const jPath = this.#journalPath(sc, rel)
    let entry = await this.#readJournal(jPath)
    if (entry !== null && (entry.file !== rel || !sameSource(entry, st))) {
      await this.#settle(sc, entry, jPath, mapped)
      entry = null
    }
    if (entry === null) {
      const name = rel.slice(rel.lastIndexOf('/') + 1)
      const ext = extensionOf(name) ?? 'bin'
      entry = { file: rel, id: newAssetId(), ext, etag: st.etag, ...fsIdentityOf(st.etag) }
      await this.#writeAtomic(jPath, JSON.stringify(entry))
    }
    const a = this.#assetFiles(sc, entry.id, entry.ext)
    try {
      stopped(signal)
      if ((await this.#objects.head(a.info)) === null) {
        const orig = await this.#copyIn(source, a.orig, signal)
        stopped(signal)
        // The derivative: here the original's bytes under the asset's name (no conversion).
        const deriv = await this.#copyIn(a.orig, a.derivative, signal)
        stopped(signal)
        const info: AssetInfo = {
          internalFilename: a.derivativeName,
          originalInternalFilename: a.origName,
          originalFilename: rel.slice(rel.lastIndexOf('/') + 1),
          checksumOriginal: orig.sha256,
          checksumDerivative: deriv.sha256,
        }
        await this.#writeAtomic(a.info, JSON.stringify(info))
      }
      stopped(signal)
      if (!mapped.has(a.derivativeName)) {
        await append(`${csvField(rel)},${a.derivativeName}`)
        mapped.add(a.derivativeName)
      }
    } catch (err) {
      // A stopped run leaves everything for the next one; a real failure cleans up its asset.
      if (!signal.aborted && !mapped.has(a.derivativeName))
        await this.#settle(sc, entry, jPath, mapped).catch(() => {})
      throw err
    }
    await this.#objects.delete(source)
    await this.#syncFolderOf(source)
    await this.#objects.delete(jPath)
    return true
  }

  /**
   * Ends a journal entry that will not be resumed: if its asset is not in the mapping, its asset
   * files go (info first, so a half-removed asset never looks complete); then the entry goes.
   */
  async #settle(
    sc: string,
    entry: JournalEntry,
    jPath: string,
    mapped: Set<string>,
  ): Promise<void> {
    const a = this.#assetFiles(sc, entry.id, entry.ext)
    if (!mapped.has(a.derivativeName)) {
      for (const f of [a.info, a.derivative, a.orig]) await this.#objects.delete(f)
      await this.#syncFolderOf(a.info).catch(() => {})
    }
    await this.#objects.delete(jPath)
  }

  /**
   * Journal entries left by a stopped run. `keepLive`: entries whose source is still there are
   * left for the run to resume; otherwise (finalize) every entry is settled.
   */
  async #settleJournal(
    sc: string,
    mapped: Set<string>,
    log: Logger,
    keepLive: boolean,
  ): Promise<void> {
    const names: string[] = []
    for await (const e of this.#objects.list(`${this.#journalDir(sc)}/`, { delimiter: true })) {
      if (e.kind === 'object') names.push(e.key)
    }
    let settled = 0
    for (const jPath of names) {
      const entry = await this.#readJournal(jPath)
      if (entry === null) {
        await this.#objects.delete(jPath)
        continue
      }
      if (keepLive) {
        const st = await this.#objects.head(`${this.importDir(sc)}/${entry.file}`).catch(() => null)
        if (st !== null && sameSource(entry, st)) continue
      }
      await this.#settle(sc, entry, jPath, mapped)
      settled++
    }
    if (settled > 0) log.info({ settled }, 'journal entries of an earlier run settled')
  }

  /**
   * A worker copies `source` to a temp file (fsynced there), published at `target` (overwrite).
   * Without local files: a server-side copy, then its sha256 read back from the store.
   */
  async #copyIn(
    source: string,
    target: string,
    signal: AbortSignal,
  ): Promise<{ readonly sha256: string }> {
    const objects = this.#objects
    if (!hasLocalPaths(objects)) {
      await objects.copy(source, target, { mode: 'overwrite' })
      stopped(signal)
      return { sha256: await sha256Of(await objects.get(target), signal) }
    }
    const tmp = this.#temps.ingestPath()
    try {
      const r = await this.#o.pool.copyFile(objects.localPath(source), tmp, signal)
      await this.#objects.put(target, tmp, { mode: 'overwrite', alreadySynced: true })
      return r
    } catch (err) {
      await removeIfPresent(tmp)
      throw err
    }
  }

  /** Writes a small object whole and renames it into place (fsync file, rename, fsync dir). */
  async #writeAtomic(target: string, text: string): Promise<void> {
    const tempPath = this.#temps.ingestPath()
    await putSmallObject(this.#objects, target, text, { tempPath, overwrite: true })
  }

  async #readJournal(key: string): Promise<JournalEntry | null> {
    return parseJournal(await readSmallObject(this.#objects, key).catch(() => null))
  }

  // ---- finalize ----

  async #finalize(sc: string): Promise<void> {
    const log = this.#o.log.child({ project: sc })
    let mapped = new Set<string>()
    const mapping = await readSmallObject(this.#objects, this.mappingPath(sc))
    if (mapping !== null) mapped = derivativesIn(mapping)
    else log.warn('finalize: no mapping file')
    await this.#settleJournal(sc, mapped, log, false)
    // Mapping before the import folder: a crash in between leaves the folder, so finalize can run
    // again.
    await this.#removeFolder(this.#journalDir(sc))
    await this.#objects.delete(this.mappingPath(sc))
    await this.#removeFolder(this.importDir(sc))
    await this.#syncFolderOf(this.mappingPath(sc)).catch(() => {})
    log.info('bulk ingest finalized: import folder and mapping removed')
  }

  // ---- stores without the filesystem capabilities (see the header) ----

  async #hasFolder(prefix: string): Promise<boolean> {
    const objects = this.#objects
    if (hasAtomicFolders(objects)) return objects.hasFolder(prefix)
    for await (const e of objects.list(`${prefix}/`)) if (e.kind === 'object') return true
    return false
  }

  /** Removes a folder whole; without folders, every key under it (the mark last). */
  async #removeFolder(prefix: string): Promise<void> {
    const objects = this.#objects
    if (hasAtomicFolders(objects)) {
      await objects.removeFolder(prefix)
      return
    }
    const keys: string[] = []
    for await (const e of objects.list(`${prefix}/`)) if (e.kind === 'object') keys.push(e.key)
    const mark = `${prefix}/${FOLDER_MARK}`
    for (const key of keys) if (key !== mark) await objects.delete(key)
    await objects.delete(mark)
  }

  async #syncFolderOf(key: string): Promise<void> {
    const objects = this.#objects
    if (hasFolderSync(objects)) await objects.syncFolderOf(key)
  }

  /** The mapping opened for appends; without them, rewritten whole per line (see the header). */
  async #openMapping(key: string): Promise<AppendHandle> {
    const objects = this.#objects
    if (hasAppendable(objects)) return objects.openAppend(key)
    let text = (await readSmallObject(objects, key)) ?? ''
    return {
      append: async (data) => {
        const next = text + (typeof data === 'string' ? data : Buffer.from(data).toString('utf8'))
        await this.#writeAtomic(key, next)
        text = next
      },
      close: async () => {},
    }
  }
}

/** The sha256 (hex) of a stream's bytes. */
async function sha256Of(stream: Readable, signal: AbortSignal): Promise<string> {
  const h = createHash('sha256')
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      stopped(signal)
      h.update(chunk)
    }
  } finally {
    stream.destroy()
  }
  return h.digest('hex')
}

/** Derivative names (last field) of complete mapping lines after the header. */
function derivativesIn(text: string): Set<string> {
  const out = new Set<string>()
  const lines = text.split('\n')
  if (text.length > 0 && !text.endsWith('\n')) lines.pop() // torn last line
  for (const line of lines.slice(1)) {
    if (line === '') continue
    out.add(line.slice(line.lastIndexOf(',') + 1))
  }
  return out
}

/** Whether the entry describes this version of its source. */
function sameSource(e: JournalEntry, st: ObjectInfo): boolean {
  if (e.etag !== undefined) return e.etag === st.etag
  const id = fsIdentityOf(st.etag)
  return id !== null && e.ino === id.ino && e.size === id.size && e.mtimeMs === id.mtimeMs
}

function parseJournal(text: string | null): JournalEntry | null {
  if (text === null) return null
  try {
    const o = JSON.parse(text) as Partial<JournalEntry>
    if (typeof o.file !== 'string' || typeof o.id !== 'string' || typeof o.ext !== 'string')
      return null
    const legacy =
      typeof o.ino === 'number' && typeof o.size === 'number' && typeof o.mtimeMs === 'number'
    if (typeof o.etag !== 'string' && !legacy) return null
    return o as JournalEntry
  } catch {
    return null
  }
}
