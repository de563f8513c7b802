/**
 * tus uploads through tus-js-client (the protocol's reference client) in Node: it creates,
 * PATCHes, HEADs after a failure and resumes; Ferry gives it the retry policy, the resume state
 * (the state file under the cache directory, as tus-js-client's `urlStorage`) and reads the
 * finished upload's sha256 from the HEAD answer's `X-Ferry-Sha256`.
 */
import { createReadStream } from 'node:fs'
import { DetailedError, Upload, type PreviousUpload, type UrlStorage } from 'tus-js-client'
import { backoffMs, CliError, RetryableError } from './errors.js'
import { isRetryableStatus, networkReason, send } from './http.js'
import type { TransferOptions } from './imagestore.js'
import type { FileProgress } from './progress.js'
import type { FileIdentity, StateFile } from './state.js'

const TUS_HEADERS = { 'Tus-Resumable': '1.0.0' }

/** `--to` as a tus endpoint: a bare server URL gets Ferry's default endpoint path `/files/`. */
export function tusEndpoint(to: URL): URL {
  if (to.pathname !== '/' && to.pathname !== '') return to
  return new URL('/files/', to)
}

/** tus-js-client's resume storage, kept in this upload's state file (one upload per file). */
class StateUrlStorage implements UrlStorage {
  readonly #state: StateFile<{ protocol: 'tus'; fingerprint: string; upload: PreviousUpload }>

  constructor(state: StateFile<object>) {
    this.#state = state as StateFile<{
      protocol: 'tus'
      fingerprint: string
      upload: PreviousUpload
    }>
  }

  async findAllUploads(): Promise<PreviousUpload[]> {
    const s = await this.#state.load()
    return s?.protocol === 'tus' ? [s.upload] : []
  }

  async findUploadsByFingerprint(fingerprint: string): Promise<PreviousUpload[]> {
    const s = await this.#state.load()
    return s?.protocol === 'tus' && s.fingerprint === fingerprint ? [s.upload] : []
  }

  async removeUpload(): Promise<void> {
    await this.#state.remove()
  }

  async addUpload(fingerprint: string, upload: PreviousUpload): Promise<string> {
    await this.#state.save({
      protocol: 'tus',
      fingerprint,
      upload: { ...upload, urlStorageKey: fingerprint },
    })
    return fingerprint
  }
}

/** Where the server stands on an upload: its offset, and its sha256 once finished. */
async function headUpload(
  url: string,
  signal: AbortSignal,
): Promise<{ status: number; offset: number; sha256: string | undefined }> {
  const reply = await send(new URL(url), { method: 'HEAD', headers: TUS_HEADERS, signal })
  const offset = Number(reply.headers['upload-offset'] ?? NaN)
  const sha = reply.headers['x-ferry-sha256']
  return {
    status: reply.status,
    offset: Number.isFinite(offset) ? offset : 0,
    sha256: typeof sha === 'string' ? sha : undefined,
  }
}

/** The bytes the server already holds of a saved upload (all parts of a parallel one). */
async function resumedOffset(prev: PreviousUpload, signal: AbortSignal): Promise<number> {
  const urls = prev.parallelUploadUrls ?? (prev.uploadUrl ? [prev.uploadUrl] : [])
  let sum = 0
  for (const u of urls) {
    try {
      const h = await headUpload(u, signal)
      if (h.status === 200) sum += h.offset
    } catch {
      /* unreachable now: tus-js-client's own HEAD retries and reports it */
    }
  }
  return sum
}

/** The status of a tus-js-client failure (0: no answer), and a reason a person can read. */
function explain(err: Error): { status: number; reason: string } {
  if (err instanceof DetailedError && err.originalResponse) {
    const status = err.originalResponse.getStatus()
    const body = (err.originalResponse.getBody() ?? '').split('\n')[0]!.slice(0, 200)
    return { status, reason: `the server answered ${status}${body ? ` (${body})` : ''}` }
  }
  const cause = err instanceof DetailedError ? err.causingError : err
  return { status: 0, reason: cause ? networkReason(cause) : err.message }
}

export async function tusUpload(args: {
  file: FileIdentity
  label: string
  endpoint: URL
  options: TransferOptions
  progress: FileProgress
  state: StateFile<object>
  fingerprint: string
}): Promise<{ url: string; resumedFrom: number; serverSha256: string | undefined }> {
  const { file, options, progress, label } = args
  const signal = options.signal
  let resumedFrom = 0
  const url = await new Promise<string>((resolve, reject) => {
    const upload = new Upload(createReadStream(file.path) as unknown as Buffer, {
      endpoint: args.endpoint.href,
      ...(options.chunkSize > 0 ? { chunkSize: options.chunkSize } : {}),
      parallelUploads: Math.max(1, options.parallel),
      retryDelays: Array.from({ length: options.retries }, (_, i) =>
        backoffMs(i + 1, options.retryDelayMs),
      ),
      metadata: { filename: label, filetype: 'application/octet-stream' },
      fingerprint: async () => args.fingerprint,
      urlStorage: new StateUrlStorage(args.state),
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: false,
      onProgress: (sent) => progress.update(sent),
      onShouldRetry: (err) => {
        const { status, reason } = explain(err)
        const again = status === 0 || isRetryableStatus(status)
        if (again && !signal.aborted) progress.retried(reason)
        return again && !signal.aborted
      },
      onError: (err) => {
        if (signal.aborted) return reject(signal.reason)
        const { status, reason } = explain(err)
        const gaveUp =
          status === 0 || isRetryableStatus(status)
            ? ` (gave up after ${options.retries} retries)`
            : ''
        reject(new CliError(`${label}: ${reason}${gaveUp}`))
      },
      onSuccess: () => resolve(upload.url ?? ''),
    })
    signal.addEventListener(
      'abort',
      () => {
        void upload.abort(false)
        reject(signal.reason)
      },
      { once: true },
    )
    upload.findPreviousUploads().then(async (prev) => {
      const last = prev[0]
      if (last) {
        resumedFrom = await resumedOffset(last, signal)
        upload.resumeFromPreviousUpload(last)
      }
      progress.begin(resumedFrom)
      upload.start()
    }, reject)
  })
  // The finished upload's digest, as Ferry's tus HEAD reports it.
  for (let attempt = 1; ; attempt++) {
    try {
      const h = await headUpload(url, signal)
      if (h.status !== 200)
        throw new CliError(
          `${label}: asking for the finished upload: the server answered ${h.status}`,
        )
      return { url, resumedFrom, serverSha256: h.sha256 }
    } catch (err) {
      if (!(err instanceof RetryableError) || attempt > options.retries) {
        if (err instanceof RetryableError)
          throw new CliError(`${label}: asking for the finished upload: ${err.message}`)
        throw err
      }
      progress.retried(err.message)
      await new Promise((r) => setTimeout(r, backoffMs(attempt, options.retryDelayMs)))
    }
  }
}
