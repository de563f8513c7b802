/**
 * Failures the CLI expects (bad input, a refusing or unreachable server): one line on stderr and
 * an exit code, never a stack trace. Anything else is a bug and keeps its stack.
 */
export class CliError extends Error {
  /** 2: the command line or a local file is wrong; 1: the upload failed. */
  readonly exitCode: number

  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** A request that failed in a way worth repeating: the network, a 5xx, or the server busy. */
export class RetryableError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RetryableError'
  }
}

/** Waits `ms`, or rejects at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Exponential backoff with full jitter (the AWS architecture blog's "Exponential Backoff And
 * Jitter"): attempt 1 waits up to `baseMs`, each further attempt doubles it, capped at 30 s, so a
 * crowd of clients cut at the same moment does not come back at the same moment.
 */
export function backoffMs(attempt: number, baseMs: number): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
}
