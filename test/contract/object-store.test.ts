/**
 * One contract for every ObjectStore: what put, head, get, delete, list and copy promise, and the
 * optional capabilities each implementation claims: the filesystem store (real files) and the S3
 * store on the run's private Swift (test/helpers/swift.ts; its if-absent lock in the test Redis).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { randomUUID } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import {
  capabilitiesOf,
  FsObjectStore,
  hasAppendable,
  hasAtomicFolders,
  hasFolderSync,
  hasHardLinkSnapshots,
  hasLocalPaths,
  hasSymlinkTrees,
  hasToucher,
  TempFiles,
  type ObjectStore,
} from '../../src/core/storage/index.js'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { createS3Client } from '../../src/core/storage/s3-client.js'
import { S3ObjectStore } from '../../src/core/storage/s3-object-store.js'
import { createRedisState } from '../../src/core/state/redis.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import { removeDir, tempDir } from '../helpers/server.js'
import { testBucket } from '../helpers/swift.js'

interface Made {
  readonly store: ObjectStore
  /** A new temp file holding `data`, ready for put. */
  temp(data: Buffer | string): string
  /** Whether a temp file still exists. */
  tempExists(path: string): boolean
  /** Names that appeared next to the store's root (nothing may escape it). */
  outside(): string[] | Promise<string[]>
  cleanup(): Promise<void>
}

interface Maker {
  readonly name: string
  /** The optional capabilities the implementation must have. */
  readonly capabilities: readonly string[]
  make(): Promise<Made>
}

const makers: Maker[] = [
  {
    name: 'FsObjectStore',
    capabilities: [
      'LocalPaths',
      'Toucher',
      'HardLinkSnapshots',
      'FolderSync',
      'Appendable',
      'AtomicFolders',
      'SymlinkTrees',
    ],
    async make() {
      const dir = tempDir('ferry-objects-')
      const root = join(dir, 'store')
      const tmp = join(dir, 'tmp')
      mkdirSync(root)
      mkdirSync(tmp)
      const temps = new TempFiles(tmp)
      return {
        store: new FsObjectStore({ root, temps }),
        temp(data) {
          const p = temps.streamPath()
          writeFileSync(p, data)
          return p
        },
        tempExists: (p) => existsSync(p),
        outside: () => readdirSync(dir).filter((n) => n !== 'store' && n !== 'tmp'),
        async cleanup() {
          removeDir(dir)
        },
      }
    },
  },
  {
    name: 'S3ObjectStore',
    capabilities: [],
    async make() {
      const t = await testBucket()
      const state = await createRedisState(testRedisUrl(), uniquePrefix())
      // Credentials from the SDK's default chain (testBucket put them in the environment).
      const client = createS3Client({
        endpoint: t.endpoint,
        region: t.region,
        forcePathStyle: true,
      })
      const dir = tempDir('ferry-s3-objects-')
      const temps = new TempFiles(dir)
      const prefix = 'contract/'
      return {
        store: new S3ObjectStore({ client, bucket: t.bucket, prefix, locker: state.locker }),
        temp(data) {
          const p = temps.streamPath()
          writeFileSync(p, data)
          return p
        },
        tempExists: (p) => existsSync(p),
        async outside() {
          const out = await client.send(new ListObjectsV2Command({ Bucket: t.bucket }))
          return (out.Contents ?? []).map((c) => c.Key!).filter((k) => !k.startsWith(prefix))
        },
        async cleanup() {
          client.destroy()
          await state.close()
          removeDir(dir)
        },
      }
    },
  },
]

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of s as AsyncIterable<Buffer>) parts.push(c)
  return Buffer.concat(parts)
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

const bytes = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff))

/** The promise fails with an UploadError of `code`. */
async function refused(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code })
}

