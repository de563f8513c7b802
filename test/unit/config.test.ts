import { describe, expect, test } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULTS, SECTION_DEFAULTS, loadConfig } from '../../src/config/config.js'
import { removeDir, tempDir } from '../helpers/server.js'

describe('loadConfig', () => {
  test('defaults: 127.0.0.1:8080, ./data, embedded store, 30-minute sessions', () => {
    const c = loadConfig({})
    expect(c.http.host).toBe('127.0.0.1')
    expect(c.http.port).toBe(8080)
    expect(c.storage.dataDir).toMatch(/\/data$/)
    expect(c.redis.url).toBeNull()
    expect(c.redis.prefix).toBe('ferry:')
    expect(c.sessions.ttlSec).toBe(1800)
    expect(Object.isFrozen(c.http)).toBe(true)
    expect(Object.isFrozen(DEFAULTS.limits)).toBe(true)
  })

  test('environment and flags (flags win)', () => {
    const c = loadConfig(
      {
        FERRY_PORT: '9000',
        FERRY_HOST: '0.0.0.0',
        REDIS_URL: 'redis://127.0.0.1:6380',
        FERRY_WORKERS: '3',
        FERRY_SESSION_TTL_SEC: '60',
        FERRY_MAX_UPLOAD_BYTES: '1000',
        FERRY_FSYNC: 'chunk',
      },
      ['--port', '9100'],
    )
    expect(c.http.port).toBe(9100)
    expect(c.http.host).toBe('0.0.0.0')
    expect(c.redis.url).toBe('redis://127.0.0.1:6380')
    expect(c.pool.workers).toBe(3)
    expect(c.sessions.ttlSec).toBe(60)
    expect(c.limits.maxUploadBytes).toBe(1000)
    expect(c.storage.fsync).toBe('chunk')
  })

  test.each([
    [{ FERRY_PORT: 'eighty' }, /FERRY_PORT/],
    [{ FERRY_PORT: '70000' }, /FERRY_PORT/],
    [{ FERRY_WORKERS: '0' }, /FERRY_WORKERS/],
    [{ FERRY_SESSION_TTL_SEC: '-5' }, /FERRY_SESSION_TTL_SEC/],
    [{ FERRY_MAX_UPLOAD_BYTES: '1.5' }, /FERRY_MAX_UPLOAD_BYTES/],
    [{ FERRY_FSYNC: 'sometimes' }, /FERRY_FSYNC/],
    [{ REDIS_URL: 'localhost:6379' }, /REDIS_URL/],
    [{ FERRY_REDIS_PREFIX: 'has space' }, /FERRY_REDIS_PREFIX/],
    [{ FERRY_LOG_LEVEL: 'loud' }, /FERRY_LOG_LEVEL/],
    [{ FERRY_CONFIG: '/nonexistent/ferry.json' }, /FERRY_CONFIG/],
  ])('a bad value stops the start with a message naming the key: %j', (env, re) => {
    expect(() => loadConfig(env)).toThrow(re)
  })

  test('FERRY_FSYNC: commit by default; chunk and none on request', () => {
    expect(loadConfig({}).storage.fsync).toBe('commit')
    expect(loadConfig({ FERRY_FSYNC: 'chunk' }).storage.fsync).toBe('chunk')
    expect(loadConfig({ FERRY_FSYNC: 'none' }).storage.fsync).toBe('none')
    expect(() => loadConfig({ FERRY_FSYNC: 'never' })).toThrow(/FERRY_FSYNC/)
  })

  test('an unknown flag is refused', () => {
    expect(() => loadConfig({}, ['--bogus'])).toThrow()
  })

  test('FERRY_CONFIG: the design card shape is read; unknown keys and bad types name their path', () => {
    const dir = tempDir()
    try {
      const file = join(dir, 'ferry.json')
      writeFileSync(
        file,
        JSON.stringify({
          lakefs: {
            signingSecret: 's',
            jwtSecret: 'j',
            credentials: [{ accessKeyId: 'AK', secretAccessKey: 'SK' }],
            repositories: [
              { name: 'repo1', storageNamespace: 'local://repo1', branches: ['main'] },
            ],
          },
          ingest: { jwt: { secret: 'x', issuer: 'iss', audience: 'aud' } },
        }),
      )
      const c = loadConfig({ FERRY_CONFIG: file })
      expect(c.lakefs?.repositories[0]?.branches).toEqual(['main'])
      expect(c.ingest?.jwt.issuer).toBe('iss')
      writeFileSync(
        file,
        JSON.stringify({ lakefs: { signingSecret: 's', jwtSecret: 'j', typo: 1 } }),
      )
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(/FERRY_CONFIG\.lakefs\.typo/)
      writeFileSync(file, JSON.stringify({ other: {} }))
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(/FERRY_CONFIG\.other/)
      writeFileSync(
        file,
        JSON.stringify({ ingest: { jwt: { secret: '', issuer: 'i', audience: 'a' } } }),
      )
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(/FERRY_CONFIG\.ingest\.jwt\.secret/)
      writeFileSync(file, '{nope')
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(/not valid JSON/)
    } finally {
      removeDir(dir)
    }
  })

  test('construction tunables: defaults from DEFAULTS, each set by its own FERRY_* variable', () => {
    const d = loadConfig({})
    expect(d.pool).toMatchObject({ streamsPerThread: 8, streamIdleMs: 30_000 })
    expect(d.shaman.fileListThreads).toBe(2)
    expect(DEFAULTS.pool).toMatchObject({ streamsPerThread: 8, streamIdleMs: 30_000 })
    expect(DEFAULTS.shaman.fileListThreads).toBe(2)
    const c = loadConfig({
      FERRY_POOL_STREAMS_PER_THREAD: '3',
      FERRY_POOL_STREAM_IDLE_MS: '5000',
      FERRY_SHAMAN_FILE_LIST_THREADS: '4',
    })
    expect(c.pool).toMatchObject({ streamsPerThread: 3, streamIdleMs: 5000 })
    expect(c.shaman.fileListThreads).toBe(4)
  })

  test.each([
    [{ FERRY_POOL_STREAMS_PER_THREAD: '0' }, /FERRY_POOL_STREAMS_PER_THREAD/],
    [{ FERRY_POOL_STREAM_IDLE_MS: '10' }, /FERRY_POOL_STREAM_IDLE_MS/],
    [{ FERRY_SHAMAN_FILE_LIST_THREADS: '0' }, /FERRY_SHAMAN_FILE_LIST_THREADS/],
    [{ FERRY_SHAMAN_FILE_LIST_THREADS: 'two' }, /FERRY_SHAMAN_FILE_LIST_THREADS/],
  ])('a bad tunable is refused by name: %j', (env, re) => {
    expect(() => loadConfig(env)).toThrow(re)
  })

  test('FERRY_CONFIG lakefs.presignMultipart: true by default, false turns it off, anything else is refused by name', () => {
    const dir = tempDir()
    try {
      const file = join(dir, 'ferry.json')
      const lakefs = { signingSecret: 's', jwtSecret: 'j' }
      writeFileSync(file, JSON.stringify({ lakefs }))
      expect(loadConfig({ FERRY_CONFIG: file }).lakefs?.presignMultipart).toBe(true)
      expect(SECTION_DEFAULTS.lakefs.presignMultipart).toBe(true)
      writeFileSync(file, JSON.stringify({ lakefs: { ...lakefs, presignMultipart: false } }))
      expect(loadConfig({ FERRY_CONFIG: file }).lakefs?.presignMultipart).toBe(false)
      writeFileSync(file, JSON.stringify({ lakefs: { ...lakefs, presignMultipart: 'yes' } }))
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(
        /FERRY_CONFIG\.lakefs\.presignMultipart must be a boolean/,
      )
    } finally {
      removeDir(dir)
    }
  })

  test('FERRY_CONFIG ingest: lock and publish waits default to SECTION_DEFAULTS (dsp-ingest 400 ms) and can be set', () => {
    const dir = tempDir()
    try {
      const file = join(dir, 'ferry.json')
      const jwt = { secret: 'x', issuer: 'iss', audience: 'aud' }
      writeFileSync(
        file,
        JSON.stringify({ ingest: { jwt }, lakefs: { signingSecret: 's', jwtSecret: 'j' } }),
      )
      const d = loadConfig({ FERRY_CONFIG: file })
      expect(d.ingest).toMatchObject({
        maxParallel: 8,
        lockWaitMs: 400,
        publishWaitMs: 30_000,
        jwt: { requireExp: true },
      })
      expect(d.lakefs).toMatchObject({ presignTtlSec: 900, allowExternalAddresses: false })
      expect(SECTION_DEFAULTS.ingest).toMatchObject({
        maxParallel: 8,
        lockWaitMs: 400,
        publishWaitMs: 30_000,
      })
      expect(Object.isFrozen(SECTION_DEFAULTS.ingest)).toBe(true)
      writeFileSync(file, JSON.stringify({ ingest: { jwt, lockWaitMs: 0, publishWaitMs: 1000 } }))
      expect(loadConfig({ FERRY_CONFIG: file }).ingest).toMatchObject({
        lockWaitMs: 0,
        publishWaitMs: 1000,
      })
      writeFileSync(file, JSON.stringify({ ingest: { jwt, lockWaitMs: -1 } }))
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(/FERRY_CONFIG\.ingest\.lockWaitMs/)
      writeFileSync(file, JSON.stringify({ ingest: { jwt, publishWaitMs: 'soon' } }))
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(
        /FERRY_CONFIG\.ingest\.publishWaitMs/,
      )
      writeFileSync(file, JSON.stringify({ ingest: { jwt, maxParallel: 65 } }))
      expect(() => loadConfig({ FERRY_CONFIG: file })).toThrow(
        /FERRY_CONFIG\.ingest\.maxParallel must be a whole number from 1 to 64/,
      )
    } finally {
      removeDir(dir)
    }
  })
})

