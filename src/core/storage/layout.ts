import { DiskSync } from './disk-sync.js'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { FsObjectStore } from './fs-object-store.js'
import type { ObjectStore } from './object-store.js'
import { TempFiles } from './temp-files.js'

/**
 * Where everything lives inside the data directory (one filesystem, so rename and link are atomic).
 */
export interface DataLayout {
  readonly root: string
  /** Temp files of open sessions (`s-*.part`) and whole-file streams (`w-*.part`). */
  readonly tmp: string
  /** ImageStore files. */
  readonly store: string
  /** Content-addressed objects: `cas/<sha[0:2]>/<sha[2:]>/<size>.blob`. */
  readonly cas: string
  readonly checkouts: string
  readonly staging: string
  readonly ingest: string
  /** Finished tus uploads: `tus/<id[0:2]>/<id>` and `<id>.info.json`. */
  readonly tus: string
  /** The embedded state store. */
  readonly state: string
}

export function createLayout(root: string): DataLayout {
  const layout: DataLayout = {
    root,
    tmp: join(root, 'tmp'),
    store: join(root, 'store'),
    cas: join(root, 'cas'),
    checkouts: join(root, 'checkouts'),
    staging: join(root, 'staging'),
    ingest: join(root, 'ingest'),
    tus: join(root, 'tus'),
    state: join(root, 'state'),
  }
  for (const dir of Object.values(layout)) mkdirSync(dir, { recursive: true })
  return Object.freeze(layout)
}

/** The areas whose objects may live elsewhere than the data directory (FERRY_STORAGE=s3). */
export type StoreArea = 'store' | 'cas' | 'staging' | 'ingest' | 'tus'

/**
 * The object stores of the families, one per area, sharing the data directory's tmp/ through one
 * TempFiles. `S` is the store of the areas: the data directory's (FsObjectStore), or a remote one
 * (FERRY_STORAGE=s3: an S3ObjectStore per area, each under its own key prefix). Shaman checkouts
 * are symlink trees and stay local whatever the backend.
 */
export interface DataStores<S extends ObjectStore = FsObjectStore> {
  readonly temps: TempFiles
  /** ImageStore files. */
  readonly store: S
  readonly cas: S
  readonly checkouts: FsObjectStore
  readonly staging: S
  readonly ingest: S
  /** Finished tus uploads. */
  readonly tus: S
}

/** The data directory's stores (FERRY_STORAGE=fs). */
export function createStores(
  layout: DataLayout,
  instanceId?: string,
  remote?: undefined,
  sync?: DiskSync,
): DataStores
/** Local temp files and checkouts; every other area from `remote` (FERRY_STORAGE=s3). */
export function createStores<S extends ObjectStore>(
  layout: DataLayout,
  instanceId: string | undefined,
  remote: (area: StoreArea) => S,
  sync?: DiskSync,
): DataStores<S>
export function createStores(
  layout: DataLayout,
  instanceId?: string,
  remote?: (area: StoreArea) => ObjectStore,
  sync: DiskSync = DiskSync.on,
): DataStores<ObjectStore> {
  const temps = new TempFiles(layout.tmp, instanceId)
  const local = (root: string) => new FsObjectStore({ root, temps, sync })
  const at = (area: StoreArea) => (remote ? remote(area) : local(layout[area]))
  return Object.freeze({
    temps,
    store: at('store'),
    cas: at('cas'),
    checkouts: local(layout.checkouts),
    staging: at('staging'),
    ingest: at('ingest'),
    tus: at('tus'),
  })
}
