/**
 * Watches what Ferry makes visible: every file under `<dataDir>/store` (ImageStore) and
 * `<dataDir>/cas` (Shaman) is hashed as soon as a scan finds it (and again whenever its inode,
 * size or times change) and compared with what may stand there. For a store path that is one of
 * the versions an uploader sent to it; for a blob, its own name (`cas/ab/cdef…/<size>.blob`).
 * A reader must never see a wrong or partial file, not even for a moment, so a violation counts
 * when it is seen, whatever the file becomes later.
 *
 * Scanning (every `intervalMs`) rather than fs.watch: inotify watches need one per directory and
 * miss files in directories created between two events, and a published file stays visible
 * anyway; a file that existed for less than one interval could be missed, a published one cannot.
 */
import { createHash } from 'node:crypto'
import type { Dirent } from 'node:fs'
import { open, readdir, type FileHandle } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'

export interface Violation {
  readonly root: 'store' | 'cas'
  readonly path: string
  readonly kind: 'wrong' | 'partial' | 'unexpected'
  readonly bytes: number
  readonly sha256: string
  readonly expected: string
  readonly atMs: number
}

/** What a store path may hold: sha256 → size of every version sent to it. */
export type Versions = ReadonlyMap<string, number>

export interface ObserverOptions {
  readonly store: string
  readonly cas: string
  readonly versionsOf: (storeRelPath: string) => Versions | undefined
  /** For a wrong store file: whether it is a beginning of one version, and what it is made of. */
  readonly explain?: (
    storeRelPath: string,
    content: Buffer,
  ) => { partial: boolean; text: string } | null
  readonly intervalMs: number
}

export class StoreObserver {
  readonly #o: ObserverOptions
  readonly #seen = new Map<string, string>()
  #timer: NodeJS.Timeout | null = null
  #running: Promise<void> | null = null
  readonly violations: Violation[] = []
  /** Distinct file states hashed and found right. */
  okStates = 0
  scans = 0
  /** Distinct paths holding a right file at least once. */
  readonly okPaths = new Set<string>()

  constructor(opts: ObserverOptions) {
    this.#o = opts
  }

  start(): void {
    const tick = () => {
      this.#running = this.scan().finally(() => {
        this.#running = null
        if (this.#timer !== null) this.#timer = setTimeout(tick, this.#o.intervalMs)
      })
    }
    this.#timer = setTimeout(tick, 0)
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    await this.#running
  }

  get wrong(): number {
    return this.violations.filter((v) => v.kind !== 'partial').length
  }

  get partial(): number {
    return this.violations.filter((v) => v.kind === 'partial').length
  }

  /** One pass over both trees. */
  async scan(): Promise<void> {
    this.scans++
    for (const [root, dir] of [
      ['store', this.#o.store],
      ['cas', this.#o.cas],
    ] as const) {
      for (const full of await walk(dir)) await this.#check(root, dir, full)
    }
  }

  async #check(root: 'store' | 'cas', dir: string, full: string): Promise<void> {
    let fh: FileHandle
    try {
      fh = await open(full, 'r')
    } catch {
      return // gone between the listing and now
    }
    try {
      const st = await fh.stat()
      if (!st.isFile()) return
      const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`
      if (this.#seen.get(full) === stamp) return
      this.#seen.set(full, stamp)
      const h = createHash('sha256')
      let bytes = 0
      const buf = Buffer.allocUnsafe(1024 * 1024)
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, bytes)
        if (bytesRead === 0) break
        h.update(buf.subarray(0, bytesRead))
        bytes += bytesRead
      }
      const sha256 = h.digest('hex')
      const rel = relative(dir, full).split(sep).join('/')
      let verdict =
        root === 'store' ? this.#judgeStore(rel, sha256, bytes) : judgeBlob(rel, sha256, bytes)
      if (
        verdict !== null &&
        root === 'store' &&
        verdict.kind !== 'unexpected' &&
        this.#o.explain
      ) {
        // Rare: read it again, whole, and say what it is made of (same inode: this handle).
        const content = Buffer.alloc(bytes)
        await fh.read(content, 0, bytes, 0)
        const why = this.#o.explain(rel, content)
        if (why !== null)
          verdict = {
            kind: why.partial ? 'partial' : 'wrong',
            expected: `${verdict.expected}; found ${why.text}`,
          }
      }
      if (verdict === null) {
        this.okStates++
        this.okPaths.add(`${root}/${rel}`)
      } else this.violations.push({ root, path: rel, bytes, sha256, atMs: Date.now(), ...verdict })
    } finally {
      await fh.close()
    }
  }

  #judgeStore(
    rel: string,
    sha256: string,
    bytes: number,
  ): Pick<Violation, 'kind' | 'expected'> | null {
    const versions = this.#o.versionsOf(rel)
    if (versions === undefined) return { kind: 'unexpected', expected: 'no upload sent this path' }
    if (versions.has(sha256)) return null
    const sizes = [...versions.values()]
    const expected = [...versions].map(([s, n]) => `${s.slice(0, 12)}…/${n}`).join(' or ')
    // Without the content at hand (no `explain`): shorter than a version counts as partial.
    return { kind: sizes.some((n) => bytes < n) ? 'partial' : 'wrong', expected }
  }
}

function judgeBlob(
  rel: string,
  sha256: string,
  bytes: number,
): Pick<Violation, 'kind' | 'expected'> | null {
  const m = /^([0-9a-f]{2})\/([0-9a-f]{62})\/(\d+)\.blob$/.exec(rel)
  if (!m) return { kind: 'unexpected', expected: 'cas/<sha[0:2]>/<sha[2:]>/<size>.blob' }
  const want = m[1]! + m[2]!
  const size = Number(m[3])
  if (sha256 === want && bytes === size) return null
  return { kind: bytes < size ? 'partial' : 'wrong', expected: `${want.slice(0, 12)}…/${size}` }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = []
  let entries: Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return out
  }
  for (const e of entries) {
    const full = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await walk(full)))
    else if (e.isFile()) out.push(full)
  }
  return out
}
