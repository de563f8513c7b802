// The `disk` row: the physical limit, durable. No HTTP, no hashing, no state: a child process
// that writes the run's bytes from memory into its data directory with the same write size and
// the same fdatasync / rename / directory fsync cadence as Ferry's default durability
// (FERRY_FSYNC=commit). What it matches, from Ferry's source (see bench/README.md):
//
//   writes       1 MiB at a time (src/core/storage/files.ts WRITE_BATCH_BYTES), async positional
//                writes through libuv's pool, one file handle per chunk request
//   background   one fdatasync at a time in the process, of the file with the most unflushed
//                bytes once it has 64 MiB (BackgroundFlusher in files.ts, OwedFlusher's 64 MiB in
//                src/core/uploads/flush.ts); writes go on meanwhile
//   publish      fdatasync of the temp file (the tail), mkdir -p, rename (ImageStore) or link +
//                unlink (Shaman, create-if-absent) to the target, fsync of its directory
//                (publishFile in files.ts); a commit first waits for a running background flush
//
// Driven over IPC by the runner like the load generator (macro/load.js), and answering in the
// same shape, so the same read-back checks what it stored. Its layout is the minimal server's
// (store/, cas/), temp files in tmp/.
//
//   runner ──fork──▶ disk.js   {cmd:'prepare'} → data in memory (not timed)
//                              {cmd:'run', kind, params} → {elapsedNs, bytes|count, uploads, …}
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { makeData, smallFiles } from './data.js'

const MiB = 1024 * 1024
const WRITE_BYTES = MiB
const FLUSH_EVERY = 64 * MiB

const dir = process.env.BENCH_DATA_DIR
let big = Buffer.alloc(0)
let small = []

async function datasyncPath(p) {
  const fh = await fsp.open(p, 'r')
  try {
    await fh.datasync()
  } finally {
    await fh.close()
  }
}

