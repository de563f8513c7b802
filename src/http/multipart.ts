import type { IncomingMessage } from 'node:http'
import { PassThrough, type Readable } from 'node:stream'
import busboy from 'busboy'
import { UploadError } from '../core/errors.js'
import type { UploadBody } from './body.js'

/** An error our consumers (writeStreamAt) read as "the client went away". */
function clientGone(): Error {
  return Object.assign(new Error('the client went away mid-body'), { code: 'ECONNRESET' })
}

const badBody = (why: string) =>
  new UploadError('ERR_INVALID_ARGUMENT', `bad multipart body: ${why}`)

/**
 * Streams the single file part of a multipart/form-data request. busboy's limits become upload
 * errors: a file over `maxBytes` (truncated) is ERR_BODY_TOO_LARGE, a second file part or too
 * many fields ERR_INVALID_ARGUMENT; a body with no file part is ERR_INVALID_ARGUMENT.
 *
 * Every emitter here has an error path, because one 'error' event without a listener ends the
 * process (issue 9 item 1: a body cut before its closing boundary made busboy's file stream emit
 * "Unexpected end of form" to nobody):
 *
 *   req ──pipe──▶ busboy ──'file'──▶ file stream ──pipe──▶ PassThrough (returned) ──▶ consumer
 *    │ 'error'/'close'    │ 'error'               │ 'error', 'limit'     │ 'error' (no-op; the
 * └─▶ client gone      └─▶ 400 bad body        └─▶ 400 / 413          consumer sees it destroyed)
 *
 * Before the file part arrives, a failure rejects the returned promise; after, it destroys the
 * PassThrough (the consumer fails) and rejects `done`.
 */
export function streamSingleFile(req: IncomingMessage, maxBytes: number): Promise<UploadBody> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy
    try {
      bb = busboy({
        headers: req.headers,
        // busboy flags 'limit' when a file *reaches* fileSize, so allow one byte more than the
        // maximum.
        limits: {
          files: 1,
          fileSize: maxBytes + 1,
          fields: 20,
          fieldSize: 64 * 1024,
          parts: 21,
          headerPairs: 50,
        },
      })
    } catch (err) {
      reject(badBody((err as Error).message))
      return
    }
    let settled = false
    let failure: Error | null = null
    let out: PassThrough | null = null
    let resolveDone!: () => void
    let rejectDone!: (err: Error) => void
    const done = new Promise<void>((res, rej) => {
      resolveDone = res
      rejectDone = rej
    })
    done.catch(() => {})

    const fail = (err: Error) => {
      if (failure !== null) return
      failure = err
      rejectDone(err)
      if (!settled) {
        settled = true
        reject(err)
      } else if (out !== null && !out.destroyed) {
        out.destroy(err) // still streaming (or not yet read to its end): the consumer fails
      }
      // Nothing more of this body is parsed; unpipe so req's data is not pushed into a dead parser.
      req.unpipe(bb)
      if (!req.complete && !req.destroyed) req.resume() // read the rest away; the answer follows
    }

    bb.on('file', (_name, file: Readable, info) => {
      // A listener first of all: busboy makes this stream emit 'error' when the body ends
      // mid-part, and it must never reach an empty listener list.
      file.on('error', (err: Error) => fail(badBody(err.message)))
      if (settled) {
        file.resume()
        return
      }
      settled = true
      const pass = new PassThrough({ highWaterMark: 1024 * 1024 })
      // The consumer attaches its own listeners on a later tick; a failure before that must not
      // surface as an unhandled 'error' (pipeline still sees the stream as errored).
      pass.on('error', () => {})
      // When the consumer stops reading (it failed, or the client went away), keep draining the
      // part so busboy (and the request) can finish instead of stalling on backpressure.
      pass.on('close', () => {
        if (!file.readableEnded) file.resume()
      })
      out = pass
      file.on('limit', () => {
        fail(
          new UploadError(
            'ERR_BODY_TOO_LARGE',
            `file part is over the limit of ${maxBytes} bytes`,
            {
              detail: { kind: 'limit', maxBytes },
            },
          ),
        )
      })
      file.pipe(pass)
      resolve({ stream: pass, length: null, filename: info.filename ?? null, done })
    })
    bb.on('filesLimit', () =>
      fail(new UploadError('ERR_INVALID_ARGUMENT', 'only one file part is accepted')),
    )
    bb.on('partsLimit', () =>
      fail(new UploadError('ERR_BODY_TOO_LARGE', 'too many parts in the multipart body')),
    )
    bb.on('fieldsLimit', () =>
      fail(new UploadError('ERR_BODY_TOO_LARGE', 'too many fields in the multipart body')),
    )
    bb.on('error', (err: Error) => fail(badBody(err.message)))
    bb.on('close', () => {
      if (!settled)
        fail(new UploadError('ERR_INVALID_ARGUMENT', 'the multipart body has no file part'))
      else if (failure === null) resolveDone()
    })
    // The connection dropped mid-body: busboy never ends, so tell the consumer here.
    const gone = () => {
      if (!req.complete) fail(clientGone())
    }
    req.on('error', gone)
    req.on('close', gone)
    req.pipe(bb)
  })
}