describe('tus, CORS and hooks keys', () => {
  test('defaults: tus at /files/ with the upload limit, any origin, no hook', () => {
    const c = loadConfig({})
    expect(c.tus).toEqual({ enabled: true, path: '/files/', maxSizeBytes: 0, retentionSec: 0 })
    expect(c.cors).toEqual({ mode: 'any' })
    expect(c.hooks.url).toBeNull()
    expect(DEFAULTS.tus.path).toBe('/files/')
  })

  test('FERRY_TUS_*, FERRY_CORS_ORIGINS and FERRY_HOOK_URL are read', () => {
    const c = loadConfig({
      FERRY_TUS_PATH: 'uploads/tus',
      FERRY_TUS_MAX_SIZE: '1048576',
      FERRY_TUS_RETENTION_SEC: '3600',
      FERRY_CORS_ORIGINS: 'https://app.example.com, http://localhost:5173',
      FERRY_HOOK_URL: 'http://hooks.internal:9000/tus',
    })
    expect(c.tus.path).toBe('/uploads/tus/')
    expect(c.tus.maxSizeBytes).toBe(1048576)
    expect(c.tus.retentionSec).toBe(3600)
    expect(c.cors).toEqual({
      mode: 'list',
      origins: ['https://app.example.com', 'http://localhost:5173'],
    })
    expect(c.hooks.url).toBe('http://hooks.internal:9000/tus')
    expect(loadConfig({ FERRY_CORS_ORIGINS: 'none' }).cors).toEqual({ mode: 'none' })
  })

  test('FERRY_FAMILIES can leave tus out or name it alone', () => {
    expect(loadConfig({ FERRY_FAMILIES: 'imagestore' }).tus.enabled).toBe(false)
    const only = loadConfig({ FERRY_FAMILIES: 'tus' })
    expect(only.tus.enabled).toBe(true)
    expect(only.imagestore.enabled).toBe(false)
  })

  test.each([
    [{ FERRY_TUS_PATH: '/a/../b/' }, /FERRY_TUS_PATH/],
    [{ FERRY_TUS_PATH: '/files?x/' }, /FERRY_TUS_PATH/],
    [{ FERRY_TUS_MAX_SIZE: 'big' }, /FERRY_TUS_MAX_SIZE/],
    [{ FERRY_TUS_RETENTION_SEC: '-1' }, /FERRY_TUS_RETENTION_SEC/],
    [{ FERRY_CORS_ORIGINS: 'https://a.example/path' }, /FERRY_CORS_ORIGINS/],
    [{ FERRY_CORS_ORIGINS: '*, https://a.example' }, /FERRY_CORS_ORIGINS/],
    [{ FERRY_HOOK_URL: 'ftp://hooks' }, /FERRY_HOOK_URL/],
    [{ FERRY_HOOK_URL: 'not a url' }, /FERRY_HOOK_URL/],
  ])('refuses %j', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message)
  })
})

