/**
 * strace for tests that count or order system calls of a real process: `ensureStrace` (installs it
 * when missing, as root) and `parseTrace` (reads `strace -f -o` output).
 */
import { spawnSync } from 'node:child_process'

export function ensureStrace(): void {
  if (spawnSync('strace', ['-V']).status === 0) return
  if (process.getuid?.() === 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300_000 })
    spawnSync('apt-get', ['install', '-y', '-qq', 'strace'], { stdio: 'ignore', timeout: 300_000 })
    if (spawnSync('strace', ['-V']).status === 0) return
  }
  throw new Error('these tests need strace: apt-get install -y strace')
}

export interface Call {
  readonly name: string
  /** Arguments as strace prints them (with -y: fds carry their paths). */
  readonly args: string
  readonly result: string
  /** Positions in the trace of entry and return (equal when strace printed it in one line). */
  readonly start: number
  readonly end: number
}

/** Parses `strace -f -o` output, joining `<unfinished ...>` with `<... resumed>` per thread. */
export function parseTrace(text: string): Call[] {
  const calls: Call[] = []
  const open = new Map<string, { name: string; args: string; start: number }>()
  text.split('\n').forEach((raw, pos) => {
    const m = /^(\d+)\s+(.*)$/.exec(raw)
    if (m === null) return
    const [, tid, rest] = m as unknown as [string, string, string]
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(.*)$/.exec(rest)
    if (resumed !== null) {
      const o = open.get(tid)
      open.delete(tid)
      if (o !== undefined)
        calls.push({
          name: o.name,
          args: o.args + resumed[2]!,
          result: resumed[3]!,
          start: o.start,
          end: pos,
        })
      return
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest)
    if (unfinished !== null) {
      open.set(tid, { name: unfinished[1]!, args: unfinished[2]!, start: pos })
      return
    }
    const whole = /^(\w+)\((.*)\)\s+=\s+(.*)$/.exec(rest)
    if (whole !== null)
      calls.push({ name: whole[1]!, args: whole[2]!, result: whole[3]!, start: pos, end: pos })
  })
  return calls.sort((a, b) => a.start - b.start)
}
