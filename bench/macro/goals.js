// Issue 14's goals, judged on one run's medians (pure: no I/O; test/unit/bench-goals.test.ts).
//
//   1  b1, b4 ≥ 0.9× disk                          ferry-embedded, ferry-redis
//   2  FERRY_FSYNC=none: b1 ≥ 0.85× minimal, ≥ 1.5× tus   ferry-*-nofsync
//   3  g ≥ 1.5× tus's g (tus-js-client), g4 beside    ferry-embedded, ferry-redis
//   4  c, d-store ≥ 0.9× minimal-durable; p99 growth ≤ the batching window (build B vs A)
//   5  CPU-s/GiB in b1, f ≤ 1.15× (minimal's + one sha256 pass)
//   6  ferry-redis-x2 CPU per GiB (b1, f) or per 1k uploads (c, d-dedup) ≤ 1.1× ferry-redis

/** The p-th percentile (0 < p ≤ 100) by nearest rank: the smallest value with ≥ p % at or below. */
export function percentile(xs, p) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return NaN
  const rank = Math.ceil((p / 100) * v.length)
  return v[Math.min(v.length, Math.max(1, rank)) - 1]
}

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return NaN
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

/** The servers of the default durability each goal judges (build A). */
export const DURABLE_FERRIES = ['ferry-embedded', 'ferry-redis']
export const NOFSYNC_FERRIES = ['ferry-embedded-nofsync', 'ferry-redis-nofsync']

export const TARGETS = {
  disk: 0.9,
  nofsyncMinimal: 0.85,
  nofsyncTus: 1.5,
  tusClient: 1.5,
  smallDurable: 0.9,
  cpu: 1.15,
  scaleOut: 1.1,
}

const fnum = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–')
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')

/**
 * Goals 1-6 from the summary's rows (`rows[].servers[name]` = {value, cpuPer, p99Ms, …}, medians),
 * `sha256CpuPerGiB` (one sha256 pass, same run) and the B/A comparisons (`compare`, for goal 4's
 * latency when a build B ran). `opts.parallelRow` names b's parallel row (default b4),
 * `opts.batchWindowMs` the group commit's window. Each entry: {goal, what, server, row, measured,
 * target, met (true | false | null when the run lacks a figure it needs), figures}. A goal whose
 * rows did not run at all gives one entry with met null saying what is missing. `against` and
 * `metric` ('value': throughput ÷ against's; 'cpu': CPU per unit ÷ against's; 'cpu+sha': CPU per
 * GiB ÷ (against's + the sha256 pass)) let the report redo a ratio per repetition.
 */
