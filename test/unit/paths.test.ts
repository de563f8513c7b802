import { describe, expect, test } from '@jest/globals'
import { checkRelativePath, resolveUnder } from '../../src/core/paths.js'
import { UploadError } from '../../src/core/errors.js'

describe('checkRelativePath', () => {
  test.each(['a', 'a/b/c.bin', 'ránið/lélegt vélmenni', 'x y/z', '_.dir'])('accepts %j', (p) => {
    expect(checkRelativePath(p).join('/')).toBe(p)
  })
  test.each([
    ['', 'ERR_INVALID_PATH'],
    ['/abs', 'ERR_INVALID_PATH'],
    ['c:/x', 'ERR_INVALID_PATH'],
    ['a/../b', 'ERR_INVALID_PATH'],
    ['..', 'ERR_INVALID_PATH'],
    ['./a', 'ERR_INVALID_PATH'],
    ['a//b', 'ERR_INVALID_PATH'],
    ['a/', 'ERR_INVALID_PATH'],
    ['a\\b', 'ERR_INVALID_PATH'],
    ['a\u0000b', 'ERR_INVALID_PATH'],
    ['a\nb', 'ERR_INVALID_PATH'],
    ['n'.repeat(256), 'ERR_PATH_TOO_LONG'],
    [Array.from({ length: 300 }, () => 'abcd').join('/'), 'ERR_PATH_TOO_LONG'],
  ])('refuses %j with %s', (p, code) => {
    try {
      checkRelativePath(p)
      throw new Error('accepted')
    } catch (err) {
      expect(err).toBeInstanceOf(UploadError)
      expect((err as UploadError).code).toBe(code)
    }
  })
  test('resolveUnder stays inside its root', () => {
    expect(resolveUnder('/r', ['a', 'b'])).toBe('/r/a/b')
    expect(() => resolveUnder('/r', ['..', 'etc'])).toThrow(UploadError)
  })
})
