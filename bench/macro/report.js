// Turns a results JSON into medians, ratios, issue 14's goals (macro/goals.js), a console table
// and results/report.md with one inline hand-written SVG bar chart per scenario group (also
// written as results/chart-<group>.svg). Also usable alone: `node bench/macro/report.js
// results/x.json`.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { evaluateGoals, goalVerdicts, median, repRatios } from './goals.js'
import { SERVERS, SERVER_NAMES, serverByName } from './servers.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const SERVER_ORDER = SERVER_NAMES
const COLORS = Object.fromEntries(SERVERS.map((s) => [s.name, s.color]))

export { median }

function describeRow(row, c) {
  const mib = (b) => `${b / MiB} MiB`
  const chunks = Math.ceil(c.sizeBytes / c.chunkBytes)
  if (row === 'a') return `1 × ${mib(c.sizeBytes)}, single stream`
  if (/^b\d+$/.test(row))
    return `${mib(c.sizeBytes)} as ${chunks} × ${mib(c.chunkBytes)} chunks, ${row.slice(1)} in flight, + commit`
  if (row === 'c') return `${c.files} × ${c.fileBytes / 1024} KiB, ${c.concurrency} clients`
  if (row === 'd-store') return `Shaman: ${c.files} × ${c.fileBytes / 1024} KiB stored (204)`
  if (row === 'd-dedup') return 'Shaman: the same again, dedup (208)'
  if (row === 'f') return `${c.rssSessions} × ${mib(c.rssBytes)} chunked at once (peak RSS)`
  if (row.startsWith('e-')) return `commit of one ${row.slice(2)} chunked upload`
  if (row === 'g') return `tus-js-client: ${mib(c.sizeBytes)} in ${mib(c.chunkBytes)} chunks`
  if (/^g\d+$/.test(row)) return `tus-js-client: the same, parallelUploads ${row.slice(1)}`
  return row
}

