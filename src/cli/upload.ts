/**
 * `ferry upload FILE… --to URL`: expands directories, runs `jobs` files at a time, and for each
 * one uploads (tus or ImageStore), verifies the server's sha256 against the one read locally,
 * then forgets the resume state. Failures of one file do not stop the others; the exit code says
 * whether all went well.
 */
import type { Stats } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, join, relative, resolve } from 'node:path'
import { CliError } from './errors.js'
import { sha256OfFile } from './hash.js'
import { ImageStoreUpload, type TransferOptions } from './imagestore.js'
import { createReporter, formatBytes, type Reporter } from './progress.js'
import { StateFile, stateDir, stateKey, type FileIdentity } from './state.js'
import { tusEndpoint, tusUpload } from './tus.js'

export type Protocol = 'tus' | 'imagestore'

export interface UploadCommand {
  readonly inputs: readonly string[]
  readonly to: string
  readonly protocol: Protocol
  /** ImageStore: the store path of one file, or the folder for several. */
  readonly path: string | undefined
  /** Bytes per request; 0: the protocol's default. */
  readonly chunkSize: number
  readonly parallel: number
  readonly retries: number
  readonly retryDelayMs: number
  /** Files uploaded at the same time. */
  readonly jobs: number
  readonly json: boolean
}

export interface Io {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WriteStream
  readonly env: NodeJS.ProcessEnv
  readonly signal: AbortSignal
}

interface Item {
  readonly abs: string
  /** The name shown and sent: the file's name, or its path below the named directory. */
  readonly rel: string
}

const IMAGESTORE_CHUNK = 8 * 1024 * 1024

/** A file-system failure as one line: "notes.txt: permission denied". */
function fsMessage(err: unknown, what: string): CliError | null {
  const e = err as NodeJS.ErrnoException
  if (typeof e?.code !== 'string' || !e.code.startsWith('E')) return null
  const words: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'is a directory',
    ENOTDIR: 'not a directory',
  }
  return new CliError(`${what}: ${words[e.code] ?? e.message}`, 2)
}

async function walk(dir: string, under: string, out: Item[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true })
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const e of entries) {
    const abs = join(dir, e.name)
    if (e.isDirectory()) await walk(abs, under, out)
    else if (e.isFile()) out.push({ abs, rel: relative(under, abs).split('\\').join('/') })
  }
}

/** The files named on the command line, directories walked; a missing one is a usage error. */
export async function expandInputs(
  inputs: readonly string[],
): Promise<{ items: Item[]; single: boolean }> {
  const items: Item[] = []
  let dirs = 0
  for (const input of inputs) {
    const abs = resolve(input)
    let st: Stats
    try {
      st = await stat(abs)
    } catch (err) {
      throw fsMessage(err, input) ?? err
    }
    if (st.isDirectory()) {
      dirs++
      const found: Item[] = []
      try {
        await walk(abs, resolve(abs, '..'), found)
      } catch (err) {
        throw fsMessage(err, input) ?? err
      }
      if (found.length === 0) throw new CliError(`${input}: the directory holds no files`, 2)
      items.push(...found)
    } else if (st.isFile()) items.push({ abs, rel: basename(abs) })
    else throw new CliError(`${input}: not a regular file or directory`, 2)
  }
  return { items, single: dirs === 0 && items.length === 1 }
}

function storePathOf(item: Item, path: string | undefined, single: boolean): string {
  if (path === undefined || path === '') return item.rel
  const p = path.replace(/^\/+/, '')
  if (single && !p.endsWith('/')) return p
  return `${p.replace(/\/+$/, '')}/${item.rel}`
}

async function identity(abs: string): Promise<FileIdentity> {
  const st = await stat(abs)
  return { path: abs, size: st.size, mtimeMs: st.mtimeMs }
}

interface Done {
  readonly url: string
  readonly bytes: number
  readonly sha256: string
  readonly resumedFrom: number
}

