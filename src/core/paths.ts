import { join, sep } from 'node:path'
import { UploadError } from './errors.js'

export interface PathRules {
  /** Longest whole path, UTF-8 bytes. */
  readonly maxBytes: number
  /** Longest single name, UTF-8 bytes (ext4 and most filesystems: 255). */
  readonly maxSegmentBytes: number
}

export const DEFAULT_PATH_RULES: PathRules = Object.freeze({ maxBytes: 1024, maxSegmentBytes: 255 })

/**
 * Checks a client-supplied relative path and returns its segments. Refuses, before anything
 * touches the disk: empty paths, absolute paths, NUL and other control characters, backslashes,
 * empty, `.` and `..` segments, and names or paths longer than the rules allow.
 */
export function checkRelativePath(path: string, rules: PathRules = DEFAULT_PATH_RULES): string[] {
  if (path.length === 0) throw new UploadError('ERR_INVALID_PATH', 'path is empty')
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\u0000-\u001f\u007f]/.test(path))
    throw new UploadError('ERR_INVALID_PATH', 'path contains a control character')
  if (path.includes('\\')) throw new UploadError('ERR_INVALID_PATH', 'path contains a backslash')
  if (path.startsWith('/')) throw new UploadError('ERR_INVALID_PATH', 'path must be relative')
  if (/^[A-Za-z]:/.test(path)) throw new UploadError('ERR_INVALID_PATH', 'path must be relative')
  if (Buffer.byteLength(path) > rules.maxBytes) {
    throw new UploadError('ERR_PATH_TOO_LONG', `path is longer than ${rules.maxBytes} bytes`)
  }
  const segments = path.split('/')
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') {
      throw new UploadError('ERR_INVALID_PATH', `path has an empty, "." or ".." segment`)
    }
    if (Buffer.byteLength(s) > rules.maxSegmentBytes) {
      throw new UploadError(
        'ERR_PATH_TOO_LONG',
        `a name in the path is longer than ${rules.maxSegmentBytes} bytes`,
      )
    }
  }
  return segments
}

/** Joins checked segments under root and proves the result stays inside it. */
export function resolveUnder(root: string, segments: readonly string[]): string {
  const full = join(root, ...segments)
  if (full !== root && !full.startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new UploadError('ERR_INVALID_PATH', 'path escapes its root')
  }
  return full
}
