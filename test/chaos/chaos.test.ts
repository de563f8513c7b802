/**
 * The short chaos run (see run.ts and config.ts SHORT): two instances on Redis, one on the
 * embedded store and one on a full-then-freed tmpfs, with SIGKILLs, SIGSTOP stalls, Redis
 * restarts with and without its data and a cutting proxy, for about half a minute, then a drain.
 * The hard invariants are asserted; commit wait after a kill and leftovers are in the report.
 * `npm run chaos` is the long run.
 */
import { expect, test } from '@jest/globals'
import { SHORT } from './config.js'
import { runChaos } from './run.js'

test('chaos: kills, stalls, cuts, Redis restarts and a full disk never show a wrong or partial file and lose no upload', async () => {
  const seed = Number(process.env['FERRY_CHAOS_SEED'] ?? 20261125)
  const report = await runChaos(
    { ...SHORT, seed },
    `FERRY_CHAOS_SEED=${seed} npm test -- dist/test/chaos/chaos.test.js`,
  )
  const t = report.totals
  // Every kind of fault really happened.
  expect(t.kills).toBeGreaterThan(0)
  expect(t.killsDuringCommit).toBeGreaterThan(0)
  expect(t.stalls).toBeGreaterThan(0)
  expect(t.proxy.cut + t.proxy.reset).toBeGreaterThan(0)
  expect(t.redisRestarts.withAppendonly).toBeGreaterThan(0)
  expect(t.redisRestarts.dataLost).toBeGreaterThan(0)
  expect(t.diskFull).toBeGreaterThan(0)
  // The hard invariants, with the evidence in the message when they fail.
  expect({ wrongOrPartialSeen: report.violations }).toEqual({ wrongOrPartialSeen: [] })
  expect({ lost: report.lostUploads }).toEqual({ lost: [] })
  expect({ wrongAtEnd: report.finalWrong }).toEqual({ wrongAtEnd: [] })
  expect({
    crashes: report.crashes.map(
      (c) => `${c.instance} ${c.code}: ${c.tail.split('\n').slice(-5).join(' | ')}`,
    ),
  }).toEqual({ crashes: [] })
  expect({
    failedStarts: report.failedStarts.map(
      (c) => `${c.instance} ${c.code}: ${c.tail.split('\n').slice(-5).join(' | ')}`,
    ),
  }).toEqual({ failedStarts: [] })
  expect({ harnessErrors: report.harnessErrors }).toEqual({ harnessErrors: [] })
  expect(t.unhealthyAtEnd).toBe(0)
  expect(t.uploads.completed).toBeGreaterThan(10)
}, 180_000)
