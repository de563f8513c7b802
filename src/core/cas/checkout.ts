/**
 * Checkouts: a directory under `<dataDir>/checkouts/` holding one RELATIVE symlink per file,
 * pointing at its blob in the content-addressed store (notes/shaman-imagestore.md 1.7).
 *
 * The tree is built in a hidden sibling directory (`<parent>/.ferry-co-XXXXXX`, same depth, so the
 * relative link targets are already right) and renamed into place: a reader sees no checkout or
 * the whole one. Departures from Flamenco's code, following its spec: an existing checkout is
 * 409 (no random suffix), missing files are 424, bad paths are refused (Flamenco joins file paths
 * unchecked, so `../../x` escaped the checkout), and a failure removes only our temp directory
 * (Flamenco erased the requested path, i.e. someone else's older checkout).
 */
import { chmod, lstat, mkdir, mkdtemp, rename, rm, symlink } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import { checkRelativePath, resolveUnder, type PathRules } from '../paths.js'
import type { Locker } from '../state/types.js'
import { fsyncDir } from '../storage/files.js'
import type { CasKey, CasStore } from './cas-store.js'

/** Temp directories of checkouts being built; no client path may use a name like this. */
export const CHECKOUT_TEMP_PREFIX = '.ferry-co-'

export interface CheckoutFile extends CasKey {
  /** POSIX path of the file inside the checkout. */
  readonly path: string
}

export interface CheckoutOptions {
  readonly cas: CasStore
  /** `layout.checkouts`. */
  readonly root: string
  readonly locker: Locker
  readonly lockTtlMs: number
  readonly log: Logger
  readonly pathRules?: PathRules
  readonly signal?: AbortSignal
}

// Flamenco's isValidCheckoutPath: no leading "/", none of ? * : ; { } \ anywhere.
const FLAMENCO_CHECKOUT_PATH = /^[^/?*:;{}\\][^?*:;{}\\]*$/

function checkNotReserved(segs: readonly string[], what: string): void {
  if (segs.some((s) => s.startsWith(CHECKOUT_TEMP_PREFIX))) {
    throw new UploadError('ERR_RESERVED_NAME', `${what} must not use names starting with "${CHECKOUT_TEMP_PREFIX}"`)
  }
}

/**
 * Checks a checkout path: Flamenco's isValidCheckoutPath rules (non-empty; no leading `/`; none of
 * `? * : ; { } \`; no `../` or `/..`), and ours on top (no `.`/`..`/empty segment, NUL or other
 * control character, or a length over the path rules). Answers the segments.
 */
export function checkCheckoutPath(path: string, rules?: PathRules): string[] {
  if (!FLAMENCO_CHECKOUT_PATH.test(path) || path.includes('../') || path.includes('/..')) {
    throw new UploadError('ERR_INVALID_PATH', `invalid checkout path "${path.slice(0, 200)}"`)
  }
  const segs = checkRelativePath(path, rules)
  checkNotReserved(segs, 'a checkout path')
  return segs
}

interface PlannedLink {
  readonly segs: readonly string[]
  readonly key: CasKey
}

/**
 * Checks every file path and folds duplicates: the same path twice for the same object is one
 * link (Flamenco tolerates an identical existing link); for different objects, or a path that is
 * both a file and a folder of another file, ERR_INVALID_PATH.
 */
export function planLinks(files: readonly CheckoutFile[], rules?: PathRules): PlannedLink[] {
  const byPath = new Map<string, PlannedLink>()
  const folders = new Set<string>()
  for (const f of files) {
    const segs = checkRelativePath(f.path, rules)
    const rel = segs.join('/')
    const seen = byPath.get(rel)
    if (seen !== undefined) {
      if (seen.key.sha256 !== f.sha256 || seen.key.size !== f.size) {
        throw new UploadError('ERR_INVALID_PATH', `"${rel.slice(0, 200)}" is listed twice with different contents`)
      }
      continue
    }
    byPath.set(rel, { segs, key: { sha256: f.sha256, size: f.size } })
    for (let i = 1; i < segs.length; i++) folders.add(segs.slice(0, i).join('/'))
  }
  for (const folder of folders) {
    if (byPath.has(folder)) throw new UploadError('ERR_INVALID_PATH', `"${folder.slice(0, 200)}" is both a file and a folder`)
  }
  return [...byPath.values()]
}