/** Medians per (row, server), ratios to minimal and tus of the same run, and goal checks. */
export function summarize(result) {
  const c = result.config
  const byKey = new Map()
  const unsupported = new Map()
  for (const run of result.runs) {
    if (!run.ok) continue
    for (const r of run.rows) {
      if (r.unsupported) {
        unsupported.set(`${r.row}\u0000${run.server}`, r.unsupported)
        continue
      }
      const key = `${r.row}\u0000${run.server}`
      if (!byKey.has(key)) byKey.set(key, [])
      byKey.get(key).push({ ...r, rss: Math.max(...run.peakRssMiB) })
    }
  }
  const rowIds = [...new Set(result.runs.flatMap((r) => r.rows.map((x) => x.row)))]
  // a, b1, b<n>, c, d-store, d-dedup, f, g, g<n>, then e-* by size.
  const order = (id) => {
    if (id.startsWith('e-')) return 100 + Number.parseFloat(id.slice(2)) / 1e6
    if (/^b\d+$/.test(id) && id !== 'b1') return 2
    if (/^g\d+$/.test(id)) return 9
    return ['a', 'b1', '', 'c', 'd-store', 'd-dedup', 'f', 'g'].indexOf(id)
  }
  rowIds.sort((x, y) => order(x) - order(y))
  const rows = []
  for (const id of rowIds) {
    const isCommit = id.startsWith('e-')
    const servers = {}
    for (const s of SERVER_ORDER) {
      const xs = byKey.get(`${id}\u0000${s}`)
      const why = unsupported.get(`${id}\u0000${s}`)
      // A server that could not take the row (and never did in any repetition) is a cell
      // saying why, with no figures.
      if (!xs && why) servers[s] = { n: 0, value: NaN, unsupported: why }
      if (!xs) continue
      if (isCommit) {
        const commitMs = median(xs.map((x) => x.commitMs))
        const shaMs = median(xs.map((x) => x.shaMs))
        const fsyncMs = median(xs.map((x) => x.fsyncMs))
        servers[s] = {
          n: xs.length,
          value: commitMs,
          commitMs,
          shaMs,
          fsyncMs,
          boundMs: shaMs + fsyncMs,
          vsBound: commitMs / (shaMs + fsyncMs),
          size: xs[0].size,
        }
      } else {
        const value = median(xs.map((x) => x.mbps ?? x.ups))
        const cpu = median(xs.map((x) => x.serverCpuS))
        const per = xs[0].mbps
          ? median(xs.map((x) => x.serverCpuS / (x.bytes / GiB)))
          : median(xs.map((x) => x.serverCpuS / (x.count / 1000)))
        servers[s] = {
          n: xs.length,
          value,
          cpuS: cpu,
          cpuPer: per,
          clientCpuS: median(xs.map((x) => x.clientCpuS)),
          rssMiB: median(xs.map((x) => x.rss)),
          // Small files: the median over repetitions of each run's per-upload percentiles.
          ...(xs.some((x) => Number.isFinite(x.p99Ms))
            ? { p50Ms: median(xs.map((x) => x.p50Ms)), p99Ms: median(xs.map((x) => x.p99Ms)) }
            : {}),
        }
      }
    }
    const sample = SERVER_ORDER.map((s) => byKey.get(`${id}\u0000${s}`)?.[0]).find(Boolean)
    const unit = isCommit ? 'ms' : sample?.mbps || /^g\d*$/.test(id) ? 'MB/s' : 'uploads/s'
    const min = servers.minimal?.value
    const dur = servers['minimal-durable']?.value
    const disk = servers.disk?.value
    // tus has no parallel chunks: compare parallel rows with its sequential PATCHes (b1); nor
    // concatenation: tus-js-client's parallelUploads (g4) compares with its one upload (g).
    const seqRow = /^b\d+$/.test(id) ? 'b1' : /^g\d+$/.test(id) ? 'g' : id
    const tusRow = Number.isFinite(servers.tus?.value) ? id : seqRow
    const tus =
      tusRow === id
        ? servers.tus?.value
        : median((byKey.get(`${tusRow}\u0000tus`) ?? []).map((x) => x.mbps))
    if (!isCommit) {
      for (const v of Object.values(servers)) {
        v.xDisk = disk ? v.value / disk : NaN
        v.xMinimal = min ? v.value / min : NaN
        v.xDurable = dur ? v.value / dur : NaN
        v.xTus = tus ? v.value / tus : NaN
      }
    }
    rows.push({ row: id, desc: describeRow(id, c), unit, tusFrom: tusRow, servers })
  }
  const tusClientRatios = tusClient(result, rows)
  const cmp = compare(result, rows)
  const sha256 = sha256Figure(result)
  const goals14 = evaluateGoals(rows, {
    sha256CpuPerGiB: sha256.cpuPerGiB,
    compare: cmp,
    parallelRow: `b${c.parallel}`,
    ...(c.batchWindowMs !== undefined ? { batchWindowMs: c.batchWindowMs } : {}),
  })
  // Each goal figure per repetition too: its spread is the noise the median hides.
  const perRep = (row) => (server) =>
    new Map(
      result.runs
        .filter((run) => run.ok && run.server === server)
        .flatMap((run) =>
          run.rows.filter((x) => x.row === row && !x.unsupported).map((x) => [run, x]),
        )
        .map(([run, x]) => [
          run.rep,
          {
            value: x.mbps ?? x.ups,
            cpuPer: x.bytes ? x.serverCpuS / (x.bytes / GiB) : x.serverCpuS / (x.count / 1000),
          },
        ]),
    )
  const shaByRep = new Map((result.sha256 ?? []).map((x) => [x.rep, x.cpuS / (x.bytes / GiB)]))
  for (const g of goals14) g.repRatios = repRatios(g, perRep(g.row), shaByRep)
  return {
    rows,
    sha256,
    goals14,
    verdicts: Object.fromEntries(goalVerdicts(goals14)),
    goals: goals(rows),
    compare: cmp,
    tusClient: tusClientRatios,
  }
}

/**
 * One sha256 pass per GiB, measured in the run (run.js: a child process hashing the run's data
 * from memory, once per repetition): the median CPU-s/GiB and its spread.
 */
function sha256Figure(result) {
  const per = (result.sha256 ?? []).map((x) => x.cpuS / (x.bytes / GiB))
  return {
    n: per.length,
    cpuPerGiB: median(per),
    min: per.length ? Math.min(...per) : NaN,
    max: per.length ? Math.max(...per) : NaN,
  }
}

