/**
 * The tus, lakeFS and bulk-ingest families on stores with only the core ObjectStore operations
 * (what a bucket offers): the fallbacks for LocalPaths, HardLinkSnapshots, FolderSync, Appendable
 * and AtomicFolders. Called by test/http/core-store-families.test.ts (the filesystem store seen
 * through `coreOnly`) and test/e2e/s3-core-families.test.ts (S3ObjectStore on the real Swift).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { DEFAULT_INGEST_WORKER_FILE, IngestPool } from '../../src/core/hashing/ingest-pool.js'
import { BulkIngestService, type IngestSummary } from '../../src/core/ingest/bulk-ingest.js'
import { multipartEtag, StagingMultipart } from '../../src/core/staging/multipart.js'
import { StagingStore } from '../../src/core/staging/store.js'
import type { ObjectStore } from '../../src/core/storage/object-store.js'
import { FinishedUploads, type FinishedInfo } from '../../src/http/tus/finished.js'
import { seededBytes, sha256 } from './http.js'
import { testRedisUrl, uniquePrefix } from './redis.js'
import { removeDir, startFerry, tempDir, type TestServer } from './server.js'
import { waitFor } from './wait.js'

const MIB = 1024 * 1024
const LAKEFS = {
  signingSecret: 'core-signing',
  jwtSecret: 'core-jwt',
  credentials: [{ accessKeyId: 'AKIACORE', secretAccessKey: 'core-key' }],
  repositories: [{ name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] }],
}

/** The stores the families get, made once the server runs (its engine: state, temps…). */
export interface FamilyStores {
  readonly staging: ObjectStore
  readonly tus: ObjectStore
  readonly ingest: ObjectStore
  /** The staging store's local folder, when it has one (a copy is then checked by inode). */
  readonly stagingRoot: string | null
}

/**
 * The tus, lakeFS and bulk-ingest families over stores with only the core operations: `make`
 * builds them for a running server (see the test files that call this).
 */
