// The registry of scenarios: one entry per letter, the only place that knows what a scenario
// sends and which servers can take it.
//
//   what       one line for --help
//   runs(cfg)  the run kinds it expands into: {id, kind, ...}; `can(server)` says which servers
//              can run it (a run kind is one row group of the report, one server start each)
//   steps      the load generator's commands for one run on one server; each step is one row of
//              the report with its own CPU window
//   rows       optional: replaces a verified run's rows (scenario e: commit time against the
//              sha256 + fsync yardstick measured on the stored files)
import { hashAndFsyncMs } from './verify.js'

const MiB = 1024 * 1024
const any = () => true
const notTus = (sv) => sv.proto !== 'tus'
/** Servers with a tus endpoint at /files/, or that may have one (Ferry: probed at run time). */
const speaksTus = (sv) => sv.proto === 'tus' || sv.proto === 'ferry'
/** Scenario g: tus-js-client in the load process, the same options for every server. */
const tusJs = (parallel) => ({
  what:
    parallel === 1
      ? 'tus-js-client: Ferry vs @tus/server'
      : `the same, parallelUploads: ${parallel}`,
  runs: () => [
    { id: parallel === 1 ? 'g' : `g${parallel}`, kind: 'tusjs', parallel, can: speaksTus },
  ],
  steps: (rk, _sv, cfg) => [
    {
      row: rk.id,
      kind: 'tusjs',
      params: { size: cfg.sizeBytes, chunk: cfg.chunkBytes, parallel: rk.parallel },
    },
  ],
})
const base = (rk, cfg) => ({
  prefix: `bench/${rk.id}`,
  chunk: cfg.chunkBytes,
  conc: cfg.concurrency,
  count: cfg.files,
})

export const SCENARIOS = {
  a: {
    what: 'one file as a single stream',
    runs: () => [{ id: 'a', kind: 'stream', can: any }],
    steps: (rk, _sv, cfg) => [
      { row: rk.id, kind: 'stream', params: { ...base(rk, cfg), size: cfg.sizeBytes } },
    ],
  },
  b: {
    what: 'chunked, 1 and --parallel in flight',
    runs: (cfg) => {
      const seq = { id: 'b1', kind: 'chunked', parallel: 1, can: any }
      // tus has no parallel PATCHes to one upload: sequential only.
      const par = { id: `b${cfg.parallel}`, kind: 'chunked', parallel: cfg.parallel, can: notTus }
      return cfg.parallel === 1 ? [seq] : [seq, par]
    },
    steps: (rk, _sv, cfg) => [
      {
        row: rk.id,
        kind: 'chunked',
        params: { ...base(rk, cfg), size: cfg.sizeBytes, parallel: rk.parallel, sessions: 1 },
      },
    ],
  },
  c: {
    what: 'small files, --concurrency clients',
    runs: () => [{ id: 'c', kind: 'small', can: any }],
    steps: (rk, _sv, cfg) => [{ row: rk.id, kind: 'small', params: base(rk, cfg) }],
  },
  d: {
    what: 'Shaman: store, then dedup (208)',
    runs: () => [{ id: 'd', kind: 'shaman', can: notTus }],
    steps: (rk, sv, cfg) => [
      { row: 'd-store', kind: 'shaman', params: { ...base(rk, cfg), expect: [204] } },
      // The disk row stores each file once: dedup is a server's answer, not a disk's work.
      ...(sv.proto === 'disk'
        ? []
        : [
            // Ferry knows every file now and answers 208 before reading the body; the ceiling just
            // writes the file again.
            {
              row: 'd-dedup',
              kind: 'shaman',
              params: { ...base(rk, cfg), expect: sv.proto === 'ferry' ? [208] : [204] },
            },
          ]),
    ],
  },
  e: {
    what: 'commit time vs size',
    runs: () => [{ id: 'e', kind: 'commits', can: notTus }],
    steps: (rk, _sv, cfg) => [
      { row: rk.id, kind: 'commits', params: { ...base(rk, cfg), sizes: cfg.commitSizes } },
    ],
    async rows({ rk, uploads, commits, dataDir, fileOf, bigData }) {
      const rows = []
      for (const [i, { size, commitNs }] of commits.entries()) {
        const mine = (x) => x.size === size && x.path?.startsWith(`bench/${rk.id}/${size}/`)
        const u = uploads.find(mine) ?? uploads[i]
        const y = await hashAndFsyncMs(dataDir, fileOf(u), bigData.subarray(0, size))
        rows.push({ row: `e-${size / MiB}MiB`, size, commitMs: commitNs / 1e6, ...y })
      }
      return rows
    },
  },
  f: {
    what: 'peak RSS, --rss-sessions chunked uploads at once',
    runs: (cfg) => [{ id: 'f', kind: 'chunked', parallel: 1, sessions: cfg.rssSessions, can: any }],
    steps: (rk, _sv, cfg) => [
      {
        row: rk.id,
        kind: 'chunked',
        params: { ...base(rk, cfg), size: cfg.rssBytes, parallel: 1, sessions: rk.sessions },
      },
    ],
  },
  g: tusJs(1),
  // A registry entry of its own (not g's --parallel variant) so `--scenarios g4` names it.
  g4: tusJs(4),
}

export const SCENARIO_NAMES = Object.keys(SCENARIOS)

/**
 * Whether server `sv` (bound registry entry) runs run kind `rk`: the scenario can take it, and
 * the server takes the scenario (`takes`, when the registry limits it).
 */
export const runs = (rk, sv) => rk.can(sv) && (!sv.takes || sv.takes.includes(rk.scenario))

/** The run kinds of the chosen scenarios, each knowing its scenario. */
export const runKindsOf = (names, cfg) =>
  names.flatMap((s) => SCENARIOS[s].runs(cfg).map((rk) => ({ ...rk, scenario: s })))
