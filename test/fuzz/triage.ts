/**
 * Triage: sends `--runs` sampled cases of the routes whose names match `--only` (a regex) and
 * prints every invariant violation grouped by route and kind, without stopping or shrinking.
 * For looking at a new family's findings all at once; the fuzz run proper is run.ts.
 */
import fc from 'fast-check'
import { escapedView, InvariantViolation, newStats, runCase } from './harness.js'
import { fuzzCase } from './generators.js'
import { FuzzTarget } from './target.js'

const argv = process.argv.slice(2)
const get = (n: string) => {
  const i = argv.indexOf(`--${n}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const runs = Number(get('runs') ?? 500)
const seed = Number(get('seed') ?? 1)
const only = new RegExp(get('only') ?? '^(tus|ietf|lakefs .*pmpu)')

const target = await FuzzTarget.start()
const stats = newStats()
const cases = fc
  .sample(fuzzCase(target.creds), { numRuns: runs * 6, seed })
  .filter((c) => only.test(c.route))
  .slice(0, runs)
const found = new Map<string, { n: number; first: string }>()
for (const c of cases) {
  try {
    await runCase(target, c, stats, true)
  } catch (e) {
    const kind = e instanceof InvariantViolation ? e.kind : 'error'
    const msg = e instanceof Error ? e.message : String(e)
    const key = `${c.route} | ${kind} | ${c.notes[0] ?? ''} | ${msg.slice(0, 60)}`
    const f = found.get(key)
    if (f) f.n++
    else
      found.set(key, {
        n: 1,
        first: `${msg.slice(0, 1500)}\n  notes: ${c.notes.join('; ')}\n  bytes: ${escapedView(c.bytes, 600)}`,
      })
  }
}
console.log(`${cases.length} cases; status ${JSON.stringify(stats.byStatus)}`)
for (const [k, v] of found) console.log(`\n### ${v.n}× ${k}\n${v.first}`)
await target.stop()
process.exit(0)
