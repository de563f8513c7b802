// The ceiling: a node:http server that only writes request bodies to files. No hashing, no
// fsync (unless BENCH_FSYNC=1: then, like Ferry's default policy, a file is fdatasynced and its
// directory fsynced before a whole-file PUT or a commit is answered — the *durable* ceiling),
// no state beyond a session-id → path map. It accepts the same URLs as Ferry's
// ImageStore and Shaman scenarios so the load generator is identical.
//   PUT  /ImageStore/{path}                           body → <dir>/store/{path}
//   PUT  /ImageStore/{path}/$/UploadChunk?session-id  body → <dir>/tmp/{sid} at Content-Range start
//   POST /ImageStore/$/CommitUploadSession?session-id rename tmp → store/{path}
//   POST /api/v3/shaman/files/{sha}/{size}           body → <dir>/cas/{sha:2}/{sha2:}/{size}.blob
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'

// FERRY_* too, so the harness can run it in Ferry's place (--ferry-main) to test itself.
const host = process.env.BENCH_HOST ?? process.env.FERRY_HOST ?? '127.0.0.1'
const port = Number(process.env.BENCH_PORT ?? process.env.FERRY_PORT)
const dir = process.env.BENCH_DATA_DIR ?? process.env.FERRY_DATA_DIR
const sessions = new Map()
const madeDirs = new Set()
const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT
const MiB = 1024 * 1024
const durable = process.env.BENCH_FSYNC === '1'

/** fdatasync `file` and fsync its directory (BENCH_FSYNC=1 only). */
async function makeDurable(file) {
  if (!durable) return
  for (const [p, sync] of [
    [file, 'datasync'],
    [path.dirname(file), 'sync'],
  ]) {
    const fh = await fs.promises.open(p, 'r')
    try {
      await fh[sync]()
    } finally {
      await fh.close()
    }
  }
}

function ensureDir(d) {
  if (madeDirs.has(d)) return
  fs.mkdirSync(d, { recursive: true })
  madeDirs.add(d)
}

async function toFile(req, file, start) {
  ensureDir(path.dirname(file))
  // A 1 MiB write buffer lets the socket keep flowing while one write is in the thread pool
  // (fs.WriteStream then batches with writev). The 16 KiB default pauses the request after every
  // 64 KiB read: measured here 0.4-0.7 GB/s at ~2.4 CPU-s/GiB vs 0.73-0.9 GB/s at ~1.4.
  const opts =
    start === undefined
      ? { flags: 'w', highWaterMark: MiB }
      : { flags: CREATE, start, highWaterMark: MiB }
  await pipeline(req, fs.createWriteStream(file, opts))
}

function reply(res, status, body = '') {
  res.writeHead(status, { 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://x')
  const p = decodeURIComponent(url.pathname)
  if (req.method === 'GET' && p === '/healthz') return reply(res, 200, 'ok')
  if (req.method === 'PUT' && p.startsWith('/ImageStore/')) {
    const rel = p.slice('/ImageStore/'.length)
    if (rel.endsWith('/$/UploadChunk')) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] ?? '')
      const sid = url.searchParams.get('session-id')
      if (!m || !sid) return reply(res, 400, 'bad chunk')
      sessions.set(sid, rel.slice(0, -'/$/UploadChunk'.length))
      await toFile(req, path.join(dir, 'tmp', sid), Number(m[1]))
      return reply(res, 200)
    }
    await toFile(req, path.join(dir, 'store', rel))
    await makeDurable(path.join(dir, 'store', rel))
    return reply(res, 200)
  }
  if (req.method === 'POST' && p === '/ImageStore/$/CommitUploadSession') {
    const sid = url.searchParams.get('session-id')
    const rel = sessions.get(sid)
    if (!rel) return reply(res, 404, 'no session')
    const dest = path.join(dir, 'store', rel)
    ensureDir(path.dirname(dest))
    if (durable) await makeDurable(path.join(dir, 'tmp', sid))
    await fs.promises.rename(path.join(dir, 'tmp', sid), dest)
    await makeDurable(dest)
    sessions.delete(sid)
    return reply(res, 200)
  }
  const shaman = /^\/api\/v3\/shaman\/files\/([0-9a-f]{64})\/(\d+)$/.exec(p)
  if (req.method === 'POST' && shaman) {
    const [, sha, size] = shaman
    await toFile(req, path.join(dir, 'cas', sha.slice(0, 2), sha.slice(2), `${size}.blob`))
    await makeDurable(path.join(dir, 'cas', sha.slice(0, 2), sha.slice(2), `${size}.blob`))
    return reply(res, 204)
  }
  req.resume()
  reply(res, 404, 'not found')
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    if (!res.headersSent) reply(res, 500, String(err))
    else res.destroy()
  })
})
server.keepAliveTimeout = 60_000
server.listen(port, host, () => console.log(`minimal listening on http://${host}:${port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
