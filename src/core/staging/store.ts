/**
 * The lakeFS staging area on disk: physical addresses handed out for uploads, the bytes PUT to
 * them, and objects linked on branches. Protocol-neutral; the HTTP edge is src/http/staging.
 *
 *   <dataDir>/staging/<repo>/
 *     data/<partition>/<id>,<sig>            bytes PUT to a physical address (replaced by rename)
 *     data/<partition>/<id>,<sig>.digests    {ino, size, mtimeNs, md5, sha256} of that upload
 *     blobs/<xx>/<uuid>                      a hard link to the inode a link took (immutable)
 *     branches/<branch>/objects/<a>.d/<b>.d/<name>.o   the linked entry (JSON)
 *
 * Why the link takes a hard link: a presigned URL stays valid after the link, and a second PUT
 * replaces the address by rename, i.e. with a new inode. The linked object keeps the inode it was
 * checked against, so its bytes never change under it.
 *
 * On a store without hard links (a bucket, FERRY_STORAGE=s3) the blob is a server-side copy of
 * the address (ObjectStore.copy: CopyObject, no byte through Ferry), equally immutable once
 * made. The address's etag is read before and after the copy: when both equal the sidecar's,
 * the copy is of the upload the sidecar describes and its digests are used; otherwise the blob
 * (which nothing writes again) is hashed by streaming it from the store. Either way what is
 * checked is what the blob holds, short of an A-B-A replacement of the address inside the copy
 * (two PUTs by the URL's holder within one link, the second restoring bytes with the first's
 * etag), which the etag cannot tell.
 *
 * Why `.d` and `.o`: lakeFS keys may have both `a` and `a/b`; as plain files and folders they would
 * collide. Folder names end in `.d`, entry names in `.o`, so no name can be both.
 *
 * Create-if-absent (`If-None-Match: *`) is decided by link(2) of the entry file: the kernel lets
 * exactly one of two racing links create the name, on every instance sharing the data directory,
 * with no lock. A plain link replaces the entry by rename and then removes the blob of the entry
 * it replaced. Two overwrites racing on one path may leave one unreferenced blob (never a missing
 * one: each blob belongs to exactly one entry, and only the entry's replacer removes it).
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { LakeFsConfig, LakeFsRepository } from '../../config/config.js'
import { UploadError } from '../errors.js'
import type { HashPool } from '../hashing/hash-pool.js'
import { checkRelativePath, type PathRules } from '../paths.js'
import { putSmallObject, readSmallJson } from '../storage/atomic.js'
import {
  hasFolderSync,
  hasHardLinkSnapshots,
  hasLocalPaths,
  type FolderSync,
  type HardLinkSnapshots,
  type LocalPaths,
  type ObjectInfo,
  type ObjectStore,
} from '../storage/object-store.js'
import type { UploadService } from '../uploads/uploads.js'
import {
  checkPresigned,
  makeSignedAddress,
  presignQuery,
  SIGNED_ADDRESS_RE,
  verifySignedAddress,
  type PresignRefusal,
} from './signing.js'

/** lakeFS keys are at most 1024 bytes; one name leaves room for the `.d`/`.o` suffix. */
export const STAGING_PATH_RULES: PathRules = Object.freeze({ maxBytes: 1024, maxSegmentBytes: 253 })

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream'

export interface ObjectStats {
  readonly checksum: string
  readonly content_type: string
  readonly metadata: Readonly<Record<string, string>>
  readonly mtime: number
  readonly path: string
  readonly path_type: 'object'
  readonly physical_address: string
  readonly size_bytes: number
}

/** What a link stores (the entry file). */
interface Entry {
  readonly v: 1
  readonly stats: Omit<ObjectStats, 'path' | 'path_type'>
  /** Relative to the repository folder; null for an external address (no bytes here). */
  readonly blob: string | null
  readonly md5: string | null
  readonly sha256: string | null
}

/**
 * The `.digests` sidecar. `etag` is the ObjectStore's etag of the upload it describes; sidecars
 * written before there were etags carry the filesystem's identity as `ino`, `size`, `mtimeNs`
 * instead, which is what FsObjectStore's etag (`<ino>:<size>:<mtimeNs>`) is made of.
 */
