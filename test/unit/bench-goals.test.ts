/**
 * The pure parts of the benchmark's report (bench/macro/goals.js): the per-upload percentile and
 * issue 14's goal evaluation from a run's medians. bench/ is plain JavaScript outside the
 * TypeScript build, so it is loaded from the checkout at run time (dist/test/unit → ../../..).
 */
import { describe, expect, test } from '@jest/globals'

interface Cell {
  value: number
  cpuPer?: number
  p50Ms?: number
  p99Ms?: number
}
interface Row {
  row: string
  servers: Record<string, Cell>
}
interface Entry {
  goal: number
  what: string
  server: string
  row: string
  measured: number
  target?: number
  met: boolean | null
  figures: string
}
interface GoalsModule {
  percentile(xs: number[], p: number): number
  median(xs: number[]): number
  evaluateGoals(
    rows: Row[],
    opts: {
      sha256CpuPerGiB: number
      compare?: { row: string; b: string; p99A?: number; p99B?: number }[]
      batchWindowMs?: number
      parallelRow?: string
    },
  ): Entry[]
  goalVerdicts(entries: Entry[]): Map<number, boolean | null>
  repRatios(
    entry: Entry,
    perRep: (server: string) => Map<number, { value: number; cpuPer: number }>,
    shaByRep?: Map<number, number>,
  ): number[]
}

const goals = (await import(
  new URL('../../../bench/macro/goals.js', import.meta.url).href
)) as GoalsModule

const row = (id: string, servers: Record<string, Cell>): Row => ({ row: id, servers })
const only = (entries: Entry[], goal: number) => entries.filter((e) => e.goal === goal)

describe('percentile (nearest rank)', () => {
  test('p50 and p99 of 1..100 are 50 and 99; of 1..1000, 500 and 990', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i)
    expect(goals.percentile(hundred, 50)).toBe(50)
    expect(goals.percentile(hundred, 99)).toBe(99)
    expect(goals.percentile(hundred, 100)).toBe(100)
    const thousand = Array.from({ length: 1000 }, (_, i) => i + 1)
    expect(goals.percentile(thousand, 50)).toBe(500)
    expect(goals.percentile(thousand, 99)).toBe(990)
  })

  test('one slow upload in a hundred is the p100, not the p99; small sets and NaN', () => {
    const xs = [...Array.from({ length: 99 }, () => 10), 500]
    expect(goals.percentile(xs, 99)).toBe(10)
    expect(goals.percentile(xs, 100)).toBe(500)
    expect(goals.percentile([7], 99)).toBe(7)
    expect(goals.percentile([3, Number.NaN, 1], 50)).toBe(1)
    expect(goals.percentile([], 50)).toBeNaN()
  })
})

