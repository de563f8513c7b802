import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

/** Where everything lives inside the data directory (one filesystem, so rename and link are atomic). */
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