export function familiesOnCoreStores(make: (srv: TestServer) => Promise<FamilyStores>): void {
  let srv: TestServer
  let cfgDir: string
  let objects: ObjectStore
  let stores: FamilyStores
  let store: StagingStore
  let mp: StagingMultipart

  beforeAll(async () => {
    cfgDir = tempDir('ferry-core-cfg-')
    const cfg = join(cfgDir, 'c.json')
    writeFileSync(cfg, JSON.stringify({ lakefs: LAKEFS }))
    srv = await startFerry({
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_CONFIG: cfg,
      FERRY_MAX_UPLOAD_BYTES: String(64 * MIB),
    })
    const { config, state, uploads, pool, log } = srv.app.engine
    stores = await make(srv)
    objects = stores.staging
    const common = { config: config.lakefs!, objects, uploads, pool, maxUploadBytes: 64 * MIB }
    store = new StagingStore(common)
    mp = new StagingMultipart({
      ...common,
      store,
      locker: state.locker,
      lockTtlMs: 10_000,
      idleTtlMs: 600_000,
      log,
    })
  }, 180_000)
  afterAll(async () => {
    await srv.close()
    removeDir(srv.dataDir)
    removeDir(cfgDir)
  })

  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex')
  const signal = new AbortController().signal

  async function putAt(relative: string, data: Buffer): Promise<void> {
    const body = { stream: Readable.from([data]), length: data.length, done: Promise.resolve() }
    await store.receive('repo1', relative, body, { contentMd5: null, signal })
  }

  async function readFrom(store: ObjectStore, key: string): Promise<Buffer> {
    const parts: Buffer[] = []
    for await (const c of (await store.get(key)) as AsyncIterable<Buffer>) parts.push(c)
    return Buffer.concat(parts)
  }

  const read = (key: string) => readFrom(objects, key)

  const link = (path: string, physicalAddress: string, data: Buffer, checksum = md5(data)) =>
    store.link({
      repository: 'repo1',
      branch: 'main',
      path,
      physicalAddress,
      checksum,
      sizeBytes: data.length,
      userMetadata: {},
      contentType: null,
      mtimeSec: null,
      createOnly: false,
    })

  /** The blob key of a linked path (its entry names it). */
  async function blobOf(path: string): Promise<string> {
    const entry = JSON.parse((await read(`repo1/branches/main/objects/${path}.o`)).toString()) as {
      blob: string
    }
    return `repo1/${entry.blob}`
  }

  describe('lakeFS link without hard links', () => {
    test('the blob is a copy: a later PUT to the address does not change the linked object', async () => {
      const a = store.newAddress('repo1', 'main', 'copy.bin', false)
      const first = seededBytes(300_000, 's1')
      await putAt(a.relative, first)
      const stats = await link('copy.bin', a.physicalAddress, first)
      expect(stats.size_bytes).toBe(first.length)
      const blob = await blobOf('copy.bin')
      if (stores.stagingRoot !== null) {
        // A copy, not a second name of the address's file.
        const data = join(stores.stagingRoot, 'repo1', a.relative)
        expect(statSync(join(stores.stagingRoot, blob)).ino).not.toBe(statSync(data).ino)
      }
      await putAt(a.relative, seededBytes(300_000, 's2'))
      expect(sha256(await read(blob))).toBe(sha256(first))
    })

    test('without a sidecar the blob is hashed from the store; a wrong checksum leaves no blob', async () => {
      const a = store.newAddress('repo1', 'main', 'nosidecar.bin', false)
      const data = seededBytes(100_000, 's3')
      await putAt(a.relative, data)
      expect(await objects.delete(`repo1/${a.relative}.digests`)).toBe(true)
      const blobs = async () => {
        let n = 0
        for await (const e of objects.list('repo1/blobs/')) if (e.kind === 'object') n++
        return n
      }
      const before = await blobs()
      await expect(
        link('nosidecar.bin', a.physicalAddress, data, md5(Buffer.from('x'))),
      ).rejects.toMatchObject({
        code: 'ERR_CHECKSUM_MISMATCH',
      })
      expect(await blobs()).toBe(before)
      // The sha256 works as the checksum too: the hash pass made both.
      await link('nosidecar.bin', a.physicalAddress, data, sha256(data))
      expect(await blobs()).toBe(before + 1)
    })

    test('a changed object (another etag) is checked on the bytes copied, not the old sidecar', async () => {
      const a = store.newAddress('repo1', 'main', 'changed.bin', false)
      const first = seededBytes(50_000, 's4')
      await putAt(a.relative, first)
      // The sidecar now names an upload the address no longer holds.
      const side = await read(`repo1/${a.relative}.digests`)
      await putAt(a.relative, seededBytes(50_000, 's5'))
      const tmp = srv.app.engine.uploads.streamTempPath()
      writeFileSync(tmp, side)
      await objects.put(`repo1/${a.relative}.digests`, tmp, { mode: 'overwrite' })
      await expect(link('changed.bin', a.physicalAddress, first)).rejects.toMatchObject({
        code: 'ERR_CHECKSUM_MISMATCH',
      })
    })

    test('nothing at the address: ERR_DEPENDENCY_MISSING', async () => {
      const a = store.newAddress('repo1', 'main', 'none.bin', false)
      await expect(link('none.bin', a.physicalAddress, Buffer.from('x'))).rejects.toMatchObject({
        code: 'ERR_DEPENDENCY_MISSING',
      })
    })
  })

  describe('lakeFS multipart without local paths or atomic folders', () => {
    const partOf = (data: Buffer) => ({
      stream: Readable.from([data]),
      length: data.length,
    })

    test('parts are joined from the store; the link checks the multipart ETag', async () => {
      const c = await mp.create('repo1', 'main', 'mp.bin', 2)
      const p1 = seededBytes(5 * MIB, 's6')
      const p2 = seededBytes(MIB + 7, 's7')
      for (const [n, d] of [
        [2, p2],
        [1, p1],
      ] as const) {
        await mp.receivePart('repo1', c.relative, c.uploadId, n, partOf(d), {
          contentMd5: null,
          signal,
        })
      }
      const ref = {
        repository: 'repo1',
        branch: 'main',
        path: 'mp.bin',
        uploadId: c.uploadId,
        physicalAddress: c.physicalAddress,
      }
      const parts = [
        { partNumber: 1, etag: md5(p1) },
        { partNumber: 2, etag: `"${md5(p2)}"` },
      ]
      const stats = await mp.complete({ ...ref, parts, userMetadata: {}, contentType: null })
      expect(stats.checksum).toBe(multipartEtag([md5(p1), md5(p2)]))
      expect(sha256(await read(await blobOf('mp.bin')))).toBe(sha256(Buffer.concat([p1, p2])))
    })

    test('a wrong part ETag is refused; an abort removes the upload, manifest first', async () => {
      const c = await mp.create('repo1', 'main', 'bad.bin', 1)
      const p1 = seededBytes(1000, 's8')
      await mp.receivePart('repo1', c.relative, c.uploadId, 1, partOf(p1), {
        contentMd5: null,
        signal,
      })
      const ref = {
        repository: 'repo1',
        branch: 'main',
        path: 'bad.bin',
        uploadId: c.uploadId,
        physicalAddress: c.physicalAddress,
      }
      const wrong = [{ partNumber: 1, etag: md5(Buffer.from('other')) }]
      await expect(
        mp.complete({ ...ref, parts: wrong, userMetadata: {}, contentType: null }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
      await mp.abort(ref)
      const left: string[] = []
      for await (const e of objects.list(`repo1/pmpu/${c.uploadId}/`)) left.push(e.key)
      expect(left).toEqual([])
      await expect(mp.abort(ref)).rejects.toMatchObject({ code: 'ERR_SESSION_NOT_FOUND' })
    })
  })

  describe('tus finished uploads without local paths', () => {
    const info = (id: string, length: number): FinishedInfo => ({
      id,
      length,
      metadata: '',
      concat: 'partial',
      sha256: 'x',
      createdAtMs: 0,
      finishedAtMs: 0,
    })

    test('concatenation streams the partials from the store; dataPath is refused', async () => {
      const { temps } = srv.app.engine.stores
      const finished = new FinishedUploads(stores.tus, temps)
      const a = seededBytes(200_000, 's9')
      const b = seededBytes(70_001, 's10')
      for (const [id, d] of [
        ['AAAAAAAAAAAAAAAAAAAAAA', a],
        ['BBBBBBBBBBBBBBBBBBBBBB', b],
      ] as const) {
        const tmp = temps.streamPath()
        writeFileSync(tmp, d)
        await finished.publish(tmp, info(id, d.length))
      }
      expect(() => finished.dataPath('AAAAAAAAAAAAAAAAAAAAAA')).toThrow('not local files')
      const target = temps.streamPath()
      const never = {
        concatFiles: () => Promise.reject(new Error('the worker reads local files only')),
      }
      const ids = ['BBBBBBBBBBBBBBBBBBBBBB', 'AAAAAAAAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBBBBBBBB']
      const got = await finished.concatenate(ids, target, never)
      const want = Buffer.concat([b, a, b])
      expect(got).toEqual({ bytes: want.length, sha256: sha256(want) })
      expect(statSync(target).size).toBe(want.length)
    })
  })

  describe('bulk ingest without appends, folders or local paths', () => {
    test('mapping rewritten whole, assets copied and hashed from the store, finalize removes the keys', async () => {
      const { state, log } = srv.app.engine
      const { temps } = srv.app.engine.stores
      const ingestStore = stores.ingest
      const pool = new IngestPool({ workerFile: DEFAULT_INGEST_WORKER_FILE, threads: 1 })
      const svc = new BulkIngestService({
        objects: ingestStore,
        temps,
        locker: state.locker,
        pool,
        log,
        lockTtlMs: 5000,
        lockWaitMs: 400,
        publishWaitMs: 1000,
        maxParallel: 2,
      })
      try {
        const sc = '0c0e'
        const files = new Map<string, Buffer>([
          ['a.txt', seededBytes(3000, 'ia')],
          ['sub/b.tif', seededBytes(70_000, 'ib')],
          ['sub/deep/c.pdf', seededBytes(10, 'ic')],
        ])
        for (const [rel, data] of files) {
          const tmp = temps.streamPath()
          writeFileSync(tmp, data)
          await svc.withPublishLock(sc, () => svc.publishUpload(sc, rel, tmp))
        }
        const keysUnder = async (prefix: string) => {
          const out: string[] = []
          for await (const e of ingestStore.list(prefix)) out.push(e.key)
          return out.sort()
        }
        let summary: IngestSummary | null = null
        await svc.start(sc, (s) => {
          summary = s
        })
        await waitFor('the ingest to end', () => summary !== null)
        expect(summary).toMatchObject({ ingested: 3, failed: 0 })
        const mapping = await svc.readMapping(sc)
        const lines = mapping.split('\n')
        expect(lines[0]).toBe('original,derivative')
        expect(
          lines
            .slice(1)
            .map((l) => l.slice(0, l.lastIndexOf(',')))
            .sort(),
        ).toEqual([...files.keys()].sort())
        // The sources went; the folder's mark keeps the import folder for finalize.
        expect(await keysUnder(`${sc}/import/`)).toEqual([`${sc}/import/.ferry-folder`])
        for (const line of lines.slice(1)) {
          const deriv = line.slice(line.lastIndexOf(',') + 1)
          const id = deriv.slice(0, 23)
          const dir = `${sc}/assets/${id.slice(0, 2).toLowerCase()}/${id.slice(2, 4).toLowerCase()}`
          const info = JSON.parse(
            (await readFrom(ingestStore, `${dir}/${id}.info`)).toString(),
          ) as {
            checksumOriginal: string
            checksumDerivative: string
          }
          const want = sha256(files.get(line.slice(0, line.lastIndexOf(',')))!)
          expect(info).toMatchObject({ checksumOriginal: want, checksumDerivative: want })
          expect(sha256(await readFrom(ingestStore, `${dir}/${deriv}`))).toBe(want)
        }
        await svc.finalize(sc)
        await waitFor('finalize to end', async () => {
          try {
            await svc.readMapping(sc)
            return false
          } catch (err) {
            return (err as { code?: string }).code === 'ERR_NOT_FOUND'
          }
        })
        expect(await keysUnder(`${sc}/import/`)).toEqual([])
        expect(await keysUnder(`${sc}/journal/`)).toEqual([])
        expect((await keysUnder(`${sc}/assets/`)).filter((k) => k.endsWith('.info'))).toHaveLength(
          3,
        )
        await expect(svc.start(sc)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' })
      } finally {
        await svc.close()
        await pool.close()
      }
    })
  })
}
