/** The part grid's arithmetic (src/core/uploads/grid.ts): cell size, cells, pieces of a chunk. */
import { describe, expect, test } from '@jest/globals'
import fc from 'fast-check'
import { cellRange, cellSize, MAX_PARTS, piecesOf } from '../../src/core/uploads/grid.js'

const MiB = 1024 * 1024

describe('part grid', () => {
  test('cell size: at least the base, whole MiB, never more than 10000 cells', () => {
    expect(cellSize(null, 8 * MiB)).toBe(8 * MiB)
    expect(cellSize(0, 8 * MiB)).toBe(8 * MiB)
    expect(cellSize(80_000 * MiB, 8 * MiB)).toBe(8 * MiB)
    expect(cellSize(80_000 * MiB + 1, 8 * MiB)).toBe(9 * MiB)
    expect(cellSize(1024 ** 4, 8 * MiB)).toBe(105 * MiB)
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 46 }), (total) => {
        const c = cellSize(total, 8 * MiB)
        return c >= 8 * MiB && c % MiB === 0 && Math.ceil(total / c) <= MAX_PARTS
      }),
    )
  })

  test('the last cell is short; with the length unknown it is whole', () => {
    expect(cellRange(2, 10, 25)).toEqual({ start: 20, end: 24 })
    expect(cellRange(2, 10, null)).toEqual({ start: 20, end: 29 })
  })

  test('aligned chunks are whole cells; others are cut at cell edges into fragments', () => {
    expect(piecesOf({ start: 10, end: 29 }, 10, 45)).toEqual([
      { cell: 1, start: 10, end: 19, whole: true },
      { cell: 2, start: 20, end: 29, whole: true },
    ])
    expect(piecesOf({ start: 40, end: 44 }, 10, 45)).toEqual([
      { cell: 4, start: 40, end: 44, whole: true },
    ])
    expect(piecesOf({ start: 40, end: 44 }, 10, null)).toEqual([
      { cell: 4, start: 40, end: 44, whole: false },
    ])
    expect(piecesOf({ start: 7, end: 31 }, 10, 45)).toEqual([
      { cell: 0, start: 7, end: 9, whole: false },
      { cell: 1, start: 10, end: 19, whole: true },
      { cell: 2, start: 20, end: 29, whole: true },
      { cell: 3, start: 30, end: 31, whole: false },
    ])
    expect(piecesOf({ start: 0, end: -1 }, 10, 0)).toEqual([])
  })

  test('pieces tile the chunk exactly, each inside one cell', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 2000 }),
        fc.integer({ min: 0, max: 1999 }),
        fc.integer({ min: 0, max: 1999 }),
        (cell, total, a, b) => {
          const start = Math.min(a, b) % total
          const end = Math.min(total - 1, Math.max(a, b))
          const ps = piecesOf({ start, end }, cell, total)
          let next = start
          for (const p of ps) {
            if (p.start !== next || Math.floor(p.start / cell) !== p.cell) return false
            if (Math.floor(p.end / cell) !== p.cell) return false
            const c = cellRange(p.cell, cell, total)
            if (p.whole !== (p.start === c.start && p.end === c.end)) return false
            next = p.end + 1
          }
          return next === end + 1
        },
      ),
    )
  })
})
