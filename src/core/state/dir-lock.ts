/**
 * One process per embedded data directory: an OS lock on `<dir>/owner.pid`, held for as long as
 * the process runs and released by the kernel when it ends, however it ends.
 *
 * Why a kernel lock and not the pid file alone: "create the file unless it exists, else check
 * whether its pid is alive" is two steps, so two processes that start together beside a stale file
 * can both remove it and both own the directory; and a stale pid that the system has since given
 * to an unrelated process blocks every start. A lock the kernel holds has neither problem. The pid
 * is still written into the file, for people looking at the directory.
 *
 * The lock is taken with `fs-native-extensions` (Node has no flock/fcntl): on Linux it is an
 * open-file-description lock (`F_OFD_SETLK`), which behaves like flock — it belongs to this open
 * of the file, so it conflicts with every other open, even in the same process, and closing some
 * other descriptor of the same file does not drop it (as it would a classic POSIX record lock) —
 * and, unlike flock, it also works on NFS. The package ships prebuilt binaries, so installing it
 * needs no compiler (fs-ext, the other candidate, is compiled by node-gyp at install, which the
 * slim container image cannot do).
 */
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

interface NativeLocks {
  /** Exclusive, non-blocking lock of the whole file: false when another open holds it. */
  tryLock(
    fd: number,
    offset?: number,
    length?: number,
    opts?: { readonly shared?: boolean },
  ): boolean
}

// A CommonJS package without type declarations: loaded through require, typed here.
const native = createRequire(import.meta.url)('fs-native-extensions') as NativeLocks

/** Another open (another process, or another store in this one) holds the directory. */
export class DirectoryInUseError extends Error {
  readonly pid: number | null
  constructor(dir: string, pid: number | null) {
    super(
      `the embedded store in ${dir} is in use by ${pid !== null ? `process ${pid}` : 'another process'}; several instances need REDIS_URL`,
    )
    this.name = 'DirectoryInUseError'
    this.pid = pid
  }
}

export interface DirectoryLock {
  /** The lock file, `<dir>/owner.pid`. */
  readonly file: string
  /** Removes the pid file and lets go of the lock (idempotent). */
  release(): void
}

export interface LockOptions {
  /** Told when the pid cannot be written (a full disk): the lock holds all the same. */
  readonly onWarning?: (msg: string, err: unknown) => void
}

function readPid(fd: number): number | null {
  const buf = Buffer.alloc(32)
  try {
    const n = readSync(fd, buf, 0, buf.length, 0)
    const pid = Number(buf.toString('utf8', 0, n).trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

/**
 * Whether `fd` is still the file at `path` (a holder that let go removed it, or someone replaced
 * it).
 */
function isCurrent(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd)
    const b = statSync(path)
    return a.ino === b.ino && a.dev === b.dev
  } catch {
    return false
  }
}

/**
 * Locks `dir` for this process, or throws DirectoryInUseError while another holder has it. A pid
 * file left by a process that died does not matter: only the lock counts.
 */
export function lockDirectory(dir: string, opts: LockOptions = {}): DirectoryLock {
  const file = join(dir, 'owner.pid')
  // A holder removes the file before it lets go; whoever opened the old file meanwhile gets a lock
  // on a file no longer in the directory, sees that, and tries the new one.
  for (let attempt = 0; attempt < 10; attempt++) {
    const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o644)
    let locked: boolean
    try {
      locked = native.tryLock(fd)
    } catch (err) {
      closeSync(fd)
      throw err
    }
    if (!locked) {
      const pid = readPid(fd)
      closeSync(fd)
      throw new DirectoryInUseError(dir, pid)
    }
    if (!isCurrent(fd, file)) {
      closeSync(fd)
      continue
    }
    const text = Buffer.from(`${process.pid}\n`)
    try {
      // Over the old contents, then cut: rewriting a block the file already has needs no free
      // space, so a full disk rarely stops even this.
      writeSync(fd, text, 0, text.length, 0)
      ftruncateSync(fd, text.length)
    } catch (err) {
      opts.onWarning?.(
        `could not write the pid into ${file}; the directory is locked all the same`,
        err,
      )
    }
    let released = false
    return {
      file,
      release() {
        if (released) return
        released = true
        try {
          if (isCurrent(fd, file)) unlinkSync(file)
        } catch {
          /* gone already */
        }
        closeSync(fd)
      },
    }
  }
  throw new Error(`cannot lock ${file}: it keeps being replaced`)
}
