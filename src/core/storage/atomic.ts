/**
 * Small files (journal entries, sidecars, lakeFS entries) written whole and published in one
 * step: the bytes go to a new temp file (exclusive create), which is fsynced and renamed (or
 * linked, create-if-absent) into place, and the folder is fsynced. A reader sees the old file or
 * the whole new one; a crash leaves at most a temp file for the sweeper.
 */
import { writeFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { UploadError } from '../errors.js'
import type { ObjectStore, PutMode } from './object-store.js'
import { removeIfPresent } from './remove.js'

export interface SmallWrite {
  /** A new temp name from TempFiles (`streamPath()`, `ingestPath()`), beside the store. */
  readonly tempPath: string
  /** true: replace what is there; false: ERR_ALREADY_EXISTS when something is. */
  readonly overwrite: boolean
}

async function writeTemp(tempPath: string, data: string | Uint8Array): Promise<void> {
  await writeFile(tempPath, data, { flag: 'wx', mode: 0o644 })
}

/** Writes `data` as the object `key` (see above). The temp file is gone afterwards either way. */
export async function putSmallObject(
  store: ObjectStore,
  key: string,
  data: string | Uint8Array,
  w: SmallWrite,
): Promise<void> {
  const mode: PutMode = w.overwrite ? 'overwrite' : 'if-absent'
  try {
    await writeTemp(w.tempPath, data)
    await store.put(key, w.tempPath, { mode })
  } catch (err) {
    await removeIfPresent(w.tempPath)
    throw err
  }
}

/**
 * The whole text of a small object (a sidecar, an entry), or null when there is none. Callers
 * keep these objects small: the bytes are held in memory.
 */
export async function readSmallObject(store: ObjectStore, key: string): Promise<string | null> {
  let stream: Readable
  try {
    stream = await store.get(key)
  } catch (err) {
    if (err instanceof UploadError && err.code === 'ERR_NOT_FOUND') return null
    throw err
  }
  const parts: Buffer[] = []
  for await (const c of stream as AsyncIterable<Buffer>) parts.push(c)
  return Buffer.concat(parts).toString('utf8')
}

/**
 * A small JSON object, or null when it is absent or does not parse: a file cut by a crash
 * counts as absent, as if its write never happened.
 */
export async function readSmallJson<T>(store: ObjectStore, key: string): Promise<T | null> {
  const text = await readSmallObject(store, key)
  if (text === null) return null
  try {
    return JSON.parse(text) as T
  } catch {
    return null
  }
}
