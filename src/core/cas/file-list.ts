/**
 * The file lists of Shaman requirements and checkouts (`{files: [{sha, size, path}]}`, up to 8 MiB
 * of JSON, ~80,000 entries): parsed, checked and folded in one pass, and handed back in a compact
 * form. Used on a worker thread (file-list-worker.ts) for large bodies, inline for small ones.
 *
 * Why compact: a parsed 8 MiB list is 80,000 small objects; sending those back from a worker
 * costs the main thread as much as parsing them (structured clone), so the worker answers with
 * three flat buffers (32-byte digests, sizes, `\n`-joined paths: checked paths hold no control
 * characters) that are transferred, not copied, and read by index.
 */
import { UploadError } from '../errors.js'
import { checkRelativePath, type PathRules } from '../paths.js'
import { SHA256_HEX, type CasKey } from './cas-store.js'
import { checkCheckoutPath, planLinks, type CheckoutFile } from './checkout.js'

/** Entries as flat arrays; entry i is `shas[32i..32i+32)`, `sizes[i]`, `paths[i]`. */
export interface PackedFiles {
  readonly count: number
  readonly shas: Uint8Array
  readonly sizes: Float64Array
  /** Paths joined with `\n`. */
  readonly paths: string
}

export interface RequirementsList {
  readonly kind: 'requirements'
  /** Unique by sha + size, in first-seen order, with the path of the first occurrence. */
  readonly files: PackedFiles
  /** Entries listed, duplicates included. */
  readonly listed: number
}

export interface CheckoutList {
  readonly kind: 'checkout'
  readonly checkoutPath: string
  /** One per link (path unique); `keyIndex[i]` is the entry of `keys` it points at. */
  readonly links: { readonly count: number; readonly keyIndex: Uint32Array; readonly paths: string }
  /** The distinct objects (paths empty). */
  readonly keys: PackedFiles
  /** Every folder the links need, parents before children, `\n`-joined ('' when none). */
  readonly dirs: string
}

export type FileList = RequirementsList | CheckoutList

export interface FileListError {
  readonly code:
    | 'ERR_INVALID_ARGUMENT'
    | 'ERR_INVALID_PATH'
    | 'ERR_PATH_TOO_LONG'
    | 'ERR_RESERVED_NAME'
  readonly message: string
}

export function pack(keys: readonly CasKey[], paths: readonly string[]): PackedFiles {
  const shas = new Uint8Array(keys.length * 32)
  const sizes = new Float64Array(keys.length)
  keys.forEach((k, i) => {
    shas.set(Buffer.from(k.sha256, 'hex'), i * 32)
    sizes[i] = k.size
  })
  return { count: keys.length, shas, sizes, paths: paths.join('\n') }
}

const views = new WeakMap<Uint8Array, Buffer>()

/** The key of entry `i`. One Buffer view per list, not per entry: less garbage for the GC. */
export function keyAt(p: PackedFiles, i: number): CasKey {
  let b = views.get(p.shas)
  if (b === undefined) {
    b = Buffer.from(p.shas.buffer, p.shas.byteOffset, p.shas.byteLength)
    views.set(p.shas, b)
  }
  return { sha256: b.toString('hex', i * 32, i * 32 + 32), size: p.sizes[i]! }
}

/**
 * The requirements answer, `{"files":[…]}`, for the entries whose `stored` flag is 0, with status
 * "uploading" where `claimed` is 1, as UTF-8 JSON.
 */
export function renderRequirements(
  p: PackedFiles,
  stored: Uint8Array,
  claimed: Uint8Array,
): Buffer {
  const paths = splitList(p.paths)
  const parts: string[] = []
  for (let i = 0; i < p.count; i++) {
    if (stored[i] === 1) continue
    const k = keyAt(p, i)
    parts.push(
      `{"sha":"${k.sha256}","size":${k.size},"path":${JSON.stringify(paths[i])},"status":"${claimed[i] === 1 ? 'uploading' : 'unknown'}"}`,
    )
  }
  return Buffer.from(`{"files":[${parts.join(',')}]}`, 'utf8')
}

