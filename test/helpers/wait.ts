/**
 * Waiting in tests. `waitFor` polls a real condition until it holds (the gate to use when the
 * code under test has no event to wait on); `sleep` is for time that IS the behaviour under test
 * (a lease running out, a slow client) and each call says why.
 */

export interface WaitOptions {
  /** Give up after this long, ms (default 30 s). */
  readonly timeoutMs?: number
  /** Poll interval, ms (default 25). */
  readonly everyMs?: number
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Calls `fn` until it returns something other than null/undefined/false and returns that; throws
 * `timed out waiting for <what>` after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  o: WaitOptions = {},
): Promise<T> {
  const until = Date.now() + (o.timeoutMs ?? 30_000)
  for (;;) {
    const v = await fn()
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(o.everyMs ?? 25)
  }
}