/**
 * Scenario g: the same client (tus-js-client) against each Ferry server and @tus/server, as
 * Ferry ÷ @tus/server of the same run. g4's @tus/server cell is "not supported" (no
 * concatenation), so g4 is set against @tus/server's single upload (g).
 */
function tusClient(result, rows) {
  // MB/s per repetition of one row on one server: each repetition ran both back to back.
  const perRep = (row, server) =>
    new Map(
      result.runs
        .filter((run) => run.ok && run.server === server)
        .flatMap((run) =>
          run.rows.filter((x) => x.row === row && x.mbps).map((x) => [run.rep, x.mbps]),
        ),
    )
  const out = []
  for (const r of rows.filter((x) => /^g\d*$/.test(x.row))) {
    const tus = r.servers.tus
    const tusByRep = perRep(r.tusFrom, 'tus')
    for (const [s, v] of Object.entries(r.servers)) {
      if (serverByName(s)?.proto !== 'ferry') continue
      out.push({
        row: r.row,
        server: s,
        ferry: v.unsupported ?? v.value,
        tus: tus?.unsupported ?? tus?.value,
        against: r.tusFrom,
        ratio: v.xTus,
        repRatios: [...perRep(r.row, s)]
          .filter(([rep]) => tusByRep.has(rep))
          .map(([rep, x]) => x / tusByRep.get(rep)),
      })
    }
  }
  return out
}

/**
 * Build B against build A (--ferry-main-b): per row and ferry-b-* server with its ferry-* twin,
 * the ratio B/A of the medians, and of each repetition's pair (both ran in the same repetition,
 * back to back), whose spread shows the noise. Throughput rows: above 1 = B faster; commit rows
 * (e-*, ms): below 1 = B faster.
 */
function compare(result, rows) {
  const out = []
  const perRep = (row, server) => {
    const m = new Map()
    for (const run of result.runs) {
      if (!run.ok || run.server !== server) continue
      const r = run.rows.find((x) => x.row === row)
      // The value the row's median is of: commit ms for e-*, else throughput (chunked rows also
      // carry their commits' ms, which is not what they rank by).
      if (r) m.set(run.rep, row.startsWith('e-') ? r.commitMs : (r.mbps ?? r.ups))
    }
    return m
  }
  for (const r of rows) {
    for (const [b, vb] of Object.entries(r.servers)) {
      const a = serverByName(b)?.comparesWith
      const va = a && r.servers[a]
      if (!va) continue
      const ra = perRep(r.row, a)
      const pairs = [...perRep(r.row, b)]
        .filter(([rep]) => ra.has(rep))
        .map(([rep, v]) => v / ra.get(rep))
      out.push({
        row: r.row,
        a,
        b,
        ...(Number.isFinite(va.p99Ms) ? { p99A: va.p99Ms, p99B: vb.p99Ms } : {}),
        unit: r.unit,
        lowerIsBetter: r.row.startsWith('e-'),
        valueA: va.value,
        valueB: vb.value,
        ratio: vb.value / va.value,
        cpuRatio: vb.cpuPer / va.cpuPer,
        repRatios: pairs.filter(Number.isFinite),
        // A build that cannot take the row (scenario g on a build without the tus family).
        unsupported: vb.unsupported
          ? `B: ${vb.unsupported}`
          : va.unsupported && `A: ${va.unsupported}`,
      })
    }
  }
  return out
}

/** Earlier issues' checks, kept beside issue 14's goals: peak RSS, commit time vs size. */
function goals(rows) {
  const get = (id) => rows.find((r) => r.row === id)
  const out = []
  const ferries = SERVERS.filter((s) => s.proto === 'ferry').map((s) => s.name)
  const f = get('f')
  for (const s of ferries)
    if (f?.servers[s])
      out.push({
        goal: `peak RSS under ${f.desc.split(' (')[0]} < 256 MiB`,
        server: s,
        measured: f.servers[s].rssMiB,
        met: f.servers[s].rssMiB < 256,
        unit: 'MiB',
      })
  for (const r of rows.filter((x) => x.row.startsWith('e-'))) {
    for (const s of ferries) {
      const v = r.servers[s]
      if (v)
        out.push({
          goal: `commit ${r.row.slice(2)} ≤ sha256 pass + fsync`,
          server: s,
          measured: v.vsBound,
          met: v.vsBound <= 1,
        })
    }
  }
  // Linear growth: least-squares slope (ms per GiB) of commit time vs size, against the slope
  // of sha256 pass + fsync over the same sizes.
  const eRows = rows.filter((x) => x.row.startsWith('e-'))
  if (eRows.length >= 2) {
    for (const s of ferries) {
      const pts = eRows.map((r) => r.servers[s]).filter(Boolean)
      if (pts.length < 2) continue
      const commit = slope(pts.map((v) => [v.size / GiB, v.commitMs]))
      const bound = slope(pts.map((v) => [v.size / GiB, v.boundMs]))
      out.push({
        goal: `commit slope ≤ sha256+fsync slope (${f1(commit, 0)} vs ${f1(bound, 0)} ms/GiB)`,
        server: s,
        measured: commit / bound,
        met: commit <= bound,
      })
    }
  }
  return out.filter((g) => Number.isFinite(g.measured))
}