/** Splits a `\n`-joined list ('' is none). */
export function splitList(joined: string): string[] {
  return joined === '' ? [] : joined.split('\n')
}

function checkFiles(
  body: unknown,
  what: string,
  maxFiles: number,
  rules?: PathRules,
): { obj: Record<string, unknown>; files: CheckoutFile[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new UploadError('ERR_INVALID_ARGUMENT', `${what} must be a JSON object`)
  }
  const obj = body as Record<string, unknown>
  const list = obj['files']
  if (!Array.isArray(list))
    throw new UploadError('ERR_INVALID_ARGUMENT', 'files is required and must be an array')
  if (list.length > maxFiles) {
    throw new UploadError(
      'ERR_INVALID_ARGUMENT',
      `files lists ${list.length} entries; at most ${maxFiles} are allowed`,
    )
  }
  const files = list.map((f: unknown, i): CheckoutFile => {
    if (typeof f !== 'object' || f === null || Array.isArray(f))
      throw new UploadError('ERR_INVALID_ARGUMENT', `files[${i}] must be an object`)
    const { sha, size, path } = f as Record<string, unknown>
    if (typeof sha !== 'string' || !SHA256_HEX.test(sha)) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        `files[${i}].sha must be a SHA256 checksum: 64 lowercase hexadecimal digits`,
      )
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new UploadError(
        'ERR_INVALID_ARGUMENT',
        `files[${i}].size must be a non-negative integer`,
      )
    }
    if (typeof path !== 'string')
      throw new UploadError('ERR_INVALID_ARGUMENT', `files[${i}].path must be a string`)
    try {
      checkRelativePath(path, rules)
    } catch (err) {
      if (err instanceof UploadError)
        throw new UploadError(err.code, `files[${i}].path: ${err.message}`)
      throw err
    }
    return { sha256: sha, size, path }
  })
  return { obj, files }
}

/**
 * Parses and checks a requirements or checkout body (UTF-8 JSON). Throws UploadError with the
 * codes of FileListError; the messages name the entry (`files[12].sha …`).
 */
export function parseFileList(
  body: Uint8Array,
  kind: 'requirements' | 'checkout',
  maxFiles: number,
  rules?: PathRules,
): FileList {
  let doc: unknown
  try {
    doc = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'))
  } catch {
    throw new UploadError('ERR_INVALID_ARGUMENT', 'the body is not valid JSON')
  }
  if (kind === 'requirements') {
    const { files } = checkFiles(doc, 'ShamanRequirementsRequest', maxFiles, rules)
    // Duplicates (same sha + size) are listed once, with the path of their first occurrence.
    const seen = new Set<string>()
    const keys: CasKey[] = []
    const paths: string[] = []
    for (const f of files) {
      const id = `${f.sha256}:${f.size}`
      if (seen.has(id)) continue
      seen.add(id)
      keys.push(f)
      paths.push(f.path)
    }
    return { kind, files: pack(keys, paths), listed: files.length }
  }
  const { obj, files } = checkFiles(doc, 'ShamanCheckout', maxFiles, rules)
  const checkoutPath = obj['checkoutPath']
  if (typeof checkoutPath !== 'string')
    throw new UploadError('ERR_INVALID_ARGUMENT', 'checkoutPath is required and must be a string')
  checkCheckoutPath(checkoutPath, rules)
  const links = planLinks(files, rules)
  const index = new Map<string, number>()
  const keys: CasKey[] = []
  const keyIndex = new Uint32Array(links.length)
  const dirs = new Set<string>()
  links.forEach((l, i) => {
    const id = `${l.key.sha256}:${l.key.size}`
    let k = index.get(id)
    if (k === undefined) {
      k = keys.length
      index.set(id, k)
      keys.push(l.key)
    }
    keyIndex[i] = k
    for (let d = 1; d < l.segs.length; d++) dirs.add(l.segs.slice(0, d).join('/'))
  })
  return {
    kind,
    checkoutPath,
    links: { count: links.length, keyIndex, paths: links.map((l) => l.segs.join('/')).join('\n') },
    keys: pack(keys, []),
    // Sorted, a folder comes before its sub-folders.
    dirs: [...dirs].sort().join('\n'),
  }
}
