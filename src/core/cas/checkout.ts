/**
 * Checkouts: a directory under `<dataDir>/checkouts/` holding one RELATIVE symlink per file,
 * pointing at its blob in the content-addressed store (Flamenco pkg/shaman/checkout/checkout.go).
 *
 * The tree is built in a hidden sibling directory (`<parent>/.ferry-co-XXXXXX`, same depth, so the
 * relative link targets are already right) and renamed into place: a reader sees no checkout or
 * the whole one. Departures from Flamenco's code, following its spec: an existing checkout is
 * 409 (no random suffix), missing files are 424, bad paths are refused (Flamenco joins file paths
 * unchecked, so `../../x` escaped the checkout), and a failure removes only our temp directory
 * (Flamenco erased the requested path, i.e. someone else's older checkout).
 */
import type { Logger } from 'pino'
import { UploadError } from '../errors.js'
import { checkRelativePath, type PathRules } from '../paths.js'
import type { Locker } from '../state/types.js'
import { isInTheWay } from '../storage/errno.js'
import type { ObjectStore, SymlinkTrees, TreeBuilder } from '../storage/object-store.js'
import { CHECKOUT_TEMP_PREFIX } from '../storage/temp-files.js'
import { blobKey, type CasKey, type CasStore } from './cas-store.js'

/**
 * Temp directories of checkouts being built (declared with the other temp names in TempFiles);
 * no client path may use a name like this.
 */
export { CHECKOUT_TEMP_PREFIX }

/**
 * An empty file at the top of every checkout Ferry makes (written into the temp directory, so it
 * appears with the checkout in one rename). It is how a later request tells a checkout from the
 * plain folders above checkouts: a checkout path whose ancestor holds it lies inside another
 * checkout and is refused. Its name uses the reserved prefix, so no checkout or file path can
 * collide with it. Checkouts made before it existed carry none and are not recognised.
 */
export const CHECKOUT_MARK = `${CHECKOUT_TEMP_PREFIX}checkout`

export interface CheckoutFile extends CasKey {
  /** POSIX path of the file inside the checkout. */
  readonly path: string
}

/** What checkouts need of their ObjectStore: trees of symlinks built aside and renamed in. */
export type CheckoutObjects = ObjectStore & SymlinkTrees

export interface CheckoutOptions {
  readonly cas: CasStore
  /** The checkouts' store. */
  readonly checkouts: CheckoutObjects
  readonly locker: Locker
  readonly lockTtlMs: number
  readonly log: Logger
  readonly pathRules?: PathRules
  readonly signal?: AbortSignal
  /** Test hook: awaited with the tree built, just before the final checks and the rename. */
  readonly beforePublish?: (checkoutPath: string) => Promise<void>
}

// Flamenco's isValidCheckoutPath: no leading "/", none of ? * : ; { } \ anywhere.
const FLAMENCO_CHECKOUT_PATH = /^[^/?*:;{}\\][^?*:;{}\\]*$/

function checkNotReserved(segs: readonly string[], what: string): void {
  if (segs.some((s) => s.startsWith(CHECKOUT_TEMP_PREFIX))) {
    throw new UploadError(
      'ERR_RESERVED_NAME',
      `${what} must not use names starting with "${CHECKOUT_TEMP_PREFIX}"`,
    )
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
    checkNotReserved(segs, 'a file path')
    const rel = segs.join('/')
    const seen = byPath.get(rel)
    if (seen !== undefined) {
      if (seen.key.sha256 !== f.sha256 || seen.key.size !== f.size) {
        throw new UploadError(
          'ERR_INVALID_PATH',
          `"${rel.slice(0, 200)}" is listed twice with different contents`,
        )
      }
      continue
    }
    byPath.set(rel, { segs, key: { sha256: f.sha256, size: f.size } })
    for (let i = 1; i < segs.length; i++) folders.add(segs.slice(0, i).join('/'))
  }
  for (const folder of folders) {
    if (byPath.has(folder))
      throw new UploadError(
        'ERR_INVALID_PATH',
        `"${folder.slice(0, 200)}" is both a file and a folder`,
      )
  }
  return [...byPath.values()]
}

