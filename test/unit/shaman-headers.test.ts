import { describe, expect, test } from '@jest/globals'
import { decodeOriginalFilename, parseDeferHeader } from '../../src/http/shaman/headers.js'

describe('X-Shaman-Can-Defer-Upload (strconv.ParseBool spellings, any letter case)', () => {
  test.each(['1', 't', 'T', 'true', 'True', 'TRUE', 'tRuE', ' True '])('%j is true', (v) => {
    expect(parseDeferHeader(v)).toBe(true)
  })
  test.each(['0', 'f', 'F', 'false', 'False', 'FALSE'])('%j is false', (v) => {
    expect(parseDeferHeader(v)).toBe(false)
  })
  test('absent is false', () => {
    expect(parseDeferHeader(undefined)).toBe(false)
  })
  test.each(['', 'yes', 'no', '2', 'truee', 'on', 'y'])(
    '%j is refused with ERR_INVALID_ARGUMENT',
    (v) => {
      expect(() => parseDeferHeader(v)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
      )
    },
  )
  test('a repeated header is refused', () => {
    expect(() => parseDeferHeader(['true', 'false'])).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    )
  })
})

const b64 = (s: string) => `=?utf-8?b?${Buffer.from(s).toString('base64')}?=`

describe('X-Shaman-Original-Filename (RFC 2047)', () => {
  test.each([
    ['scene.blend', 'scene.blend'],
    ['=?utf-8?q?scene=2Eblend?=', 'scene.blend'],
    ['=?UTF-8?Q?corrupt/=C3=9Fad=2Ebin?=', 'corrupt/ßad.bin'],
    ['=?utf-8?q?with_space_and_=5Funderscore?=', 'with space and _underscore'],
    [b64('много ликова.py'), 'много ликова.py'],
    [b64('á hausinn á þér'), 'á hausinn á þér'],
    [`${b64('ré')} ${b64('sumé')}`, 'résumé'], // whitespace between adjacent words is dropped
    ['prefix =?utf-8?q?=C3=A9?= suffix', 'prefix é suffix'],
    ['=?us-ascii?q?plain?=', 'plain'],
    ['=?utf-8*en?q?lang?=', 'lang'],
    ['=?utf-8?b??=', ''],
    ['=?not an encoded word', '=?not an encoded word'],
  ])('%j → %j', (raw, want) => {
    expect(decodeOriginalFilename(raw)).toBe(want)
  })
  test('absent is null', () => {
    expect(decodeOriginalFilename(undefined)).toBeNull()
  })
  test.each([
    ['=?iso-8859-2?q?abc?=', 'a charset other than UTF-8'],
    ['=?utf-8?b?!!!?=', 'invalid base64'],
    ['=?utf-8?b?YWJj?=x=?utf-8?b?YW?=', 'base64 without its padding'],
    ['=?utf-8?q?bad=ZZ?=', 'a bad =XX escape'],
    ['=?utf-8?q?=FF=FE?=', 'bytes that are not UTF-8'],
    [`=?utf-8?b?${Buffer.from([0xc3]).toString('base64')}?=`, 'a cut UTF-8 sequence'],
    ['caf\u00e9', 'raw non-ASCII'],
    ['a\u0001b', 'a control character'],
  ])('%j (%s) is refused', (raw) => {
    expect(() => decodeOriginalFilename(raw)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    )
  })
})
