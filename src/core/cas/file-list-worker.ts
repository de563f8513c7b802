/**
 * Worker side of FileListPool (file-list-pool.ts): parses Shaman file lists and looks up (and
 * touches) many blobs at once, off the main thread.
 *
 * Blob look-ups here are synchronous on purpose (probeFileSync): no Error is built per missing
 * blob, as the async API would on the main thread — the bulk of a requirements request whose
 * files are new. `root` is the blob store's local folder (its LocalPaths capability).
 */
import { join } from 'node:path'
import { parentPort } from 'node:worker_threads'
import { UploadError } from '../errors.js'
import { probeFileSync } from '../storage/probe-sync.js'
import { blobKey } from './cas-store.js'
import { parseFileList, renderRequirements } from './file-list.js'
import type { FileListReply, FileListRequest } from './file-list-pool.js'

function blobPath(root: string, shas: Uint8Array, sizes: Float64Array, i: number): string {
  const sha256 = Buffer.from(shas.buffer, shas.byteOffset + i * 32, 32).toString('hex')
  return join(root, blobKey({ sha256, size: sizes[i]! }))
}

function run(msg: FileListRequest): { reply: FileListReply; transfer: ArrayBuffer[] } {
  if (msg.op === 'parse') {
    try {
      const list = parseFileList(msg.body, msg.kind, msg.maxFiles)
      const bufs =
        list.kind === 'requirements'
          ? [list.files.shas.buffer, list.files.sizes.buffer]
          : [list.keys.shas.buffer, list.keys.sizes.buffer, list.links.keyIndex.buffer]
      return { reply: { id: msg.id, ok: true, list }, transfer: bufs as ArrayBuffer[] }
    } catch (err) {
      if (err instanceof UploadError)
        return {
          reply: { id: msg.id, ok: false, error: { code: err.code, message: err.message } },
          transfer: [],
        }
      throw err
    }
  }
  if (msg.op === 'render') {
    const out = renderRequirements(
      { count: msg.count, shas: msg.shas, sizes: msg.sizes, paths: msg.paths },
      msg.stored,
      msg.claimed,
    )
    const own = new Uint8Array(out) // a Buffer may sit in a shared pool; send one we own
    return { reply: { id: msg.id, ok: true, json: own }, transfer: [own.buffer] }
  }
  // touch: 1 where the blob exists (its mtime set to now when `touch`), else 0.
  const found = new Uint8Array(msg.count)
  const now = new Date()
  for (let i = 0; i < msg.count; i++) {
    const path = blobPath(msg.root, msg.shas, msg.sizes, i)
    if (probeFileSync(path, msg.touch ? now : undefined)) found[i] = 1
  }
  return { reply: { id: msg.id, ok: true, found }, transfer: [found.buffer] }
}

parentPort!.on('message', (msg: FileListRequest) => {
  try {
    const { reply, transfer } = run(msg)
    parentPort!.postMessage(reply, transfer)
  } catch (err) {
    parentPort!.postMessage({
      id: msg.id,
      ok: false,
      error: { code: 'ERR_IO', message: (err as Error).message },
    } satisfies FileListReply)
  }
})
