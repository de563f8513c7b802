// Shared by the micro-benchmarks: run the mitata suite, then print MB/s (10^6 bytes) per
// variant from the median time, relative to the first variant of each file.
import { run } from 'mitata'

export async function runWithThroughput(bytesPerIteration) {
  const { benchmarks } = await run({ colors: Boolean(process.stdout.isTTY) })
  const rows = benchmarks.flatMap((t) => t.runs).filter((r) => r.stats)
  const base = rows[0] ? bytesPerIteration / rows[0].stats.p50 : 0
  console.log('\nthroughput (median):')
  for (const r of rows) {
    const mbps = (bytesPerIteration / r.stats.p50) * 1e3 // bytes per ns → MB/s
    console.log(
      `  ${r.name.padEnd(44)} ${mbps.toFixed(0).padStart(6)} MB/s  ${(bytesPerIteration / r.stats.p50 / base).toFixed(2)}×`,
    )
  }
}