function uniqueKeys(links: readonly PlannedLink[]): CasKey[] {
  const m = new Map<string, CasKey>()
  for (const l of links) m.set(`${l.key.sha256}:${l.key.size}`, l.key)
  return [...m.values()]
}

/** Runs `fn` over `items`, at most `n` at once. */
async function eachLimit<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0
  const run = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run))
}

async function missingOf(
  keys: readonly CasKey[],
  test: (k: CasKey) => Promise<boolean>,
): Promise<CasKey[]> {
  const missing: CasKey[] = []
  await eachLimit(keys, 32, async (k) => {
    if (!(await test(k))) missing.push(k)
  })
  return missing
}

function missingError(missing: readonly CasKey[]): UploadError {
  const some = missing
    .slice(0, 3)
    .map((k) => `${k.sha256}/${k.size}`)
    .join(', ')
  return new UploadError(
    'ERR_DEPENDENCY_MISSING',
    `unknown files requested in checkout: ${missing.length} not stored (${some}${missing.length > 3 ? ', …' : ''})`,
    {
      detail: { kind: 'missing-objects', count: missing.length },
    },
  )
}

function inTheWay(err: unknown): UploadError | null {
  if (isInTheWay(err)) {
    return new UploadError(
      'ERR_ALREADY_EXISTS',
      'checkout already exists (or a file is in the way of its path)',
      { cause: err },
    )
  }
  return null
}

const lockKeyOf = (rel: string) => `checkout:${rel}`

/** Whether the folder `rel` carries CHECKOUT_MARK (any answer but "nothing there" counts). */
async function isMarked(tree: CheckoutObjects, rel: string): Promise<boolean> {
  return (await tree.entryKind(`${rel}/${CHECKOUT_MARK}`).catch(() => null)) !== null
}

/**
 * Refuses (ERR_ALREADY_EXISTS → 409) a checkout path that lies inside another checkout: an
 * ancestor folder that carries CHECKOUT_MARK, an ancestor another request (on any instance) is
 * creating right now (its lock is held), or a file or symlink where a folder is needed.
 */
async function checkAncestors(
  o: CheckoutOptions,
  tree: CheckoutObjects,
  segs: readonly string[],
): Promise<void> {
  let onDisk = true
  for (let i = 1; i < segs.length; i++) {
    const rel = segs.slice(0, i).join('/')
    if (await o.locker.isHeld(lockKeyOf(rel))) {
      throw new UploadError(
        'ERR_ALREADY_EXISTS',
        `a checkout is being created at "${rel}", which contains this path`,
      )
    }
    if (!onDisk) continue // below a missing folder nothing exists yet; only the locks matter
    const kind = await tree.entryKind(rel)
    if (kind === null) {
      onDisk = false
      continue
    }
    if (kind !== 'folder') {
      const msg = `"${rel}" is a file, not a folder; a checkout cannot be made inside it`
      throw new UploadError('ERR_ALREADY_EXISTS', msg)
    }
    if (await isMarked(tree, rel)) {
      throw new UploadError(
        'ERR_ALREADY_EXISTS',
        `"${rel}" is a checkout; a checkout cannot be made inside another`,
      )
    }
  }
}

/**
 * Creates the checkout `checkoutPath` (already checked by checkCheckoutPath) with one symlink per
 * file. Throws ERR_DEPENDENCY_MISSING when an object is not stored, ERR_ALREADY_EXISTS when the
 * path exists (a checkout, or a folder that holds checkouts), lies inside another checkout, or
 * another instance is creating it or a checkout around it. Answers the checkout's relative path.
 *
 * Nesting, across instances: each creation holds the lock of its own path while it builds, and
 * checks its ancestors (marks and locks, above) before it starts and again after its temp
 * directory exists, just before the rename. Whichever of two overlapping requests gets there
 * first wins; the other gets 409:
 * - `a` being created while `a/b` is: `a/b`'s second check sees `a`'s lock, or, if `a/b` got
 *   further, its temp directory already sits in the plain folder `a`, so `a`'s rename onto the
 *   non-empty `a` fails (ENOTEMPTY);
 * - `a` already a checkout: its mark refuses `a/b` before anything is written.
 */