function slope(pts) {
  const n = pts.length
  const mx = pts.reduce((a, [x]) => a + x, 0) / n
  const my = pts.reduce((a, [, y]) => a + y, 0) / n
  const sxy = pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0)
  const sxx = pts.reduce((a, [x]) => a + (x - mx) ** 2, 0)
  return sxx ? sxy / sxx : NaN
}

const f1 = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–')
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')

function tableRows(result) {
  const { rows } = result.summary
  const head = [
    'row',
    'scenario',
    'server',
    'result',
    '× disk',
    '× minimal',
    '× durable',
    '× tus',
    'server CPU s',
    'CPU s per GiB or per 1k uploads',
    'peak RSS MiB',
    'p50 / p99 ms per upload',
  ]
  const body = []
  for (const r of rows.filter((x) => !x.row.startsWith('e-'))) {
    for (const [s, v] of Object.entries(r.servers)) {
      if (v.unsupported) {
        body.push([r.row, r.desc, s, v.unsupported, ...head.slice(4).map(() => '–')])
        continue
      }
      body.push([
        r.row,
        r.desc,
        s,
        `${f1(v.value, r.unit === 'MB/s' ? 1 : 0)} ${r.unit}`,
        fx(v.xDisk),
        fx(v.xMinimal),
        fx(v.xDurable),
        fx(v.xTus),
        f1(v.cpuS, 2),
        f1(v.cpuPer, 2),
        // The disk row is the writing process itself, not a server: no RSS figure to compare.
        s === 'disk' ? '–' : f1(v.rssMiB, 0),
        Number.isFinite(v.p99Ms) ? `${f1(v.p50Ms)} / ${f1(v.p99Ms)}` : '–',
      ])
    }
  }
  const commitHead = [
    'row',
    'server',
    'commit ms',
    'sha256 pass ms',
    'fsync ms',
    'sha+fsync ms',
    'commit ÷ (sha+fsync)',
    'commit ms per GiB',
  ]
  const commitBody = []
  for (const r of rows.filter((x) => x.row.startsWith('e-'))) {
    for (const [s, v] of Object.entries(r.servers)) {
      commitBody.push([
        r.row,
        s,
        f1(v.commitMs),
        f1(v.shaMs),
        f1(v.fsyncMs),
        f1(v.boundMs),
        fx(v.vsBound),
        f1(v.commitMs / (v.size / GiB), 0),
      ])
    }
  }
  return { head, body, commitHead, commitBody }
}

function textTable(head, body) {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)))
  const line = (r) => r.map((x, i) => String(x).padEnd(w[i])).join('  ')
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n')
}

function mdTable(head, body) {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...body.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')
}

/** Scenario g's figure: Ferry ÷ @tus/server, the same client (empty body without g rows). */
function tusClientRows(result) {
  const head = ['row', 'Ferry server', 'Ferry', '@tus/server', 'Ferry ÷ @tus/server', 'per rep']
  const cell = (v) => (typeof v === 'string' ? v : Number.isFinite(v) ? `${f1(v)} MB/s` : '–')
  const rows = result.summary.rows
  const tusOf = (row) => rows.find((r) => r.row === row)?.servers.tus?.value
  const body = (result.summary.tusClient ?? []).map((t) => [
    t.row,
    t.server,
    cell(t.ferry),
    cell(t.tus) + (t.against !== t.row ? `; its ${t.against}: ${cell(tusOf(t.against))}` : ''),
    fx(t.ratio) + (t.against !== t.row && Number.isFinite(t.ratio) ? ` (of ${t.against})` : ''),
    (t.repRatios ?? []).map((x) => x.toFixed(2)).join(' ') || '–',
  ])
  return { head, body }
}

