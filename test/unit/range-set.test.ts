import { describe, expect, test } from '@jest/globals'
import {
  addRange,
  containsRange,
  contiguousPrefix,
  missingRanges,
  overlapsAny,
} from '../../src/core/state/range-set.js'

describe('range-set', () => {
  test('adjacent and overlapping ranges merge, order does not matter', () => {
    let r = addRange([], { start: 10, end: 19 })
    r = addRange(r, { start: 0, end: 4 })
    r = addRange(r, { start: 20, end: 29 })
    expect(r).toEqual([
      { start: 0, end: 4 },
      { start: 10, end: 29 },
    ])
    r = addRange(r, { start: 5, end: 9 })
    expect(r).toEqual([{ start: 0, end: 29 }])
  })

  test('missing ranges are the inclusive gaps, [] when complete (swagger example)', () => {
    expect(missingRanges([], 10)).toEqual([{ start: 0, end: 9 }])
    expect(missingRanges([{ start: 402129, end: 730104 }], 2097152)).toEqual([
      { start: 0, end: 402128 },
      { start: 730105, end: 2097151 },
    ])
    expect(missingRanges([{ start: 0, end: 9 }], 10)).toEqual([])
    expect(missingRanges([], 0)).toEqual([])
  })

  test('contains, overlaps and contiguous prefix', () => {
    const r = [
      { start: 0, end: 9 },
      { start: 20, end: 29 },
    ]
    expect(containsRange(r, { start: 2, end: 9 })).toBe(true)
    expect(containsRange(r, { start: 5, end: 20 })).toBe(false)
    expect(overlapsAny(r, { start: 10, end: 19 })).toBe(false)
    expect(overlapsAny(r, { start: 9, end: 10 })).toBe(true)
    expect(contiguousPrefix(r)).toBe(10)
    expect(contiguousPrefix([{ start: 1, end: 5 }])).toBe(0)
  })
})
