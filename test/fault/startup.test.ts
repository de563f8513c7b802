import { describe, expect, test } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { freePort, startPrivateRedis } from '../helpers/redis.js'
import { MAIN_JS, removeDir, spawnFerry, tempDir } from '../helpers/server.js'

describe('starting the process', () => {
  test.each([
    [{ FERRY_PORT: 'abc' }, 'FERRY_PORT'],
    [{ FERRY_SESSION_TTL_SEC: '0' }, 'FERRY_SESSION_TTL_SEC'],
    [{ REDIS_URL: 'nope' }, 'REDIS_URL'],
  ])('a bad value exits 2 with a message naming the key (%j)', (env, key) => {
    const r = spawnSync(process.execPath, [MAIN_JS], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      encoding: 'utf8',
      timeout: 10_000,
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(key)
  })

  test('an unreachable Redis stops the start (exit 1, says so)', () => {
    const dir = tempDir()
    const r = spawnSync(process.execPath, [MAIN_JS], {
      env: {
        PATH: process.env['PATH'] ?? '',
        FERRY_PORT: '0',
        FERRY_DATA_DIR: dir,
        REDIS_URL: 'redis://127.0.0.1:1',
      },
      encoding: 'utf8',
      timeout: 30_000,
    })
    removeDir(dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/Redis|ECONNREFUSED|connect/i)
  })

  test('a second process on the same embedded data directory is refused', async () => {
    const dir = tempDir()
    const first = await spawnFerry({ FERRY_DATA_DIR: dir })
    try {
      const r = spawnSync(process.execPath, [MAIN_JS], {
        env: { PATH: process.env['PATH'] ?? '', FERRY_PORT: '0', FERRY_DATA_DIR: dir },
        encoding: 'utf8',
        timeout: 10_000,
      })
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/in use by process/)
    } finally {
      first.proc.kill('SIGTERM')
      await first.exited
      removeDir(dir)
    }
  })

  test('the log says where Ferry listens; it binds 127.0.0.1 by default', async () => {
    const dir = tempDir()
    const child = await spawnFerry({ FERRY_DATA_DIR: dir })
    try {
      expect(child.output()).toMatch(/"host":"127\.0\.0\.1"/)
      expect(child.output()).toMatch(/ferry listening on http:\/\/127\.0\.0\.1:\d+/)
    } finally {
      child.proc.kill('SIGTERM')
      await child.exited
      removeDir(dir)
    }
  })

  test('a Redis that comes up a moment after Ferry starts is waited for, not a failed start', async () => {
    const dir = tempDir()
    const port = await freePort()
    const later = (async () => {
      // A Redis that starts late is the case: 1.5 s is well after Ferry's first attempt.
      await new Promise((r) => setTimeout(r, 1500))
      return startPrivateRedis({ port })
    })()
    const child = await spawnFerry({ FERRY_DATA_DIR: dir, REDIS_URL: `redis://127.0.0.1:${port}` })
    const redis = await later
    try {
      expect((await fetch(`${child.url}/healthz`)).status).toBe(200)
    } finally {
      child.proc.kill('SIGKILL')
      await child.exited
      await redis.stop()
      removeDir(redis.dir)
      removeDir(dir)
    }
  })
})
