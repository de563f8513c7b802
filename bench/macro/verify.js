// Reading back what a server stored, and scenario e's yardstick. Nothing here is timed as part
// of a run.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const MiB = 1024 * 1024

export async function hashFile(file) {
  const h = createHash('sha256')
  let size = 0
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB })) {
    h.update(chunk)
    size += chunk.length
  }
  return { sha: h.digest('hex'), size }
}

/**
 * Reads back every stored file; returns the list of problems (empty when all verified).
 * `fileOf(upload)` is where the server stored it, `expectedSha(upload)` its digest computed by
 * the driver from the seeded data, independently of the load generator.
 */
export async function verify(uploads, fileOf, expectedSha) {
  const problems = []
  for (const u of uploads) {
    const expected = expectedSha(u)
    if (u.kind === 'cas' && u.sha !== expected)
      problems.push(`cas ${u.sha}: not the expected digest`)
    const file = fileOf(u)
    try {
      const got = await hashFile(file)
      if (got.size !== u.size) problems.push(`${file}: ${got.size} bytes, expected ${u.size}`)
      else if (got.sha !== expected)
        problems.push(`${file}: sha256 ${got.sha}, expected ${expected}`)
    } catch (err) {
      problems.push(`${file}: ${err.code ?? err.message}`)
    }
  }
  return problems
}

/** Scenario e's yardstick: one sha256 pass over the stored file (page cache) + one fsync of
 *  the same amount of freshly written data (`bytes`) on the same filesystem. */
export async function hashAndFsyncMs(dataDir, file, bytes) {
  const t0 = process.hrtime.bigint()
  await hashFile(file)
  const shaMs = Number(process.hrtime.bigint() - t0) / 1e6
  const probe = path.join(dataDir, 'fsync-probe.bin')
  fs.writeFileSync(probe, bytes)
  const fd = fs.openSync(probe, 'r+')
  const t1 = process.hrtime.bigint()
  fs.fsyncSync(fd)
  const fsyncMs = Number(process.hrtime.bigint() - t1) / 1e6
  fs.closeSync(fd)
  fs.unlinkSync(probe)
  return { shaMs, fsyncMs }
}
