// sha256 with node:crypto over 64 MiB already in memory: how the size of each update() matters
// (64 KiB ≈ a socket read, 1 MiB ≈ a file stream buffer, 8 MiB = one chunk in one call).
import { createHash, randomFillSync } from 'node:crypto'
import { bench, do_not_optimize, summary } from 'mitata'
import { runWithThroughput } from './util.js'

const SIZE = 64 * 1024 * 1024
const data = randomFillSync(Buffer.allocUnsafe(SIZE))

function hashIn(step) {
  const h = createHash('sha256')
  for (let off = 0; off < SIZE; off += step) h.update(data.subarray(off, off + step))
  return h.digest()
}

summary(() => {
  bench('sha256 in memory, 8 MiB updates', () => do_not_optimize(hashIn(8 * 1024 * 1024)))
  bench('sha256 in memory, 1 MiB updates', () => do_not_optimize(hashIn(1024 * 1024)))
  bench('sha256 in memory, 64 KiB updates', () => do_not_optimize(hashIn(64 * 1024)))
})

await runWithThroughput(SIZE)