interface Digests {
  readonly etag?: string
  readonly ino?: string
  readonly size?: string
  readonly mtimeNs?: string
  readonly md5: string
  readonly sha256: string
  /** A multipart upload's S3-style ETag (`<md5 of the part md5s>-<parts>`), also linkable. */
  readonly multipartEtag?: string
}

/** A finished file to stage at an address (see `stage`). */
export interface StagedFile {
  /** A temp file from the upload service, consumed (published or discarded). */
  readonly tempPath: string
  readonly md5: string
  readonly sha256: string
  readonly etag?: string
}

const etagOf = (d: Digests) => d.etag ?? `${d.ino}:${d.size}:${d.mtimeNs}`

/**
 * What staging needs of its ObjectStore: the core operations. With hard-link snapshots, folder
 * syncs and local paths (the data directory) a link takes a hard link and the hash pool reads it
 * by path; without them (a bucket) it takes a server-side copy and streams it to hash it.
 */
export type StagingObjects = ObjectStore

type LinkingObjects = ObjectStore & HardLinkSnapshots & FolderSync & LocalPaths

function canHardLink(s: ObjectStore): s is LinkingObjects {
  return hasHardLinkSnapshots(s) && hasFolderSync(s) && hasLocalPaths(s)
}

export interface NewAddress {
  /** `<storage namespace>/data/<partition>/<id>,<sig>` */
  readonly physicalAddress: string
  /** `data/<partition>/<id>,<sig>` */
  readonly relative: string
  /** Set when a presigned URL was asked for: its query string and expiry (unix s). */
  readonly presign: { readonly query: string; readonly expiresSec: number } | null
}

export interface ReceivedUpload {
  readonly bytes: number
  /** Lower-case hex. */
  readonly md5: string
  readonly sha256: string
}

export interface LinkInput {
  readonly repository: string
  readonly branch: string
  readonly path: string
  readonly physicalAddress: string
  readonly checksum: string
  readonly sizeBytes: number
  readonly userMetadata: Readonly<Record<string, string>>
  readonly contentType: string | null
  readonly mtimeSec: number | null
  /** `If-None-Match: *`: fail with ERR_PRECONDITION_FAILED when the path has an object. */
  readonly createOnly: boolean
}

export interface StagingStoreOptions {
  readonly config: LakeFsConfig
  /** Keys `<repo>/data/…`, `<repo>/blobs/…`, `<repo>/branches/…` (the staging/ area). */
  readonly objects: StagingObjects
  readonly uploads: UploadService
  readonly pool: HashPool
  readonly maxUploadBytes: number
  /** The signing clock, ms; tests pass their own. */
  readonly now?: () => number
}

export class StagingStore {
  readonly #o: StagingStoreOptions
  readonly #repos: ReadonlyMap<string, LakeFsRepository>
  readonly #now: () => number
  readonly #objects: StagingObjects

  constructor(o: StagingStoreOptions) {
    this.#o = o
    this.#objects = o.objects
    this.#repos = new Map(o.config.repositories.map((r) => [r.name, r]))
    this.#now = o.now ?? Date.now
  }

  /** The configured repository, or ERR_NOT_FOUND "repository not found". */
  repository(name: string): LakeFsRepository {
    const repo = this.#repos.get(name)
    if (repo === undefined) throw new UploadError('ERR_NOT_FOUND', 'repository not found')
    return repo
  }

