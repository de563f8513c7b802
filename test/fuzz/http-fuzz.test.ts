/**
 * The seeded slice of the fuzz suite that `npm test` runs: a few thousand generated requests
 * against a forked Ferry with every family on (see harness.ts for the invariants). The long run
 * is `npm run fuzz -- --runs 100000`. On failure the message carries the seed, the path and the
 * shrunk request with a replay command.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'
import fc from 'fast-check'
import { describeFailure, fuzzOnce, newStats, type FuzzStats } from './harness.js'
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
      'imagestore GET list root', 'imagestore PUT {path} upload', 'imagestore GET {path} get', 'imagestore DELETE {path} delete',
      'imagestore POST $/Copy', 'imagestore POST $/CommitUploadSession', 'imagestore DELETE $/DeleteUploadSession',
      'imagestore GET $/GetUploadSession', 'imagestore PUT {path}/$/UploadChunk', 'imagestore GET {path}/$/GetUploadSession',
      'shaman POST checkout/requirements', 'shaman POST checkout/create', 'shaman GET files/{checksum}/{size}', 'shaman POST files/{checksum}/{size}',
      'lakefs GET /healthcheck', 'lakefs GET /config', 'lakefs GET staging/backing', 'lakefs PUT staging/backing', 'lakefs PUT _ferry/presigned/{repo}/{address}',
      'ingest POST {sc}/bulk-ingest/ingest/{file}', 'ingest POST {sc}/bulk-ingest', 'ingest GET {sc}/bulk-ingest/mapping.csv', 'ingest POST {sc}/bulk-ingest/finalize',
    ]) {
      expect(routes).toContain(r)
    }
    // Authenticated routes are reached with valid credentials most of the time.
    const withAuth = cases.filter((c) => c.family === 'ingest' && c.bytes.includes(target.creds.ingestValid[0]!))
    expect(withAuth.length).toBeGreaterThan(50)
  })

  test(`${RUNS} generated requests: the process stays up, no stray 5xx, every request answered or closed within 10 s, nothing outside the data directory, RSS bounded`, async () => {
    const failure = await fuzzOnce(target, stats, { runs: RUNS, seed: SEED })
    if (failure !== null) throw new Error(describeFailure(failure, target.port, null))
    expect(stats.cases).toBe(RUNS)
    expect(target.restarts).toBe(0)
    // The server really answered: most cases get a final status, and some uploads succeed.
    expect(stats.status4xx).toBeGreaterThan(RUNS / 3)
    expect(stats.status2xx).toBeGreaterThan(RUNS / 20)
  }, 170_000)
})
