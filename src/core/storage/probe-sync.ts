import { statSync, utimesSync } from 'node:fs'

/**
 * Whether `path` is a regular file, and with `touchAt`, sets its times to it. Synchronous on
 * purpose, for worker threads that probe thousands of files: `statSync(…, {throwIfNoEntry:
 * false})` answers "absent" without building an Error (with a stack) per missing file, which the
 * async API does.
 */
export function probeFileSync(path: string, touchAt?: Date): boolean {
  const st = statSync(path, { throwIfNoEntry: false })
  if (st === undefined || !st.isFile()) return false
  if (touchAt !== undefined) {
    try {
      utimesSync(path, touchAt, touchAt)
    } catch {
      return false // removed between the two calls
    }
  }
  return true
}