/** The report's section for scenario g (none without g rows). */
function tusClientSection(result) {
  const t = tusClientRows(result)
  if (!t.body.length) return []
  const c = result.config
  const text =
    `The same client, tus-js-client ${result.env.tusJsClient ?? ''} in the load ` +
    `process, uploads ${c.sizeBytes / MiB} MiB in ${c.chunkBytes / MiB} MiB chunks ` +
    "(`chunkSize`) to Ferry's `/files/` and to @tus/server + @tus/file-store (g), and with " +
    '`parallelUploads: 4` (g4: four partial uploads and a final concatenation). A cell that ' +
    'says why instead of a figure is a server that cannot take the upload: @tus/server answers ' +
    "501 to `Upload-Concat`, so Ferry's g4 is set against its g; a Ferry build without the " +
    'tus family answers 404 at `/files/`. "Ferry ÷ @tus/server" is the ratio of the medians, ' +
    '"per rep" the ratio within each repetition (both servers ran back to back), whose spread is ' +
    'the noise. Every stored upload is read back and its sha256 checked.'
  return ['## tus-js-client: Ferry ÷ @tus/server', '', text, '', mdTable(t.head, t.body), '']
}

/** The B/A table of a compare run (empty body when there is no build B). */
function compareRows(result) {
  const head = [
    'row',
    'A',
    'B',
    'A median',
    'B median',
    'B/A',
    'B/A per rep',
    'CPU per unit B/A',
    'B is',
  ]
  const body = (result.summary.compare ?? []).map((c) => {
    const d = c.unit === 'MB/s' ? 1 : 0
    const faster = c.lowerIsBetter ? c.ratio < 1 : c.ratio > 1
    // Repetitions that disagree on the side of 1 say the difference is inside the noise.
    const split =
      c.repRatios.length > 1 && Math.min(...c.repRatios) < 1 && Math.max(...c.repRatios) > 1
    const is = c.unsupported || (split ? 'noise (reps split)' : faster ? 'faster' : 'slower')
    return [
      c.row,
      c.a,
      c.b,
      `${f1(c.valueA, d)} ${c.unit}`,
      `${f1(c.valueB, d)} ${c.unit}`,
      fx(c.ratio),
      c.repRatios.map((x) => x.toFixed(2)).join(' '),
      fx(c.cpuRatio),
      is,
    ]
  })
  return { head, body }
}

/** The console table printed at the end of a run. */
export function formatTable(result) {
  const t = tableRows(result)
  let out = textTable(t.head, t.body)
  if (t.commitBody.length) out += `\n\n${textTable(t.commitHead, t.commitBody)}`
  const tc = tusClientRows(result)
  if (tc.body.length) {
    out +=
      '\n\ntus-js-client, the same client against both (Ferry ÷ @tus/server, same run):\n' +
      textTable(tc.head, tc.body)
  }
  const cmp = compareRows(result)
  if (cmp.body.length)
    out += `\n\nbuild B against build A (throughput rows: B/A > 1 is B faster; e-* commit ms: < 1):\n${textTable(cmp.head, cmp.body)}`
  const g = result.summary.goals
  if (g.length) {
    out += `\n\nother checks (informative, not asserted):\n${g.map((x) => `  ${x.met ? 'met    ' : 'NOT met'}  ${x.goal}: ${x.server} ${x.unit ? `${f1(x.measured, 0)} ${x.unit}` : fx(x.measured)}`).join('\n')}`
  }
  const sha = result.summary.sha256
  const v = result.summary.verdicts ?? {}
  const word = (x) => (x === true ? 'met' : x === false ? 'NOT met' : 'not judged')
  out += `\n\nissue 14 goals (sha256 pass: ${f1(sha?.cpuPerGiB, 2)} CPU-s/GiB, this run):`
  for (const n of Object.keys(GOAL_TITLES)) {
    out += `\n  goal ${n}: ${word(v[n])}`
    for (const x of (result.summary.goals14 ?? []).filter((e) => String(e.goal) === n)) {
      const m = x.unit === 'ms' ? `${f1(x.measured)} ms` : fx(x.measured)
      const reps =
        x.repRatios?.length > 1 ? `; per rep ${x.repRatios.map((r) => r.toFixed(2)).join(' ')}` : ''
      out += `\n    ${x.met === null ? '?  ' : x.met ? 'ok ' : 'no '} ${x.what}: ${x.server} ${m} (${x.figures}${reps})`
    }
  }
  return out
}

