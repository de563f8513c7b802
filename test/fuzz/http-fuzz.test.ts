/**
 * The seeded slice of the fuzz suite that `npm test` runs: a few thousand generated requests
 * against a forked Ferry with every family on (see harness.ts for the invariants). The long run
 * is `npm run fuzz -- --runs 100000`. On failure the message carries the seed, the path and the
 * shrunk request with a replay command.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import fc from 'fast-check'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  describeFailure,
  fuzzOnce,
  InvariantViolation,
  newStats,
  runCase,
  type FuzzStats,
} from './harness.js'
import { fuzzCase } from './generators.js'
import { FuzzTarget } from './target.js'

/** Fixed, so `npm test` sends the same requests every time; change it to explore. */
const SEED = 20261125
const RUNS = Number(process.env['FERRY_FUZZ_RUNS'] ?? 4000)

describe('HTTP fuzz (seeded slice)', () => {
  let target: FuzzTarget
  const stats: FuzzStats = newStats()

  beforeAll(async () => {
    target = await FuzzTarget.start()
  })
  afterAll(async () => {
    await target?.stop()
  })

  test('the generator reaches every route of every family, with valid credentials', () => {
    const cases = fc.sample(fuzzCase(target.creds), { numRuns: 3000, seed: SEED })
    const routes = new Set(cases.map((c) => c.route))
    for (const r of [
      'imagestore GET list root',
      'imagestore PUT {path} upload',
      'imagestore GET {path} get',
      'imagestore DELETE {path} delete',
      'imagestore POST $/Copy',
      'imagestore POST $/CommitUploadSession',
      'imagestore DELETE $/DeleteUploadSession',
      'imagestore GET $/GetUploadSession',
      'imagestore PUT {path}/$/UploadChunk',
      'imagestore GET {path}/$/GetUploadSession',
      'shaman POST checkout/requirements',
      'shaman POST checkout/create',
      'shaman GET files/{checksum}/{size}',
      'shaman POST files/{checksum}/{size}',
      'lakefs GET /healthcheck',
      'lakefs GET /config',
      'lakefs GET staging/backing',
      'lakefs PUT staging/backing',
      'lakefs PUT _ferry/presigned/{repo}/{address}',
      'ingest POST {sc}/bulk-ingest/ingest/{file}',
      'ingest POST {sc}/bulk-ingest',
      'ingest GET {sc}/bulk-ingest/mapping.csv',
      'ingest POST {sc}/bulk-ingest/finalize',
      'tus POST /files/ create',
      'tus PATCH {id} (open)',
      'tus PATCH {id} (defer)',
      'tus PATCH {id} (final)',
      'tus PATCH {id} (terminated)',
      'tus PATCH {id} (ietf)',
      'tus PATCH {id} (finished)',
      'tus HEAD {id}',
      'tus DELETE {id}',
      'tus DELETE-override {id}',
      'tus GET {id}',
      'tus OPTIONS',
      'ietf POST /files/ create',
      'ietf PATCH {id}',
      'ietf HEAD {id}',
      'ietf DELETE {id}',
      'lakefs POST staging/pmpu',
      'lakefs PUT pmpu part',
      'lakefs PUT pmpu complete',
      'lakefs DELETE pmpu abort',
      'lakefs PUT pmpu fresh part URL',
    ]) {
      expect(routes).toContain(r)
    }
    // Authenticated routes are reached with valid credentials most of the time.
    const withAuth = cases.filter(
      (c) => c.family === 'ingest' && c.bytes.includes(target.creds.ingestValid[0]!),
    )
    expect(withAuth.length).toBeGreaterThan(50)
    // The stateful routes carry their setup, and many a status the protocol expects (those the
    // generic bends left alone).
    const stateful = cases.filter((c) => c.family === 'tus' || c.route.includes('pmpu'))
    expect(
      stateful.filter((c) => c.setup !== undefined && c.setup.length > 0).length,
    ).toBeGreaterThan(200)
    expect(stateful.filter((c) => c.expect !== undefined).length).toBeGreaterThan(
      stateful.length / 3,
    )
  })

  test('the checks see what they guard: a file beside the data directory, RSS, a dead process', async () => {
    const stray = join(target.dataDir, '..', 'escaped')
    writeFileSync(stray, 'x')
    try {
      expect(target.escapes()).toContain(stray)
    } finally {
      rmSync(stray)
    }
    expect(target.escapes()).toEqual([])
    expect(target.rssBytes()).toBeGreaterThan(10 * 2 ** 20)
    // A server that dies under a request is reported as a crash, and the next case gets a new one.
    const scratch = newStats()
    const probe = fc
      .sample(fuzzCase(target.creds), { numRuns: 50, seed: SEED })
      .find((c) => c.setup === undefined)!
    process.kill(target.pid, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 200))
    const err = await runCase(target, probe, scratch).then(
      () => null,
      (e: unknown) => e,
    )
    // ensureUp already replaced the dead process before sending, so the case itself passes...
    expect(err).toBeNull()
    expect(target.restarts).toBe(1)
    // ...and a process killed while the case runs is caught as a crash.
    const dying = runCase(
      target,
      { ...probe, bytes: probe.bytes.subarray(0, 5), ending: 'wait' },
      scratch,
    )
    setTimeout(() => process.kill(target.pid, 'SIGKILL'), 100)
    const crash = await dying.then(
      () => null,
      (e: unknown) => e,
    )
    expect(crash).toBeInstanceOf(InvariantViolation)
    expect((crash as InvariantViolation).kind).toBe('crash')
    await target.ensureUp()
    target.restarts = 0
    target.deaths.length = 0
  }, 30_000)

  test(`${RUNS} generated requests: the process stays up, no stray 5xx, every request answered or closed within 10 s, nothing outside the data directory, RSS bounded`, async () => {
    const failure = await fuzzOnce(target, stats, { runs: RUNS, seed: SEED, followUp: true })
    if (failure !== null) throw new Error(describeFailure(failure, target.port, null))
    expect(stats.cases).toBe(RUNS)
    expect(target.restarts).toBe(0)
    // The server really answered: most cases get a final status, and some uploads succeed.
    expect(stats.status4xx).toBeGreaterThan(RUNS / 3)
    expect(stats.status2xx).toBeGreaterThan(RUNS / 20)
  }, 170_000)
})
