import { unlink } from 'node:fs/promises'
import { isAbsent } from './errno.js'

/**
 * Removes a file if it is there. Answers whether it was; a missing name, or a file standing where
 * the path needs a folder (so nothing can be at the path), is not an error.
 */
export async function removeIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path)
    return true
  } catch (err) {
    if (isAbsent(err)) return false
    throw err
  }
}
