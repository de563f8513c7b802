/** Shaman file status, as a client polls it (`GET {api}/files/{sha}/{size}`). */
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
