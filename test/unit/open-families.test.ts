/**
 * The start-up warning for a non-loopback bind lists the families anyone can write through:
 * ImageStore and Shaman without `auth`, and tus without a pre-create hook.
 */
import { describe, expect, test } from '@jest/globals'
import { openFamilies } from '../../src/app.js'
import { loadConfig } from '../../src/config/config.js'

describe('openFamilies', () => {
  test('the defaults leave ImageStore, Shaman and tus open', () => {
    expect(openFamilies(loadConfig({}))).toEqual(['imagestore', 'shaman', 'tus'])
  })
  test('a hook URL closes tus; a family turned off is not listed', () => {
    const env = { FERRY_HOOK_URL: 'http://127.0.0.1:9/hooks', FERRY_FAMILIES: 'imagestore,tus' }
    expect(openFamilies(loadConfig(env))).toEqual(['imagestore'])
  })
})
