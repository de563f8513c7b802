/**
 * Probes of the data directory's filesystem for readiness and metrics: its free space and
 * whether a file can be written there at all (a full disk, a read-only remount, lost
 * permissions).
 */
import { statfs, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoOf } from './errno.js'

/** Bytes an unprivileged process may still write on `dir`'s filesystem (statfs `bavail`). */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

let probes = 0

/**
 * Writes one byte into a new file in `dir`, then removes it: null when that worked, else why not
 * (the errno code). One byte and not an empty file: a full filesystem still creates empty files
 * while it has inodes. The name is this process's own, so probes never meet.
 */
export async function writeProbe(dir: string, owner: string): Promise<string | null> {
  const path = join(dir, `.ready-probe-${owner}-${process.pid}-${++probes}`)
  try {
    await writeFile(path, 'r', { flag: 'wx' })
  } catch (err) {
    await unlink(path).catch(() => {})
    return errnoOf(err) ?? 'error'
  }
  await unlink(path).catch(() => {})
  return null
}

export interface SpaceVerdict {
  readonly ok: boolean
  readonly reason?: string
}

/**
 * Ready when `dir` takes a write and has at least `minFreeBytes` free (0: no threshold, the
 * write alone decides). Both are always checked, so a full disk names its free bytes too.
 */
export async function checkSpace(
  dir: string,
  minFreeBytes: number,
  owner: string,
): Promise<SpaceVerdict> {
  const reasons: string[] = []
  const failed = await writeProbe(dir, owner)
  if (failed !== null) reasons.push(`data directory cannot be written: ${failed}`)
  if (minFreeBytes > 0) {
    try {
      const free = await freeBytes(dir)
      if (free < minFreeBytes) {
        reasons.push(`data directory has ${free} bytes free, below ${minFreeBytes}`)
      }
    } catch (err) {
      reasons.push(`data directory cannot be checked: ${errnoOf(err) ?? 'error'}`)
    }
  }
  return reasons.length === 0 ? { ok: true } : { ok: false, reason: reasons.join('; ') }
}
