/**
 * The operations settings of issue 13: FERRY_MIN_FREE_BYTES with FERRY_READY_MIN_FREE_BYTES as
 * its older alias, FERRY_DRAIN_DELAY_MS, FERRY_METRICS_TOKEN.
 */
import { describe, expect, test } from '@jest/globals'
import { loadConfig } from '../../src/config/config.js'

describe('operations settings', () => {
  test('FERRY_MIN_FREE_BYTES, or its alias FERRY_READY_MIN_FREE_BYTES; the new name wins', () => {
    expect(loadConfig({}).storage.readyMinFreeBytes).toBe(64 * 1024 * 1024)
    expect(loadConfig({ FERRY_MIN_FREE_BYTES: '1000' }).storage.readyMinFreeBytes).toBe(1000)
    expect(loadConfig({ FERRY_READY_MIN_FREE_BYTES: '2000' }).storage.readyMinFreeBytes).toBe(2000)
    const both = { FERRY_MIN_FREE_BYTES: '1000', FERRY_READY_MIN_FREE_BYTES: '2000' }
    expect(loadConfig(both).storage.readyMinFreeBytes).toBe(1000)
    expect(() => loadConfig({ FERRY_MIN_FREE_BYTES: '1e9' })).toThrow(/^FERRY_MIN_FREE_BYTES /)
  })

  test('FERRY_DRAIN_DELAY_MS: 0 by default, a whole number of ms up to 10 minutes', () => {
    expect(loadConfig({}).http.drainDelayMs).toBe(0)
    expect(loadConfig({ FERRY_DRAIN_DELAY_MS: '1500' }).http.drainDelayMs).toBe(1500)
    expect(() => loadConfig({ FERRY_DRAIN_DELAY_MS: '600001' })).toThrow(/^FERRY_DRAIN_DELAY_MS /)
  })

  test('FERRY_METRICS_TOKEN: unset or empty leaves /metrics open', () => {
    expect(loadConfig({}).http.metricsToken).toBeNull()
    expect(loadConfig({ FERRY_METRICS_TOKEN: '' }).http.metricsToken).toBeNull()
    expect(loadConfig({ FERRY_METRICS_TOKEN: 'abc' }).http.metricsToken).toBe('abc')
  })
})
