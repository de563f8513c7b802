/**
 * The one directory walker: ImageStore folder copies, Shaman GC's scan of checkouts and the bulk
 * ingest of an import folder all read a tree through it.
 */
import type { Dirent } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { isAbsent } from './errno.js'

export interface TreeEntry {
  /** Absolute path of the entry. */
  readonly path: string
  /** Path relative to the walked root, `/`-separated. */
  readonly rel: string
  /** What readdir said it is (not followed: a symlink is a symlink). */
  readonly dirent: Dirent
}

export interface WalkOptions {
  /** Leaves an entry out; a folder left out is not entered either. */
  readonly skip?: (name: string, rel: string) => boolean
  /**
   * A folder below the root that disappears during the walk (renamed away, erased): `skip` goes
   * on without it; `throw` stops the walk with TreeChangedError, for a caller that must not miss
   * a tree renamed from a place not yet read to one already read.
   */
  readonly onVanished?: 'skip' | 'throw'
}

/** A folder vanished during a walk with `onVanished: 'throw'`. */
export class TreeChangedError extends Error {
  readonly dir: string
  constructor(dir: string) {
    super(`folder vanished during a walk: ${dir}`)
    this.name = 'TreeChangedError'
    this.dir = dir
  }
}

async function readdirOrNull(dir: string): Promise<Dirent[] | null> {
  try {
    return await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isAbsent(err)) return null
    throw err
  }
}

/**
 * Every entry below `root` (folders too, each before its contents), depth first, in no promised
 * order. A missing root (or a file there) yields nothing. Memory: one folder listing per level.
 */
export async function* walkTree(root: string, opts: WalkOptions = {}): AsyncGenerator<TreeEntry> {
  const stack: { dir: string; rel: string }[] = [{ dir: root, rel: '' }]
  while (stack.length > 0) {
    const { dir, rel } = stack.pop()!
    const entries = await readdirOrNull(dir)
    if (entries === null) {
      if (dir === root || opts.onVanished !== 'throw') continue
      throw new TreeChangedError(dir)
    }
    for (const dirent of entries) {
      const r = rel === '' ? dirent.name : `${rel}/${dirent.name}`
      if (opts.skip?.(dirent.name, r)) continue
      const path = join(dir, dirent.name)
      yield { path, rel: r, dirent }
      if (dirent.isDirectory()) stack.push({ dir: path, rel: r })
    }
  }
}
