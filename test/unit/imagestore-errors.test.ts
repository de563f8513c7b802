import { describe, expect, test } from '@jest/globals'
import { IMAGESTORE_ERRORS } from '../../src/http/imagestore/errors.js'
import { parseContentRange } from '../../src/http/imagestore/family.js'

// Completeness of the table and its statuses: test/unit/error-tables.test.ts.
describe('ImageStore error table', () => {
  test('every entry names a Fabric code', () => {
    for (const [, code] of Object.values(IMAGESTORE_ERRORS))
      expect(code).toMatch(/^(E_|FABRIC_E_)[A-Z_]+$/)
  })
  test('statuses follow the runtime for the codes it names', () => {
    expect(IMAGESTORE_ERRORS.ERR_SESSION_ID_CONFLICT).toEqual([
      409,
      'FABRIC_E_UPLOAD_SESSION_ID_CONFLICT',
    ])
    expect(IMAGESTORE_ERRORS.ERR_RANGE_NOT_SATISFIABLE).toEqual([
      400,
      'FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE',
    ])
    expect(IMAGESTORE_ERRORS.ERR_NOT_FOUND).toEqual([404, 'FABRIC_E_FILE_NOT_FOUND'])
    expect(IMAGESTORE_ERRORS.ERR_IO).toEqual([500, 'FABRIC_E_IMAGESTORE_IOERROR'])
  })
})

describe('parseContentRange', () => {
  test('inclusive ranges and the empty-file form', () => {
    expect(parseContentRange('bytes 0-9/10')).toEqual({ range: { start: 0, end: 9 }, total: 10 })
    expect(parseContentRange('bytes  300-5000/20000')).toEqual({
      range: { start: 300, end: 5000 },
      total: 20000,
    })
    expect(parseContentRange('bytes */0')).toEqual({ range: { start: 0, end: -1 }, total: 0 })
  })
  test.each([
    '',
    'bytes',
    'bytes 1-2',
    'bytes 5-4/10',
    'bytes 0-10/10',
    'bytes */10',
    'bytes 0-9/99999999999999999',
    'bytes=0-9/10',
  ])('refuses %j', (h) => {
    expect(() => parseContentRange(h)).toThrow()
  })
})
