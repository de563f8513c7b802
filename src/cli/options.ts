/** Parsers of `ferry upload`'s option values (commander calls them; a bad value is exit 2). */
import { InvalidArgumentError } from 'commander'

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
}

/** "8M", "512KiB", "1048576" → bytes (K, M, G alone are binary, as in dd and curl). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined
  if (!m || unit === undefined)
    throw new InvalidArgumentError('expected a size such as 8M, 512K or 1048576')
  const n = Math.floor(Number(m[1]) * unit)
  if (n < 1) throw new InvalidArgumentError('must be at least 1 byte')
  return n
}

export function count(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = Number(text)
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`)
    return n
  }
}