async function uploadOne(
  cmd: UploadCommand,
  io: Io,
  reporter: Reporter,
  base: URL,
  item: Item,
  single: boolean,
): Promise<Done> {
  let file: FileIdentity
  try {
    file = await identity(item.abs)
  } catch (err) {
    throw fsMessage(err, item.rel) ?? err
  }
  const progress = reporter.file(item.rel, file.size)
  // Read the whole file once, front to back, while the upload runs (see hash.ts).
  const hashing = sha256OfFile(item.abs, io.signal)
  hashing.catch(() => {})
  const options: TransferOptions = {
    chunkSize:
      cmd.chunkSize > 0 ? cmd.chunkSize : cmd.protocol === 'imagestore' ? IMAGESTORE_CHUNK : 0,
    parallel: cmd.parallel,
    retries: cmd.retries,
    retryDelayMs: cmd.retryDelayMs,
    signal: io.signal,
  }
  try {
    let result: { url: string; resumedFrom: number; serverSha256: string | undefined }
    let state: StateFile<object>
    if (cmd.protocol === 'imagestore') {
      const storePath = storePathOf(item, cmd.path, single)
      state = new StateFile(
        stateDir(io.env),
        stateKey(file, `imagestore ${base.href} ${storePath}`),
      )
      result = await new ImageStoreUpload({
        file,
        label: item.rel,
        base,
        storePath,
        options,
        progress,
        state,
      }).run()
    } else {
      const endpoint = tusEndpoint(base)
      const key = stateKey(file, `tus ${endpoint.href}`)
      state = new StateFile(stateDir(io.env), key)
      result = await tusUpload({
        file,
        label: item.rel,
        endpoint,
        options,
        progress,
        state,
        fingerprint: key,
      })
    }
    const local = await hashing
    const after = await identity(item.abs)
    if (after.size !== file.size || after.mtimeMs !== file.mtimeMs) {
      await state.remove()
      throw new CliError(
        `${item.rel}: the file changed while it was uploading; run the command again`,
      )
    }
    if (result.serverSha256 === undefined) {
      throw new CliError(
        `${item.rel}: the server did not report the stored file's sha256, ` +
          'so the upload cannot be verified',
      )
    }
    if (result.serverSha256.toLowerCase() !== local) {
      await state.remove()
      throw new CliError(
        `${item.rel}: verification failed: sha256 here ${local}, ` +
          `on the server ${result.serverSha256}`,
      )
    }
    await state.remove()
    progress.update(file.size)
    return { url: result.url, bytes: file.size, sha256: local, resumedFrom: result.resumedFrom }
  } finally {
    progress.finish()
  }
}

/** Runs the command; answers the exit code (0 all uploaded and verified). */
export async function runUpload(cmd: UploadCommand, io: Io): Promise<number> {
  let base: URL
  try {
    base = new URL(cmd.to)
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('scheme')
  } catch {
    throw new CliError(`--to must be an http:// or https:// URL, got "${cmd.to}"`, 2)
  }
  const { items, single } = await expandInputs(cmd.inputs)
  const reporter = createReporter(io.stderr, false)
  const queue = [...items]
  let worst = 0
  const results: Done[] = []
  const worker = async () => {
    while (queue.length > 0 && !io.signal.aborted) {
      const item = queue.shift()!
      try {
        const done = await uploadOne(cmd, io, reporter, base, item, single)
        results.push(done)
        if (cmd.json) io.stdout.write(`${JSON.stringify(done)}\n`)
        else {
          const resumed =
            done.resumedFrom > 0 ? `, resumed at ${formatBytes(done.resumedFrom)}` : ''
          reporter.note(
            `${item.rel}: uploaded ${formatBytes(done.bytes)} to ${done.url} ` +
              `(sha256 ${done.sha256} verified${resumed})`,
          )
        }
      } catch (err) {
        if (io.signal.aborted) throw io.signal.reason
        if (!(err instanceof CliError)) throw err
        reporter.note(`ferry: ${err.message}`)
        worst = Math.max(worst, err.exitCode)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.jobs, items.length)) }, worker))
  } finally {
    reporter.stop()
  }
  if (items.length > 1 && !cmd.json) {
    io.stderr.write(`${results.length} of ${items.length} files uploaded\n`)
  }
  return worst
}
