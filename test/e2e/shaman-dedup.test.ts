/**
 * Dedup across instances: two Ferry processes' worth of state (in-process instances, plus a
 * forked one for kill tests) sharing one redis-server and one data directory. Clients speak raw
 * HTTP/1.1 as urllib3 does: the whole body is written, answers may arrive before its end.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { seededBytes, sha256 } from '../helpers/http.js'
import { RawConn } from '../helpers/raw-http.js'
import { blobFilesOf, shamanStatus, waitShamanStatus } from '../helpers/shaman.js'
import { sleep, waitFor } from '../helpers/wait.js'
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js'
import {
  removeDir,
  spawnFerry,
  startCluster,
  startFerry,
  tempDir,
  type TestCluster,
  type TestServer,
} from '../helpers/server.js'

const API = '/api/v3/shaman'
const MIB = 1024 * 1024
/**
 * Raw connections as urllib3 writes 32 MiB bodies: large writes, and answers that may take long.
 */
const RAW = { pieceBytes: 256 * 1024, answerTimeoutMs: 60_000 }

const filePath = (sha: string, size: number) => `${API}/files/${sha}/${size}`

const statusOn = (base: string, sha: string, size: number) => shamanStatus(base + API, sha, size)
const waitStatus = (base: string, sha: string, size: number, want: string, timeoutMs = 10_000) =>
  waitShamanStatus(base + API, sha, size, want, timeoutMs)

/** Starts an upload and writes `first` bytes of `body`; the caller writes the rest. */
async function startUpload(
  base: string,
  sha: string,
  size: number,
  defer: 'True' | 'False',
  body: Buffer,
  first: number,
): Promise<RawConn> {
  const c = await RawConn.open(base, RAW)
  await c.head('POST', filePath(sha, size), {
    'Content-Type': 'application/octet-stream',
    'Content-Length': size,
    'X-Shaman-Can-Defer-Upload': defer,
    'X-Shaman-Original-Filename': '=?utf-8?q?big=2Ebin?=',
    'Accept-Encoding': 'identity',
  })
  await c.writeBody(body.subarray(0, first))
  return c
}

