import { describe, expect, test } from '@jest/globals'
import { checkCheckoutPath, planLinks } from '../../src/core/cas/checkout.js'

const sha = (c: string) => c.repeat(64)

describe('checkout paths (Flamenco isValidCheckoutPath plus ours)', () => {
  // Flamenco's checkout_test.go table: valid ones.
  test.each([
    'a',
    '5e5be786-e6d7-480c-90e6-437f9ef5bf5d',
    '5e5be786 e6d7 480c 90e6 437f9ef5bf5d',
    'Sprite-Fright/scenename/jobname/2022-03-25-11-30-feb3',
    'ránið/lélegt vélmenni',
  ])('%j is valid', (p) => {
    expect(checkCheckoutPath(p).join('/')).toBe(p)
  })
  // Flamenco's invalid ones, then ours: `..`/`.`/empty segments, NUL and control characters, etc.
  test.each([
    '',
    'with\\backslash',
    'c:/blah',
    'blah?',
    'blah*hi',
    'blah;hi',
    'blah:hi',
    'blah{x}',
    '/blah',
    'path/../../../../etc/passwd',
    '..',
    '.',
    'a/..',
    'a/./b',
    'a//b',
    'a/',
    'a\u0000b',
    'a\nb',
    'x'.repeat(256),
    '.ferry-co-abc',
    'job/.ferry-co-x/y',
  ])('%j is refused', (p) => {
    expect(() => checkCheckoutPath(p)).toThrow(
      expect.objectContaining({
        code: expect.stringMatching(/^ERR_(INVALID_PATH|PATH_TOO_LONG|RESERVED_NAME)$/),
      }),
    )
  })
})

describe('planLinks', () => {
  test('folds an exact duplicate, keeps order', () => {
    const plan = planLinks([
      { sha256: sha('a'), size: 1, path: 'x/one' },
      { sha256: sha('b'), size: 2, path: 'two' },
      { sha256: sha('a'), size: 1, path: 'x/one' },
    ])
    expect(plan.map((l) => l.segs.join('/'))).toEqual(['x/one', 'two'])
  })
  test('one path for two different objects is refused', () => {
    expect(() =>
      planLinks([
        { sha256: sha('a'), size: 1, path: 'one' },
        { sha256: sha('a'), size: 2, path: 'one' },
      ]),
    ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_PATH' }))
  })
  test('a path that is both a file and a folder is refused', () => {
    expect(() =>
      planLinks([
        { sha256: sha('a'), size: 1, path: 'a/b' },
        { sha256: sha('b'), size: 1, path: 'a' },
      ]),
    ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_PATH' }))
  })
  test.each(['../../x', '/etc/passwd', 'a/../b', 'a\\b', 'a\u0000', ''])(
    'file path %j is refused',
    (p) => {
      expect(() => planLinks([{ sha256: sha('a'), size: 1, path: p }])).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_PATH' }),
      )
    },
  )
})