export async function createCheckout(
  o: CheckoutOptions,
  checkoutPath: string,
  files: readonly CheckoutFile[],
): Promise<string> {
  const links = planLinks(files, o.pathRules)
  const keys = uniqueKeys(links)
  const index = new Map(keys.map((k, i) => [`${k.sha256}:${k.size}`, i]))
  const dirs = new Set<string>()
  for (const l of links)
    for (let i = 1; i < l.segs.length; i++) dirs.add(l.segs.slice(0, i).join('/'))
  return createPlannedCheckout(o, checkoutPath, {
    linkCount: links.length,
    linkPath: (i) => links[i]!.segs.join('/'),
    linkKey: (i) => index.get(`${links[i]!.key.sha256}:${links[i]!.key.size}`)!,
    keys,
    dirs: [...dirs].sort(),
  })
}

/**
 * A checked checkout, ready to build (from planLinks, or from a file list parsed on a worker):
 * link `i` is `linkPath(i)` → `keys[linkKey(i)]`; `dirs` are the folders the links need, parents
 * first. Read by index so a large plan is never turned into 80,000 objects at once.
 */
export interface CheckoutPlan {
  readonly linkCount: number
  linkPath(i: number): string
  linkKey(i: number): number
  readonly keys: readonly CasKey[]
  readonly dirs: readonly string[]
}

/** createCheckout for a plan made beforehand (file paths already checked). */
export async function createPlannedCheckout(
  o: CheckoutOptions,
  checkoutPath: string,
  plan: CheckoutPlan,
): Promise<string> {
  const segs = checkCheckoutPath(checkoutPath, o.pathRules)
  const rel = segs.join('/')
  const tree = o.checkouts
  const { keys } = plan
  const absent = await missingOf(keys, (k) => o.cas.isStored(k))
  if (absent.length > 0) throw missingError(absent)

  const lock = await o.locker.tryAcquire(lockKeyOf(rel), o.lockTtlMs)
  if (lock === null)
    throw new UploadError('ERR_ALREADY_EXISTS', 'this checkout is being created by another request')
  let building: TreeBuilder | null = null
  try {
    await checkAncestors(o, tree, segs)
    const there = await tree.entryKind(rel).catch(() => null)
    if (there !== null) {
      const isCheckout = there === 'folder' && (await isMarked(tree, rel))
      const msg =
        isCheckout || there !== 'folder'
          ? 'checkout already exists'
          : 'this path holds other checkouts; a checkout cannot contain another'
      throw new UploadError('ERR_ALREADY_EXISTS', msg)
    }
    try {
      building = await tree.beginTree(rel)
    } catch (err) {
      throw inTheWay(err) ?? err
    }
    const b = building
    await b.writeEmpty(CHECKOUT_MARK)
    for (const d of plan.dirs) await b.mkdir(d)
    await eachLimit(
      Array.from({ length: plan.linkCount }, (_, i) => i),
      32,
      async (i) => {
        await b.symlink(plan.linkPath(i), o.cas.objects, blobKey(keys[plan.linkKey(i)]!))
      },
    )
    if (o.signal?.aborted) throw new UploadError('ERR_CLIENT_ABORTED', 'the client went away')
    // The links are now visible to GC (gc.ts walks the temp directory too). Wait out a running
    // pass, then prove every blob is still there (touching it keeps it from the next passes).
    await o.cas.settle(o.signal)
    const gone = await missingOf(keys, (k) => o.cas.touch(k))
    if (gone.length > 0) throw missingError(gone)
    await o.beforePublish?.(rel)
    // Again, now that our temp directory holds the parent folder in place (see above).
    await checkAncestors(o, tree, segs)
    if (lock.signal.aborted)
      throw new UploadError('ERR_LOCKED', 'lost the checkout lock while building it')
    try {
      await b.publish()
    } catch (err) {
      throw inTheWay(err) ?? err
    }
    building = null
    o.log.info(
      { checkoutPath: rel, files: plan.linkCount, objects: keys.length },
      'checkout created',
    )
    return rel
  } finally {
    if (building !== null) await building.abandon().catch(() => {})
    await lock.release().catch(() => {})
  }
}
