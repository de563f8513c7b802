/**
 * A few worker threads for the Shaman work that grows with a request: parsing an 8 MiB file list
 * and looking up tens of thousands of blobs (file-list-worker.ts). On the main thread that work
 * held the event loop for seconds (issue 9 item 6: /healthz waited 3 s behind four 80,000-file
 * requirements); here the main thread only hands over a buffer and reads flat results.
 *
 *   main ──{parse, body (transferred)}──────────▶ worker: JSON.parse + checks + fold
 *        ◀─{shas, sizes (transferred), paths}───
 *   main ──{touch, root, shas, sizes}──────────▶ worker: statSync/utimesSync per blob
 *        ◀─{found: Uint8Array (transferred)}────
 *
 * Plain node:worker_threads rather than the hash pool (piscina, src/core/hashing): these tasks
 * are short, synchronous and belong to the CAS; they should not queue behind commit hashing.
 * Bodies under INLINE_PARSE_BYTES are parsed on the main thread: a round trip costs more.
 */
import { Worker } from 'node:worker_threads'
import { UploadError, type ErrorCode } from '../errors.js'
import type { LocalPaths } from '../storage/object-store.js'
import {
  parseFileList,
  renderRequirements,
  type CheckoutList,
  type FileList,
  type PackedFiles,
  type RequirementsList,
} from './file-list.js'

export const FILE_LIST_WORKER = new URL('./file-list-worker.js', import.meta.url)

/** Below this a body is parsed inline: ~1 ms of JSON.parse, less than a worker round trip. */
export const INLINE_PARSE_BYTES = 256 * 1024

export type FileListRequest =
  | {
      readonly id: number
      readonly op: 'parse'
      readonly body: Uint8Array
      readonly kind: 'requirements' | 'checkout'
      readonly maxFiles: number
    }
  | {
      readonly id: number
      readonly op: 'touch'
      readonly root: string
      readonly shas: Uint8Array
      readonly sizes: Float64Array
      readonly count: number
      readonly touch: boolean
    }
  | {
      readonly id: number
      readonly op: 'render'
      readonly shas: Uint8Array
      readonly sizes: Float64Array
      readonly paths: string
      readonly count: number
      readonly stored: Uint8Array
      readonly claimed: Uint8Array
    }

export type FileListReply =
  | { readonly id: number; readonly ok: true; readonly list: FileList }
  | { readonly id: number; readonly ok: true; readonly found: Uint8Array }
  | { readonly id: number; readonly ok: true; readonly json: Uint8Array }
  | {
      readonly id: number
      readonly ok: false
      readonly error: { readonly code: ErrorCode; readonly message: string }
    }

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never

interface Slot {
  worker: Worker
  pending: Map<number, { resolve: (r: FileListReply) => void; reject: (e: unknown) => void }>
}

export class FileListPool {
  readonly #threads: number
  readonly #slots: (Slot | null)[]
  #nextId = 1
  #closed = false

  constructor(threads = 2) {
    this.#threads = threads
    this.#slots = Array.from({ length: threads }, () => null)
  }

  #slot(): Slot {
    if (this.#closed) throw new UploadError('ERR_UNAVAILABLE', 'shutting down')
    // The idlest thread; a dead one (crash) is replaced.
    let best = 0
    for (let i = 0; i < this.#threads; i++) {
      const s = this.#slots[i]
      if (s === null || s === undefined) {
        best = i
        break
      }
      if (s.pending.size < (this.#slots[best]?.pending.size ?? Infinity)) best = i
    }
    let slot = this.#slots[best]
    if (slot === null || slot === undefined) {
      const worker = new Worker(FILE_LIST_WORKER)
      const s: Slot = { worker, pending: new Map() }
      worker.unref() // idle workers never keep the process alive
      worker.on('message', (r: FileListReply) => {
        const p = s.pending.get(r.id)
        s.pending.delete(r.id)
        if (s.pending.size === 0) worker.unref()
        p?.resolve(r)
      })
      const fail = (err: unknown) => {
        if (this.#slots[best] === s) this.#slots[best] = null
        for (const p of s.pending.values())
          p.reject(new UploadError('ERR_IO', 'a file-list worker stopped', { cause: err }))
        s.pending.clear()
      }
      worker.on('error', fail)
      worker.on('exit', (code) => fail(new Error(`exit ${code}`)))
      this.#slots[best] = s
      slot = s
    }
    return slot
  }

  #call(msg: WithoutId<FileListRequest>, transfer: ArrayBuffer[]): Promise<FileListReply> {
    const slot = this.#slot()
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject })
      slot.worker.ref()
      slot.worker.postMessage({ ...msg, id }, transfer)
    })
  }

  /** Parses and checks a file list; throws the UploadError a client gets for a bad one. */
  async parse(body: Buffer, kind: 'requirements', maxFiles: number): Promise<RequirementsList>
  async parse(body: Buffer, kind: 'checkout', maxFiles: number): Promise<CheckoutList>
  async parse(
    body: Buffer,
    kind: 'requirements' | 'checkout',
    maxFiles: number,
  ): Promise<FileList> {
    if (body.length < INLINE_PARSE_BYTES) return parseFileList(body, kind, maxFiles)
    // Handed over without a copy when the body owns its whole ArrayBuffer (Buffer.concat of a
    // large body does); else a copy the worker owns (a slice of a pooled buffer).
    const own =
      body.byteOffset === 0 && body.buffer.byteLength === body.length
        ? new Uint8Array(body.buffer)
        : new Uint8Array(body)
    const r = await this.#call({ op: 'parse', body: own, kind, maxFiles }, [
      own.buffer as ArrayBuffer,
    ])
    if (!r.ok) throw new UploadError(r.error.code, r.error.message)
    if (!('list' in r)) throw new UploadError('ERR_IO', 'unexpected worker answer')
    return r.list
  }

  /**
   * Which of the objects exist, as a 0/1 per entry; `touch` also sets each found blob's mtime to
   * now (GC keeps it). The worker reads the blobs of `objects` by their local paths, with sync
   * calls: no Error per absent blob.
   */
  async lookUp(objects: LocalPaths, files: PackedFiles, touch: boolean): Promise<Uint8Array> {
    if (files.count === 0) return new Uint8Array(0)
    const root = objects.localPath('')
    const { count } = files
    const shas = files.shas.slice()
    const sizes = files.sizes.slice()
    const r = await this.#call({ op: 'touch', root, shas, sizes, count, touch }, [])
    if (!r.ok) throw new UploadError(r.error.code, r.error.message)
    if (!('found' in r)) throw new UploadError('ERR_IO', 'unexpected worker answer')
    return r.found
  }

  /** The requirements answer as JSON bytes, built on a worker (renderRequirements). */
  async renderRequirements(
    files: PackedFiles,
    stored: Uint8Array,
    claimed: Uint8Array,
  ): Promise<Buffer> {
    if (files.count < 2000) return renderRequirements(files, stored, claimed)
    const r = await this.#call(
      {
        op: 'render',
        shas: files.shas,
        sizes: files.sizes,
        paths: files.paths,
        count: files.count,
        stored,
        claimed,
      },
      [],
    )
    if (!r.ok) throw new UploadError(r.error.code, r.error.message)
    if (!('json' in r)) throw new UploadError('ERR_IO', 'unexpected worker answer')
    return Buffer.from(r.json.buffer, r.json.byteOffset, r.json.byteLength)
  }

  async close(): Promise<void> {
    this.#closed = true
    await Promise.all(this.#slots.map((s) => s?.worker.terminate()))
  }
}
