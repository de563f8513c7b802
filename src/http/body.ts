import type { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import { UploadError } from '../core/errors.js'
import { streamSingleFile } from './multipart.js'

/** The declared Content-Length, or null (chunked). Throws on a malformed value. */
export function declaredLength(req: IncomingMessage): number | null {
  const raw = req.headers['content-length']
  if (raw === undefined) return null
  if (!/^\d+$/.test(raw)) throw new UploadError('ERR_INVALID_ARGUMENT', 'Content-Length is not a number')
  return Number(raw)
}

/** Refuses, before reading a byte, a body declared larger than `maxBytes`. */
export function checkDeclaredSize(req: IncomingMessage, maxBytes: number): number | null {
  const n = declaredLength(req)
  if (n !== null && n > maxBytes) {
    throw new UploadError('ERR_BODY_TOO_LARGE', `body of ${n} bytes is over the limit of ${maxBytes}`, { details: { maxBytes } })
  }
  return n
}

/** Reads a small body whole (JSON requests), refusing more than `maxBytes`. */
export async function readSmallBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  checkDeclaredSize(req, maxBytes)
  const parts: Buffer[] = []
  let n = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length
    if (n > maxBytes) throw new UploadError('ERR_BODY_TOO_LARGE', `body is over the limit of ${maxBytes} bytes`)
    parts.push(chunk)
  }
  return Buffer.concat(parts)
}

export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const buf = await readSmallBody(req, maxBytes)
  try {
    return JSON.parse(buf.toString('utf8'))
  } catch {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'the body is not valid JSON')
  }
}

export interface UploadBody {
  readonly stream: Readable
  /** Exact length when known in advance (raw body with Content-Length), else null. */
  readonly length: number | null
  readonly filename: string | null
  /** Resolves once the whole request is parsed; rejects on a second file part or a limit. */
  readonly done: Promise<void>
}

export function isMultipart(req: IncomingMessage): boolean {
  return /^multipart\/form-data\s*;/i.test(req.headers['content-type'] ?? '')
}

/**
 * The bytes of an upload: the raw body, or the one file part of a multipart/form-data body.
 * Whatever the Content-Type of a raw body says (the ImageStore SDK sends JSON's), it is stored
 * as bytes, never parsed.
 */
export async function uploadBody(req: IncomingMessage, maxBytes: number): Promise<UploadBody> {
  if (isMultipart(req)) {
    checkDeclaredSize(req, maxBytes + 64 * 1024)
    return streamSingleFile(req, maxBytes)
  }
  const length = checkDeclaredSize(req, maxBytes)
  return { stream: req, length, filename: null, done: Promise.resolve() }
}
