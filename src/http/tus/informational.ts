/**
 * The one place that writes a `104 Upload Resumption Supported` interim response (IETF draft
 * "Resumable Uploads for HTTP", section "Status Code 104").
 *
 * Node 20 has no public API for an arbitrary 1xx: `writeContinue`, `writeProcessing` and
 * `writeEarlyHints` cover 100, 102 and 103, and the generic `res.writeInformation()` only
 * arrived in later release lines (nodejs/node#63155). Those three methods all write their head
 * with `OutgoingMessage#_writeRaw`, which puts bytes on the socket ahead of the final head
 * without touching the response's own header state. We use the same internal writer, guarded so
 * that a Node without it degrades to "no 104" (the draft allows that: a server "SHOULD" send it
 * "unless the server is not capable of sending interim responses").
 */
import type { ServerResponse } from 'node:http'
import { validateHeaderName, validateHeaderValue } from 'node:http'
import type { InteropVersion } from './headers.js'

export interface ResumptionSupported {
  /** The upload resource; MUST be on the 104 of a creation, MUST NOT be on one of an append. */
  readonly location?: string
  /** Echo of the request's interop version: "MUST also send … Upload-Draft-Interop-Version". */
  readonly interopVersion: InteropVersion
  /** `formatUploadLimit` output; MUST be on a creation's 104 if limits exist. */
  readonly uploadLimit?: string
  /** Progress: bytes received so far (MAY be sent repeatedly while the body arrives). */
  readonly uploadOffset?: number
}

interface RawWriter {
  _writeRaw?: (data: string, encoding: BufferEncoding, cb?: (err?: Error | null) => void) => boolean
}

/**
 * Sends one 104 interim response. Returns false, writing nothing, when it must not or cannot be
 * sent: the final head is already out, the client speaks HTTP/1.0 (RFC 9110 15.2: "A server
 * MUST NOT send a 1xx response to an HTTP/1.0 client"), the socket is gone, or this Node has no
 * raw writer. Header values are checked like `setHeader` checks them, so a CR/LF in a Location
 * cannot split the response; a bad value throws the same TypeError `setHeader` would.
 */
export function sendUploadResumptionSupported(
  res: ServerResponse,
  info: ResumptionSupported,
): boolean {
  if (res.headersSent || res.writableEnded || res.destroyed) return false
  const { httpVersionMajor: major, httpVersionMinor: minor } = res.req
  if (major < 1 || (major === 1 && minor < 1)) return false
  // A pipelined request's response has no socket yet; `_writeRaw` then queues the head and
  // Node flushes it, still ahead of this response's final head, when the socket is assigned.
  const socket = res.socket
  if (socket !== null && (socket.destroyed || !socket.writable)) return false
  const writer = res as unknown as RawWriter
  if (typeof writer._writeRaw !== 'function') return false

  const fields: Array<[string, string]> = []
  if (info.location !== undefined) fields.push(['Location', info.location])
  fields.push(['Upload-Draft-Interop-Version', String(info.interopVersion)])
  if (info.uploadLimit !== undefined) fields.push(['Upload-Limit', info.uploadLimit])
  if (info.uploadOffset !== undefined) fields.push(['Upload-Offset', String(info.uploadOffset)])

  let head = 'HTTP/1.1 104 Upload Resumption Supported\r\n'
  for (const [name, value] of fields) {
    validateHeaderName(name)
    validateHeaderValue(name, value)
    head += `${name}: ${value}\r\n`
  }
  head += '\r\n'
  // 'latin1' like Node's own heads: header values are byte strings.
  writer._writeRaw.call(res, head, 'latin1')
  return true
}
