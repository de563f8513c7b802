/** The REDIS_URL forms: one server, Sentinel, Cluster (redis-url.ts), and config's check of them. */
import { describe, expect, test } from '@jest/globals'
import { loadConfig } from '../../src/config/config.js'
import { parseRedisUrl } from '../../src/core/state/redis-url.js'

describe('REDIS_URL forms', () => {
  test('one server is handed to ioredis as written', () => {
    expect(parseRedisUrl('rediss://u:p@h:6380/2')).toEqual({ mode: 'single', url: 'rediss://u:p@h:6380/2' })
  })

  test('sentinel: addresses, master name, db, credentials and the sentinels\' password', () => {
    const t = parseRedisUrl('redis+sentinel://ferry:p%40ss@10.0.0.1:26380,s2,[::1]:26381/mymaster/3?sentinelPassword=sp')
    expect(t).toEqual({
      mode: 'sentinel', name: 'mymaster', db: 3, username: 'ferry', password: 'p@ss', sentinelPassword: 'sp', tls: false,
      sentinels: [{ host: '10.0.0.1', port: 26380 }, { host: 's2', port: 26379 }, { host: '::1', port: 26381 }],
    })
  })

  test('cluster: seed nodes, a password only, TLS with rediss+', () => {
    expect(parseRedisUrl('rediss+cluster://:pw@a:7000,b')).toEqual({
      mode: 'cluster', password: 'pw', tls: true, nodes: [{ host: 'a', port: 7000 }, { host: 'b', port: 6379 }],
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

  test('config accepts the three forms and refuses a malformed one without its password', () => {
    expect(loadConfig({ REDIS_URL: 'redis+cluster://h:7000,h:7001' }).redis.url).toBe('redis+cluster://h:7000,h:7001')
    expect(loadConfig({ REDIS_URL: 'redis+sentinel://h:26379/m' }).redis.url).toBe('redis+sentinel://h:26379/m')
    expect(() => loadConfig({ REDIS_URL: 'redis+sentinel://u:secret@h:26379' })).toThrow(/REDIS_URL/)
    expect(() => loadConfig({ REDIS_URL: 'redis+sentinel://u:secret@h:26379' })).not.toThrow(/secret/)
  })
})