function uniqueKeys(links: readonly PlannedLink[]): CasKey[] {
  const m = new Map<string, CasKey>()
  for (const l of links) m.set(`${l.key.sha256}:${l.key.size}`, l.key)
  return [...m.values()]
}

/** Runs `fn` over `items`, at most `n` at once. */
async function eachLimit<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const run = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run))
}

async function missingOf(keys: readonly CasKey[], test: (k: CasKey) => Promise<boolean>): Promise<CasKey[]> {
  const missing: CasKey[] = []
  await eachLimit(keys, 32, async (k) => {
    if (!(await test(k))) missing.push(k)
  })
  return missing
}

function missingError(missing: readonly CasKey[]): UploadError {
  const some = missing.slice(0, 3).map((k) => `${k.sha256}/${k.size}`).join(', ')
  return new UploadError('ERR_DEPENDENCY_MISSING', `unknown files requested in checkout: ${missing.length} not stored (${some}${missing.length > 3 ? ', …' : ''})`, {
    details: { missing: missing.length },
  })
}

function inTheWay(err: unknown): UploadError | null {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'ENOTDIR') {
    return new UploadError('ERR_ALREADY_EXISTS', 'checkout already exists (or a file is in the way of its path)', { cause: err })
  }
  return null
}

/**
 * Creates the checkout `checkoutPath` (already checked by checkCheckoutPath) with one symlink per
 * file. Throws ERR_DEPENDENCY_MISSING when an object is not stored, ERR_ALREADY_EXISTS when the
 * path exists or another instance is creating it. Answers the checkout's relative path.
 */
export async function createCheckout(o: CheckoutOptions, checkoutPath: string, files: readonly CheckoutFile[]): Promise<string> {
  const segs = checkCheckoutPath(checkoutPath, o.pathRules)
  const rel = segs.join('/')
  const final = resolveUnder(o.root, segs)
  const links = planLinks(files, o.pathRules)
  const keys = uniqueKeys(links)
  const absent = await missingOf(keys, (k) => o.cas.isStored(k))
  if (absent.length > 0) throw missingError(absent)

  const lock = await o.locker.tryAcquire(`checkout:${rel}`, o.lockTtlMs)
  if (lock === null) throw new UploadError('ERR_ALREADY_EXISTS', 'this checkout is being created by another request')
  let tmp: string | null = null
  try {
    if (await lstat(final).then(() => true, () => false)) throw new UploadError('ERR_ALREADY_EXISTS', 'checkout already exists')
    const parent = dirname(final)
    try {
      await mkdir(parent, { recursive: true })
      tmp = await mkdtemp(join(parent, CHECKOUT_TEMP_PREFIX))
      // mkdtemp makes it 0700; a checkout is read by render workers, as Flamenco's 0777 dirs are.
      await chmod(tmp, 0o755)
    } catch (err) {
      throw inTheWay(err) ?? err
    }
    const dirs = new Set<string>()
    for (const l of links) for (let i = 1; i < l.segs.length; i++) dirs.add(l.segs.slice(0, i).join('/'))
    // Sorted, a folder comes before its sub-folders.
    for (const d of [...dirs].sort()) await mkdir(join(tmp, d))
    const tmpDir = tmp
    await eachLimit(links, 32, async (l) => {
      // Relative to where the link will live after the rename (same depth as in tmp).
      const target = relative(dirname(join(final, ...l.segs)), o.cas.blobPath(l.key))
      await symlink(target, join(tmpDir, ...l.segs))
    })
    if (o.signal?.aborted) throw new UploadError('ERR_CLIENT_ABORTED', 'the client went away')
    // The links are now visible to GC (gc.ts walks the temp directory too). Wait out a running
    // pass, then prove every blob is still there (touching it keeps it from the next passes).
    await o.cas.settle(o.signal)
    const gone = await missingOf(keys, (k) => o.cas.touch(k))
    if (gone.length > 0) throw missingError(gone)
    if (lock.signal.aborted) throw new UploadError('ERR_LOCKED', 'lost the checkout lock while building it')
    try {
      await rename(tmp, final)
    } catch (err) {
      throw inTheWay(err) ?? err
    }
    tmp = null
    await fsyncDir(parent)
    o.log.info({ checkoutPath: rel, files: links.length, objects: keys.length }, 'checkout created')
    return rel
  } finally {
    if (tmp !== null) await rm(tmp, { recursive: true, force: true }).catch(() => {})
    await lock.release().catch(() => {})
  }
}
