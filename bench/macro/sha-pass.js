// Goal 5's yardstick: the CPU of one sha256 pass over `bytes` of the run's data, from memory in
// 1 MiB updates (Ferry hashes the buffers it received, not a read-back). A child process of its
// own, run once per repetition by run.js so it sees the same machine as the servers; the data is
// made before the measured window. Prints {bytes, cpuS, wallS} as JSON.
//   node bench/macro/sha-pass.js SEED BYTES
import { createHash } from 'node:crypto'
import { makeData } from './data.js'

const [seed, bytesArg] = process.argv.slice(2)
const bytes = Number(bytesArg)
const MiB = 1024 * 1024
const data = makeData(seed, 'big', bytes)
const cpu0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
const h = createHash('sha256')
for (let off = 0; off < bytes; off += MiB) h.update(data.subarray(off, Math.min(bytes, off + MiB)))
h.digest()
const wallS = Number(process.hrtime.bigint() - t0) / 1e9
const cpu = process.cpuUsage(cpu0)
console.log(JSON.stringify({ bytes, cpuS: (cpu.user + cpu.system) / 1e6, wallS }))
