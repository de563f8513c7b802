/**
 * The small storage helpers every family shares: errno predicates, the tree walker, remove if
 * present, and small objects written atomically. Real files in a temp folder.
 */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  FsObjectStore,
  isAbsent,
  isExists,
  isInTheWay,
  isNoSpace,
  isNotFound,
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
})
