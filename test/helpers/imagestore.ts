/** ImageStore client calls as the azure-servicefabric SDK and sfctl send them. */
import { randomUUID } from 'node:crypto'
import type { AppOptions } from '../../src/app.js'
import { request, type Reply } from './http.js'

export const API = 'api-version=6.0'

export function newSessionId(): string {
  return randomUUID()
}

/**
 * A gate on chunk reservations: pass `hooks` as startFerry's `uploadHooks`; `next(id)` resolves
 * once the next chunk of session `id` holds its range reservation, before its bytes are written:
 * the moment a test races another request against it.
 */
export function reservationGate(): {
  hooks: NonNullable<AppOptions['uploadHooks']>
  next(id: string): Promise<void>
} {
  const waiting = new Map<string, () => void>()
  const afterReserve = async (key: string) => {
    for (const [id, done] of waiting) {
      if (key.endsWith(`:${id}`)) {
        waiting.delete(id)
        done()
      }
    }
  }
  return { hooks: { afterReserve }, next: (id) => new Promise<void>((r) => waiting.set(id, r)) }
}

export function putChunk(
  base: string,
  path: string,
  id: string,
  start: number,
  end: number,
  total: number,
  body: Buffer,
  headers: Record<string, string | number> = {},
): Promise<Reply> {
  return request(`${base}/ImageStore/${path}/$/UploadChunk?${API}&session-id=${id}`, {
    method: 'PUT',
    headers: {
      'Content-Range': `bytes ${start}-${end}/${total}`,
      'Content-Type': 'application/octet-stream',
      ...headers,
    },
    body,
  })
}

export function commit(base: string, id: string): Promise<Reply> {
  return request(`${base}/ImageStore/$/CommitUploadSession?${API}&session-id=${id}`, {
    method: 'POST',
    headers: { 'Content-Length': 0 },
  })
}

export function sessionById(base: string, id: string): Promise<Reply> {
  return request(`${base}/ImageStore/$/GetUploadSession?${API}&session-id=${id}`)
}

export interface SessionInfo {
  StoreRelativePath: string
  SessionId: string
  FileSize: string
  ModifiedDate: string
  ExpectedRanges: { StartPosition: string; EndPosition: string }[]
}

/**
 * Uploads `data` as chunks of `chunkBytes`, `parallel` at a time, in the given order of chunk
 * indexes.
 */
export async function uploadChunks(
  bases: readonly string[],
  path: string,
  id: string,
  data: Buffer,
  chunkBytes: number,
  parallel: number,
  order?: number[],
): Promise<void> {
  const n = Math.ceil(data.length / chunkBytes)
  const queue = order ?? Array.from({ length: n }, (_, i) => i)
  let next = 0
  let sent = 0
  const worker = async () => {
    while (next < queue.length) {
      const i = queue[next++]!
      const start = i * chunkBytes
      const end = Math.min(data.length, start + chunkBytes) - 1
      const base = bases[sent++ % bases.length]!
      const r = await putChunk(
        base,
        path,
        id,
        start,
        end,
        data.length,
        data.subarray(start, end + 1),
      )
      if (r.status !== 200) throw new Error(`chunk ${i}: ${r.status} ${r.text()}`)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
}