describe.each(makers)('object store: $name', (maker) => {
  let m: Made
  let s: ObjectStore
  beforeAll(async () => {
    m = await maker.make()
    s = m.store
  }, 180_000)
  afterAll(async () => {
    await m.cleanup()
  })
  const k = (name = 'obj') => `t-${randomUUID()}/${name}`

  test('put (overwrite) publishes the temp file (then gone); head and get answer it', async () => {
    const key = k('a.bin')
    const data = bytes(5000, 1)
    const tmp = m.temp(data)
    const info = await s.put(key, tmp, { mode: 'overwrite' })
    expect(info).toMatchObject({ key, size: 5000 })
    expect(m.tempExists(tmp)).toBe(false)
    expect(await s.head(key)).toEqual(info)
    expect(await readAll(await s.get(key))).toEqual(data)
  })

  test('put (overwrite) replaces an object whole and changes its etag', async () => {
    const key = k()
    const first = await s.put(key, m.temp(bytes(100, 1)), { mode: 'overwrite' })
    const second = await s.put(key, m.temp(bytes(70, 2)), { mode: 'overwrite' })
    expect(second.etag).not.toBe(first.etag)
    expect(await readAll(await s.get(key))).toEqual(bytes(70, 2))
  })

  test('put (if-absent) on a taken key is refused; object and temp file kept', async () => {
    const key = k()
    await s.put(key, m.temp('old'), { mode: 'if-absent' })
    const tmp = m.temp('new')
    await refused(s.put(key, tmp, { mode: 'if-absent' }), 'ERR_ALREADY_EXISTS')
    expect(m.tempExists(tmp)).toBe(true)
    expect((await readAll(await s.get(key))).toString()).toBe('old')
  })

  test('racing if-absent puts: exactly one wins, the object is all of its bytes', async () => {
    const key = k()
    const datas = Array.from({ length: 8 }, (_, i) => bytes(64 * 1024 + i, i))
    const temps = datas.map((d) => m.temp(d))
    const results = await Promise.allSettled(temps.map((t) => s.put(key, t, { mode: 'if-absent' })))
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []))
    expect(won).toHaveLength(1)
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'ERR_ALREADY_EXISTS' })
    }
    expect(await readAll(await s.get(key))).toEqual(datas[won[0]!])
  })

  test('racing overwrite puts: every read sees one whole version; the last put wins', async () => {
    const key = k()
    const versions = Array.from({ length: 6 }, (_, i) => bytes(256 * 1024, i + 10))
    await s.put(key, m.temp(versions[0]!), { mode: 'overwrite' })
    let writing = true
    const reads: Buffer[] = []
    const reader = (async () => {
      while (writing) reads.push(await readAll(await s.get(key)))
    })()
    for (const v of versions.slice(1)) await s.put(key, m.temp(v), { mode: 'overwrite' })
    writing = false
    await reader
    expect(reads.length).toBeGreaterThan(0)
    for (const r of reads) expect(versions.some((v) => v.equals(r))).toBe(true)
    expect(await readAll(await s.get(key))).toEqual(versions[versions.length - 1])
  })

  test('get ranges: first, middle, last byte, empty; bad ones refused', async () => {
    const key = k()
    const data = bytes(1000, 7)
    await s.put(key, m.temp(data), { mode: 'overwrite' })
    const range = async (start: number, end: number) => readAll(await s.get(key, { start, end }))
    expect(await range(0, 0)).toEqual(data.subarray(0, 1))
    expect(await range(400, 599)).toEqual(data.subarray(400, 600))
    expect(await range(999, 999)).toEqual(data.subarray(999))
    expect(await range(0, 999)).toEqual(data)
    expect(await range(0, -1)).toEqual(Buffer.alloc(0))
    expect(await range(1000, 999)).toEqual(Buffer.alloc(0))
    await refused(s.get(key, { start: 0, end: 1000 }), 'ERR_RANGE_NOT_SATISFIABLE')
    await refused(s.get(key, { start: 1001, end: 1001 }), 'ERR_RANGE_NOT_SATISFIABLE')
    await refused(s.get(key, { start: -1, end: 3 }), 'ERR_INVALID_RANGE')
    await refused(s.get(key, { start: 5, end: 2 }), 'ERR_INVALID_RANGE')
    await refused(s.get(key, { start: 0.5, end: 2 }), 'ERR_INVALID_RANGE')
  })

  test('an empty object: size 0, get answers no bytes, a range past it is refused', async () => {
    const key = k()
    await s.put(key, m.temp(''), { mode: 'if-absent' })
    expect((await s.head(key))?.size).toBe(0)
    expect(await readAll(await s.get(key))).toEqual(Buffer.alloc(0))
    await refused(s.get(key, { start: 0, end: 0 }), 'ERR_RANGE_NOT_SATISFIABLE')
  })

  test('a missing key: head null, get ERR_NOT_FOUND (a folder is no object)', async () => {
    const key = k('x/y')
    expect(await s.head(key)).toBeNull()
    await refused(s.get(key), 'ERR_NOT_FOUND')
    await s.put(key, m.temp('y'), { mode: 'overwrite' })
    const folder = key.slice(0, key.lastIndexOf('/'))
    expect(await s.head(folder)).toBeNull()
    await refused(s.get(folder), 'ERR_NOT_FOUND')
    expect(await s.head(`${key}/below`)).toBeNull()
  })

  test('list: a string prefix over nested keys; the delimiter gives one level', async () => {
    const top = `l-${randomUUID()}`
    const names = ['a/b.txt', 'a/b/c.txt', 'a/b/d/e.txt', 'a/bc.txt', 'ab.txt', 'z.txt']
    const keys = names.map((x) => `${top}/${x}`)
    for (const key of keys) await s.put(key, m.temp(key), { mode: 'overwrite' })
    const list = async (prefix: string, delimiter = false) =>
      (await collect(s.list(prefix, { delimiter })))
        .map((e) => `${e.kind}:${e.key.slice(top.length + 1)}`)
        .sort()
    expect(await list(`${top}/a/b`)).toEqual([
      'object:a/b.txt',
      'object:a/b/c.txt',
      'object:a/b/d/e.txt',
      'object:a/bc.txt',
    ])
    expect(await list(`${top}/a/b/`)).toEqual(['object:a/b/c.txt', 'object:a/b/d/e.txt'])
    expect(await list(`${top}/`)).toHaveLength(6)
    const oneLevel = ['object:a/b.txt', 'object:a/bc.txt', 'prefix:a/b/']
    expect(await list(`${top}/a/`, true)).toEqual(oneLevel)
    expect(await list(`${top}/`, true)).toEqual(['object:ab.txt', 'object:z.txt', 'prefix:a/'])
    expect(await list(`${top}/nothing/`)).toEqual([])
    expect(await list(`${top}/q`)).toEqual([])
    const everything = (await collect(s.list(''))).map((e) => e.key)
    for (const key of keys) expect(everything).toContain(key)
  })

  test('copy: a copy, not a second name; if-absent and a missing source refused', async () => {
    const from = k('from')
    const to = k('to/nested')
    await s.put(from, m.temp('source bytes'), { mode: 'overwrite' })
    const info = await s.copy(from, to, { mode: 'overwrite' })
    expect(info).toMatchObject({ key: to, size: 12 })
    expect((await readAll(await s.get(to))).toString()).toBe('source bytes')
    await s.put(from, m.temp('changed'), { mode: 'overwrite' })
    expect((await readAll(await s.get(to))).toString()).toBe('source bytes')
    await refused(s.copy(from, to, { mode: 'if-absent' }), 'ERR_ALREADY_EXISTS')
    expect((await readAll(await s.get(to))).toString()).toBe('source bytes')
    await refused(s.copy(k('missing'), k('dest'), { mode: 'overwrite' }), 'ERR_NOT_FOUND')
  })

  test('delete removes an object; deleting a missing one answers false, not an error', async () => {
    const key = k()
    await s.put(key, m.temp('x'), { mode: 'overwrite' })
    expect(await s.delete(key)).toBe(true)
    expect(await s.head(key)).toBeNull()
    expect(await s.delete(key)).toBe(false)
    expect(await s.delete(k('never/was'))).toBe(false)
  })

  test('keys that try to leave the root are refused before anything is touched', async () => {
    const bad = [
      '..',
      '../x',
      'a/../../x',
      'a/..',
      '/etc/passwd',
      '/',
      'C:x',
      'a\u0000b',
      'a\\..\\b',
      '',
      'a//b',
      './a',
      'a/.',
    ]
    const tmp = m.temp('escape')
    for (const key of bad) {
      await refused(s.put(key, tmp, { mode: 'overwrite' }), 'ERR_INVALID_PATH')
      await refused(s.head(key), 'ERR_INVALID_PATH')
      await refused(s.get(key), 'ERR_INVALID_PATH')
      await refused(s.delete(key), 'ERR_INVALID_PATH')
      await refused(s.copy(k(), key, { mode: 'overwrite' }), 'ERR_INVALID_PATH')
      await refused(s.copy(key, k(), { mode: 'overwrite' }), 'ERR_INVALID_PATH')
    }
    for (const prefix of ['../', '/etc', 'a/../../', 'a\\b']) {
      await refused(collect(s.list(prefix)), 'ERR_INVALID_PATH')
    }
    expect(m.tempExists(tmp)).toBe(true)
    expect(await m.outside()).toEqual([])
  })

  test('the capabilities it claims are present, and each does what it says', async () => {
    expect(capabilitiesOf(s).sort()).toEqual([...maker.capabilities].sort())
    if (hasToucher(s)) {
      const key = k()
      await s.put(key, m.temp('t'), { mode: 'overwrite' })
      const before = (await s.head(key))!.mtimeMs
      await new Promise((r) => setTimeout(r, 20))
      expect(await s.touch(key)).toBe(true)
      expect((await s.head(key))!.mtimeMs).toBeGreaterThan(before)
      expect(await s.touch(k('missing'))).toBe(false)
    }
    if (hasHardLinkSnapshots(s)) {
      const key = k('data')
      await s.put(key, m.temp('v1'), { mode: 'overwrite' })
      const snap = await s.snapshot(key, k('snap'))
      expect(snap.etag).toBe((await s.head(key))!.etag)
      await s.put(key, m.temp('v2!'), { mode: 'overwrite' })
      expect((await readAll(await s.get(snap.key))).toString()).toBe('v1')
      await refused(s.snapshot(key, snap.key), 'ERR_ALREADY_EXISTS')
      await refused(s.snapshot(k('missing'), k('snap2')), 'ERR_NOT_FOUND')
    }
    if (hasFolderSync(s)) {
      const key = k('synced')
      await s.put(key, m.temp('s'), { mode: 'overwrite' })
      await s.delete(key)
      await s.syncFolderOf(key)
      expect(await s.head(key)).toBeNull()
    }
    if (hasAppendable(s)) {
      const key = k('log.csv')
      const log = await s.openAppend(key)
      await log.append('one\n')
      await log.append(Buffer.from('two\nthr'))
      await log.close()
      expect((await readAll(await s.get(key))).toString()).toBe('one\ntwo\nthr')
      await s.truncate(key, 8)
      expect((await readAll(await s.get(key))).toString()).toBe('one\ntwo\n')
      const again = await s.openAppend(key)
      await again.append('four\n')
      await again.close()
      expect((await readAll(await s.get(key))).toString()).toBe('one\ntwo\nfour\n')
    }
    if (hasAtomicFolders(s)) {
      const top = `f-${randomUUID()}`
      await s.put(`${top}/a/1`, m.temp('1'), { mode: 'overwrite' })
      await s.put(`${top}/a/b/2`, m.temp('2'), { mode: 'overwrite' })
      expect(await s.hasFolder(`${top}/a`)).toBe(true)
      expect(await s.hasFolder(`${top}/a/1`)).toBe(false)
      expect(await s.hasFolder('')).toBe(true)
      expect(await s.removeFolder(`${top}/a`)).toBe(true)
      expect(await s.hasFolder(`${top}/a`)).toBe(false)
      expect(await collect(s.list(`${top}/`))).toEqual([])
      expect(await s.removeFolder(`${top}/a`)).toBe(false)
      await refused(s.removeFolder(''), 'ERR_INVALID_PATH')
    }
    if (hasSymlinkTrees(s) && hasLocalPaths(s)) {
      const target = k('blob')
      await s.put(target, m.temp('linked bytes'), { mode: 'overwrite' })
      const top = `co-${randomUUID()}/job`
      const tree = await s.beginTree(top)
      await tree.writeEmpty('mark')
      await tree.mkdir('sub')
      await tree.symlink('sub/file', s, target)
      expect(await s.entryKind(top)).toBeNull() // nothing visible before the publish
      await tree.publish()
      await tree.abandon() // a no-op once published
      expect(await s.entryKind(top)).toBe('folder')
      expect(await s.entryKind(`${top}/sub/file`)).toBe('symlink')
      expect(readlinkSync(s.localPath(`${top}/sub/file`)).startsWith('../')).toBe(true)
      expect(readFileSync(s.localPath(`${top}/sub/file`)).toString()).toBe('linked bytes')
      const links = await collect(s.links(top.split('/')[0]!, s))
      expect(links).toEqual([{ link: `${top}/sub/file`, target }])
      const abandoned = await s.beginTree(`${top}-2`)
      await abandoned.mkdir('x')
      await abandoned.abandon()
      expect(await s.entryKind(`${top}-2`)).toBeNull()
      expect(s.keyOfLocalPath(s.localPath(target))).toBe(target)
      expect(s.keyOfLocalPath('/somewhere/else')).toBeNull()
    }
  })
})