describe('issue 14 goals', () => {
  const full: Row[] = [
    row('b1', {
      disk: { value: 1000, cpuPer: 0.5 },
      minimal: { value: 900, cpuPer: 1.0 },
      tus: { value: 500, cpuPer: 2.5 },
      'ferry-embedded': { value: 950, cpuPer: 1.9 },
      'ferry-redis': { value: 850, cpuPer: 2.1 },
      'ferry-redis-x2': { value: 800, cpuPer: 2.2 },
      'ferry-embedded-nofsync': { value: 800, cpuPer: 1.8 },
      'ferry-redis-nofsync': { value: 700, cpuPer: 1.8 },
    }),
    row('b4', {
      disk: { value: 1000 },
      'ferry-embedded': { value: 900 },
      'ferry-redis': { value: 899 },
    }),
    row('c', {
      'minimal-durable': { value: 400, p50Ms: 15, p99Ms: 40 },
      'ferry-embedded': { value: 360, cpuPer: 3, p50Ms: 18, p99Ms: 45 },
      'ferry-redis': { value: 300, cpuPer: 4 },
      'ferry-redis-x2': { value: 280, cpuPer: 4.5 },
    }),
    row('d-store', {
      'minimal-durable': { value: 400 },
      'ferry-embedded': { value: 380 },
    }),
    row('d-dedup', {
      'ferry-redis': { value: 1000, cpuPer: 1 },
      'ferry-redis-x2': { value: 700, cpuPer: 1.1 },
    }),
    row('f', {
      minimal: { value: 800, cpuPer: 1.0 },
      'ferry-embedded': { value: 700, cpuPer: 2.0 },
    }),
    row('g', {
      tus: { value: 200 },
      'ferry-embedded': { value: 310 },
      'ferry-redis': { value: 290 },
    }),
    row('g4', { 'ferry-embedded': { value: 150 } }),
  ]
  const entries = goals.evaluateGoals(full, { sha256CpuPerGiB: 0.7 })
  const pick = (goal: number, r: string, server: string, what = '') =>
    only(entries, goal).find((e) => e.row === r && e.server === server && e.what.includes(what))

  test('goal 1: each chunked row on embedded and Redis against disk, at 0.9', () => {
    expect(pick(1, 'b1', 'ferry-embedded')).toMatchObject({ measured: 0.95, met: true })
    expect(pick(1, 'b1', 'ferry-redis')).toMatchObject({ measured: 0.85, met: false })
    expect(pick(1, 'b4', 'ferry-embedded')).toMatchObject({ measured: 0.9, met: true })
    expect(pick(1, 'b4', 'ferry-redis')?.met).toBe(false)
    expect(only(entries, 1)).toHaveLength(4)
  })

  test('goal 2: FERRY_FSYNC=none rows against minimal (0.85) and tus (1.5)', () => {
    const emb = only(entries, 2).filter((e) => e.server === 'ferry-embedded-nofsync')
    expect(emb.map((e) => [e.measured.toFixed(3), e.met])).toEqual([
      ['0.889', true],
      ['1.600', true],
    ])
    const redis = only(entries, 2).filter((e) => e.server === 'ferry-redis-nofsync')
    expect(redis.map((e) => e.met)).toEqual([false, false])
  })

  test("goal 3: g against tus's g at 1.5, g4 in the figures", () => {
    expect(pick(3, 'g', 'ferry-embedded')).toMatchObject({ measured: 1.55, met: true })
    expect(pick(3, 'g', 'ferry-embedded')?.figures).toContain('0.75×')
    expect(pick(3, 'g', 'ferry-redis')).toMatchObject({ measured: 1.45, met: false })
  })

  test('goal 4: c and d-store against minimal-durable at 0.9, latency in the figures', () => {
    expect(pick(4, 'c', 'ferry-embedded')).toMatchObject({ measured: 0.9, met: true })
    expect(pick(4, 'c', 'ferry-embedded')?.figures).toContain('18.0/45.0 ms')
    expect(pick(4, 'c', 'ferry-redis')).toMatchObject({ measured: 0.75, met: false })
    expect(pick(4, 'd-store', 'ferry-embedded')).toMatchObject({ measured: 0.95, met: true })
  })

  test('goal 4 latency: p99 growth of build B judged only against a given window', () => {
    const compare = [{ row: 'c', b: 'ferry-b-embedded', p99A: 40, p99B: 46 }]
    const judged = goals.evaluateGoals(full, {
      sha256CpuPerGiB: 0.7,
      compare,
      batchWindowMs: 5,
    })
    const lat = only(judged, 4).find((e) => e.what.includes('p99 growth'))
    expect(lat).toMatchObject({ measured: 6, met: false })
    const wide = goals.evaluateGoals(full, { sha256CpuPerGiB: 0.7, compare, batchWindowMs: 10 })
    expect(only(wide, 4).find((e) => e.what.includes('p99 growth'))?.met).toBe(true)
    const noWindow = goals.evaluateGoals(full, { sha256CpuPerGiB: 0.7, compare })
    expect(only(noWindow, 4).find((e) => e.what.includes('p99 growth'))?.met).toBeNull()
  })

  test('goal 5: CPU per GiB against 1.15 × (minimal + sha256 pass)', () => {
    // b1: 1.9 / (1.0 + 0.7) = 1.118 ≤ 1.15; f: 2.0 / 1.7 = 1.176 > 1.15.
    expect(pick(5, 'b1', 'ferry-embedded')?.measured).toBeCloseTo(1.9 / 1.7, 6)
    expect(pick(5, 'b1', 'ferry-embedded')?.met).toBe(true)
    expect(pick(5, 'f', 'ferry-embedded')?.met).toBe(false)
    expect(pick(5, 'b1', 'ferry-redis')?.met).toBe(false) // 2.1 / 1.7 = 1.235
  })

  test('goal 6: two instances against one, CPU per unit, at 1.1', () => {
    expect(pick(6, 'b1', 'ferry-redis-x2')?.measured).toBeCloseTo(2.2 / 2.1, 6)
    expect(pick(6, 'b1', 'ferry-redis-x2')?.met).toBe(true)
    expect(pick(6, 'c', 'ferry-redis-x2')?.met).toBe(false) // 4.5 / 4 = 1.125
    expect(pick(6, 'd-dedup', 'ferry-redis-x2')?.met).toBe(true) // 1.1 / 1 = 1.1
  })

  test('verdicts: a goal is met only when all its figures are; missing rows are not judged', () => {
    const v = goals.goalVerdicts(entries)
    expect([1, 2, 3, 4, 5, 6].map((n) => v.get(n))).toEqual([
      false,
      false,
      false,
      false,
      false,
      false,
    ])
    const partial = goals.evaluateGoals([full[0]!], { sha256CpuPerGiB: 0.7 })
    const pv = goals.goalVerdicts(partial)
    expect(pv.get(3)).toBeNull()
    expect(pv.get(4)).toBeNull()
    expect(only(partial, 3)[0]?.figures).toContain('needs g')
    const good = goals.evaluateGoals(
      [row('b1', { disk: { value: 100 }, 'ferry-embedded': { value: 95 } })],
      { sha256CpuPerGiB: 0.7 },
    )
    expect(goals.goalVerdicts(good).get(1)).toBe(true)
  })

  test('per repetition: the same ratio within each repetition both sides ran', () => {
    const runs: Record<string, [number, number, number][]> = {
      // [rep, value, cpuPer]
      'ferry-embedded': [
        [1, 90, 2.0],
        [2, 120, 1.8],
        [3, 100, 1.9],
      ],
      disk: [
        [1, 100, 0.5],
        [3, 80, 0.5],
      ],
      minimal: [
        [1, 100, 1.0],
        [2, 100, 1.2],
        [3, 100, 1.1],
      ],
    }
    const perRep = (server: string) =>
      new Map((runs[server] ?? []).map(([rep, value, cpuPer]) => [rep, { value, cpuPer }]))
    const g1 = pick(1, 'b1', 'ferry-embedded')!
    expect(goals.repRatios(g1, perRep)).toEqual([0.9, 1.25])
    const g5 = pick(5, 'b1', 'ferry-embedded')!
    const sha = new Map([
      [1, 1.0],
      [2, 0.6],
      [3, 0.9],
    ])
    const r5 = goals.repRatios(g5, perRep, sha)
    expect(r5.map((x) => x.toFixed(3))).toEqual(['1.000', '1.000', '0.950'])
  })
})