  /**
   * A new signed address for `path` on `branch`. The branch is not checked here (lakeFS does not
   * either); the link checks it. The path is checked now, since an address for a path that can
   * never be linked is of no use.
   */
  newAddress(repository: string, branch: string, path: string, presign: boolean): NewAddress {
    const repo = this.repository(repository)
    checkRelativePath(path, STAGING_PATH_RULES)
    const nowMs = this.#now()
    const relative = makeSignedAddress(
      this.#o.config.signingSecret,
      { repository, branch, path },
      nowMs,
    )
    let p: NewAddress['presign'] = null
    if (presign) {
      const expiresSec = Math.floor(nowMs / 1000) + this.#o.config.presignTtlSec
      p = {
        query: presignQuery(this.#o.config.signingSecret, repository, relative, expiresSec),
        expiresSec,
      }
    }
    return { physicalAddress: `${namespaceOf(repo)}/${relative}`, relative, presign: p }
  }

  /** Checks a presigned PUT's signature and expiry (null: authorized). */
  checkPresigned(
    repository: string,
    relative: string,
    expires: string | null,
    signature: string | null,
  ): PresignRefusal | null {
    return checkPresigned(
      this.#o.config.signingSecret,
      repository,
      relative,
      expires,
      signature,
      this.#now(),
    )
  }

  /**
   * Streams an upload into the address's file: hashes md5 and sha256 in the same pool pass,
   * checks `contentMd5` (base64) when the client sent one, then replaces the file atomically
   * (S3 semantics: the last complete PUT wins; a broken one changes nothing).
   */
  async receive(
    repository: string,
    relative: string,
    body: {
      readonly stream: Readable
      readonly length: number | null
      readonly done: Promise<void>
    },
    opts: { readonly contentMd5: string | null; readonly signal: AbortSignal },
  ): Promise<ReceivedUpload> {
    this.repository(repository)
    if (!SIGNED_ADDRESS_RE.test(relative))
      throw new UploadError('ERR_INVALID_PATH', 'not a staging address')
    const target = this.#dataKey(repository, relative)
    const got = await this.#o.uploads.receiveWhole(body.stream, {
      maxBytes: this.#o.maxUploadBytes,
      ...(body.length !== null ? { expectedBytes: body.length } : {}),
      algos: ['md5', 'sha256'],
      signal: opts.signal,
    })
    try {
      await body.done
      const md5 = got.digests.md5
      const sha256 = got.digests.sha256
      if (md5 === undefined || sha256 === undefined)
        throw new Error('hash pool answered without md5 or sha256')
      if (
        opts.contentMd5 !== null &&
        Buffer.from(md5, 'hex').toString('base64') !== opts.contentMd5.trim()
      ) {
        throw new UploadError(
          'ERR_CHECKSUM_MISMATCH',
          'The Content-MD5 you specified did not match what we received.',
        )
      }
      const published = await this.#publish(target, got.tempPath, sha256)
      const digests: Digests = { etag: published.etag, md5, sha256 }
      await this.#writeSmall(`${target}.digests`, JSON.stringify(digests), true)
      return { bytes: got.bytes, md5, sha256 }
    } catch (err) {
      await this.#o.uploads.discard(got.tempPath)
      throw err
    }
  }

  /**
   * Stages a file that is already complete (a joined multipart upload) at an address, as a
   * presigned PUT would have: replaces the address's file atomically and records its digests,
   * so `link` checks against them without reading the bytes again.
   */
  async stage(repository: string, relative: string, file: StagedFile): Promise<void> {
    this.repository(repository)
    if (!SIGNED_ADDRESS_RE.test(relative)) {
      throw new UploadError('ERR_INVALID_PATH', 'not a staging address')
    }
    const target = this.#dataKey(repository, relative)
    const published = await this.#publish(target, file.tempPath, file.sha256)
    const digests: Digests = {
      etag: published.etag,
      md5: file.md5,
      sha256: file.sha256,
      ...(file.etag !== undefined ? { multipartEtag: file.etag } : {}),
    }
    await this.#writeSmall(`${target}.digests`, JSON.stringify(digests), true)
  }

  /**
   * Links a physical address at `path` on `branch` (lakeFS linkPhysicalAddress). Checks, in order:
   * the address (signed for this repository, branch and path, not expired; or external, if
   * allowed), the checksum is present, the path, the branch, the staged bytes (present: else
   * ERR_DEPENDENCY_MISSING; `sizeBytes` long; `checksum` their md5 as hex or base64, or their
   * sha256), then publishes the entry atomically (create-only: ERR_PRECONDITION_FAILED if taken).
   */
  async link(input: LinkInput): Promise<ObjectStats> {
    const repo = this.repository(input.repository)
    const ns = namespaceOf(repo)
    const internalPrefix = `${ns}/data/`
    const internal = input.physicalAddress.startsWith(internalPrefix)
    const relative = internal ? input.physicalAddress.slice(ns.length + 1) : null
    if (relative !== null) {
      verifySignedAddress(
        this.#o.config.signingSecret,
        { repository: repo.name, branch: input.branch, path: input.path },
        relative,
        this.#now(),
      )
    } else if (!this.#o.config.allowExternalAddresses) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        `physical address is not a signed address in the repository's storage namespace (${ns}/data/…); external addresses are not allowed`,
      )
    }
    const checksum = input.checksum.replace(/["\s]/g, '')
    if (checksum === '') throw new UploadError('ERR_INVALID_ARGUMENT', 'checksum is required')
    if (!Number.isSafeInteger(input.sizeBytes) || input.sizeBytes < 0) {
      throw new UploadError('ERR_INVALID_ARGUMENT', 'size_bytes must be a whole number of bytes')
    }
    const segments = checkRelativePath(input.path, STAGING_PATH_RULES)
    if (!repo.branches.includes(input.branch))
      throw new UploadError('ERR_NOT_FOUND', 'branch not found')

    let blob: string | null = null
    let digests: { md5: string; sha256: string } | null = null
    if (relative !== null) {
      blob = `blobs/${randomUUID().slice(0, 2)}/${randomUUID()}`
      const dataKey = this.#dataKey(repo.name, relative)
      digests = await this.#snapshot(dataKey, `${repo.name}/${blob}`, input.sizeBytes, checksum)
    }
    const blobKey = blob === null ? null : `${repo.name}/${blob}`
    try {
      const entry: Entry = {
        v: 1,
        stats: {
          checksum,
          content_type: input.contentType ?? DEFAULT_CONTENT_TYPE,
          metadata: { ...input.userMetadata },
          mtime: input.mtimeSec ?? Math.floor(this.#now() / 1000),
          physical_address: input.physicalAddress,
          size_bytes: input.sizeBytes,
        },
        blob,
        md5: digests?.md5 ?? null,
        sha256: digests?.sha256 ?? null,
      }
      const target = this.#entryKey(repo.name, input.branch, segments)
      const previous = input.createOnly ? null : await this.#readEntry(target)
      try {
        await this.#writeSmall(target, JSON.stringify(entry), !input.createOnly)
      } catch (err) {
        if (err instanceof UploadError && err.code === 'ERR_ALREADY_EXISTS') {
          throw new UploadError('ERR_PRECONDITION_FAILED', 'Precondition failed')
        }
        throw err
      }
      // The replaced entry's blob belongs to no entry any more.
      if (previous?.blob) {
        await this.#objects.delete(`${repo.name}/${previous.blob}`).catch((err: unknown) => {
          // An entry naming no valid blob key: nothing to remove.
          if (!(err instanceof UploadError)) throw err
        })
      }
      const {
        checksum: c,
        content_type,
        metadata,
        mtime,
        physical_address,
        size_bytes,
      } = entry.stats
      return {
        checksum: c,
        content_type,
        metadata,
        mtime,
        path: input.path,
        path_type: 'object',
        physical_address,
        size_bytes,
      }
    } catch (err) {
      if (blobKey !== null) await this.#objects.delete(blobKey)
      throw err
    }
  }

  /**
   * Takes a snapshot of the staged file (so later PUTs cannot change what was checked), then
   * checks its size and checksum. Digests come from the upload's sidecar when it describes the
   * very upload snapshotted, else from a pass over the snapshot.
   */
  async #snapshot(
    dataKey: string,
    blobKey: string,
    sizeBytes: number,
    checksum: string,
  ): Promise<{ md5: string; sha256: string }> {
    const objects = this.#objects
    const linking = canHardLink(objects)
    // Without hard links: the address's etag before the copy, compared again after it.
    let before: ObjectInfo | null = null
    let snap: ObjectInfo
    try {
      if (linking) {
        snap = await objects.snapshot(dataKey, blobKey)
      } else {
        before = await objects.head(dataKey)
        if (before === null) throw new UploadError('ERR_NOT_FOUND', 'no object')
        // The blob key is a new UUID: no lock round trip for create-if-absent is needed.
        snap = await objects.copy(dataKey, blobKey, { mode: 'overwrite' })
      }
    } catch (err) {
      if (err instanceof UploadError && err.code === 'ERR_NOT_FOUND') {
        throw new UploadError(
          'ERR_DEPENDENCY_MISSING',
          'no object was uploaded to this physical address',
        )
      }
      throw err
    }
    try {
      if (snap.size !== sizeBytes) {
        const msg = `size_bytes ${sizeBytes} does not match the ${snap.size} bytes staged at this address`
        throw new UploadError('ERR_SIZE_MISMATCH', msg)
      }
      let d: { md5: string; sha256: string; etag?: string } | null = null
      const side = await readSmallJson<Digests>(objects, `${dataKey}.digests`)
      // The etag of the upload snapshotted: the link's own; for a copy, the address's when it
      // did not change across the copy.
      let snapEtag: string | null = snap.etag
      if (!linking) {
        const after = await objects.head(dataKey)
        snapEtag = after !== null && after.etag === before?.etag ? after.etag : null
      }
      if (side !== null && snapEtag !== null && etagOf(side) === snapEtag) {
        const etag = side.multipartEtag !== undefined ? { etag: side.multipartEtag } : {}
        d = { md5: side.md5, sha256: side.sha256, ...etag }
      } else if (linking) {
        const path = objects.localPath(blobKey)
        const h = await this.#o.pool.hashFile(path, { algos: ['md5', 'sha256'] })
        const md5 = h.digests.md5
        const sha256 = h.digests.sha256
        if (md5 === undefined || sha256 === undefined)
          throw new Error('hash pool answered without md5 or sha256')
        d = { md5, sha256 }
      } else {
        d = await hashObject(objects, blobKey, sizeBytes)
      }
      if (!checksumMatches(checksum, d)) {
        throw new UploadError(
          'ERR_CHECKSUM_MISMATCH',
          'checksum does not match the object staged at this address',
        )
      }
      if (linking) await objects.syncFolderOf(blobKey)
      return { md5: d.md5, sha256: d.sha256 }
    } catch (err) {
      await objects.delete(blobKey)
      throw err
    }
  }

  /** Publishes an upload's temp file at `key` (the last PUT wins); uploads forget its name. */
  async #publish(key: string, tempPath: string, sha256: string) {
    try {
      return await this.#objects.put(key, tempPath, { mode: 'overwrite', sha256 })
    } finally {
      await this.#o.uploads.discard(tempPath)
    }
  }

  /** Writes a small object through a temp file: replaced (rename) or created if absent (link). */
  async #writeSmall(key: string, text: string, overwrite: boolean): Promise<void> {
    const tempPath = this.#o.uploads.streamTempPath()
    try {
      await putSmallObject(this.#objects, key, text, { tempPath, overwrite })
    } finally {
      await this.#o.uploads.discard(tempPath)
    }
  }

  async #readEntry(key: string): Promise<Entry | null> {
    const e = await readSmallJson<Entry>(this.#objects, key)
    return e !== null && e.v === 1 ? e : null
  }

  #dataKey(repo: string, relative: string): string {
    return `${repo}/${relative}`
  }

  #entryKey(repo: string, branch: string, segments: readonly string[]): string {
    const names = segments.map((s, i) => (i === segments.length - 1 ? `${s}.o` : `${s}.d`))
    return [repo, 'branches', branch, 'objects', ...names].join('/')
  }
}

