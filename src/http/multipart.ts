import type { IncomingMessage } from 'node:http'
import { PassThrough, type Readable } from 'node:stream'
import busboy from 'busboy'
import { UploadError } from '../core/errors.js'
import type { UploadBody } from './body.js'

/**
 * Streams the single file part of a multipart/form-data request. busboy's limits become upload
 * errors: a file over `maxBytes` (truncated) is ERR_BODY_TOO_LARGE, a second file part or too
 * many fields ERR_INVALID_ARGUMENT; a body with no file part is ERR_INVALID_ARGUMENT.
 */
export function streamSingleFile(req: IncomingMessage, maxBytes: number): Promise<UploadBody> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy
    try {
      bb = busboy({
        headers: req.headers,
        // busboy flags 'limit' when a file *reaches* fileSize, so allow one byte more than the maximum.
        limits: { files: 1, fileSize: maxBytes + 1, fields: 20, fieldSize: 64 * 1024, parts: 21, headerPairs: 50 },
      })
    } catch (err) {
      reject(new UploadError('ERR_INVALID_ARGUMENT', `bad multipart body: ${(err as Error).message}`))
      return
    }
    let settled = false
    let failure: UploadError | null = null
    let out: PassThrough | null = null
    const fail = (err: UploadError) => {
      failure ??= err
      if (!settled) {
        settled = true
        reject(err)
      } else if (out !== null && !out.writableFinished && !out.destroyed) {
        out.destroy(err) // still streaming: stop it; once it ended, `done` carries the error
      }
    }
    const done = new Promise<void>((res, rej) => {
      bb.on('close', () => (failure ? rej(failure) : res()))
      bb.on('error', (err: Error) => rej(new UploadError('ERR_INVALID_ARGUMENT', `bad multipart body: ${err.message}`)))
    })
    done.catch(() => {})
    bb.on('file', (_name, file: Readable, info) => {
      if (settled) {
        file.resume()
        return
      }
      settled = true
      const pass = new PassThrough({ highWaterMark: 1024 * 1024 })
      // The consumer attaches its own listeners on a later tick; a limit hit before that must not
      // surface as an unhandled 'error' (pipeline still sees the stream as errored).
      pass.on('error', () => {})
      out = pass
      file.on('limit', () => {
        const err = new UploadError('ERR_BODY_TOO_LARGE', `file part is over the limit of ${maxBytes} bytes`, { details: { maxBytes } })
        failure ??= err
        pass.destroy(err)
      })
      // busboy errors the file stream when the body ends inside the part (no closing boundary).
      file.on('error', (err: Error) => {
        const e = new UploadError('ERR_INVALID_ARGUMENT', `bad multipart body: ${err.message}`)
        failure ??= e
        pass.destroy(e)
      })
      file.pipe(pass)
      resolve({ stream: pass, length: null, filename: info.filename ?? null, done })
    })
    bb.on('filesLimit', () => fail(new UploadError('ERR_INVALID_ARGUMENT', 'only one file part is accepted')))
    bb.on('partsLimit', () => fail(new UploadError('ERR_BODY_TOO_LARGE', 'too many parts in the multipart body')))
    bb.on('fieldsLimit', () => fail(new UploadError('ERR_BODY_TOO_LARGE', 'too many fields in the multipart body')))
    bb.on('error', (err: Error) => fail(new UploadError('ERR_INVALID_ARGUMENT', `bad multipart body: ${err.message}`)))
    bb.on('close', () => {
      if (!settled) fail(new UploadError('ERR_INVALID_ARGUMENT', 'the multipart body has no file part'))
    })
    req.on('aborted', () => out?.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })))
    req.pipe(bb)
  })
}
