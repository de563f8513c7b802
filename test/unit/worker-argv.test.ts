/**
 * Piscina tries `require()` before `import()` on a task file; with require(esm) on (Node 20.19+),
 * fresh workers taking several tasks at once once aborted the process inside that load. Ferry's
 * pools start their workers with require(esm) off, so the ESM workers always load by `import()`.
 */
import { describe, expect, test } from '@jest/globals'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { workerExecArgv } from '../../src/core/hashing/worker-argv.js'
import { DEFAULT_WORKER_FILE, HashPool } from '../../src/core/hashing/hash-pool.js'
import { removeDir, tempDir } from '../helpers/server.js'

const PROTOCOL_JS = new URL('../../workers/protocol.js', import.meta.url)

describe('worker options', () => {
  test('on this Node, workers get require(esm) turned off', () => {
    expect(process.allowedNodeEnvironmentFlags.has('--experimental-require-module')).toBe(true)
    expect(workerExecArgv()).toEqual(['--no-experimental-require-module'])
  })

  test('a worker started with them refuses require() of an ES module at once', async () => {
    const code = `
      const { parentPort } = require('node:worker_threads')
      try { require(${JSON.stringify(PROTOCOL_JS.pathname)}); parentPort.postMessage('loaded') }
      catch (e) { parentPort.postMessage(e.code) }`
    const w = new Worker(code, { eval: true, execArgv: workerExecArgv() ?? [] })
    const answer = await new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    await w.terminate()
    expect(answer).toBe('ERR_REQUIRE_ESM')
  })

  test('the hash pool loads its ES module worker with them: 16 tasks on fresh threads at once', async () => {
    const dir = tempDir('ferry-worker-argv-')
    const file = join(dir, 'data.bin')
    const data = Buffer.alloc(100_000, 7)
    writeFileSync(file, data)
    const expected = createHash('sha256').update(data).digest('hex')
    const pool = new HashPool({
      workerFile: DEFAULT_WORKER_FILE,
      threads: 2,
      streamThreads: 2,
      streamsPerThread: 8,
      streamIdleMs: 1000,
    })
    try {
      const results = await Promise.all(
        Array.from({ length: 16 }, () => pool.hashFile(file, { algos: ['sha256'] })),
      )
      expect(results.map((r) => r.digests.sha256)).toEqual(results.map(() => expected))
    } finally {
      await pool.close()
      removeDir(dir)
    }
  })
})
