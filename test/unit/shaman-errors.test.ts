import { describe, expect, test } from '@jest/globals'
import { SHAMAN_STATUS } from '../../src/http/shaman/errors.js'

// Completeness of the table: test/unit/error-tables.test.ts.
describe('Shaman error table', () => {
  test('the statuses the spec names: 417 mismatch, 409 existing checkout, 424 missing files, 503 busy', () => {
    expect(SHAMAN_STATUS).toMatchObject({
      ERR_SIZE_MISMATCH: 417,
      ERR_CHECKSUM_MISMATCH: 417,
      ERR_ALREADY_EXISTS: 409,
      ERR_DEPENDENCY_MISSING: 424,
      ERR_INVALID_ARGUMENT: 400,
      ERR_INVALID_PATH: 400,
      ERR_UNAVAILABLE: 503,
      ERR_IO: 500,
    })
  })
})
