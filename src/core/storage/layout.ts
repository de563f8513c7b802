import { DiskSync } from './disk-sync.js'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { FsObjectStore } from './fs-object-store.js'
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

/** The object stores of a data directory, one per area, sharing its tmp/ through one TempFiles. */
export interface DataStores {
  readonly temps: TempFiles
  /** ImageStore files. */
  readonly store: FsObjectStore
  readonly cas: FsObjectStore
  readonly checkouts: FsObjectStore
  readonly staging: FsObjectStore
  readonly ingest: FsObjectStore
}

export function createStores(
  layout: DataLayout,
  instanceId?: string,
  sync: DiskSync = DiskSync.on,
): DataStores {
  const temps = new TempFiles(layout.tmp, instanceId)
  const at = (root: string) => new FsObjectStore({ root, temps, sync })
  return Object.freeze({
    temps,
    store: at(layout.store),
    cas: at(layout.cas),
    checkouts: at(layout.checkouts),
    staging: at(layout.staging),
    ingest: at(layout.ingest),
  })
}
