import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FsObjectStore } from '../../src/core/storage/fs-object-store.js'
import { TempFiles } from '../../src/core/storage/temp-files.js'
import { parseRange } from '../../src/http/tus/family.js'
import { FinishedUploads, type FinishedInfo } from '../../src/http/tus/finished.js'
import { removeDir, tempDir } from '../helpers/server.js'

let dir: string
beforeEach(() => {
  dir = tempDir('ferry-tus-finished-')
})
afterEach(() => removeDir(dir))

const info = (id: string, length: number): FinishedInfo => ({
  id,
  length,
  metadata: '',
  concat: null,
  sha256: 'x',
  createdAtMs: 0,
  finishedAtMs: 0,
})

describe('FinishedUploads', () => {
  test('publish, info, terminate with a tombstone, retention sweep', async () => {
    const temps = new TempFiles(join(dir, 'tmp'))
    mkdirSync(join(dir, 'tmp'))
    const f = new FinishedUploads(new FsObjectStore({ root: join(dir, 'tus'), temps }), temps)
    const old = 'AAAAAAAAAAAAAAAAAAAAAA'
    const fresh = 'BBBBBBBBBBBBBBBBBBBBBB'
    for (const id of [old, fresh]) {
      const tmp = temps.streamPath()
      writeFileSync(tmp, 'bytes')
      await f.publish(tmp, info(id, 5))
      expect(existsSync(f.dataPath(id))).toBe(true)
      expect((await f.info(id))?.length).toBe(5)
    }
    const gone = 'CCCCCCCCCCCCCCCCCCCCCC'
    await f.markGone(gone)
    expect(await f.isGone(gone)).toBe(true)
    const past = new Date(Date.now() - 3600_000)
    utimesSync(`${f.dataPath(old)}.info.json`, past, past)
    utimesSync(`${f.dataPath(gone)}.gone`, past, past)
    expect(await f.sweep(60_000)).toBe(1)
    expect(await f.info(old)).toBeNull()
    expect(existsSync(f.dataPath(old))).toBe(false)
    expect(await f.isGone(gone)).toBe(false)
    expect((await f.info(fresh))?.length).toBe(5)
    await f.remove(fresh)
    expect(await f.info(fresh)).toBeNull()
    expect(existsSync(f.dataPath(fresh))).toBe(false)
    expect(await f.isGone(fresh)).toBe(true)
  })
})

describe('parseRange', () => {
  test.each([
    [undefined, 100, null],
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=95-200', 100, { start: 95, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-200', 100, { start: 0, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=5-4', 100, 'unsatisfiable'],
    ['bytes=0-1,5-6', 100, null],
    ['items=0-1', 100, null],
  ])('%s of %d bytes', (raw, size, want) => {
    expect(parseRange(raw, size)).toEqual(want)
  })
})