/** The report's chart groups: one SVG each, rows of one unit. */
export const CHART_GROUPS = [
  {
    id: 'large',
    title: 'Large files',
    match: (id) => id === 'a' || /^[bf]\d*$/.test(id),
    base: ['disk', 'minimal-durable', 'minimal'],
  },
  {
    id: 'small',
    title: 'Small files',
    match: (id) => id === 'c' || id.startsWith('d-'),
    base: ['minimal-durable', 'disk', 'minimal'],
  },
  { id: 'tus', title: 'tus-js-client', match: (id) => /^g\d*$/.test(id), base: ['tus'] },
]

/**
 * Hand-written SVG for one group of rows: per row, one bar per server, length = its median
 * (MB/s or uploads/s), ceilings and Ferry side by side; the label gives the value and, for
 * Ferry, its ratio to the group's yardstick (`base`: the first of its ceilings the row has).
 * Null when no row of the group ran.
 */
export function svgGroupChart(result, group) {
  const rows = result.summary.rows.filter(
    (r) => group.match(r.row) && Object.values(r.servers).some((v) => Number.isFinite(v.value)),
  )
  if (!rows.length) return null
  const servers = SERVER_ORDER.filter((s) => rows.some((r) => Number.isFinite(r.servers[s]?.value)))
  const unit = rows[0].unit
  const barH = 14
  const gap = 10
  const left = 60
  const plotW = 520
  const maxV = Math.max(...rows.flatMap((r) => Object.values(r.servers).map((v) => v.value ?? 0)))
  const x = (v) => left + (v / maxV) * plotW
  let y = 44
  const parts = []
  for (const r of rows) {
    const present = servers.filter((s) => Number.isFinite(r.servers[s]?.value))
    const base = group.base.find((s) => Number.isFinite(r.servers[s]?.value))
    const groupH = present.length * barH
    parts.push(
      `<text x="${left - 8}" y="${y + groupH / 2 + 4}" text-anchor="end" font-size="12">${r.row}</text>`,
    )
    for (const s of present) {
      const v = r.servers[s].value
      const w = Math.max(1, x(v) - left)
      const ratio =
        base && serverByName(s)?.proto === 'ferry'
          ? ` (${fx(v / r.servers[base].value)} ${base})`
          : ''
      const label = `${f1(v, 0)}${ratio}`
      parts.push(
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[s]}"><title>${s} ${r.row}: ${f1(v)} ${unit}${ratio}</title></rect>`,
      )
      parts.push(
        `<text x="${(left + w + 4).toFixed(1)}" y="${y + barH - 4}" font-size="10">${label}</text>`,
      )
      y += barH
    }
    y += gap
  }
  const height = y + 20 + 18 * Math.ceil(servers.length / 3)
  const step = niceStep(maxV / 5)
  const ticks = []
  for (let t = 0; t <= maxV + 1e-9; t += step) {
    ticks.push(`<line x1="${x(t)}" y1="38" x2="${x(t)}" y2="${y}" stroke="#ddd" stroke-width="1"/>`)
    ticks.push(`<text x="${x(t)}" y="32" text-anchor="middle" font-size="10">${t}</text>`)
  }
  const legend = servers.map((s, i) => {
    const lx = left + (i % 3) * 200
    const ly = y + 14 + Math.floor(i / 3) * 18
    return `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[s]}"/><text x="${lx + 16}" y="${ly}" font-size="12">${s}</text>`
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + plotW + 190}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="14" font-size="12" font-weight="bold">${group.title}: ${unit}, medians (${result.config.quick ? 'quick' : 'full'} run); Ferry's ratio to ${group.base.join(', else ')}</text>
${ticks.join('\n')}
${parts.join('\n')}
${legend.join('\n')}
</svg>`
}

/** 1, 2 or 5 × a power of ten, at least `x`. */
function niceStep(x) {
  if (!(x > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(x))
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= x)
}

/** All ceilings side by side per row: disk, minimal, minimal-durable, tus. */
function ceilingRows(result) {
  const ceilings = SERVERS.filter((s) => s.ceiling).map((s) => s.name)
  const head = ['row', 'scenario', ...ceilings, 'unit']
  const body = []
  for (const r of result.summary.rows.filter((x) => !x.row.startsWith('e-'))) {
    if (!ceilings.some((c) => Number.isFinite(r.servers[c]?.value))) continue
    const cellOf = (c) => {
      const v = r.servers[c]
      if (v?.unsupported) return v.unsupported
      const d = r.unit === 'MB/s' ? 1 : 0
      return v && Number.isFinite(v.value) ? `${f1(v.value, d)} (${f1(v.cpuPer, 2)} CPU)` : '–'
    }
    body.push([r.row, r.desc, ...ceilings.map(cellOf), r.unit])
  }
  return { head, body }
}

/** The goals section's table: one line per judged figure. */
function goalRows(result) {
  const head = ['goal', 'what', 'server', 'measured', 'target', 'met', 'per rep', 'figures']
  const body = (result.summary.goals14 ?? []).map((g) => [
    String(g.goal),
    g.what,
    g.server,
    g.unit === 'ms' ? `${f1(g.measured)} ms` : fx(g.measured),
    g.target === undefined ? '–' : g.unit === 'ms' ? `${g.target} ms` : `${g.target}×`,
    g.met === null ? 'not judged' : g.met ? 'yes' : '**no**',
    (g.repRatios ?? []).map((x) => x.toFixed(2)).join(' ') || '–',
    g.figures,
  ])
  return { head, body }
}

const GOAL_TITLES = {
  1: 'The physical limit, durable: b1, b4 ≥ 0.9× disk (embedded and Redis)',
  2: 'Like for like with tus: FERRY_FSYNC=none, b1 ≥ 0.85× minimal and ≥ 1.5× tus',
  3: 'Same protocol, same client: g ≥ 1.5× @tus/server (g4 beside)',
  4: 'Small files at one journal commit: c, d-store ≥ 0.9× minimal-durable; p99 growth ≤ window',
  5: 'CPU per byte: b1, f ≤ 1.15× (minimal + one sha256 pass) CPU-s/GiB',
  6: "Scale-out as efficiency: two instances' CPU per GiB / per 1k uploads ≤ 1.1× one's",
}

/** The goals section of report.md. */
function goalsSection(result) {
  const v = result.summary.verdicts ?? {}
  const sha = result.summary.sha256
  const word = (x) => (x === true ? 'met' : x === false ? '**not met**' : 'not judged')
  const t = goalRows(result)
  return [
    '## Goals (issue 14)',
    '',
    'Each goal is judged on the medians of this run (interleaved repetitions); a goal is met when ' +
      'every figure listed under it is, "not judged" when the run lacks a row it needs. The ' +
      `sha256 pass of goal 5 was measured in this run: ${f1(sha?.cpuPerGiB, 2)} CPU-s/GiB ` +
      `(median of ${sha?.n ?? 0}; ${f1(sha?.min, 2)}–${f1(sha?.max, 2)}), a child process hashing ` +
      "the run's data from memory in 1 MiB updates.",
    '',
    ...Object.entries(GOAL_TITLES).map(([n, title]) => `- Goal ${n}, ${title}: ${word(v[n])}`),
    '',
    mdTable(t.head, t.body),
    '',
  ]
}

/** Writes results/report.md (the SVGs inline) and results/chart-<group>.svg. */
export function writeReport(result, outDir) {
  const t = tableRows(result)
  const e = result.env
  const c = result.config
  const charts = CHART_GROUPS.map((g) => [g, svgGroupChart(result, g)]).filter(([, svg]) => svg)
  const ceil = ceilingRows(result)
  const md = [
    '# Ferry benchmark report',
    '',
    `${result.date} · node ${e.node} · ${e.cpu} × ${e.cores} · ${e.memGiB} GiB · git ${e.gitRev ?? '(no commit)'} · @tus/server ${e.tusServer}`,
    `${c.quick ? 'quick' : 'full'} run, ${c.reps} rep(s), medians; seed \`${c.seed}\`; ${result.ok ? 'every upload verified (sha256)' : '**some runs FAILED**'}; MB = 10^6 bytes.`,
    '',
    ...goalsSection(result),
    '## Ceilings side by side',
    '',
    "`disk`: no HTTP, the same bytes written with Ferry's write size and fdatasync cadence (the physical limit, durable); `minimal`: node:http to files, no hash, no fsync; `minimal-durable`: the same, fdatasync + directory fsync before answering; `tus`: @tus/server + @tus/file-store (no fsync). Medians, with the server CPU-s per GiB or per 1k uploads in brackets.",
    '',
    mdTable(ceil.head, ceil.body),
    '',
    ...charts.flatMap(([g, svg]) => [`### ${g.title}`, '', svg, '']),
    '## Throughput, CPU and memory',
    '',
    '"× disk" is the ratio to the disk row, "× minimal" is the ratio to the minimal node:http-to-file server (the ceiling; it never fsyncs), "× durable" to the same server fdatasyncing before it answers a commit or whole-file PUT (the durable ceiling, as Ferry must be), "× tus" to @tus/server + @tus/file-store, both measured in the same run. Chunked rows with more than one chunk in flight compare with tus\'s sequential PATCHes (b1), and g4 (parallelUploads, which tus answers 501) with its g. Server CPU is utime+stime of the server process(es) during the timed window; peak RSS is VmHWM (max over instances).',
    '',
    mdTable(t.head, t.body),
    '',
    'p50 / p99: per-upload time (request sent to response ended, as the client sees it) of the small-file rows, median over repetitions.',
    '',
    ...(t.commitBody.length
      ? [
          '## Commit time vs size',
          '',
          'Time from sending the commit to its 200, against one sha256 pass over the stored file from page cache plus one fsync of as many freshly written bytes, both measured in the same run.',
          '',
          mdTable(t.commitHead, t.commitBody),
          '',
        ]
      : []),
    ...tusClientSection(result),
    ...(compareRows(result).body.length
      ? [
          '## Build B against build A',
          '',
          `A = \`${c.ferryMainA}\`, B = \`${c.ferryMainB}\`, run interleaved (each repetition runs both, order rotating). "B/A" is the ratio of the medians; "per rep" the ratio within each repetition. Throughput rows: above 1 means B is faster; commit rows (e-*, ms): below 1 means B is faster.`,
          '',
          mdTable(compareRows(result).head, compareRows(result).body),
          '',
        ]
      : []),
    ...(result.summary.goals.length
      ? [
          '## Other checks (earlier issues, informative)',
          '',
          mdTable(
            ['goal', 'server', 'measured', 'met'],
            result.summary.goals.map((g) => [
              g.goal,
              g.server,
              g.unit ? `${f1(g.measured, 0)} ${g.unit}` : fx(g.measured),
              g.met ? 'yes' : '**no**',
            ]),
          ),
          '',
        ]
      : []),
    ...(result.startRetries?.length
      ? [
          '## Start-up retries',
          '',
          ...result.startRetries.map((r) => `- ${r.at} ${r.server}: ${r.error} (started again)`),
          '',
        ]
      : []),
    ...(result.runs.some((r) => !r.ok)
      ? [
          '## Failures',
          '',
          ...result.runs
            .filter((r) => !r.ok)
            .map(
              (r) => `- rep ${r.rep} ${r.scenario} ${r.server}: \`${r.error.replace(/\n/g, ' ')}\``,
            ),
          '',
        ]
      : []),
  ].join('\n')
  fs.mkdirSync(outDir, { recursive: true })
  const mdFile = path.join(outDir, 'report.md')
  fs.writeFileSync(mdFile, md)
  for (const [g, svg] of charts) fs.writeFileSync(path.join(outDir, `chart-${g.id}.svg`), svg)
  return { mdFile }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (!file) {
    console.error('usage: node bench/macro/report.js bench/results/bench-<id>.json [outdir]')
    process.exit(2)
  }
  const result = JSON.parse(fs.readFileSync(file, 'utf8'))
  result.summary = summarize(result)
  const { mdFile } = writeReport(result, process.argv[3] ?? path.dirname(file))
  console.log(formatTable(result))
  console.log(`wrote ${mdFile}`)
}
