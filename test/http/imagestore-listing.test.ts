/**
 * ImageStore content listings are paged and never walk the store (issue 17, item 12): at most
 * FERRY_IMAGESTORE_LIST_PAGE_SIZE entries per answer, in the runtime's order (lower-cased path),
 * with a ContinuationToken to send back for the rest, as the runtime's paged form does.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from '../helpers/http.js'
import { removeDir, startFerry, type TestServer } from '../helpers/server.js'

interface Page {
  StoreFiles: { StoreRelativePath: string }[]
  StoreFolders: { StoreRelativePath: string; FileCount: string }[]
  ContinuationToken?: string
}

let srv: TestServer
beforeAll(async () => {
  srv = await startFerry({ FERRY_IMAGESTORE_LIST_PAGE_SIZE: '3' })
  const store = join(srv.dataDir, 'store')
  // 5 files and 3 folders in "pkg", names in mixed case; the folders hold trees of their own.
  for (const f of ['b.txt', 'A.txt', 'd.bin', 'C.cfg', 'e.xml']) {
    mkdirSync(join(store, 'pkg'), { recursive: true })
    writeFileSync(join(store, 'pkg', f), f)
  }
  for (const d of ['Code', 'config', 'data']) {
    for (let i = 0; i < 4; i++) {
      mkdirSync(join(store, 'pkg', d, `deep-${i}`), { recursive: true })
      writeFileSync(join(store, 'pkg', d, `file-${i}`), 'x')
      writeFileSync(join(store, 'pkg', d, `deep-${i}`, 'inner'), 'y')
    }
  }
})
afterAll(async () => {
  await srv.close()
  removeDir(srv.dataDir)
})

const list = (path: string, token?: string) =>
  request(
    `${srv.url}/ImageStore/${path}?api-version=6.2${token === undefined ? '' : `&ContinuationToken=${encodeURIComponent(token)}`}`,
  )

describe('paged listing', () => {
  test('pages of at most 3 entries, in lower-cased path order, until no ContinuationToken; every entry exactly once', async () => {
    const seen: string[] = []
    const sizes: number[] = []
    let token: string | undefined
    for (let pages = 0; pages < 10; pages++) {
      const r = await list('pkg', token)
      expect(r.status).toBe(200)
      const p = r.json<Page>()
      const names = [...p.StoreFiles, ...p.StoreFolders]
        .map((e) => e.StoreRelativePath)
        .sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1))
      sizes.push(names.length)
      seen.push(...names)
      token = p.ContinuationToken
      if (token === undefined) break
      expect(token).toBe(names.at(-1))
    }
    expect(sizes).toEqual([3, 3, 2])
    expect(seen).toEqual([
      'pkg/A.txt',
      'pkg/b.txt',
      'pkg/C.cfg',
      'pkg/Code',
      'pkg/config',
      'pkg/d.bin',
      'pkg/data',
      'pkg/e.xml',
    ])
  })

  test("a folder's FileCount is the files directly in it, not the tree below", async () => {
    let token: string | undefined
    const folders: Page['StoreFolders'] = []
    do {
      const p = (await list('pkg', token)).json<Page>()
      folders.push(...p.StoreFolders)
      token = p.ContinuationToken
    } while (token !== undefined)
    expect(folders).toEqual([
      { StoreRelativePath: 'pkg/Code', FileCount: '4' },
      { StoreRelativePath: 'pkg/config', FileCount: '4' },
      { StoreRelativePath: 'pkg/data', FileCount: '4' },
    ])
  })

  test('a token past the last entry is an empty page: 204 without a body; a file path ignores the token', async () => {
    const r = await list('pkg', 'pkg/zzz')
    expect([r.status, r.body.length]).toEqual([204, 0])
    const f = await list('pkg/A.txt', 'pkg/zzz')
    expect(f.status).toBe(200)
    expect(f.json<Page>().StoreFiles.map((x) => x.StoreRelativePath)).toEqual(['pkg/A.txt'])
  })

  test('the root pages too', async () => {
    const r = await request(`${srv.url}/ImageStore?api-version=6.0`)
    expect(r.status).toBe(200)
    const p = r.json<Page>()
    expect(p.StoreFolders).toEqual([{ StoreRelativePath: 'pkg', FileCount: '5' }])
    expect(p.ContinuationToken).toBeUndefined()
  })

  test('an over-long ContinuationToken is 400 E_INVALIDARG', async () => {
    const r = await list('pkg', 'x'.repeat(5000))
    expect(r.status).toBe(400)
    expect(r.json<{ Error: { Code: string } }>().Error.Code).toBe('E_INVALIDARG')
  })
})
