/** An inclusive byte range `[start, end]`, 0-based, as Content-Range writes it. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

/** Inserts `r` into sorted, merged, inclusive ranges; adjacent and overlapping ranges merge. */
export function addRange(ranges: readonly ByteRange[], r: ByteRange): ByteRange[] {
  const out: ByteRange[] = []
  let cur = { start: r.start, end: r.end }
  let placed = false
  for (const x of ranges) {
    if (x.end + 1 < cur.start) {
      out.push(x)
    } else if (cur.end + 1 < x.start) {
      if (!placed) {
        out.push(cur)
        placed = true
      }
      out.push(x)
    } else {
      cur = { start: Math.min(cur.start, x.start), end: Math.max(cur.end, x.end) }
    }
  }
  if (!placed) out.push(cur)
  return out.sort((a, b) => a.start - b.start)
}

/** True when every byte of `r` is inside one of `ranges`. */
export function containsRange(ranges: readonly ByteRange[], r: ByteRange): boolean {
  return ranges.some((x) => x.start <= r.start && r.end <= x.end)
}

/** True when `r` shares at least one byte with one of `ranges`. */
export function overlapsAny(ranges: readonly ByteRange[], r: ByteRange): boolean {
  return ranges.some((x) => x.start <= r.end && r.start <= x.end)
}

/** The inclusive gaps of `[0, total-1]` not covered by `ranges`; `[]` when complete. */
export function missingRanges(ranges: readonly ByteRange[], total: number): ByteRange[] {
  const gaps: ByteRange[] = []
  let next = 0
  for (const x of ranges) {
    if (x.start > next) gaps.push({ start: next, end: Math.min(x.start, total) - 1 })
    next = Math.max(next, x.end + 1)
  }
  if (next < total) gaps.push({ start: next, end: total - 1 })
  return gaps
}

/** Bytes from 0 that are contiguous: the end (exclusive) of the range starting at 0, else 0. */
export function contiguousPrefix(ranges: readonly ByteRange[]): number {
  const first = ranges[0]
  return first !== undefined && first.start === 0 ? first.end + 1 : 0
}

/** `ranges` without the bytes of `remove` (both sorted, merged, inclusive). */
export function subtractRanges(
  ranges: readonly ByteRange[],
  remove: readonly ByteRange[],
): ByteRange[] {
  let out: ByteRange[] = [...ranges]
  for (const r of remove) {
    const next: ByteRange[] = []
    for (const x of out) {
      if (x.end < r.start || r.end < x.start) {
        next.push(x)
        continue
      }
      if (x.start < r.start) next.push({ start: x.start, end: r.start - 1 })
      if (r.end < x.end) next.push({ start: r.end + 1, end: x.end })
    }
    out = next
  }
  return out
}
