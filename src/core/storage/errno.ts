/**
 * The errno checks storage code makes, in one place. Node reports a failed file-system call as
 * an Error with a string `code` (ENOENT, EEXIST, …); anything else (an UploadError, a TypeError)
 * answers false everywhere here.
 */

/** The errno code of `err` (`'ENOENT'`…), or undefined when it carries none. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('E') ? code : undefined
}

/** ENOENT: the name does not exist. */
export function isNotFound(err: unknown): boolean {
  return errnoOf(err) === 'ENOENT'
}

/**
 * ENOENT or ENOTDIR: nothing can exist at the path, either because a name is missing or because
 * a file stands where the path needs a folder. What "absent" means when probing or removing.
 */
export function isAbsent(err: unknown): boolean {
  const code = errnoOf(err)
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/** EEXIST: the name is taken (an exclusive create or a link found something there). */
export function isExists(err: unknown): boolean {
  return errnoOf(err) === 'EEXIST'
}

/**
 * Something is in the way of a publish or a rename: the name is taken (EEXIST), a folder that is
 * not empty stands there (ENOTEMPTY), a file stands where a folder is needed (ENOTDIR), or a
 * folder where a file is (EISDIR).
 */
export function isInTheWay(err: unknown): boolean {
  const code = errnoOf(err)
  return code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'ENOTDIR' || code === 'EISDIR'
}

/** ENOSPC or EDQUOT: the disk or the quota is full (retryable once space is freed). */
export function isNoSpace(err: unknown): boolean {
  const code = errnoOf(err)
  return code === 'ENOSPC' || code === 'EDQUOT'
}
