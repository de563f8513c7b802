/** The REDIS_URL forms (redis-url.ts): one server, Sentinel, Cluster; and config's check. */
import { describe, expect, test } from '@jest/globals'
import { loadConfig } from '../../src/config/config.js'
import { parseRedisUrl } from '../../src/core/state/redis-url.js'
import { maskUrl } from '../../src/observability/redact.js'

describe('REDIS_URL forms', () => {
  test('one server is handed to ioredis as written', () => {
    const url = 'rediss://u:p@h:6380/2'
    expect(parseRedisUrl(url)).toEqual({ mode: 'single', url })
  })

  test("sentinel: addresses, master name, db, credentials, the sentinels' password", () => {
    const sentinels = 'ferry:p%40ss@10.0.0.1:26380,s2,[::1]:26381'
    const t = parseRedisUrl(`redis+sentinel://${sentinels}/mymaster/3?sentinelPassword=sp`)
    expect(t).toEqual({
      mode: 'sentinel',
      name: 'mymaster',
      db: 3,
      tls: false,
      username: 'ferry',
      password: 'p@ss',
      sentinelPassword: 'sp',
      sentinels: [
        { host: '10.0.0.1', port: 26380 },
        { host: 's2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
    })
  })

  test('cluster: seed nodes, a password only, TLS with rediss+', () => {
    expect(parseRedisUrl('rediss+cluster://:pw@a:7000,b')).toEqual({
      mode: 'cluster',
      password: 'pw',
      tls: true,
      nodes: [
        { host: 'a', port: 7000 },
        { host: 'b', port: 6379 },
      ],
    })
  })

  test.each([
    ['redis+sentinel://a:1,b:2', /master name/],
    ['redis+sentinel://a:1/m/x', /database/],
    ['redis+cluster://a:1/0', /no path/],
    ['redis+cluster://a:99999', /address/],
    ['redis+mesh://a:1', /must be/],
    ['localhost:6379', /must be/],
  ])('%s is refused', (url, re) => {
    expect(() => parseRedisUrl(url)).toThrow(re)
  })

  test('config takes the three forms and refuses a bad one without quoting its password', () => {
    for (const url of ['redis+cluster://h:7000,h:7001', 'redis+sentinel://h:26379/m']) {
      expect(loadConfig({ REDIS_URL: url }).redis.url).toBe(url)
    }
    const bad = { REDIS_URL: 'redis+sentinel://u:secret@h:26379' }
    expect(() => loadConfig(bad)).toThrow(/REDIS_URL/)
    expect(() => loadConfig(bad)).not.toThrow(/secret/)
  })

  test('what is logged of a Sentinel URL hides both passwords', () => {
    const shown = maskUrl('redis+sentinel://u:pw1@a:1,b:2/m?sentinelPassword=pw2')
    expect(shown).not.toMatch(/pw1|pw2/)
    expect(shown).toContain('a:1,b:2/m')
  })
})
