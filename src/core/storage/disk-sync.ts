/**
 * Whether the data path flushes files and folders to stable storage (FERRY_FSYNC). `DiskSync.on`
 * (the default everywhere) fdatasyncs files and fsyncs folders; `DiskSync.off` (FERRY_FSYNC=none)
 * skips both: writes, renames and links happen exactly as before, so publication stays atomic
 * for readers, but a power loss or kernel crash may lose or empty recently published files.
 *
 * No group commit in user space (issue 14, goal 4, tried 2026-11-25): letting the folder fsyncs of
 * publishes into one folder queue behind a running one, so that one more fsync covers them all,
 * cut the fsyncs of scenario c from 1000 to ~570 per 1000 files but made it slower, not faster:
 * main/grouped 1.23x uploads/s (5 interleaved reps, 1.07-1.51; `node bench/run.js --scenarios
 * c,d --servers ferry-embedded,ferry-b-embedded,minimal-durable --ferry-main-b <main> --reps 5`),
 * p99 per upload about the same. ext4's journal already lets concurrent fsyncs wait on one commit;
 * queueing in user space only adds the wait for the running fsync to return.
 */
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'

async function fsyncPath(path: string, data: boolean): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await (data ? fh.datasync() : fh.sync())
  } finally {
    await fh.close()
  }
}

export class DiskSync {
  /** Flushes (the default). */
  static readonly on = new DiskSync(true)
  /** Flushes nothing (FERRY_FSYNC=none). */
  static readonly off = new DiskSync(false)

  readonly enabled: boolean

  private constructor(enabled: boolean) {
    this.enabled = enabled
  }

  /** fdatasync the file at `path`. */
  async file(path: string): Promise<void> {
    if (this.enabled) await fsyncPath(path, true)
  }

  /** fdatasync an open file. */
  async handle(fh: FileHandle): Promise<void> {
    if (this.enabled) await fh.datasync()
  }

  /** fsync the folder `dir`, so a rename or link inside it survives a crash. */
  async dir(dir: string): Promise<void> {
    if (this.enabled) await fsyncPath(dir, false)
  }
}
