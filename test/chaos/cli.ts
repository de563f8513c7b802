/**
 * `npm run chaos -- --kills 100 --minutes 30 --seed 7`: the long chaos run (see run.ts). Exits 1
 * when an invariant or a goal fails, 2 on bad arguments; the report goes to test/chaos/results/.
 */
import { parseArgs } from 'node:util'
import { LONG, SHORT } from './config.js'
import { runChaos, type ChaosOptions, type PhaseName } from './run.js'

const HELP = `usage: npm run chaos -- [options]
  --kills N                 stop the faults after N SIGKILLs (default ${LONG.kills})
  --minutes M               ... or after M minutes (default ${LONG.minutes})
  --seed S                  schedule and content seed (default: random, printed)
  --phases a,b              redis, embedded, disk (default all; disk needs root)
  --stall-max-sec N         longest SIGSTOP (default ${LONG.stallSec[1]})
  --commit-wait-limit-ms N  goal for p99 commit wait after a kill (default ${LONG.commitWaitLimitMs}; 0: none)
  --drain-sec N             time for uploads to finish after the faults (default ${LONG.drainSec})
  --sweep-wait-sec N        time for the sweeper to empty tmp/ (default ${LONG.sweepWaitSec})
  --concurrency N           uploads at once in the redis phase (others scale; default ${LONG.concurrency.redis})
  --max-file-kib N          largest upload (default ${LONG.maxFileBytes / 1024})
  --env KEY=VALUE           extra Ferry setting for every instance (repeatable)
  --short                   the short run of npm test
`

function num(name: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`chaos: --${name} must be a non-negative number, got "${raw}"\n${HELP}`)
    process.exit(2)
  }
  return n
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string' },
      minutes: { type: 'string' },
      seed: { type: 'string' },
      phases: { type: 'string' },
      'stall-max-sec': { type: 'string' },
      'commit-wait-limit-ms': { type: 'string' },
      'drain-sec': { type: 'string' },
      'sweep-wait-sec': { type: 'string' },
      concurrency: { type: 'string' },
      'max-file-kib': { type: 'string' },
      env: { type: 'string', multiple: true },
      short: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  if (values.help) return void process.stdout.write(HELP)
  const base = values.short ? SHORT : LONG
  const phases = (values.phases?.split(',') ?? base.phases) as PhaseName[]
  for (const p of phases) {
    if (!['redis', 'embedded', 'disk'].includes(p)) {
      process.stderr.write(`chaos: unknown phase "${p}"\n${HELP}`)
      process.exit(2)
    }
  }
  const env: Record<string, string> = {}
  for (const kv of values.env ?? []) {
    const i = kv.indexOf('=')
    if (i < 1) {
      process.stderr.write(`chaos: --env wants KEY=VALUE, got "${kv}"\n`)
      process.exit(2)
    }
    env[kv.slice(0, i)] = kv.slice(i + 1)
  }
  const c = num('concurrency', values.concurrency, base.concurrency.redis)
  const o: ChaosOptions = {
    ...base,
    seed: num('seed', values.seed, Math.floor(Math.random() * 2 ** 31)),
    kills: num('kills', values.kills, base.kills),
    minutes: num('minutes', values.minutes, base.minutes),
    phases,
    stallSec: [base.stallSec[0], num('stall-max-sec', values['stall-max-sec'], base.stallSec[1])],
    commitWaitLimitMs: num(
      'commit-wait-limit-ms',
      values['commit-wait-limit-ms'],
      base.commitWaitLimitMs,
    ),
    drainSec: num('drain-sec', values['drain-sec'], base.drainSec),
    sweepWaitSec: num('sweep-wait-sec', values['sweep-wait-sec'], base.sweepWaitSec),
    concurrency: {
      redis: c,
      embedded: Math.max(1, Math.round(c / 2)),
      disk: Math.max(1, Math.round((c * 3) / 8)),
    },
    maxFileBytes: num('max-file-kib', values['max-file-kib'], base.maxFileBytes / 1024) * 1024,
    ferryEnv: { ...base.ferryEnv, ...env },
  }
  const command =
    `npm run chaos -- ${process.argv.slice(2).join(' ')}${values.seed === undefined ? ` --seed ${o.seed}` : ''}`.trim()
  const report = await runChaos(o, command)
  process.exit(report.passed ? 0 : 1)
}

main().catch((err: unknown) => {
  process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
