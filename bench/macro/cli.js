// The driver's command line: flags → the run's config. The lists of scenarios and servers come
// from their registries.
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { SCENARIOS, SCENARIO_NAMES } from './scenarios.js'
import { SERVERS, SERVER_NAMES, defaultServers } from './servers.js'

const MiB = 1024 * 1024

function help() {
  const scen = SCENARIO_NAMES.map((s) => `${s}  ${SCENARIOS[s].what}`)
  const pairs = []
  for (let i = 0; i < scen.length; i += 2)
    pairs.push(`                            ${scen[i].padEnd(39)}${scen[i + 1] ?? ''}`.trimEnd())
  const w = Math.max(...SERVERS.map((s) => s.name.length)) + 2
  const servers = SERVERS.map((s) => `                            ${s.name.padEnd(w)}${s.what}`)
  return `usage: node bench/run.js [options]
  --quick                 small sizes, one rep (CI): 64 MiB, 100 files, commit sizes 16,32,64, RSS 8x32 MiB
  --scenarios LIST        ${SCENARIO_NAMES.join(',')} (default all)
${pairs.join('\n')}
  --servers LIST          default all but the ferry-b-* ones, which need --ferry-main-b
${servers.join('\n')}
  --size-mib N            file size for a, b, g (default 1024; quick 64)
  --chunk-mib N           chunk size; g's tus-js-client chunkSize (default 8)
  --parallel N            chunks in flight for b's parallel variant (default 4)
  --files N               small files for c, d (default 1000; quick 100)
  --file-kib N            small file size (default 64)
  --concurrency N         clients for c, d (default 8)
  --commit-sizes-mib LIST sizes for e (default 64,256,1024; quick 16,32,64)
  --rss-sessions N        concurrent chunked uploads in f (default 8)
  --rss-size-mib N        size of each upload in f (default 256 or --size-mib if smaller; quick 32)
  --reps N                repetitions, interleaved (default 3; quick 1)
  --seed S                data seed (default ferry-bench)
  --tmp-dir DIR           where data dirs go (default os.tmpdir(); must be a real disk, not tmpfs)
  --out DIR               results directory (default bench/results)
  --timeout-s N           per-request timeout (default 300)
  --keep                  keep data directories and logs
  --ferry-main PATH       Ferry entry point of build A (default dist/src/main.js)
  --ferry-main-b PATH     Ferry entry point of build B: adds the ferry-b-* servers, run interleaved
                          with their ferry-* twins; the report gives B/A per row
                          e.g. --scenarios b,c --servers ferry-embedded,ferry-b-embedded
                               --ferry-main-b /path/to/other/dist/src/main.js --reps 3
  --batch-window-ms N     goal 4: the group commit's batching window; with --ferry-main-b, the
                          p99 growth B − A of c and d-store is judged against it
  --help`
}

function usage(msg) {
  console.error(`bench: ${msg}\n${help()}`)
  process.exit(2)
}

/** Parses argv; exits 2 on a bad flag, 0 after --help. Returns {args, cfg}. */
export function parseCli(argv, { benchDir, rootDir }) {
  let args
  try {
    args = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        scenarios: { type: 'string' },
        servers: { type: 'string' },
        'size-mib': { type: 'string' },
        'chunk-mib': { type: 'string' },
        parallel: { type: 'string' },
        files: { type: 'string' },
        'file-kib': { type: 'string' },
        concurrency: { type: 'string' },
        'commit-sizes-mib': { type: 'string' },
        'rss-sessions': { type: 'string' },
        'rss-size-mib': { type: 'string' },
        reps: { type: 'string' },
        seed: { type: 'string', default: 'ferry-bench' },
        'tmp-dir': { type: 'string', default: os.tmpdir() },
        out: { type: 'string', default: path.join(benchDir, 'results') },
        'timeout-s': { type: 'string', default: '300' },
        keep: { type: 'boolean', default: false },
        'ferry-main': { type: 'string', default: path.join(rootDir, 'dist', 'src', 'main.js') },
        'ferry-main-b': { type: 'string' },
        'batch-window-ms': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    usage(err.message)
  }
  if (args.help) {
    console.log(help())
    process.exit(0)
  }
  const num = (name, dflt) => {
    const v = args[name] === undefined ? dflt : Number(args[name])
    if (!Number.isFinite(v) || v <= 0) usage(`--${name} must be a positive number`)
    return v
  }
  const list = (name, all, dflt = all) => {
    if (args[name] === undefined) return dflt
    const l = args[name]
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    for (const x of l)
      if (!all.includes(x)) usage(`--${name}: unknown '${x}' (known: ${all.join(',')})`)
    return l
  }

  const q = args.quick
  const withB = args['ferry-main-b'] !== undefined
  const cfg = {
    quick: q,
    scenarios: list('scenarios', SCENARIO_NAMES),
    servers: list('servers', SERVER_NAMES, defaultServers(withB)),
    sizeBytes: num('size-mib', q ? 64 : 1024) * MiB,
    chunkBytes: num('chunk-mib', 8) * MiB,
    parallel: num('parallel', 4),
    files: num('files', q ? 100 : 1000),
    fileBytes: num('file-kib', 64) * 1024,
    concurrency: num('concurrency', 8),
    commitSizes: (args['commit-sizes-mib'] ?? (q ? '16,32,64' : '64,256,1024'))
      .split(',')
      .map((s) => Number(s) * MiB),
    rssSessions: num('rss-sessions', 8),
    // 8 × 256 MiB in the full run: 8 × 1 GiB on seven servers took ~12 min per repetition on the
    // shared 2-core machine, more than the rest of a repetition together.
    rssBytes: num('rss-size-mib', q ? 32 : Math.min(256, num('size-mib', 1024))) * MiB,
    reps: num('reps', q ? 1 : 3),
    seed: args.seed,
    timeoutMs: num('timeout-s', 300) * 1000,
  }
  if (cfg.commitSizes.some((s) => !(s > 0))) usage('--commit-sizes-mib must list positive numbers')
  if (!withB && cfg.servers.some((s) => s.startsWith('ferry-b-')))
    usage('the ferry-b-* servers need --ferry-main-b PATH')
  if (args['batch-window-ms'] !== undefined) cfg.batchWindowMs = Number(args['batch-window-ms'])
  if (cfg.batchWindowMs !== undefined && !(cfg.batchWindowMs >= 0))
    usage('--batch-window-ms must be a number ≥ 0')
  // Only recorded when given, so a run without it writes the same config as before.
  if (withB)
    Object.assign(cfg, {
      ferryMainA: path.resolve(args['ferry-main']),
      ferryMainB: path.resolve(args['ferry-main-b']),
    })
  return { args, cfg }
}
