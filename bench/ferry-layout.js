// The one place the bench reaches into Ferry's own code: where a build keeps what it stored.
// Verification reads stored files back at the paths the build under test computes, so the bench
// never carries its own copy of the CAS layout. When Ferry moves its layout code, change the
// module paths and `ferryLayout` below; nothing else in bench/ knows them.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

// createLayout(root): the data directory's parts; createStores(layout): its object stores (newer
// builds); CasStore#blobPath(key): one object's file.
const LAYOUT_MODULE = 'src/core/storage/layout.js'
const CAS_MODULE = 'src/core/cas/cas-store.js'
// FinishedUploads#dataPath(id): a finished tus upload's bytes (builds with the tus family only).
const TUS_MODULE = 'src/http/tus/finished.js'
const FS_STORE_MODULE = 'src/core/storage/fs-object-store.js'

async function ferryLayout(distDir) {
  const load = (m) => import(pathToFileURL(path.join(distDir, m)).href)
  const [{ createLayout, createStores }, { CasStore }] = await Promise.all(
    [LAYOUT_MODULE, CAS_MODULE].map(load),
  )
  return (dataDir) => {
    const layout = createLayout(dataDir)
    // Never started: no lock, bus or log is touched by blobPath, which only joins paths. Builds
    // with createStores take the blob store (`objects`); older ones the folder (`root`).
    const objects = createStores ? { objects: createStores(layout).cas } : {}
    const cas = new CasStore({
      ...objects,
      root: layout.cas,
      locker: null,
      bus: null,
      claimTtlMs: 1,
      log: null,
    })
    return {
      casBlob: (sha256, size) => cas.blobPath({ sha256, size }),
      imageStoreFile: (rel) => path.join(layout.store, ...rel.split('/')),
    }
  }
}

/** Adds `tusFile(id)` to a build's layout: where its FinishedUploads keeps a finished upload. */
async function withTus(distDir, layoutOf) {
  const load = (m) => import(pathToFileURL(path.join(distDir, m)).href)
  const hasTus = fs.existsSync(path.join(distDir, TUS_MODULE))
  const [{ createLayout, createStores }, { FinishedUploads }, { FsObjectStore }] =
    await Promise.all([
      load(LAYOUT_MODULE),
      hasTus ? load(TUS_MODULE) : {},
      hasTus ? load(FS_STORE_MODULE) : {},
    ])
  // As the composition root builds it: an FsObjectStore over the data directory's tus folder.
  const finishedOf = (layout) => {
    const { temps } = createStores(layout)
    return new FinishedUploads(new FsObjectStore({ root: layout.tus, temps }), temps)
  }
  return (dataDir) => {
    const tus = FinishedUploads ? finishedOf(createLayout(dataDir)) : null
    const tusFile = (id) => {
      if (!tus) throw new Error(`this Ferry build (${distDir}) has no ${TUS_MODULE}`)
      return tus.dataPath(id)
    }
    return { ...layoutOf(dataDir), tusFile }
  }
}

/**
 * Where Ferry build `distDir` (the directory holding `src/main.js`) stores uploads in a data
 * directory: `(dataDir) => {casBlob(sha256, size), imageStoreFile(relPath), tusFile(id)}`.
 * A `--ferry-main` that is not a Ferry build (the harness testing itself with the minimal
 * server, which mimics the layout) falls back to `fallbackDistDir`, the repository's own dist/.
 */
export async function loadFerryLayout(distDir, fallbackDistDir) {
  for (const dir of [distDir, fallbackDistDir]) {
    if (!dir || !fs.existsSync(path.join(dir, CAS_MODULE))) continue
    return withTus(dir, await ferryLayout(dir))
  }
  throw new Error(
    `no Ferry layout code (${CAS_MODULE}) under ${distDir} or ${fallbackDistDir}: ` +
      'build Ferry first',
  )
}