describe('two instances, one Redis, one data directory', () => {
  let cluster: TestCluster<[TestServer, TestServer]>
  let dir: string
  let a: TestServer
  let b: TestServer
  const data = seededBytes(32 * MIB, 'dedup-32')
  const sha = sha256(data)

  beforeAll(async () => {
    cluster = await startCluster(
      2,
      { FERRY_SHAMAN_GC_INTERVAL_SEC: '0', FERRY_LOCK_TTL_MS: '3000' },
      'ferry-shaman-dedup-',
    )
    ;[a, b] = cluster.servers
    dir = cluster.dataDir
  })
  afterAll(() => cluster.close())

  /**
   * 19 more uploads of `body` while someone else holds the claim, alternating between the two
   * instances: those `defers(i)` picks ask to defer, are answered 425 before their body and still
   * send it in full; the others send 4 MiB and wait for an answer.
   */
  async function crowd(
    s: string,
    body: Buffer,
    defers: (i: number) => boolean,
  ): Promise<{ deferring: RawConn[]; parallel: RawConn[] }> {
    const deferring: RawConn[] = []
    const parallel: RawConn[] = []
    for (let i = 1; i < 20; i++) {
      const base = i % 2 === 0 ? a.url : b.url
      if (defers(i)) deferring.push(await startUpload(base, s, body.length, 'True', body, 0))
      else parallel.push(await startUpload(base, s, body.length, 'False', body, 4 * MIB))
    }
    for (const c of deferring) {
      const [ans] = await Promise.all([c.answer(), c.writeBody(body)])
      expect(ans.status).toBe(425)
    }
    return { deferring, parallel }
  }

  test('20 concurrent uploads of one 32 MiB file: exactly one 204, the rest 208 or 425, one blob', async () => {
    // A fresh object for this test (the others use `data`).
    const mine = seededBytes(32 * MIB, 'dedup-free-for-all')
    const s = sha256(mine)
    const answers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const c = await startUpload(
          i % 2 === 0 ? a.url : b.url,
          s,
          mine.length,
          i % 3 === 0 ? 'True' : 'False',
          mine,
          0,
        )
        const [ans] = await Promise.all([c.answer(), c.writeBody(mine)])
        c.close()
        return ans.status
      }),
    )
    expect(answers.every((st) => st === 204 || st === 208 || st === 425)).toBe(true)
    expect(answers.filter((st) => st === 204)).toHaveLength(1)
    const blobs = await blobFilesOf(dir, s)
    expect(blobs).toHaveLength(1)
    expect(sha256(readFileSync(blobs[0]!))).toBe(s)
    expect(await statusOn(b.url, s, mine.length)).toBe('stored')
  })

  test('the claimant finishes: every parallel upload on both instances is cut short with 208 while still sending', async () => {
    const first = await startUpload(a.url, sha, data.length, 'False', data, 4 * MIB)
    // The claim is visible from the other instance.
    await waitStatus(b.url, sha, data.length, 'uploading')
    // Deferring clients are answered 425 before their bodies, which they still send in full.
    const { deferring, parallel } = await crowd(sha, data, (i) => Math.floor(i / 2) % 2 === 1)
    expect(parallel.some((c) => c.hasAnswer())).toBe(false)
    await first.writeBody(data.subarray(4 * MIB))
    expect((await first.answer()).status).toBe(204)
    // The others are told over the bus and answered 208 although they have sent only 4 MiB.
    for (const c of parallel) expect((await c.answer()).status).toBe(208)
    // They finish sending; their connections still take requests.
    for (const c of parallel) {
      await c.writeBody(data.subarray(4 * MIB))
      await c.head('GET', filePath(sha, data.length), {})
      const st = await c.answer()
      expect([st.status, JSON.parse(st.body.toString())]).toEqual([200, { status: 'stored' }])
      expect(c.closed).toBe(false)
    }
    for (const c of [first, ...deferring, ...parallel]) c.close()
    const blobs = await blobFilesOf(dir, sha)
    expect(blobs).toHaveLength(1)
    expect(readFileSync(blobs[0]!).equals(data)).toBe(true)
    await waitFor('the temp files to go', () => readdirSync(join(dir, 'tmp')).length === 0, {
      timeoutMs: 2000,
      everyMs: 20,
    })
  })

  test('a claimant that sends a corrupted body gets 417 and cuts nobody short; a parallel upload then stores the file', async () => {
    const good = seededBytes(32 * MIB, 'dedup-corrupt')
    const s = sha256(good)
    const bad = Buffer.from(good)
    bad[bad.length - 10] = bad[bad.length - 10]! ^ 0xff
    const first = await startUpload(a.url, s, good.length, 'False', bad, 4 * MIB)
    await waitStatus(b.url, s, good.length, 'uploading')
    const { deferring, parallel } = await crowd(s, good, (i) => i % 2 === 1)
    await first.writeBody(bad.subarray(4 * MIB))
    const failed = await first.answer()
    expect(failed.status).toBe(417)
    expect(JSON.parse(failed.body.toString())).toMatchObject({
      code: 417,
      message: expect.stringMatching(/^file SHA256 mismatched/),
    })
    // Nobody is told "already stored" for a file that failed to verify: an answer that is not
    // there cannot be waited for, so the test gives one a window to arrive in.
    await sleep(500)
    expect(parallel.some((c) => c.hasAnswer())).toBe(false)
    expect(await blobFilesOf(dir, s)).toHaveLength(0)
    // One of the parallel uploads takes the claim over: the file still shows as uploading.
    await waitStatus(a.url, s, good.length, 'uploading', 5000)
    // Release the parallel uploads one by one: the first to finish stores it, the rest get 208.
    const statuses: number[] = []
    await parallel[0]!.writeBody(good.subarray(4 * MIB))
    statuses.push((await parallel[0]!.answer()).status)
    for (const c of parallel.slice(1)) {
      const ans = await c.answer()
      statuses.push(ans.status)
      await c.writeBody(good.subarray(4 * MIB))
    }
    expect(statuses[0]).toBe(204)
    expect(statuses.slice(1).every((st) => st === 208)).toBe(true)
    for (const c of [first, ...deferring, ...parallel]) c.close()
    const blobs = await blobFilesOf(dir, s)
    expect(blobs).toHaveLength(1)
    expect(readFileSync(blobs[0]!).equals(good)).toBe(true)
  })

  test('a corrupted claimant with only deferring company: 417 and 425s, never a 208, nothing stored', async () => {
    const good = seededBytes(8 * MIB, 'dedup-corrupt-alone')
    const s = sha256(good)
    const bad = Buffer.from(good)
    bad[0] = bad[0]! ^ 1
    const first = await startUpload(b.url, s, good.length, 'False', bad, MIB)
    await waitStatus(a.url, s, good.length, 'uploading')
    const others = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        startUpload(i % 2 ? a.url : b.url, s, good.length, 'True', good, 0),
      ),
    )
    const answers = await Promise.all(
      others.map(async (c) => (await Promise.all([c.answer(), c.writeBody(good)]))[0].status),
    )
    expect(answers).toEqual([425, 425, 425, 425, 425, 425])
    await first.writeBody(bad.subarray(MIB))
    expect((await first.answer()).status).toBe(417)
    for (const c of [first, ...others]) c.close()
    expect(await waitStatus(a.url, s, good.length, 'unknown', 2000)).toBeLessThan(2000)
    expect(await blobFilesOf(dir, s)).toHaveLength(0)
  })
})

describe('claims of a killed instance', () => {
  test('status is no longer "uploading" once the lock lifetime has passed', async () => {
    const dir = tempDir('ferry-shaman-kill-')
    const env = {
      REDIS_URL: testRedisUrl(),
      FERRY_REDIS_PREFIX: uniquePrefix(),
      FERRY_DATA_DIR: dir,
      FERRY_LOCK_TTL_MS: '600',
      FERRY_SHAMAN_GC_INTERVAL_SEC: '0',
    }
    const child = await spawnFerry(env)
    const local = await startFerry(env)
    try {
      const data = seededBytes(4 * MIB, 'kill')
      const s = sha256(data)
      const c = await startUpload(child.url, s, data.length, 'False', data, MIB)
      await waitStatus(local.url, s, data.length, 'uploading')
      // Renewed while the upload runs: still held well past one lifetime (the time is the case).
      await sleep(1500)
      expect(await statusOn(local.url, s, data.length)).toBe('uploading')
      child.proc.kill('SIGKILL')
      await child.exited
      const t0 = Date.now()
      await waitStatus(local.url, s, data.length, 'unknown', 5000)
      expect(Date.now() - t0).toBeLessThan(1600)
      c.close()
    } finally {
      if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
      await local.close()
      removeDir(dir)
    }
  })
})