describe('FERRY_STORAGE and FERRY_S3_*', () => {
  const s3 = (env: Record<string, string>) =>
    loadConfig({ FERRY_STORAGE: 's3', FERRY_S3_BUCKET: 'ferry-data', ...env }).storage

  test('default fs, no bucket', () => {
    const c = loadConfig({})
    expect(c.storage.backend).toBe('fs')
    expect(c.storage.s3).toBeNull()
  })

  test('s3: bucket required; region us-east-1; path-style on with an endpoint, off without', () => {
    expect(() => loadConfig({ FERRY_STORAGE: 's3' })).toThrow(/FERRY_S3_BUCKET/)
    expect(s3({})).toEqual({
      dataDir: expect.any(String),
      fsync: 'commit',
      readyMinFreeBytes: DEFAULTS.storage.readyMinFreeBytes,
      backend: 's3',
      s3: {
        endpoint: null,
        bucket: 'ferry-data',
        region: 'us-east-1',
        prefix: '',
        forcePathStyle: false,
      },
    })
    const c = s3({
      FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000/',
      FERRY_S3_REGION: 'eu-central-1',
      FERRY_S3_PREFIX: 'prod/ferry/',
    })
    expect(c.s3).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      bucket: 'ferry-data',
      region: 'eu-central-1',
      prefix: 'prod/ferry/',
      forcePathStyle: true,
    })
    expect(s3({ FERRY_S3_PREFIX: 'x' }).s3?.prefix).toBe('x/')
    expect(
      s3({ FERRY_S3_ENDPOINT: 'https://s3.example', FERRY_S3_FORCE_PATH_STYLE: 'false' }).s3,
    ).toMatchObject({ endpoint: 'https://s3.example', forcePathStyle: false })
    expect(s3({ FERRY_S3_FORCE_PATH_STYLE: 'true' }).s3?.forcePathStyle).toBe(true)
  })

  test('bad values are refused by name; credentials never in the endpoint (nor echoed)', () => {
    expect(() => loadConfig({ FERRY_STORAGE: 'gcs' })).toThrow(/FERRY_STORAGE must be one of/)
    expect(() => s3({ FERRY_S3_BUCKET: 'a' })).toThrow(/FERRY_S3_BUCKET/)
    expect(() => s3({ FERRY_S3_BUCKET: 'has space' })).toThrow(/FERRY_S3_BUCKET/)
    expect(() => s3({ FERRY_S3_ENDPOINT: 'ftp://x' })).toThrow(/FERRY_S3_ENDPOINT/)
    expect(() => s3({ FERRY_S3_ENDPOINT: 'http://x/some/path' })).toThrow(/FERRY_S3_ENDPOINT/)
    let msg = ''
    try {
      s3({ FERRY_S3_ENDPOINT: 'http://AKIAKEY:supersecret@host:9000' })
    } catch (err) {
      msg = (err as Error).message
    }
    expect(msg).toMatch(/must not hold credentials/)
    expect(msg).not.toContain('supersecret')
    expect(() => s3({ FERRY_S3_REGION: 'US East' })).toThrow(/FERRY_S3_REGION/)
    for (const bad of ['../x', 'a/../b', '/abs', 'a//b', 'sp ace', 'a/./b']) {
      expect(() => s3({ FERRY_S3_PREFIX: bad })).toThrow(/FERRY_S3_PREFIX/)
    }
    expect(() => s3({ FERRY_S3_FORCE_PATH_STYLE: 'maybe' })).toThrow(/FERRY_S3_FORCE_PATH_STYLE/)
  })

  test('FERRY_S3_* without FERRY_STORAGE=s3 is refused (it would write locally unnoticed)', () => {
    expect(() => loadConfig({ FERRY_S3_BUCKET: 'ferry-data' })).toThrow(
      /FERRY_S3_BUCKET set, but FERRY_STORAGE is fs/,
    )
  })
})
