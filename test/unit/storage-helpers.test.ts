/**
 * The small storage helpers every family shares: errno predicates, the tree walker, remove if
 * present, small objects written atomically, the temp-file operations of the uploads, and the
 * sweeper's view of tmp/. Real files in a temp folder.
 */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import {
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import {
  createEmptyExclusive,
  fileSize,
  FsObjectStore,
  isAbsent,
  isExists,
  isInTheWay,
  isNoSpace,
  isNotFound,
  linkFile,
  putSmallObject,
  readSmallObject,
  removeIfPresent,
  TempFiles,
  TreeChangedError,
  walkTree,
} from '../../src/core/storage/index.js'
import { UploadError } from '../../src/core/errors.js'
import { removeDir, tempDir } from '../helpers/server.js'

const errno = (code: string) => Object.assign(new Error(code), { code })

describe('errno predicates', () => {
  test('each names its codes and nothing else', () => {
    expect([isNotFound(errno('ENOENT')), isNotFound(errno('ENOTDIR'))]).toEqual([true, false])
    const absent = ['ENOENT', 'ENOTDIR', 'EACCES'].map((c) => isAbsent(errno(c)))
    expect(absent).toEqual([true, true, false])
    expect(isExists(errno('EEXIST'))).toBe(true)
    const inTheWay = ['EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR'].map((c) => isInTheWay(errno(c)))
    expect(inTheWay).toEqual([true, true, true, true])
    const full = ['ENOSPC', 'EDQUOT', 'EIO'].map((c) => isNoSpace(errno(c)))
    expect(full).toEqual([true, true, false])
    const others = [null, undefined, 'ENOENT', new UploadError('ERR_IO', 'x'), { code: 7 }]
    for (const notErrno of others) {
      const said = [isNotFound(notErrno), isAbsent(notErrno), isNoSpace(notErrno)]
      expect(said).toEqual([false, false, false])
    }
  })
})

describe('files', () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir('ferry-storage-')
  })
  afterEach(() => {
    removeDir(dir)
  })

  async function walk(root: string, opts = {}): Promise<string[]> {
    const out: string[] = []
    for await (const e of walkTree(root, opts)) {
      out.push(`${e.dirent.isDirectory() ? 'd' : 'f'}:${e.rel}`)
    }
    return out.sort()
  }

  test('walkTree yields every entry with its relative path; skip drops a folder', async () => {
    mkdirSync(join(dir, 'a/b'), { recursive: true })
    mkdirSync(join(dir, '.hidden'))
    writeFileSync(join(dir, 'a/b/c.txt'), '')
    writeFileSync(join(dir, 'a/x'), '')
    writeFileSync(join(dir, '.hidden/y'), '')
    const all = ['d:.hidden', 'd:a', 'd:a/b', 'f:.hidden/y', 'f:a/b/c.txt', 'f:a/x']
    expect(await walk(dir)).toEqual(all)
    const skip = (name: string) => name.startsWith('.')
    expect(await walk(dir, { skip })).toEqual(['d:a', 'd:a/b', 'f:a/b/c.txt', 'f:a/x'])
    expect(await walk(join(dir, 'missing'))).toEqual([])
    expect(await walk(join(dir, 'a/x'))).toEqual([])
  })

  test('walkTree: a folder renamed away mid-walk is skipped, or TreeChangedError', async () => {
    for (const mode of ['skip', 'throw'] as const) {
      mkdirSync(join(dir, mode, 'p/q'), { recursive: true })
      writeFileSync(join(dir, mode, 'p/q/f'), '')
      const seen: string[] = []
      const run = (async () => {
        for await (const e of walkTree(join(dir, mode), { onVanished: mode })) {
          seen.push(e.rel)
          // The walker has listed p; now p is renamed before it is read (a checkout renamed in).
          if (e.rel === 'p') renameSync(join(dir, mode, 'p'), join(dir, `${mode}-moved`))
        }
      })()
      if (mode === 'skip') {
        await run
        expect(seen).toEqual(['p'])
      } else {
        await expect(run).rejects.toBeInstanceOf(TreeChangedError)
      }
    }
  })

  test('removeIfPresent: whether the file was there; a file in the way is absence', async () => {
    writeFileSync(join(dir, 'f'), '')
    expect(await removeIfPresent(join(dir, 'f'))).toBe(true)
    expect(await removeIfPresent(join(dir, 'f'))).toBe(false)
    writeFileSync(join(dir, 'file'), '')
    expect(await removeIfPresent(join(dir, 'file', 'below'))).toBe(false)
    mkdirSync(join(dir, 'folder'))
    const folder = removeIfPresent(join(dir, 'folder'))
    await expect(folder).rejects.toMatchObject({ code: expect.stringMatching(/^E/) })
  })

  test('putSmallObject writes whole or refuses (if absent); no temp file stays', async () => {
    mkdirSync(join(dir, 'tmp'))
    const temps = new TempFiles(join(dir, 'tmp'))
    const store = new FsObjectStore({ root: join(dir, 'store'), temps })
    const once = { tempPath: temps.ingestPath(), overwrite: false }
    await putSmallObject(store, 'a/entry.json', '{"v":1}', once)
    expect(await readSmallObject(store, 'a/entry.json')).toBe('{"v":1}')
    await expect(
      putSmallObject(store, 'a/entry.json', '{"v":2}', { ...once, tempPath: temps.ingestPath() }),
    ).rejects.toMatchObject({ code: 'ERR_ALREADY_EXISTS' })
    const replace = { tempPath: temps.streamPath(), overwrite: true }
    await putSmallObject(store, 'a/entry.json', '{"v":3}', replace)
    expect(await readSmallObject(store, 'a/entry.json')).toBe('{"v":3}')
    expect(await readSmallObject(store, 'a/none.json')).toBeNull()
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
  })

  test('createEmptyExclusive never takes a name; linkFile; fileSize', async () => {
    const f = join(dir, 's.part')
    await createEmptyExclusive(f)
    expect(await fileSize(f)).toBe(0)
    writeFileSync(f, 'bytes')
    await expect(createEmptyExclusive(f)).rejects.toMatchObject({ code: 'EEXIST' })
    expect(readFileSync(f, 'utf8')).toBe('bytes')
    await linkFile(f, join(dir, 'p.part'))
    expect(statSync(join(dir, 'p.part')).ino).toBe(statSync(f).ino)
    await expect(linkFile(f, join(dir, 'p.part'))).rejects.toMatchObject({ code: 'EEXIST' })
    await expect(fileSize(join(dir, 'none'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  test('TempFiles.entries lists tmp/ with stats; remove takes a file or a folder', async () => {
    const temps = new TempFiles(join(dir, 'tmp'))
    mkdirSync(temps.dir)
    writeFileSync(temps.copyPath(), 'x')
    const trash = temps.trashPath()
    mkdirSync(join(trash, 'a', 'b'), { recursive: true })
    writeFileSync(join(trash, 'a', 'b', 'f'), 'y')
    linkSync(join(trash, 'a', 'b', 'f'), join(trash, 'g'))
    const entries = []
    for await (const e of temps.entries()) entries.push(e)
    expect(
      entries.map((e) => [e.path === temps.path(e.name), e.stat.isDirectory()]).sort(),
    ).toEqual([
      [true, false],
      [true, true],
    ])
    for (const e of entries) await temps.remove(e)
    expect(readdirSync(temps.dir)).toEqual([])
    for (const e of entries) await temps.remove(e) // already gone: no error
  })
})
