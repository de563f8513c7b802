/**
 * Shaman file status, as a client polls it (`GET {api}/files/{sha}/{size}`), and where a data
 * directory keeps CAS blobs (computed by Ferry's own layout code, never spelled out by a test).
 */
import { blobKey, casKeyOfBlob, type CasKey } from '../../src/core/cas/cas-store.js'
import { createLayout, createStores } from '../../src/core/storage/layout.js'
import { request } from './http.js'
import { waitFor } from './wait.js'

export const SHAMAN_API = '/api/v3/shaman'

/** `api` is the server's URL with the Shaman prefix, e.g. `${srv.url}${SHAMAN_API}`. */
export const shamanFileUrl = (api: string, sha: string, size: number | string): string =>
  `${api}/files/${sha}/${size}`

/** 'stored' | 'uploading' | 'unknown', as the server answers it now. */
export async function shamanStatus(api: string, sha: string, size: number): Promise<string> {
  return (await request(shamanFileUrl(api, sha, size))).json<{ status: string }>().status
}

/** Polls until the status is `want`; returns how long that took, ms (tests bound it). */
export async function waitShamanStatus(
  api: string,
  sha: string,
  size: number,
  want: string,
  timeoutMs: number,
): Promise<number> {
  const t0 = Date.now()
  const is = async () => (await shamanStatus(api, sha, size)) === want
  await waitFor(`status ${want}`, is, { timeoutMs, everyMs: 10 })
  return Date.now() - t0
}

/** The CAS blob store of the data directory `dataDir`, as a server over it lays it out. */
const casOf = (dataDir: string) => createStores(createLayout(dataDir)).cas

/** The file of the blob `sha`/`size` in the data directory `dataDir` (there or not). */
export function casBlobPath(dataDir: string, sha: string, size: number): string {
  return casOf(dataDir).localPath(blobKey({ sha256: sha, size }))
}

/** Every blob stored in the data directory `dataDir`: its key and its file. */
export async function storedBlobs(dataDir: string): Promise<{ key: CasKey; path: string }[]> {
  const cas = casOf(dataDir)
  const out: { key: CasKey; path: string }[] = []
  for await (const e of cas.list('')) {
    const key = casKeyOfBlob(e.key)
    if (e.kind === 'object' && key !== null) out.push({ key, path: cas.localPath(e.key) })
  }
  return out
}

/** The files of the blobs of `sha` (any size) in the data directory `dataDir`. */
export async function blobFilesOf(dataDir: string, sha: string): Promise<string[]> {
  return (await storedBlobs(dataDir)).filter((b) => b.key.sha256 === sha).map((b) => b.path)
}
