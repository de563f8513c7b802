// sha256 of a 64 MiB range of a file in page cache (what a commit does): data already in
// memory vs reading the range with pread into one reused buffer vs fs.createReadStream.
import { createHash, randomFillSync } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { bench, do_not_optimize, summary } from 'mitata'
import { runWithThroughput } from './util.js'

const SIZE = 64 * 1024 * 1024
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-micro-'))
const file = path.join(dir, 'range.bin')
const data = randomFillSync(Buffer.allocUnsafe(SIZE))
fs.writeFileSync(file, data)
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))

function preadRange(step) {
  const h = createHash('sha256')
  const buf = Buffer.allocUnsafe(step)
  const fd = fs.openSync(file, 'r')
  try {
    for (let off = 0; off < SIZE; ) {
      const n = fs.readSync(fd, buf, 0, Math.min(step, SIZE - off), off)
      if (n === 0) break
      h.update(buf.subarray(0, n))
      off += n
    }
  } finally {
    fs.closeSync(fd)
  }
  return h.digest()
}

async function streamRange(highWaterMark) {
  const h = createHash('sha256')
  for await (const c of fs.createReadStream(file, { start: 0, end: SIZE - 1, highWaterMark }))
    h.update(c)
  return h.digest()
}

summary(() => {
  bench('in memory (no read), 1 MiB updates', () => {
    const h = createHash('sha256')
    for (let off = 0; off < SIZE; off += 1024 * 1024)
      h.update(data.subarray(off, off + 1024 * 1024))
    do_not_optimize(h.digest())
  })
  bench('file range, readSync 1 MiB reused buffer', () => do_not_optimize(preadRange(1024 * 1024)))
  bench('file range, readSync 8 MiB reused buffer', () =>
    do_not_optimize(preadRange(8 * 1024 * 1024)),
  )
  bench('file range, createReadStream hwm 1 MiB', async () =>
    do_not_optimize(await streamRange(1024 * 1024)),
  )
  bench('file range, createReadStream hwm 64 KiB', async () =>
    do_not_optimize(await streamRange(64 * 1024)),
  )
})

await runWithThroughput(SIZE)