export function evaluateGoals(rows, { sha256CpuPerGiB, compare = [], ...opts } = {}) {
  const parallelRow = opts.parallelRow ?? 'b4'
  const cell = (row, server) => rows.find((r) => r.row === row)?.servers[server]
  const has = (v) => v && Number.isFinite(v.value)
  const out = []
  const missing = (goal, what, needs) =>
    out.push({ goal, what, server: '–', row: '–', measured: NaN, met: null, figures: needs })
  const judge = (e) => out.push({ ...e, met: Number.isFinite(e.measured) ? e.met : null })

  // 1. The physical limit, durable.
  let n = out.length
  for (const row of ['b1', parallelRow]) {
    const disk = cell(row, 'disk')
    for (const s of DURABLE_FERRIES) {
      const v = cell(row, s)
      if (!has(v) || !has(disk)) continue
      const r = v.value / disk.value
      judge({
        goal: 1,
        against: 'disk',
        metric: 'value',
        what: `${row} ≥ ${TARGETS.disk}× disk`,
        server: s,
        row,
        measured: r,
        target: TARGETS.disk,
        met: r >= TARGETS.disk,
        figures: `${fnum(v.value)} / ${fnum(disk.value)} MB/s`,
      })
    }
  }
  if (out.length === n)
    missing(1, `b1, ${parallelRow} ≥ ${TARGETS.disk}× disk`, 'needs b on ferry-* and disk')

  // 2. Like for like with tus: FERRY_FSYNC=none.
  n = out.length
  const minB1 = cell('b1', 'minimal')
  const tusB1 = cell('b1', 'tus')
  for (const s of NOFSYNC_FERRIES) {
    const v = cell('b1', s)
    if (!has(v)) continue
    for (const [against, base, target] of [
      ['minimal', minB1, TARGETS.nofsyncMinimal],
      ['tus', tusB1, TARGETS.nofsyncTus],
    ]) {
      if (!has(base)) continue
      const r = v.value / base.value
      judge({
        goal: 2,
        against,
        metric: 'value',
        what: `b1 with FERRY_FSYNC=none ≥ ${target}× ${against}`,
        server: s,
        row: 'b1',
        measured: r,
        target,
        met: r >= target,
        figures: `${fnum(v.value)} / ${fnum(base.value)} MB/s`,
      })
    }
  }
  if (out.length === n) missing(2, 'b1 with FERRY_FSYNC=none', 'needs b1 on ferry-*-nofsync')

  // 3. Same protocol, same client.
  n = out.length
  const tusG = cell('g', 'tus')
  for (const s of DURABLE_FERRIES) {
    const v = cell('g', s)
    if (!has(v) || !has(tusG)) continue
    const r = v.value / tusG.value
    const g4 = cell('g4', s)
    const g4r = has(g4) ? g4.value / tusG.value : NaN
    judge({
      goal: 3,
      against: 'tus',
      metric: 'value',
      what: `g (tus-js-client) ≥ ${TARGETS.tusClient}× tus`,
      server: s,
      row: 'g',
      measured: r,
      target: TARGETS.tusClient,
      met: r >= TARGETS.tusClient,
      figures:
        `${fnum(v.value)} / ${fnum(tusG.value)} MB/s; g4 ${has(g4) ? `${fnum(g4.value)} MB/s = ` : ''}` +
        `${fx(g4r)} tus's g`,
    })
  }
  if (out.length === n) missing(3, 'g ≥ 1.5× tus', 'needs g on ferry-* and tus')

  // 4. Small files at one journal commit; latency beside.
  n = out.length
  for (const row of ['c', 'd-store']) {
    const dur = cell(row, 'minimal-durable')
    for (const s of DURABLE_FERRIES) {
      const v = cell(row, s)
      if (!has(v) || !has(dur)) continue
      const r = v.value / dur.value
      judge({
        goal: 4,
        against: 'minimal-durable',
        metric: 'value',
        what: `${row} ≥ ${TARGETS.smallDurable}× minimal-durable`,
        server: s,
        row,
        measured: r,
        target: TARGETS.smallDurable,
        met: r >= TARGETS.smallDurable,
        figures:
          `${fnum(v.value, 0)} / ${fnum(dur.value, 0)} uploads/s; p50/p99 ` +
          `${fnum(v.p50Ms)}/${fnum(v.p99Ms)} ms (minimal-durable ${fnum(dur.p50Ms)}/${fnum(dur.p99Ms)})`,
      })
    }
  }
  // The latency half needs a before: build B (group commit) against build A, same run.
  for (const c of compare) {
    if (!['c', 'd-store'].includes(c.row) || !Number.isFinite(c.p99A)) continue
    const growth = c.p99B - c.p99A
    const window = opts.batchWindowMs
    judge({
      goal: 4,
      what: `${c.row} p99 growth B − A ≤ batching window${Number.isFinite(window) ? ` (${window} ms)` : ''}`,
      server: c.b,
      row: c.row,
      measured: Number.isFinite(window) ? growth : NaN,
      target: window,
      met: growth <= window,
      unit: 'ms',
      figures: `p99 ${fnum(c.p99A)} → ${fnum(c.p99B)} ms (+${fnum(growth)} ms)${Number.isFinite(window) ? '' : '; give --batch-window-ms to judge'}`,
    })
  }
  if (out.length === n) missing(4, 'c, d-store ≥ 0.9× minimal-durable', 'needs c, d on ferry-*')

  // 5. CPU per byte.
  n = out.length
  for (const row of ['b1', 'f']) {
    const min = cell(row, 'minimal')
    for (const s of DURABLE_FERRIES) {
      const v = cell(row, s)
      if (!has(v) || !has(min)) continue
      const bound = min.cpuPer + sha256CpuPerGiB
      const r = v.cpuPer / bound
      judge({
        goal: 5,
        against: 'minimal',
        metric: 'cpu+sha',
        what: `${row} CPU-s/GiB ≤ ${TARGETS.cpu}× (minimal + sha256)`,
        server: s,
        row,
        measured: r,
        target: TARGETS.cpu,
        met: r <= TARGETS.cpu,
        figures: `${fnum(v.cpuPer, 2)} / (${fnum(min.cpuPer, 2)} + ${fnum(sha256CpuPerGiB, 2)}) CPU-s/GiB`,
      })
    }
  }
  if (out.length === n) missing(5, 'CPU per byte', 'needs b1 or f on ferry-* and minimal')

  // 6. Scale-out as efficiency.
  n = out.length
  for (const row of ['b1', 'f', 'c', 'd-dedup']) {
    const one = cell(row, 'ferry-redis')
    const two = cell(row, 'ferry-redis-x2')
    if (!has(one) || !has(two)) continue
    const r = two.cpuPer / one.cpuPer
    const unit = row === 'b1' || row === 'f' ? 'CPU-s/GiB' : 'CPU-s per 1k uploads'
    judge({
      goal: 6,
      against: 'ferry-redis',
      metric: 'cpu',
      what: `${row} two instances' CPU ≤ ${TARGETS.scaleOut}× one's`,
      server: 'ferry-redis-x2',
      row,
      measured: r,
      target: TARGETS.scaleOut,
      met: r <= TARGETS.scaleOut,
      figures: `${fnum(two.cpuPer, 2)} / ${fnum(one.cpuPer, 2)} ${unit}; throughput ${fx(two.value / one.value)}`,
    })
  }
  if (out.length === n) missing(6, 'scale-out CPU', 'needs ferry-redis and ferry-redis-x2')
  return out
}

/**
 * One goal entry's ratio within each repetition: `perRep(server)` = Map rep → {value, cpuPer},
 * `shaByRep` = Map rep → sha256 CPU-s/GiB. Only repetitions where both sides ran.
 */
export function repRatios(entry, perRep, shaByRep = new Map()) {
  if (!entry.against) return []
  const mine = perRep(entry.server)
  const theirs = perRep(entry.against)
  const out = []
  for (const [rep, m] of [...mine].sort(([a], [b]) => a - b)) {
    const t = theirs.get(rep)
    if (!t) continue
    if (entry.metric === 'value') out.push(m.value / t.value)
    else if (entry.metric === 'cpu') out.push(m.cpuPer / t.cpuPer)
    else if (entry.metric === 'cpu+sha')
      out.push(m.cpuPer / (t.cpuPer + (shaByRep.get(rep) ?? NaN)))
  }
  return out.filter(Number.isFinite)
}

/** Per goal: met when every judged entry is met, not met when one is not, else null. */
export function goalVerdicts(entries) {
  const out = new Map()
  for (const e of entries) {
    const prev = out.get(e.goal)
    if (e.met === null) {
      if (prev === undefined) out.set(e.goal, null)
    } else if (e.met === false) out.set(e.goal, false)
    else if (prev === undefined || prev === null) out.set(e.goal, true)
  }
  return out
}