/**
 * MD5 and SHA-256 of an object, streamed from its store (a blob in a bucket, which has no local
 * file for the hash pool); ERR_SIZE_MISMATCH when it is not `size` bytes long.
 */
async function hashObject(
  objects: ObjectStore,
  key: string,
  size: number,
): Promise<{ md5: string; sha256: string }> {
  const md5 = createHash('md5')
  const sha256 = createHash('sha256')
  let n = 0
  for await (const chunk of (await objects.get(key)) as AsyncIterable<Buffer>) {
    md5.update(chunk)
    sha256.update(chunk)
    n += chunk.length
  }
  if (n !== size) {
    throw new UploadError('ERR_SIZE_MISMATCH', `the object staged has ${n} bytes, not ${size}`)
  }
  return { md5: md5.digest('hex'), sha256: sha256.digest('hex') }
}

/** The namespace without a trailing slash. */
function namespaceOf(repo: LakeFsRepository): string {
  return repo.storageNamespace.replace(/\/+$/, '')
}

/**
 * lakectl sends the md5 as hex (from Content-MD5 or the ETag); the web UI passes the base64
 * Content-MD5 through; sha256 hex is accepted too, and for a joined multipart upload its
 * S3-style ETag (what the completion answered as the checksum).
 */
export function checksumMatches(
  checksum: string,
  d: { readonly md5: string; readonly sha256: string; readonly etag?: string },
): boolean {
  const c = checksum.toLowerCase()
  if (c === d.md5 || c === d.sha256 || (d.etag !== undefined && c === d.etag)) return true
  return checksum === Buffer.from(d.md5, 'hex').toString('base64')
}
