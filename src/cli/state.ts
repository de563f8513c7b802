/**
 * Resume across runs: one small JSON file per upload under the user's cache directory (XDG Base
 * Directory spec: `$XDG_CACHE_HOME`, else `~/.cache`), named by a hash of what identifies the
 * upload: the file's absolute path, size and mtime and the target. A changed file gets a new key,
 * so it never resumes into an upload of its old bytes. The file is removed once the upload is
 * verified.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

export interface FileIdentity {
  /** Absolute path. */
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
}

/** `$XDG_CACHE_HOME/ferry/uploads`, or `~/.cache/ferry/uploads`. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env['XDG_CACHE_HOME']
  // The spec: a relative path in an XDG variable is invalid and must be ignored.
  const base = xdg?.startsWith('/') ? xdg : join(homedir(), '.cache')
  return join(base, 'ferry', 'uploads')
}

/** The state key of uploading `file` to `target` (protocol, endpoint and path in one string). */
export function stateKey(file: FileIdentity, target: string): string {
  const id = JSON.stringify([file.path, file.size, Math.floor(file.mtimeMs), target])
  return createHash('sha256').update(id).digest('hex').slice(0, 40)
}

export class StateFile<T extends object> {
  readonly #file: string

  constructor(dir: string, key: string) {
    this.#file = join(dir, `${key}.json`)
  }

  get path(): string {
    return this.#file
  }

  /** The saved state, or null when there is none or it cannot be read (then we start afresh). */
  async load(): Promise<T | null> {
    try {
      const v: unknown = JSON.parse(await readFile(this.#file, 'utf8'))
      return typeof v === 'object' && v !== null ? (v as T) : null
    } catch {
      return null
    }
  }

  /** Writes through a temp file and a rename, so a kill never leaves half a state file. */
  async save(state: T): Promise<void> {
    await mkdir(join(this.#file, '..'), { recursive: true })
    const tmp = `${this.#file}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify(state))
    await rename(tmp, this.#file)
  }

  async remove(): Promise<void> {
    await rm(this.#file, { force: true })
  }
}
