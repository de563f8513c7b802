// Server-side cost read from /proc, so every server is measured the same way without
// cooperating: CPU = utime+stime of the process (all its threads, so piscina workers count),
// peak RSS = VmHWM at the end of the run.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

let ticks = 100
try {
  ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
} catch {}

/** CPU seconds (user+system) used so far by process `pid`. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / ticks
}

/** Peak resident set size of `pid` in MiB (VmHWM). */
export function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}
