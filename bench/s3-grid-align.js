#!/usr/bin/env node
/**
 * What unaligned chunks cost an ImageStore upload with FERRY_STORAGE=s3 (the part grid,
 * src/core/uploads/grid.ts), against chunks aligned to the grid, on a private Swift
 * (scripts/swift-s3.mjs) and one Ferry (dist/src/main.js, embedded state). Interleaved per rep:
 *   aligned:   chunks of one cell (FERRY_S3_PART_BYTES) at cell boundaries: parts only
 *   unaligned: chunks of one cell + 4099 bytes: every cell is assembled from fragments
 * `--parallel` chunks in flight; the time is first chunk to commit answered. Prints the medians
 * and the ratio unaligned/aligned.
 *   node bench/s3-grid-align.js [--mib 64] [--reps 3] [--parallel 4] [--part-mib 8]
 */
import { fork } from 'node:child_process'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createBucket, startSwift } from '../scripts/swift-s3.mjs'

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    reps: { type: 'string', default: '3' },
    parallel: { type: 'string', default: '4' },
    'part-mib': { type: 'string', default: '8' },
  },
})
const MiB = 1024 * 1024
const size = Number(values.mib) * MiB
const reps = Number(values.reps)
const parallel = Number(values.parallel)
const cell = Number(values['part-mib']) * MiB
const MAIN = fileURLToPath(new URL('../dist/src/main.js', import.meta.url))

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

function send(port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const bufs = []
      res.on('data', (b) => bufs.push(b))
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(bufs) }),
      )
    })
    req.on('error', reject)
    req.end(body)
  })
}

const swift = await startSwift()
const bucket = 'gridalign'
await createBucket(swift.endpoint, bucket)
const dataDir = mkdtempSync(join(tmpdir(), 'ferry-gridalign-'))
const port = await freePort()
const ferry = fork(MAIN, [], {
  env: {
    PATH: process.env.PATH,
    FERRY_PORT: String(port),
    FERRY_HOST: '127.0.0.1',
    FERRY_DATA_DIR: dataDir,
    FERRY_LOG_LEVEL: 'warn',
    FERRY_STORAGE: 's3',
    FERRY_S3_ENDPOINT: swift.endpoint,
    FERRY_S3_BUCKET: bucket,
    FERRY_S3_REGION: swift.region,
    FERRY_S3_FORCE_PATH_STYLE: 'true',
    FERRY_S3_PART_BYTES: String(cell),
    FERRY_FAMILIES: 'imagestore',
    AWS_ACCESS_KEY_ID: swift.accessKeyId,
    AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
  },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
})
try {
  for (let i = 0; ; i++) {
    const ok = await send(port, 'GET', '/healthz', {}).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) break
    if (i > 300) throw new Error('ferry did not start')
    await new Promise((r) => setTimeout(r, 100))
  }
  const data = randomBytes(size)
  const want = createHash('sha256').update(data).digest('hex')
  const API = 'api-version=6.0'
  async function upload(chunk) {
    const id = randomUUID()
    const n = Math.ceil(size / chunk)
    let next = 0
    const t0 = performance.now()
    const worker = async () => {
      while (next < n) {
        const i = next++
        const start = i * chunk
        const end = Math.min(size, start + chunk) - 1
        const r = await send(
          port,
          'PUT',
          `/ImageStore/bench/f-${id}/$/UploadChunk?${API}&session-id=${id}`,
          { 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 },
          data.subarray(start, end + 1),
        )
        if (r.status !== 200) throw new Error(`chunk ${i}: ${r.status} ${r.body}`)
      }
    }
    await Promise.all(Array.from({ length: parallel }, worker))
    const c = await send(
      port,
      'POST',
      `/ImageStore/$/CommitUploadSession?${API}&session-id=${id}`,
      {
        'Content-Length': 0,
      },
    )
    if (c.status !== 200 || c.headers['x-ferry-sha256'] !== want) {
      throw new Error(`commit: ${c.status} ${c.body}`)
    }
    return performance.now() - t0
  }
  const times = { aligned: [], unaligned: [] }
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of rep % 2 === 0 ? ['aligned', 'unaligned'] : ['unaligned', 'aligned']) {
      times[kind].push(await upload(kind === 'aligned' ? cell : cell + 4099))
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const a = median(times.aligned)
  const u = median(times.unaligned)
  const fmt = (xs) => xs.map((x) => x.toFixed(0)).join('/')
  console.log(
    `${values.mib} MiB, cell ${values['part-mib']} MiB, ${parallel} in flight: aligned ` +
      `${fmt(times.aligned)} ms (${((size / MiB / a) * 1000).toFixed(1)} MiB/s), unaligned ` +
      `${fmt(times.unaligned)} ms; median unaligned/aligned ${(u / a).toFixed(2)}x`,
  )
} finally {
  ferry.kill('SIGTERM')
  await new Promise((r) => ferry.once('exit', r))
  rmSync(dataDir, { recursive: true, force: true })
  await swift.stop()
}
