/**
 * The long fuzz run: `npm run fuzz -- --runs 100000 [--seed N] [--path P] [--stop] [--follow-up]`.
 * `--follow-up` also sends a second request on every connection kept alive after an answer.
 *
 * Forks one Ferry (all four families, embedded state; REDIS_URL in the environment puts it on
 * Redis), sends `--runs` generated requests, prints progress, and on a failure prints the seed,
 * the fast-check path and the shrunk request with a command that replays it. Without `--stop` it
 * goes on after a failure with the next seed until `--runs` cases were sent, so one run can find
 * several defects. A JSON summary goes to test/fuzz/results/ (gitignored). Exit code 1 when
 * anything failed.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import {
  describeFailure,
  fuzzOnce,
  newStats,
  writeRawFile,
  type FailureReport,
  type FuzzStats,
} from './harness.js'
import { FuzzTarget } from './target.js'

const RESULTS_DIR = fileURLToPath(new URL('../../../test/fuzz/results/', import.meta.url))

function args(argv: readonly string[]): {
  runs: number
  seed: number
  path?: string
  stop: boolean
  followUp: boolean
} {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const runs = Number(get('runs') ?? 10_000)
  const seed = Number(get('seed') ?? Date.now() % 2 ** 31)
  if (!Number.isSafeInteger(runs) || runs < 1)
    throw new Error('--runs must be a positive whole number')
  if (!Number.isSafeInteger(seed)) throw new Error('--seed must be a whole number')
  const path = get('path')
  return {
    runs,
    seed,
    ...(path !== undefined ? { path } : {}),
    stop: argv.includes('--stop') || path !== undefined,
    followUp: argv.includes('--follow-up'),
  }
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1)

function progressLine(s: FuzzStats, startedMs: number, total: number): string {
  const sec = (Date.now() - startedMs) / 1000
  return `[fuzz] ${s.cases}/${total} cases ${sec.toFixed(0)} s (${(s.cases / sec).toFixed(0)}/s) 2xx ${s.status2xx} 4xx ${s.status4xx} 5xx ${s.status5xx} closed ${s.closedWithoutAnswer} reset ${s.resets} max latency ${s.maxLatencyMs} ms max RSS ${mib(s.maxRssBytes)} MiB`
}

async function main(): Promise<number> {
  const a = args(process.argv.slice(2))
  const env: Record<string, string> = {}
  for (const k of ['REDIS_URL', 'FERRY_REDIS_PREFIX']) if (process.env[k]) env[k] = process.env[k]!
  const target = await FuzzTarget.start({ env })
  const startedMs = Date.now()
  const stats = newStats()
  const failures: FailureReport[] = []
  console.log(
    `[fuzz] Ferry pid ${target.pid} on 127.0.0.1:${target.port}, data ${target.dataDir}; ${a.runs} cases from seed ${a.seed}`,
  )
  let seed = a.seed
  let stopMs: number | null = null
  let errorLines = 0
  try {
    while (stats.cases < a.runs) {
      const before = stats.cases
      const f = await fuzzOnce(target, stats, {
        runs: a.runs - stats.cases,
        seed,
        ...(a.path !== undefined ? { path: a.path } : {}),
        progressEvery: 1000,
        followUp: a.followUp,
        onProgress: (s) => console.log(progressLine(s, startedMs, a.runs)),
      })
      if (f === null) break
      failures.push(f)
      const raw = writeRawFile(RESULTS_DIR, f.seed, f.bytes)
      console.log(`\n${describeFailure(f, target.port, raw)}\n`)
      if (a.stop || stats.cases === before) break
      seed = (seed + 1) % 2 ** 31
      console.log(`[fuzz] going on with seed ${seed}`)
    }
  } finally {
    const errors = target
      .output()
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l))
    errorLines = errors.length
    if (errorLines > 0) {
      mkdirSync(RESULTS_DIR, { recursive: true })
      writeFileSync(`${RESULTS_DIR}server-errors-seed-${a.seed}.log`, `${errors.join('\n')}\n`)
    }
    stopMs = await target.stop()
  }
  const durationSec = (Date.now() - startedMs) / 1000
  console.log(progressLine(stats, startedMs, a.runs))
  const summary = {
    date: new Date().toISOString(),
    command: `npm run fuzz -- ${process.argv.slice(2).join(' ')}`.trim(),
    node: process.version,
    cpus: cpus().length,
    seed: a.seed,
    cases: stats.cases,
    durationSec: Math.round(durationSec),
    status: {
      '2xx': stats.status2xx,
      '3xx': stats.status3xx,
      '4xx': stats.status4xx,
      '5xx': stats.status5xx,
      closedWithoutAnswer: stats.closedWithoutAnswer,
      closedWhileWaiting: stats.closedWhileWaiting,
      clientResets: stats.resets,
    },
    /** Server log lines at error level or above (issue 9 defect 9: client aborts should not be). */
    serverErrorLogLines: errorLines,
    closedWhileWaitingExamples: stats.closedWhileWaitingExamples,
    byStatus: stats.byStatus,
    maxLatencyMs: stats.maxLatencyMs,
    maxLatencyRoute: stats.maxLatencyRoute,
    maxRssMiB: Number(mib(stats.maxRssBytes)),
    serverRestarts: target.restarts,
    /** SIGTERM to exit after the run, ms; null when it did not exit within 3 s and was killed. */
    gracefulStopMs: stopMs,
    failures: failures.map((f) => ({
      seed: f.seed,
      path: f.path,
      error: f.error.split('\n')[0],
      route: f.route,
      notes: f.notes,
      bytes: f.bytes.length,
    })),
    byRoute: stats.byRoute,
  }
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = `${RESULTS_DIR}fuzz-${summary.date.replace(/[:.]/g, '-')}.json`
  writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`)
  console.log(
    `[fuzz] graceful stop after the run: ${stopMs === null ? 'not within 3 s (killed)' : `${stopMs} ms`}`,
  )
  console.log(
    `[fuzz] ${stats.cases} cases in ${durationSec.toFixed(0)} s, ${failures.length} failure(s); summary in ${file}`,
  )
  return failures.length === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err)
    process.exit(2)
  },
)
