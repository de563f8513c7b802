import { describe, expect, test } from '@jest/globals'
import { ERROR_CODES } from '../../src/core/errors.js'
import { SHAMAN_STATUS } from '../../src/http/shaman/errors.js'

describe('Shaman error table', () => {
  test('maps every core error code to an HTTP error status', () => {
    expect(Object.keys(SHAMAN_STATUS).sort()).toEqual([...ERROR_CODES].sort())
    for (const status of Object.values(SHAMAN_STATUS)) {
      expect(Number.isInteger(status)).toBe(true)
      expect(status).toBeGreaterThanOrEqual(400)
      expect(status).toBeLessThan(600)
    }
  })

  test('the statuses the spec names: 417 mismatch, 409 existing checkout, 424 missing files, 503 busy', () => {
    expect(SHAMAN_STATUS.ERR_SIZE_MISMATCH).toBe(417)
    expect(SHAMAN_STATUS.ERR_CHECKSUM_MISMATCH).toBe(417)
    expect(SHAMAN_STATUS.ERR_ALREADY_EXISTS).toBe(409)
    expect(SHAMAN_STATUS.ERR_DEPENDENCY_MISSING).toBe(424)
    expect(SHAMAN_STATUS.ERR_INVALID_ARGUMENT).toBe(400)
    expect(SHAMAN_STATUS.ERR_INVALID_PATH).toBe(400)
    expect(SHAMAN_STATUS.ERR_UNAVAILABLE).toBe(503)
    expect(SHAMAN_STATUS.ERR_IO).toBe(500)
  })
})
