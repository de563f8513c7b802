/**
 * The part grid: chunked sessions whose file ends up in an S3 bucket (FERRY_STORAGE=s3), with
 * instances on different machines, each with its own local staging directory.
 *
 * A session's file is cut into fixed cells of `cell` bytes (the last one may be short). A chunk
 * still lands in the local temp file of the instance that received it, and is acknowledged only
 * once its bytes are in the bucket, where every instance can reach them: each cell the chunk
 * covers whole is uploaded as that cell's part of the session's multipart upload, and the pieces
 * of cells it covers in part are PUT as fragment objects under the session's staging folder. A
 * cell of fragments becomes a part once all its bytes are received: by the instance whose chunk
 * completed it, or at commit at the latest; its fragments are deleted then. A client whose chunks
 * are whole cells at cell boundaries causes no fragments at all.
 *
 * Commit: every cell a part → CompleteMultipartUpload to the staging object → sha256 (the running
 * hash when this instance received every byte, else one streaming read of the staging object) →
 * a server-side copy to the final key with the sha256 and size as metadata, so the final key
 * shows nothing or the whole object → the staging object is deleted. The commit record (the
 * grid's `commit`, in the session's record) says how far a commit came: a commit that died is
 * completed by the next one (every step is repeatable), or undone by the sweeper when the session
 * expires (its multipart upload aborted, its staging objects deleted).
 *
 * Bucket keys: `<stagingPrefix><session key, URI-encoded>/<incarnation>/object` (the multipart
 * upload and the completed staging object) and `…/<incarnation>/frag/<start>-<end>`.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import type { HashAlgo } from '../hashing/hash-pool.js'
import { addRange, containsRange, type ByteRange } from '../state/range-set.js'
import type { GridState, Locker, SessionRecord, SessionStore } from '../state/types.js'
import type { GridBucket } from './grid-bucket.js'

const errName = (err: unknown) => (err as { name?: string } | null)?.name ?? ''
const status = (err: unknown) =>
  (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode ?? 0

/** The bucket answered that the key or upload does not exist. */
export const isMissing = (err: unknown): boolean =>
  ['NoSuchKey', 'NoSuchUpload', 'NotFound'].includes(errName(err)) || status(err) === 404

const MiB = 1024 * 1024
/** S3's smallest part (except the last) and most parts per upload. */
export const MIN_PART_BYTES = 5 * MiB
export const MAX_PARTS = 10_000
export const DEFAULT_PART_BYTES = 8 * MiB

export interface SessionGridOptions {
  readonly bucket: GridBucket
  readonly sessions: SessionStore
  readonly locker: Locker
  /** Session keys this grid serves (one family's key prefix, `imagestore:`). */
  readonly keyPrefix: string
  /** Bucket key prefix of the staging objects (multipart uploads, fragments); ends in `/`. */
  readonly stagingPrefix: string
  /** The bucket key a session's file is published to, from its target. */
  readonly finalKey: (target: string) => string
  /** The smallest cell, bytes (≥ 5 MiB; default 8 MiB). */
  readonly partBytes?: number
  /**
   * How old an upload or staging object no live session names must be before the sweeper removes
   * it, ms (it may belong to a session being created right now). Default 10 minutes.
   */
  readonly orphanGraceMs?: number
  readonly log: Logger
}

/** One piece of a chunk: a whole cell (a part) or an edge piece (a fragment). */
interface Piece extends ByteRange {
  readonly cell: number
  readonly whole: boolean
}

/** The cell size for a file of `total` bytes: at least `base`, at most MAX_PARTS cells. */
export function cellSize(total: number | null, base: number): number {
  if (total === null) return base
  return Math.max(base, Math.ceil(total / MAX_PARTS / MiB) * MiB)
}

/** Cell `i`'s inclusive range; with the length unknown, as if the file went on. */
export function cellRange(i: number, cell: number, total: number | null): ByteRange {
  const start = i * cell
  const end = start + cell - 1
  return { start, end: total === null ? end : Math.min(end, total - 1) }
}

