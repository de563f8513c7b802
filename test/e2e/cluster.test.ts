/**
 * `npm run cluster` (deploy/cluster, issue 13): the command starts redis-server, N Ferry
 * processes and haproxy, prints the front URL; an upload through the front lands in the shared
 * data directory; an instance that is stopping leaves haproxy's rotation through its `/readyz`
 * before it stops accepting, so requests through the front keep succeeding; SIGTERM stops every
 * process and removes everything the cluster created.
 */
import { describe, expect, test } from '@jest/globals'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request, sha256, seededBytes } from '../helpers/http.js'
import { API } from '../helpers/imagestore.js'
import { waitFor } from '../helpers/wait.js'

const CLUSTER_JS = fileURLToPath(new URL('../../deploy/cluster.js', import.meta.url))

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('deploy/cluster', () => {
  test('starts, serves through haproxy, survives a draining instance, stops clean', async () => {
    const proc = spawn(
      process.execPath,
      [CLUSTER_JS, '--instances', '3', '--drain-delay-ms', '1500'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let out = ''
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()))
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
    try {
      const front = await waitFor(
        'the front URL',
        () => /cluster: front (http:\S+)/.exec(out)?.[1],
        { timeoutMs: 30_000 },
      )
      const pids = [...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]))
      expect(pids).toHaveLength(3)
      const dataDir = /; data (\S+);/.exec(out)![1]!
      const work = dataDir.replace(/\/data$/, '')

      const data = seededBytes(3 * 1024 * 1024, 'cluster')
      const put = await request(`${front}/ImageStore/c/file.bin?${API}`, {
        method: 'PUT',
        body: data,
      })
      expect(put.status).toBe(200)
      expect(sha256(readFileSync(join(dataDir, 'store/c/file.bin')))).toBe(sha256(data))

      // One instance stops: while it drains, haproxy takes it out; the front answers throughout.
      process.kill(pids[0]!, 'SIGTERM')
      const statuses: number[] = []
      const list = `${front}/ImageStore/c?${API}`
      while (alive(pids[0]!)) statuses.push((await request(list)).status)
      expect(statuses.length).toBeGreaterThan(5)
      expect(statuses.filter((s) => s !== 200)).toEqual([])

      proc.kill('SIGTERM')
      expect(await exited).toBe(0)
      for (const pid of pids) expect([pid, alive(pid)]).toEqual([pid, false])
      expect(out).not.toMatch(/stop failed/)
      expect(existsSync(work)).toBe(false)
    } finally {
      // A failed assertion still stops the cluster the way a user would, so nothing outlives it.
      if (proc.exitCode === null) {
        proc.kill('SIGTERM')
        const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000)
        await exited
        clearTimeout(timer)
      }
    }
  })
})
