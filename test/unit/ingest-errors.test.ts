import { describe, expect, test } from '@jest/globals'
import { checkUploadPath, csvField, isShortcode, newAssetId } from '../../src/core/ingest/names.js'
import { ingestErrorBody, INGEST_STATUS } from '../../src/http/ingest/errors.js'

// Completeness of the table (and that every status has a body): test/unit/error-tables.test.ts.
describe('bulk-ingest error table', () => {
  test('the statuses dsp-ingest names: 409 in progress, 404 not found, 401 for auth and scope', () => {
    expect(INGEST_STATUS).toMatchObject({
      ERR_LOCKED: 409,
      ERR_NOT_FOUND: 404,
      ERR_UNAUTHORIZED: 401,
      ERR_FORBIDDEN: 401,
      ERR_INVALID_PATH: 400,
      ERR_IO: 500,
    })
  })
  test('each status has its own body shape', () => {
    const arg = { kind: 'argument', argument: 'a', reason: 'r' } as const
    expect(ingestErrorBody(400, 'm', arg, null)).toEqual({
      errors: [{ argument: 'a', reason: 'r' }],
    })
    expect(ingestErrorBody(400, 'm', null, null)).toEqual({
      errors: [{ argument: 'Request', reason: 'm' }],
    })
    expect(ingestErrorBody(401, 'No project access.', null, null)).toEqual({
      reason: 'No project access.',
    })
    const project = { kind: 'not-found', resource: 'project', id: '0001' } as const
    expect(ingestErrorBody(404, 'm', null, project)).toEqual({ id: '0001', type: 'project' })
    const folder = { kind: 'not-found', resource: 'import-folder', id: '0001' } as const
    expect(ingestErrorBody(404, 'm', null, folder)).toEqual({
      id: '0001',
      type: 'Import folder not found.',
    })
    expect(ingestErrorBody(404, 'm', null, null)).toEqual({ id: '', type: 'project' })
    expect(ingestErrorBody(409, 'busy', null, null)).toEqual({ reason: 'busy' })
    expect(ingestErrorBody(500, 'secret internals', null, null)).toEqual({
      errorMessage: 'internal error',
    })
    expect(ingestErrorBody(503, 'm', null, null)).toEqual({ status: 'DOWN' })
  })
})

describe('bulk-ingest names', () => {
  test('shortcodes are exactly four hex digits, either case', () => {
    for (const ok of ['0001', '00ff', '00FF', 'abcd']) expect(isShortcode(ok)).toBe(true)
    for (const bad of ['', '1', '12', '123', '000G', '12345', ' 001'])
      expect(isShortcode(bad)).toBe(false)
  })
  test('upload paths: sub-folders allowed, the file name held to AssetFilename rules', () => {
    expect(checkUploadPath('one/two/out.txt')).toEqual(['one', 'two', 'out.txt'])
    expect(checkUploadPath("a dir/Ünïcödé (1) [x] {y} +=!<>|,'`.TIFF")).toHaveLength(2)
    expect(checkUploadPath('a\u0304.mp3')[0]).toBe('\u0101.mp3') // NFD name stored NFC
    expect(checkUploadPath('.hidden.png')).toEqual(['.hidden.png'])
  })
  test.each([
    ['', 'Is empty'],
    ['../x.txt', 'Cannot traverse out of the upload directory'],
    ['a/../../x.txt', 'Cannot traverse out of the upload directory'],
    ['/abs.txt', 'relative'],
    ['a\\b.txt', 'backslash'],
    ['a\u0000.txt', 'control'],
    ['a//b.txt', 'empty'],
    ['noext', 'valid file extension'],
    ['x.exe', 'valid file extension'],
    ['.png', 'valid file extension'],
    ['a#b.txt', 'invalid characters'],
    ['a$b.txt', 'invalid characters'],
    ['a?b.txt', 'invalid characters'],
    ['smile\u{1F600}.txt', 'invalid characters'],
    [`${'a'.repeat(256)}.txt`, 'longer'],
  ])('refuses %j (%s)', (p, msg) => {
    expect(() => checkUploadPath(p)).toThrow(msg)
  })
  test('asset ids look like dsp-ingest ids and do not repeat', () => {
    const ids = new Set(Array.from({ length: 1000 }, newAssetId))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9A-Za-z]{11}-[0-9A-Za-z]{11}$/)
  })
  test('CSV fields are quoted only when needed', () => {
    expect(csvField('a/b.txt')).toBe('a/b.txt')
    expect(csvField('a,b.txt')).toBe('"a,b.txt"')
    expect(csvField('say "hi".txt')).toBe('"say ""hi"".txt"')
  })
})