async function fsyncDir(d) {
  const fh = await fsp.open(d, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Ferry's BackgroundFlusher: one flush at a time, of the file with the most unflushed bytes. */
class Flusher {
  #files = new Map()
  #running = false

  wrote(p, n) {
    let f = this.#files.get(p)
    if (!f) {
      f = { pending: 0, running: null }
      this.#files.set(p, f)
    }
    f.pending += n
    this.#next()
  }

  #next() {
    if (this.#running) return
    let pick = null
    let most = FLUSH_EVERY - 1
    for (const [p, f] of this.#files) {
      if (f.pending > most) {
        pick = p
        most = f.pending
      }
    }
    if (pick === null) return
    const f = this.#files.get(pick)
    f.pending = 0
    this.#running = true
    f.running = datasyncPath(pick)
      .catch(() => {})
      .finally(() => {
        f.running = null
        this.#running = false
        this.#next()
      })
  }

  async settle(p) {
    const f = this.#files.get(p)
    this.#files.delete(p)
    await f?.running
  }
}

const flusher = new Flusher()
const madeDirs = new Set()
async function mkdirp(d) {
  if (madeDirs.has(d)) return
  await fsp.mkdir(d, { recursive: true })
  madeDirs.add(d)
}

/** Writes `buf` at `pos` of the open file in 1 MiB writes, telling the flusher as it goes. */
async function writeAt(fh, p, buf, pos) {
  for (let off = 0; off < buf.length; off += WRITE_BYTES) {
    const n = Math.min(WRITE_BYTES, buf.length - off)
    let done = 0
    while (done < n) {
      const { bytesWritten } = await fh.write(buf, off + done, n - done, pos + off + done)
      done += bytesWritten
    }
    flusher.wrote(p, n)
  }
}

/** Ferry's publishFile: fdatasync, mkdir -p, rename or link + unlink, fsync the directory. */
async function publish(temp, target, overwrite) {
  await datasyncPath(temp)
  const d = path.dirname(target)
  await mkdirp(d)
  if (overwrite) await fsp.rename(temp, target)
  else {
    await fsp.link(temp, target)
    await fsp.unlink(temp)
  }
  await fsyncDir(d)
}

const tmpPath = () => path.join(dir, 'tmp', randomUUID())
const storePath = (rel) => path.join(dir, 'store', ...rel.split('/'))

/** A whole file from one handle (ImageStore PUT; the small files with `overwrite`). */
async function wholeFile(buf, target, overwrite) {
  const temp = tmpPath()
  const fh = await fsp.open(temp, 'w')
  try {
    await writeAt(fh, temp, buf, 0)
  } finally {
    await fh.close()
  }
  await flusher.settle(temp)
  await publish(temp, target, overwrite)
}

async function stream(p) {
  const t0 = process.hrtime.bigint()
  const rel = `${p.prefix}/stream.bin`
  await wholeFile(big.subarray(0, p.size), storePath(rel), true)
  const elapsedNs = Number(process.hrtime.bigint() - t0)
  return { elapsedNs, bytes: p.size, uploads: [{ kind: 'store', path: rel, size: p.size }] }
}

/** Runs `count` jobs with at most `conc` at once. */
async function pool(count, conc, job) {
  let next = 0
  const worker = async () => {
    while (next < count) await job(next++)
  }
  await Promise.all(Array.from({ length: Math.min(conc, count) }, worker))
}

/** One chunked upload: `parallel` chunks at once, each its own handle; then the commit. */
async function chunkedOne(p, n) {
  const buf = big.subarray(0, p.size)
  const temp = tmpPath()
  await (await fsp.open(temp, 'w')).close()
  const count = Math.ceil(p.size / p.chunk)
  await pool(count, p.parallel, async (i) => {
    const a = i * p.chunk
    const fh = await fsp.open(temp, fs.constants.O_WRONLY)
    try {
      await writeAt(fh, temp, buf.subarray(a, Math.min(p.size, a + p.chunk)), a)
    } finally {
      await fh.close()
    }
  })
  const c0 = process.hrtime.bigint()
  const rel = `${p.prefix}/chunked-${n}.bin`
  await flusher.settle(temp)
  await publish(temp, storePath(rel), true)
  return {
    upload: { kind: 'store', path: rel, size: p.size },
    commitNs: Number(process.hrtime.bigint() - c0),
  }
}

async function chunked(p) {
  const t0 = process.hrtime.bigint()
  const res = await Promise.all(Array.from({ length: p.sessions }, (_, n) => chunkedOne(p, n)))
  return {
    elapsedNs: Number(process.hrtime.bigint() - t0),
    bytes: p.size * p.sessions,
    uploads: res.map((r) => r.upload),
    commitNs: res.map((r) => r.commitNs),
  }
}

/** Small files, `conc` at once: ImageStore paths (rename) or Shaman's CAS (link + unlink). */
function smallKind(kind) {
  return async (p) => {
    const files = small.slice(0, p.count)
    const uploads = new Array(files.length)
    const latencyNs = new Array(files.length)
    const t0 = process.hrtime.bigint()
    await pool(files.length, p.conc, async (i) => {
      const f = files[i]
      const s0 = process.hrtime.bigint()
      if (kind === 'store') {
        const rel = `${p.prefix}/f${String(i).padStart(5, '0')}.bin`
        await wholeFile(f.buf, storePath(rel), true)
        uploads[i] = { kind: 'store', path: rel, size: f.buf.length, file: i }
      } else {
        const size = f.buf.length
        const target = path.join(dir, 'cas', f.sha.slice(0, 2), f.sha.slice(2), `${size}.blob`)
        await wholeFile(f.buf, target, false)
        uploads[i] = { kind: 'cas', sha: f.sha, size, file: i }
      }
      latencyNs[i] = Number(process.hrtime.bigint() - s0)
    })
    return {
      elapsedNs: Number(process.hrtime.bigint() - t0),
      count: files.length,
      uploads,
      latencyNs,
    }
  }
}

const kinds = { stream, chunked, small: smallKind('store'), shaman: smallKind('cas') }

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'prepare') {
      big = makeData(msg.seed, 'big', msg.bigBytes)
      small = smallFiles(msg.seed, msg.smallCount, msg.smallBytes)
      await mkdirp(path.join(dir, 'tmp'))
      process.send({ ok: true })
    } else if (msg.cmd === 'run') {
      if (!kinds[msg.kind]) throw new Error(`disk: no ${msg.kind} runs`)
      const cpu0 = process.cpuUsage()
      const res = await kinds[msg.kind](msg.params)
      const cpu = process.cpuUsage(cpu0)
      process.send({ ok: true, ...res, clientCpuS: 0, ownCpuS: (cpu.user + cpu.system) / 1e6 })
    } else if (msg.cmd === 'exit') {
      process.exit(0)
    }
  } catch (err) {
    process.send({ ok: false, error: err instanceof Error ? err.message : String(err) })
  }
})