/** How many cells a file of `total` bytes has. */
export const cellCount = (total: number, cell: number) => Math.ceil(total / cell)

/** Cuts a chunk into whole cells and edge fragments. */
export function piecesOf(range: ByteRange, cell: number, total: number | null): Piece[] {
  const out: Piece[] = []
  if (range.end < range.start) return out
  for (let i = Math.floor(range.start / cell); i <= Math.floor(range.end / cell); i++) {
    const c = cellRange(i, cell, total)
    const start = Math.max(range.start, c.start)
    const end = Math.min(range.end, c.end)
    out.push({ cell: i, start, end, whole: start === c.start && end === c.end })
  }
  return out
}

/** Fragments sorted; null unless they tile `range` exactly. */
function tiling(frags: readonly ByteRange[], range: ByteRange): ByteRange[] | null {
  const sorted = [...frags].sort((a, b) => a.start - b.start)
  let next = range.start
  for (const f of sorted) {
    if (f.start !== next) return null
    next = f.end + 1
  }
  return next === range.end + 1 ? sorted : null
}

const overlaps = (a: ByteRange, b: ByteRange) => a.start <= b.end && b.start <= a.end

/** Runs `fn` over `items`, at most `limit` at a time; answers in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

export class SessionGrid {
  readonly #o: SessionGridOptions
  readonly #base: number
  readonly keyPrefix: string

  constructor(o: SessionGridOptions) {
    const base = o.partBytes ?? DEFAULT_PART_BYTES
    if (!(Number.isSafeInteger(base) && base >= MIN_PART_BYTES)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        `the part size must be at least ${MIN_PART_BYTES} bytes`,
      )
    }
    this.#o = o
    this.#base = base
    this.keyPrefix = o.keyPrefix
  }

  /** Whether sessions of `key` live on this grid. */
  covers(key: string): boolean {
    return key.startsWith(this.keyPrefix)
  }

  #dir(key: string, incarnation: string): string {
    return `${this.#o.stagingPrefix}${encodeURIComponent(key)}/${incarnation}/`
  }
  #objectKey(s: { key: string; incarnation: string }): string {
    return `${this.#dir(s.key, s.incarnation)}object`
  }
  #fragKey(s: { key: string; incarnation: string }, f: ByteRange): string {
    return `${this.#dir(s.key, s.incarnation)}frag/${f.start}-${f.end}`
  }

  /**
   * The session's grid, creating its multipart upload first if it has none: under a fleet-wide
   * lock, so two instances never create two uploads for one session.
   */
  async #ensure(session: SessionRecord): Promise<GridState> {
    if (session.grid) return session.grid
    const { key, incarnation } = session
    const lock = await this.#o.locker.acquire(`s3grid:${key}`, { ttlMs: 30_000, waitMs: 30_000 })
    try {
      const cur = await this.#o.sessions.get(key)
      if (cur === null || cur.incarnation !== incarnation) {
        throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
      }
      if (cur.grid) return cur.grid
      const cell = cellSize(cur.totalBytes, this.#base)
      const uploadId = await this.#o.bucket.createUpload(this.#objectKey(cur))
      const grid: GridState = { cell, uploadId, parts: {}, frags: {} }
      const got = await this.#o.sessions.updateGrid(key, incarnation, (g) =>
        g === null ? { grid, out: grid } : { grid: 'same', out: g },
      )
      if (got === null || got.out !== grid) {
        await this.#o.bucket.abort(this.#objectKey(cur), uploadId).catch(() => {})
        if (got === null) {
          throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
        }
      }
      this.#o.log.debug({ key, cell, uploadId }, 'multipart upload created')
      return got.out
    } finally {
      await lock.release().catch(() => {})
    }
  }

  /**
   * Puts a chunk's bytes (`range` of the local file `path`) into the bucket: whole cells as
   * parts, edge pieces as fragments, and records them in the session's grid. Called before the
   * chunk is marked received: when it answers, every instance can reach the bytes.
   */
  async stage(session: SessionRecord, range: ByteRange, path: string): Promise<void> {
    if (range.end < range.start) return
    const grid = await this.#ensure(session)
    const pieces = piecesOf(range, grid.cell, session.totalBytes)
    const objectKey = this.#objectKey(session)
    const staged = await mapLimit(pieces, 3, async (p) => {
      const body = createReadStream(path, { start: p.start, end: p.end })
      const bytes = p.end - p.start + 1
      if (p.whole) {
        const etag = await this.#o.bucket.uploadPart(
          objectKey,
          grid.uploadId,
          p.cell + 1,
          body,
          bytes,
        )
        return { ...p, etag }
      }
      await this.#o.bucket.put(this.#fragKey(session, p), body, bytes)
      return { ...p, etag: null }
    })
    const got = await this.#o.sessions.updateGrid(session.key, session.incarnation, (g) => {
      if (g === null || g.uploadId !== grid.uploadId) return { grid: 'same', out: false }
      const parts: Record<string, string> = { ...g.parts }
      const frags: Record<string, readonly ByteRange[]> = { ...g.frags }
      // The latest staging of a cell's bytes wins: a part supersedes the cell's fragments; a
      // fragment, the cell's part and the fragments it overlaps (an earlier send of those bytes
      // that was never marked received).
      for (const p of staged) {
        const c = String(p.cell)
        if (p.etag !== null) {
          parts[c] = p.etag
          delete frags[c]
        } else {
          delete parts[c]
          const f = { start: p.start, end: p.end }
          frags[c] = [...(frags[c] ?? []).filter((x) => !overlaps(x, f)), f]
        }
      }
      return { grid: { ...g, parts, frags }, out: true }
    })
    if (got === null || !got.out) {
      throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
    }
  }

  /**
   * After a chunk was marked received: the cells it touched in part that are now received whole
   * become parts. Best effort (the commit assembles what is left): failures are logged.
   */
  async settle(done: SessionRecord, range: ByteRange): Promise<void> {
    const grid = done.grid
    if (!grid || range.end < range.start) return
    for (const p of piecesOf(range, grid.cell, done.totalBytes)) {
      if (p.whole || grid.parts[String(p.cell)] !== undefined) continue
      const c = cellRange(p.cell, grid.cell, done.totalBytes)
      if (done.totalBytes === null || !containsRange(done.received, c)) continue
      await this.#assemble(done, p.cell).catch((err: unknown) => {
        this.#o.log.warn({ err, key: done.key, cell: p.cell }, 'could not assemble a cell yet')
      })
    }
  }

  /** Uploads cell `i` as its part from its fragments, records it, deletes the fragments. */
  async #assemble(session: SessionRecord, i: number): Promise<void> {
    const grid = session.grid!
    const c = cellRange(i, grid.cell, session.totalBytes)
    const frags = tiling(grid.frags[String(i)] ?? [], c)
    if (frags === null) {
      throw new UploadError('ERR_IO', `cell ${i} of the upload is not in the bucket whole`)
    }
    const bucket = this.#o.bucket
    const fragKeys = frags.map((f) => this.#fragKey(session, f))
    async function* bytes() {
      for (const [n, f] of frags!.entries()) {
        let got = 0
        for await (const b of await bucket.read(fragKeys[n]!)) {
          got += (b as Buffer).length
          yield b as Buffer
        }
        if (got !== f.end - f.start + 1) {
          throw new UploadError('ERR_IO', `fragment ${fragKeys[n]} has ${got} bytes`)
        }
      }
    }
    const bytesLen = c.end - c.start + 1
    const etag = await bucket.uploadPart(
      this.#objectKey(session),
      grid.uploadId,
      i + 1,
      Readable.from(bytes()),
      bytesLen,
    )
    const got = await this.#o.sessions.updateGrid(session.key, session.incarnation, (g) => {
      if (g === null || g.uploadId !== grid.uploadId) return { grid: 'same', out: false }
      const cur = g.frags[String(i)] ?? []
      // Only if the cell's fragments are still the ones assembled.
      if (cur.length !== frags.length || !cur.every((x) => frags.some((f) => f.start === x.start)))
        return { grid: 'same', out: false }
      const frs = { ...g.frags }
      delete frs[String(i)]
      return { grid: { ...g, parts: { ...g.parts, [String(i)]: etag }, frags: frs }, out: true }
    })
    if (got?.out) {
      await Promise.all(fragKeys.map((k) => bucket.delete(k).catch(() => {})))
    }
  }

  /**
   * Makes a complete session's file whole in the bucket and publishes it at its final key with
   * its sha256 and size as metadata. `localSha256`: the running hash's digest when this instance
   * received every byte, else null (one streaming read of the bucket's bytes). `fence` throws
   * unless the commit is still ours; it runs before each irreversible step. Repeatable: a commit
   * that died anywhere is completed by calling this again.
   */
  async commit(
    session: SessionRecord,
    algos: readonly HashAlgo[],
    local: Partial<Record<HashAlgo, string>> | null,
    fence: () => Promise<void>,
  ): Promise<{ digests: Partial<Record<HashAlgo, string>>; key: string; hashedBy: string }> {
    const total = session.totalBytes ?? 0
    const finalKey = this.#o.finalKey(session.target)
    const bucket = this.#o.bucket
    const objectKey = this.#objectKey(session)
    if (total === 0) {
      const digests = digestsOf(algos, [])
      await fence()
      await bucket.put(finalKey, new Uint8Array(0), 0, metaOf(digests, 0))
      return { digests, key: finalKey, hashedBy: 'local' }
    }
    let rec = session.grid ? session : await this.#reread(session)
    let grid = await this.#ensure(rec)
    if (grid.commit !== 'completed') {
      const n = cellCount(total, grid.cell)
      for (let i = 0; i < n; i++) {
        if (grid.parts[String(i)] === undefined) await this.#assemble(rec, i)
      }
      rec = await this.#reread(rec)
      grid = rec.grid!
      const parts: { n: number; etag: string }[] = []
      for (let i = 0; i < n; i++) {
        const etag = grid.parts[String(i)]
        if (etag === undefined) throw new UploadError('ERR_IO', `cell ${i} has no part`)
        parts.push({ n: i + 1, etag })
      }
      await this.#mark(rec, 'completing')
      await fence()
      try {
        await bucket.complete(objectKey, grid.uploadId, parts)
      } catch (err) {
        // An earlier attempt completed it and died before it could say so.
        if (!isMissing(err) || (await bucket.size(objectKey)) !== total) throw err
      }
      await this.#mark(rec, 'completed')
    }
    const size = await bucket.size(objectKey)
    if (size !== total) {
      throw new UploadError('ERR_IO', `the staged object has ${size} bytes, the session ${total}`)
    }
    let digests = local
    let hashedBy = 'local'
    if (digests === null) {
      digests = await hashStream(await bucket.read(objectKey), algos, total)
      hashedBy = 'bucket'
    }
    await fence()
    await bucket.copyWithMetadata(objectKey, finalKey, total, metaOf(digests, total))
    return { digests, key: finalKey, hashedBy }
  }

  async #reread(session: SessionRecord): Promise<SessionRecord> {
    const cur = await this.#o.sessions.get(session.key)
    if (cur === null || cur.incarnation !== session.incarnation) {
      throw new UploadError('ERR_SESSION_NOT_FOUND', 'the upload session was removed')
    }
    return cur
  }

  async #mark(session: SessionRecord, phase: 'completing' | 'completed'): Promise<void> {
    await this.#o.sessions.updateGrid(session.key, session.incarnation, (g) =>
      g === null
        ? { grid: 'same', out: undefined }
        : { grid: { ...g, commit: phase }, out: undefined },
    )
  }

  /**
   * Removes what a session left in the bucket: aborts its multipart upload (unless `committed`
   * made it an object) and deletes its staging objects. For a cancelled, expired or committed
   * session; best effort, the sweeper's bucket pass finds what this misses.
   */
  async discard(session: SessionRecord, committed = false): Promise<void> {
    const bucket = this.#o.bucket
    const objectKey = this.#objectKey(session)
    // A completed upload is an object now: aborting it would only fail (and be logged).
    if (session.grid && !committed && session.grid.commit !== 'completed') {
      await bucket.abort(objectKey, session.grid.uploadId)
    }
    for await (const o of bucket.objects(this.#dir(session.key, session.incarnation))) {
      await bucket.delete(o.key)
    }
  }

  /**
   * The bucket pass of the sweep: aborts multipart uploads and deletes staging objects that no
   * open session names (its session gone, another incarnation, committed, or an upload its
   * record does not name), once older than the grace period. Answers how many were removed.
   */
  async sweep(nowMs: number): Promise<{ uploads: number; objects: number }> {
    const grace = this.#o.orphanGraceMs ?? 10 * 60_000
    const bucket = this.#o.bucket
    const prefix = this.#o.stagingPrefix
    const owner = async (
      key: string,
    ): Promise<{ rec: SessionRecord | null; inc: string } | null> => {
      const rest = key.slice(prefix.length).split('/')
      if (rest.length < 3) return null
      let sessionKey: string
      try {
        sessionKey = decodeURIComponent(rest[0]!)
      } catch {
        return null
      }
      if (!this.covers(sessionKey)) return null
      return { rec: await this.#o.sessions.get(sessionKey), inc: rest[1]! }
    }
    const live = (o: { rec: SessionRecord | null; inc: string }) =>
      o.rec !== null && o.rec.incarnation === o.inc && o.rec.state !== 'committed'
    let uploads = 0
    for await (const u of bucket.pendingUploads(prefix)) {
      if (nowMs - u.initiatedMs < grace) continue
      const o = await owner(u.key)
      if (o === null) continue
      if (live(o) && o.rec!.grid?.uploadId !== undefined && o.rec!.grid.uploadId !== u.uploadId) {
        if (await bucket.abort(u.key, u.uploadId)) uploads++
        continue
      }
      if (live(o)) continue
      if (await bucket.abort(u.key, u.uploadId)) uploads++
    }
    let objects = 0
    for await (const x of bucket.objects(prefix)) {
      if (nowMs - x.modifiedMs < grace) continue
      const o = await owner(x.key)
      if (o === null || live(o)) continue
      await bucket.delete(x.key).catch(() => {})
      objects++
    }
    if (uploads + objects > 0) this.#o.log.info({ uploads, objects }, 'swept the staging bucket')
    return { uploads, objects }
  }
}

function metaOf(digests: Partial<Record<HashAlgo, string>>, size: number): Record<string, string> {
  const meta: Record<string, string> = { size: String(size) }
  for (const [a, d] of Object.entries(digests)) if (d !== undefined) meta[a] = d
  return meta
}

function digestsOf(algos: readonly HashAlgo[], bufs: Buffer[]): Partial<Record<HashAlgo, string>> {
  const out: Partial<Record<HashAlgo, string>> = {}
  for (const a of algos) {
    const h = createHash(a)
    for (const b of bufs) h.update(b)
    out[a] = h.digest('hex')
  }
  return out
}

/** Hashes a stream with every algorithm in one pass; checks it held `total` bytes. */
async function hashStream(
  body: Readable,
  algos: readonly HashAlgo[],
  total: number,
): Promise<Partial<Record<HashAlgo, string>>> {
  const hs = algos.map((a) => [a, createHash(a)] as const)
  let got = 0
  for await (const b of body) {
    got += (b as Buffer).length
    for (const [, h] of hs) h.update(b as Buffer)
  }
  if (got !== total) {
    throw new UploadError('ERR_IO', `the staged object has ${got} bytes, the session ${total}`)
  }
  const out: Partial<Record<HashAlgo, string>> = {}
  for (const [a, h] of hs) out[a] = h.digest('hex')
  return out
}

/** The ranges of one session this instance received into its own temp file. */
export function addLocal(ranges: readonly ByteRange[], r: ByteRange): ByteRange[] {
  return r.end < r.start ? [...ranges] : addRange(ranges, r)
}
